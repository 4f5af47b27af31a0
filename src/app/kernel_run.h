/* The infinite-width runs of a sweep (-kernel_regression, docs/infinite_width.md): the analytic
 * NTK's Gram matrix assembled across the world (kernel_gram.h), its eigendecomposition and the
 * converged predictor (kernel_regression.h), and one width-0 ("inf") run per learning rate whose
 * train/, test/ and kernel/ rows and /summary row go to the job's output like any run's. */
#ifndef NTK_KERNEL_RUN_H
#define NTK_KERNEL_RUN_H
#include "kernel_gram.h"
#include "kernel_regression.h"
#include "output.h"
#include "sweep.h"

typedef struct {
  int active;
  KernelRegression kr;
  KernelGramStats gram;
} KernelRuns;

/* FLOPs of the kernel runs' preparation for the planner (layout.c): the tiles of Theta(X, X) and
 * Theta(X*, X) (and of the NNGP with -kernel_prior), from the kernels' counted cost per entry, and
 * the dense eigendecomposition and Cholesky solve (10 N^3 + N^3 / 3). 0 without -kernel_regression. */
double kernel_runs_flops(const Config *cfg, const Dataset *train, const Dataset *test);

/* Collective over world, before lambda_0 is measured: assembles Theta(X, X) and Theta(X*, X) (tiles
 * checkpointed in cfg->checkpoint_dir), eigendecomposes, and fills the kernel instance's row
 * (lambda_0(inf)) and measured flag, so that -eta_factors give its learning rates. Sets *stopped
 * after a signal (finished tiles are saved). Returns 0 or an exit code. */
int kernel_runs_prepare(KernelRuns *kp, const Config *cfg, const Dataset *train, const Dataset *test, const Sweep *sw, MPI_Comm world,
                        InstanceRow *rows, int32_t *measured, int *stopped);

/* Collective over world, after output_create: every kernel run's trajectory; rank 0 writes its rows
 * and /summary row. Marks those runs RUN_DONE / RUN_DIVERGED in status (and done_rows on rank 0)
 * so that the sweep skips them. Returns 0 or an exit code. */
int kernel_runs_write(KernelRuns *kp, const Config *cfg, const Sweep *sw, OutputFile *out, int32_t *status, SummaryRow *done_rows,
                      MPI_Comm world);

void kernel_runs_free(KernelRuns *kp);

#endif
