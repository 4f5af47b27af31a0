/* One parallel HDF5 file per job (layout: docs/output.md).
 *
 * Parallel HDF5 metadata operations are collective, while runs finish at different times on
 * different sub-communicators. So output_create() makes, collectively and up front, every group,
 * dataset and static attribute of every run, sized for the whole trajectory and filled with NaN;
 * afterwards each run's group leader writes its rows and its summary row independently, touching
 * only raw data. output_close() is collective.
 */
#ifndef NTK_OUTPUT_H
#define NTK_OUTPUT_H
#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>
#include <hdf5.h>
#include "config.h"
#include "sweep.h"

typedef struct {
  int64_t step;
  double loss;          /* train loss on the training subset, CONVENTIONS.md normalisation */
  double accuracy;      /* train accuracy (NaN for regression targets) */
  double param_norm;    /* ||theta_t||_2 */
  double dist_init;     /* ||theta_t - theta_0||_2 */
  double lr;            /* base learning rate in force at this step (schedule applied) */
} TrainRecord;

typedef struct {
  int64_t step;
  double loss, accuracy;
} TestRecord;

typedef enum { RUN_PENDING = 0, RUN_RUNNING = 1, RUN_DONE = 2, RUN_DIVERGED = 3 } RunStatus;
/* Phase of a finished run (CONVENTIONS.md "Learning rates and phases"); -1 while unknown. */
typedef enum { PHASE_UNKNOWN = -1, PHASE_LAZY = 0, PHASE_CATAPULT = 1, PHASE_DIVERGENT = 2 } Phase;

/* One NTK measurement along a run: lambda_t, the top-k spectrum and its residuals. */
typedef struct {
  int64_t step;
  double lambda;        /* top eigenvalue of Theta_t */
  double kernel_distance; /* ||Theta_t - Theta_0||_F / ||Theta_0||_F, NaN if not computed */
  int32_t nconv;        /* eigenpairs converged */
  const double *topk;   /* nev eigenvalues, largest first (NaN where not converged) */
  const double *resid;  /* nev relative residuals ||Theta x - l x|| / |l| */
} LambdaRecord;

/* One Hessian measurement along a run: the sharpness s_t = top eigenvalue of the loss Hessian,
 * the top-k with residuals, the most negative eigenvalue, and lambda_t at the same step. */
typedef struct {
  int64_t step;
  double sharpness, min_eig, min_resid;
  double lambda;        /* NTK top eigenvalue at the same theta (catapult paper's comparison) */
  double lr;            /* learning rate in force: 2/lr is the edge of stability */
  int32_t nconv;
  const double *topk, *resid; /* hess_nev each */
} HessianRecord;

/* Hutchinson trace and SLQ spectral density of the Hessian at one step. */
typedef struct {
  int64_t step;
  double trace, trace_stderr;
  const double *nodes, *weights; /* slq_probes * slq_lanczos each; weights sum to 1 */
} DensityRecord;

/* One row of /instances: a model instance and its lambda_0, written by the group that measured it. */
typedef struct {
  int32_t instance, width, param;
  int64_t seed, n_params;
  double lambda0, lambda0_resid;
  int32_t method;       /* NtkMethod used: 1 matrix-free, 2 exact */
  double seconds;
  /* -eta_max_search: the divergence boundary in units of 1/lambda_0 lies in (eta_max_lo,
   * eta_max_hi]; NaN if not searched, eta_max_hi = inf if even the top of the bracket converged */
  double eta_max_lo, eta_max_hi;
  int32_t eta_max_probes;
} InstanceRow;

/* One row of /summary, written when a run ends (and updated while it runs, status RUNNING). */
typedef struct {
  int32_t run, instance, width, param;   /* param: Parameterization enum */
  int64_t seed;
  double eta, eta_factor;
  int32_t status;                        /* RunStatus */
  int64_t steps_done;
  int32_t n_train_records, n_test_records;
  double loss0, loss_peak, loss_final;
  double acc_final, test_loss_final, test_acc_final;
  double wall_seconds;
  /* phase and the raw numbers behind it */
  double lambda0, lambda_final;          /* NTK top eigenvalue at step 0 and at the last step */
  double peak_ratio;                     /* L_peak / L_0 within the catapult window */
  double eta_lambda0, eta_lambda_final;  /* eta * lambda_0, eta * lambda_T */
  double lambda_ratio;                   /* lambda_T / lambda_0 */
  int32_t phase;                         /* Phase */
} SummaryRow;

typedef struct {
  hid_t file;
  int n_runs, n_instances;
  int64_t n_train_records, n_test_records, n_lambda_records; /* rows per run */
  int nev;                                /* columns of lambda/topk and lambda/resid */
  int n_spectra;                          /* rows of spectrum/ntk (0: none) */
  int64_t n_hess_records;                 /* rows of hessian/ (0: no Hessian) */
  int hess_nev;
  int n_density;                          /* rows of density/ (0: none) */
  int64_t density_len;                    /* SLQ nodes per row */
  int64_t spectrum_len;                   /* columns of spectrum/ntk: Nk (full) or N (traced) */
} OutputFile;

/* Rows each run gets: train at steps 0, m, 2m, ... and the final step; test likewise with M. */
int64_t output_n_train_records(const Config *cfg);
int64_t output_n_test_records(const Config *cfg);
int64_t output_n_lambda_records(const Config *cfg);
int64_t output_lambda_step(const Config *cfg, int64_t r);
int64_t output_n_hess_records(const Config *cfg); /* 0 when -hess_every is 0 */
/* Step of train (test) record r. */
int64_t output_train_step(const Config *cfg, int64_t r);
int64_t output_test_step(const Config *cfg, int64_t r);

/* Collective: the checks output_create makes on the path (existing file without -overwrite, missing
 * or unwritable directory), so a bad path fails before any expensive work. */
int output_check_path(MPI_Comm comm, const Config *cfg, char *err, size_t errlen);

/* Collective over comm. Refuses an existing file unless cfg->overwrite (then it is replaced only
 * after every check has passed). deck_text: the effective options, one "-key value" per line.
 * Returns 0, or -1 with a one-line message naming the file. */
int output_create(OutputFile *of, MPI_Comm comm, const Config *cfg, const Sweep *sw,
                  const char *deck_text, char *err, size_t errlen);

/* Independent (one rank): rows [first, first + count) of run `run`. */
int output_write_train(OutputFile *of, int run, int64_t first, int64_t count,
                       const TrainRecord *rows /* count */);
int output_write_test(OutputFile *of, int run, int64_t first, int64_t count,
                      const TestRecord *rows /* count */);
int output_write_lambda(OutputFile *of, int run, int64_t first, int64_t count,
                        const LambdaRecord *rows /* count */);
/* Spectrum row r (the r-th of cfg->spectrum_steps): all eigenvalues, largest first. */
int output_write_spectrum(OutputFile *of, int run, int r, int64_t step, const double *eig /* spectrum_len */);
int output_write_hessian(OutputFile *of, int run, int64_t first, int64_t count, const HessianRecord *rows /* count */);
int output_write_density(OutputFile *of, int run, int r, const DensityRecord *row);
int output_write_summary(OutputFile *of, const SummaryRow *row);
int output_write_instance(OutputFile *of, const InstanceRow *row);
/* output_create() flushes the file's metadata collectively before returning, so raw data written
 * independently afterwards is on disk once the write returns: a killed job leaves a readable file
 * whose /summary says which runs finished. */

/* Collective. */
int output_close(OutputFile *of);

#endif
