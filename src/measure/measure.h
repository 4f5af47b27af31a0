/* Measurements: everything recorded along a trajectory, behind one interface.
 *
 * A measurement is one MeasurementClass, listed by name in the registry (registry.c). For each
 * job it declares its datasets once (declare); the output file, the checkpoints and postproc
 * follow that declaration. For each run it is set up on the run's group, asked at every step
 * whether it is due, measures into its RecordBuffer, gives and takes its warm-start state for
 * checkpoints, and is torn down. Adding a quantity is one file plus one line in the registry, or
 * measure_register() from outside (tests/test_registry.c does that).
 *
 * Collective calls: setup, measure, state_get, state_set and destroy are collective over the
 * run's group (every rank calls them with the same t); declare and due are local and must give
 * the same answer on every rank. */
#ifndef NTK_MEASURE_H
#define NTK_MEASURE_H
#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>
#include "config.h"
#include "data.h"
#include "hessian.h"
#include "model.h"
#include "ntk.h"
#include "option_table.h"
#include "petsc_compat.h"
#include "runs.h"
#include "schema.h"

typedef struct NtkProbe NtkProbe;
typedef struct HessProbe HessProbe;

/* What a measurement sees of its run: read-only views owned by the training loop. */
typedef struct MeasureRun {
  MPI_Comm group;
  int grank, gsize;
  const Config *cfg;
  const RunSpec *run;
  const Dataset *train, *test;
  const Model *model;
  size_t P;
  const double *theta;   /* P: the parameters at the current step */
  const double *theta0;  /* P: at initialisation */
  /* Loss and accuracy over a whole data set at theta (the loop's evaluation: data-parallel over
   * the group, batch-norm batches as in training). Collective. */
  void (*evaluate)(void *loop, const Dataset *ds, double *loss, double *acc);
  /* The linearised model f_lin(x) = f(x; theta_0) + J_0(x) dtheta (docs/conventions.md), through
   * the same data-parallel passes: its loss and accuracy over a whole data set, and the gradient of
   * its loss over step t's batch (the network's own batch, augmentation included) into grad
   * (P + 2: the gradient, then the batch's loss sum and correct count), returning the batch loss.
   * update: one step of the run's optimizer (its rule, lr_scale and weight decay) on another
   * parameter vector with its own n_opt_state state vectors of P. Collective (update: local). */
  void (*evaluate_lin)(void *loop, const double *dtheta /* P */, const Dataset *ds, double *loss, double *acc);
  double (*gradient_lin)(void *loop, const double *dtheta /* P */, int64_t t, double *grad /* P + 2 */, double *acc);
  void (*update)(void *loop, double *theta /* P */, double *const *state /* n_opt_state x P */, const double *grad /* P */, double lr);
  int n_opt_state;
  void *loop;
  /* Shared operators, created on first use, one linearisation per step between measurements */
  NtkProbe *ntk;
  HessProbe *hess;
} MeasureRun;

/* The step being measured, and what measurements tell each other and the loop about it. */
typedef struct {
  int64_t t;
  bool final;          /* the last step of the run */
  double lr;           /* learning rate in force at t */
  bool loss_measured;  /* the loop evaluated the train loss at theta_t: loss, acc (loss may be NaN
                          or inf, a divergence; not measured is this flag, never a NaN) */
  double loss, acc;
  /* published by measurements */
  bool lambda_recorded; double lambda;      /* lambda_t recorded on the NTK trajectory */
  bool test_recorded; double test_loss, test_acc;
} StepInfo;

/* A named array of a measurement's state: a warm start, for example. For state_get the array is
 * malloc'd on the group's rank 0 (n its length on every rank, 0 = none); state_set gets the
 * checkpoint's array on every rank. */
#define MEASURE_MAX_STATE 4
typedef struct {
  int64_t n;
  double *data;
} StateArray;

typedef struct MeasurementClass {
  const char *name;        /* registry key and HDF5 group name */
  /* Its options, read, checked, listed by -help under option_heading (after that heading's own
   * options) and recorded in the effective deck by the app's generic reader; validate then checks
   * what involves other options, writing one line into err (NULL: nothing to check). */
  const char *option_heading;
  const OptionDesc *options;
  int n_options;
  int (*validate)(const Config *cfg, char *err, size_t errlen);
  /* The datasets of one run. schema->n_records = 0: off in this deck (no group, no calls). */
  void (*declare)(const Config *cfg, const Dataset *train, Schema *schema);
  /* true: also measured at a step where the loss blew up (before the divergence check) */
  bool at_divergent_step;
  /* true: needs the train loss at theta_t in StepInfo when due */
  bool needs_loss;
  PetscErrorCode (*setup)(MeasureRun *r, void **state);
  bool (*due)(const MeasureRun *r, void *state, const StepInfo *step);
  PetscErrorCode (*measure)(MeasureRun *r, void *state, StepInfo *step, RecordBuffer *out);
  /* warm-start state kept in checkpoints: up to MEASURE_MAX_STATE arrays, named */
  int n_state;
  const char *state_names[MEASURE_MAX_STATE];
  PetscErrorCode (*state_get)(MeasureRun *r, void *state, StateArray *arrays /* n_state */);
  PetscErrorCode (*state_set)(MeasureRun *r, void *state, const StateArray *arrays /* n_state */);
  /* after a restart: recompute what is derived from theta_0 (NULL: nothing) */
  PetscErrorCode (*resume)(MeasureRun *r, void *state);
  void (*destroy)(void *state);
} MeasurementClass;

/* ------------------------------------------------------------------ registry */

#define MEASURE_MAX 32
/* Adds a measurement after the built-in ones (before any job starts). 0, or -1 if the table is
 * full or the name is taken. */
int measure_register(const MeasurementClass *m);
int measure_count(void);
const MeasurementClass *measure_get(int i);
const MeasurementClass *measure_find(const char *name);

/* The active measurements of a job: the registry's entries whose schema has records. */
typedef struct {
  int n;
  const MeasurementClass *cls[MEASURE_MAX];
  Schema schema[MEASURE_MAX];
} MeasureSet;

/* 0, or -1 with one line in err when a measurement declares more datasets than a schema holds or
 * its first dataset is not the int64 "step". */
int measure_set_declare(MeasureSet *set, const Config *cfg, const Dataset *train, char *err, size_t errlen);
/* Position of the measurement called name in the set, or -1 when it is off. */
int measure_set_index(const MeasureSet *set, const char *name);
/* Each active measurement's validate; 0, or -1 with one line in err. */
int measure_set_validate(const Config *cfg, char *err, size_t errlen);

/* For measurements recorded at listed steps (-spectrum_steps, -density_steps): the position of
 * step t in list[0..n), or -1; and the check that the last listed step is within -steps (0, or -1
 * with "option OPTION: step S is beyond -steps T" in err). */
int measure_listed_index(const int64_t *list, int n, int64_t t);
int measure_check_listed(const char *option, const int64_t *list, int n, int64_t steps, char *err, size_t errlen);

/* The NTK's record schedule (-lambda_every, -lambda_dense_steps), shared by lambda/ and
 * lambda_plain/: is step t recorded (besides the final step), and how many records a run has. */
bool ntk_lambda_due(const Config *cfg, int64_t t);
int64_t ntk_lambda_record_count(const Config *cfg);

/* ------------------------------------------------------------------ shared operators */

/* The NTK on the run's NTK batch and the choice of method for lambda (measure/ntk_probe.c): the
 * exact Gram matrix when asked, or (auto) when the cost model says it is cheaper and it fits in
 * -gram_max_rows. One linearisation and one eigensolve per step, shared by the measurements that
 * ask for the same step. */
typedef struct {
  double lambda;           /* top eigenvalue */
  double kernel_distance;  /* ||Theta_t - Theta_0||_F / ||Theta_0||_F, NaN if not computed */
  int nconv;
  const double *topk, *resid; /* ntk_nev each, owned by the probe until the next step */
  const double *spectrum;  /* all eigenvalues when asked for and affordable, else NULL */
} NtkResult;

PetscErrorCode ntk_probe_get(MeasureRun *r, NtkProbe **p);
bool ntk_probe_gram_ok(const NtkProbe *p);        /* the exact Gram matrix is affordable */
bool ntk_probe_uses_exact(const NtkProbe *p);     /* lambda comes from the exact Gram matrix */
int64_t ntk_probe_spectrum_len(const Config *cfg, const Dataset *train);
/* The NTK at theta_t. want_spectrum: the full spectrum too. A cached result of step t is reused
 * unless it lacks what is asked for, or its lambda is NaN and fresh is set. Collective. */
PetscErrorCode ntk_probe_measure(MeasureRun *r, int64_t t, bool want_spectrum, bool fresh, NtkResult *res);
PetscErrorCode ntk_probe_warm_get(MeasureRun *r, StateArray *a);
PetscErrorCode ntk_probe_warm_set(MeasureRun *r, const StateArray *a);
/* Theta_0 and Theta_t as assembled Gram matrices (borrowed: valid until the next step's NTK
 * measurement), for measurements that compare kernels; NULL when the exact Gram matrix is not
 * affordable. Reuses the Gram matrix lambda assembled at step t, else assembles it (no eigensolve).
 * ntk_probe_keep_grams, called at setup, makes the probe keep them. Collective. */
PetscErrorCode ntk_probe_keep_grams(MeasureRun *r);
PetscErrorCode ntk_probe_grams(MeasureRun *r, int64_t t, Mat *G0, Mat *Gt);
/* Theta_0's Gram matrix again, for kernel distances after a restart. */
PetscErrorCode ntk_probe_resume(MeasureRun *r);
void ntk_probe_destroy(NtkProbe **p);

/* The loss Hessian on the run's Hessian batch (measure/hess_probe.c), created on first use and
 * linearised once per step. hess_probe_operator: created, not linearised (for warm starts). */
PetscErrorCode hess_probe_operator(MeasureRun *r, HessianOperator **op);
PetscErrorCode hess_probe_at(MeasureRun *r, int64_t t, HessianOperator **op);
void hess_probe_destroy(HessProbe **p);

#endif
