/* Training of one run on its sub-communicator: full-batch gradient descent or minibatch SGD,
 * data-parallel over the group's ranks (each rank takes a slice of the batch; the gradient is
 * summed with one allreduce per step), with optional momentum, weight decay and schedules. */
#ifndef NTK_TRAIN_H
#define NTK_TRAIN_H
#include <mpi.h>
#include "config.h"
#include "data.h"
#include "output.h"
#include "progress.h"
#include "sweep.h"

typedef struct {
  MPI_Comm group;       /* the run's sub-communicator */
  const Config *cfg;
  const Dataset *train, *test;
  OutputFile *out;      /* written by the group's rank 0 only */
  Progress *progress;
  /* checkpoints (docs/checkpoint.md); ckpt_dir NULL: none (probe runs) */
  const char *ckpt_dir;
  const char *deck;     /* effective deck text, stored in each checkpoint */
  Scheduler *sched;     /* its stop flag is set after a signal and polled (NULL: local signals only) */
  int *stopped;         /* set to 1 when the run stopped after a signal, checkpointed, unfinished */
} TrainContext;

/* Registers the PetscLogEvents of training (visible in -log_view). Call once after init. */
int train_register_events(void);

/* Phase of a finished run from its raw numbers (CONVENTIONS.md): divergent if it blew up (non-finite
 * loss, L_peak > diverge_factor L_0, or L_T > L_0); catapult if the loss peaked above
 * catapult_factor L_0 within the first catapult_window steps (peak_window) and ended below L_0;
 * lazy otherwise. */
Phase phase_classify(const Config *cfg, double loss0, double peak_window, double loss_peak, double loss_final, bool diverged);

/* Measures lambda_0 of a model instance (any of its runs names it) on ctx->group, and fills row.
 * Collective over ctx->group. */
int train_measure_instance(const TrainContext *ctx, const RunSpec *run, InstanceRow *row);

/* -eta_max_search: bisects eta_factor over short probe runs (-eta_max_steps) of the instance of
 * `run` until the divergence boundary is bracketed to -eta_max_tol; fills row->eta_max_lo/hi and
 * eta_max_probes. Collective over ctx->group. */
int train_search_eta_max(const TrainContext *ctx, const RunSpec *run, double lambda0, InstanceRow *row);

/* Trains run `run` to the end or to divergence, writing its trajectory and summary row. With
 * ctx->ckpt_dir it resumes from the run's checkpoint if there is one, checkpoints every
 * -checkpoint_every steps / -checkpoint_minutes and at the end, and after a signal (SIGTERM,
 * SIGUSR1/2) checkpoints and stops at the end of the current step (*ctx->stopped = 1).
 * Collective over ctx->group. Returns 0, or non-zero on an internal error. */
int train_run(const TrainContext *ctx, const RunSpec *run, SummaryRow *result);

#endif
