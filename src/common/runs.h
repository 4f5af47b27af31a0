/* The sweep's data model, shared by every layer above core: a run (a model instance and its
 * learning rate), its status and phase, and the rows of /summary and /instances. Plain data: no
 * PETSc, no MPI, no HDF5. */
#ifndef NTK_RUNS_H
#define NTK_RUNS_H
#include <stdint.h>
#include "model.h"

/* Model instance = (arch, width, seed, param); run = instance + learning rate (docs/conventions.md). */
typedef struct {
  int index;            /* position in this job's sweep: HDF5 group runs/run_%06d */
  int deck_index;       /* position in the deck's enumeration (= index unless -sweep_parts > 1) */
  int instance;         /* model instance id, shared by runs differing only in eta */
  int width;
  int64_t seed;
  Parameterization param;
  double eta;           /* absolute base learning rate */
  double eta_factor;    /* eta * lambda_0 when given in units of 1/lambda_0, else NaN */
  double lambda0;       /* the instance's lambda_0 once measured (NaN before) */
  int64_t n_params;
  double cost;          /* estimated FLOPs of the whole run */
  int ranks;            /* ranks of the group planned for it (-ranks_per_run auto); 0: -ranks_per_run */
} RunSpec;

typedef enum { RUN_PENDING = 0, RUN_RUNNING = 1, RUN_DONE = 2, RUN_DIVERGED = 3 } RunStatus;
/* Phase of a finished run (docs/conventions.md "Learning rates and phases"); -1 while unknown. */
typedef enum { PHASE_UNKNOWN = -1, PHASE_LAZY = 0, PHASE_CATAPULT = 1, PHASE_DIVERGENT = 2, PHASE_UNRESOLVED = 3 } Phase;

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
  double peak_ratio;                     /* spike strength: L_peak / L_0 within the catapult window */
  int64_t peak_step;                     /* the step of that peak (-1 unknown) */
  double eta_lambda0, eta_lambda_final;  /* eta * lambda_0, eta * lambda_T */
  double lambda_ratio;                   /* lambda_T / lambda_0 */
  int32_t phase;                         /* Phase */
  int32_t measured;                      /* SummaryMeasured bits: which results were measured */
} SummaryRow;

/* SummaryRow.measured: a result is known only if its bit is set (an unmeasured value holds NaN as
 * a filler, but NaN never means "not measured": a measured loss may be NaN or inf, a divergence). */
typedef enum {
  MEASURED_LOSS0 = 1 << 0,        /* loss0 */
  MEASURED_LOSS_PEAK = 1 << 1,    /* loss_peak */
  MEASURED_LOSS_FINAL = 1 << 2,   /* loss_final */
  MEASURED_ACC_FINAL = 1 << 3,    /* acc_final (a labelled data set) */
  MEASURED_TEST_FINAL = 1 << 4,   /* test_loss_final, test_acc_final */
  MEASURED_LAMBDA0 = 1 << 5,      /* lambda0, eta_lambda0 */
  MEASURED_LAMBDA_FINAL = 1 << 6, /* lambda_final, eta_lambda_final; lambda_ratio with LAMBDA0 */
  MEASURED_PEAK_WINDOW = 1 << 7,  /* peak_ratio, peak_step */
} SummaryMeasured;

/* A SummaryRow with the run's identity and every result unknown (NaN), status `status`. */
SummaryRow summary_row_pending(const RunSpec *run, RunStatus status);
/* An InstanceRow with the instance's identity and nothing measured. */
InstanceRow instance_row_unmeasured(const RunSpec *run);

/* Rows a quantity recorded every `every` steps gets over `steps` steps: steps 0, every, 2 every,
 * ... and the final step if it is not a multiple; every <= 0: the first and the final step. */
int64_t record_count(int64_t steps, int64_t every);
/* Step of record r of that schedule. */
int64_t record_step(int64_t steps, int64_t every, int64_t r);
/* Is step t on that schedule? */
int record_due(int64_t steps, int64_t every, int64_t t);

#endif
