/* linearized/: the linearised model (Lee et al. 2019; docs/conventions.md "The linearised model and
 * the infinite-width limit") trained beside the network when -linearized is true:
 *
 *   f_lin(x; theta) = f(x; theta_0) + J_0(x) (theta - theta_0),
 *
 * with the network's optimizer, learning rates (schedule and lr_scale), weight decay and batches:
 * every step the loop's own data-parallel pass gives the gradient of its loss over step t's batch
 * (one forward pass at theta_0, one JVP for J_0 dtheta, one VJP at theta_0), and the run's update
 * rule moves theta_lin with its own optimizer state. Its NTK is Theta_0 forever, so it diverges for
 * eta lambda_0 > 2 where the network may catapult.
 *
 * Recorded every -linearized_every steps (0: the -record_every schedule) and at the last step: its
 * train loss and accuracy on the training subset, its test loss and accuracy, and RMS(f - f_lin)
 * over the outputs of the probe batch (the NTK batch). theta_lin and the optimizer's state go to
 * checkpoints, so a restart continues bit for bit. Once its batch loss is no longer finite the
 * linearised model has diverged: it stops moving and its losses are recorded as +inf. */
#include <math.h>
#include <string.h>
#include "measure.h"

#define LIN_MAX_OPT_STATE 2 /* the optimizer's vectors a checkpoint keeps (state_names below) */

typedef struct {
  double *theta;                 /* P: theta_lin */
  double *dtheta;                /* P: theta_lin - theta_0 */
  double *grad;                  /* P + 2 */
  double *opt[LIN_MAX_OPT_STATE];/* P each: the optimizer's state for theta_lin */
  int n_opt;
  bool diverged;
  int n, lo, hi;                 /* probe batch, this rank's slice [lo, hi) */
  Tape tape;
  double *f;                     /* (hi - lo) x k: f(x; theta_t) of the slice */
} LinState;

static bool on(const Config *c) { return c->linearized; }
static bool every_given(const Config *c) { return c->linearized && c->linearized_every > 0; }

static const OptionDesc options[] = {
  {.name = "-linearized", .kind = KIND_BOOL, .def = "false", .in_deck = on,
   .meaning = "Train the linearised model f(theta_0) + J_0 (theta - theta_0) beside every network, with its optimizer and batches",
   OPTION_FIELD(linearized)},
  {.name = "-linearized_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT, .in_deck = every_given,
   .meaning = "Record the linearised model's losses and RMS(f - f_lin) every this many steps (0 = the -record_every schedule)",
   OPTION_FIELD(linearized_every)},
};

static int64_t every(const Config *c) { return c->linearized_every > 0 ? c->linearized_every : c->record_every; }
static int probe_n(const Config *cfg, const Dataset *train) { return cfg->ntk_batch < train->n ? cfg->ntk_batch : (int)train->n; }

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "the linearised model f(theta_0) + J_0 (theta - theta_0), trained beside the network with the same optimizer, "
                   "learning rates and batches";
  s->n_records = on(cfg) ? record_count(cfg->steps, every(cfg)) : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "loss", DS_FLOAT64, SCALAR, "1", "train loss (1/2N) sum ||f_lin(x) - y||^2 of the linearised model on the training subset (+inf once diverged)");
  schema_add(s, "accuracy", DS_FLOAT64, SCALAR, "1", "fraction of training samples whose argmax f_lin is the label (NaN for regression)");
  schema_add(s, "test_loss", DS_FLOAT64, SCALAR, "1", "test loss of the linearised model on the test set (NaN without a test set, +inf once diverged)");
  schema_add(s, "test_accuracy", DS_FLOAT64, SCALAR, "1", "test accuracy of the linearised model");
  schema_add(s, "rms_f_flin", DS_FLOAT64, SCALAR, "1",
             "RMS over the probe batch (the NTK batch) and the outputs of f(x; theta_t) - f_lin(x; theta_lin,t)");
  schema_add(s, "dist_init", DS_FLOAT64, SCALAR, "1", "||theta_lin,t - theta_0||_2");
}

static void group_sum(double *buf, int n, void *ctx) { MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx); }

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  LinState *s;
  const size_t P = r->P;
  PetscCall(PetscCalloc1(1, &s));
  *state = s;
  PetscCheck(r->n_opt_state <= LIN_MAX_OPT_STATE, PETSC_COMM_SELF, PETSC_ERR_SUP, "linearized: the optimizer keeps more state than a checkpoint holds");
  s->n_opt = r->n_opt_state;
  PetscCall(PetscMalloc3(P, &s->theta, P, &s->dtheta, P + 2, &s->grad));
  for (int j = 0; j < s->n_opt; j++) PetscCall(PetscCalloc1(P, &s->opt[j]));
  memcpy(s->theta, r->theta0, P * sizeof(double));
  const Model *m = r->model; /* heavy ball's velocity starts as the network's: v_0 = momentum_init theta_0 on trained tensors */
  for (int t = 0; r->cfg->momentum_init != 0 && s->n_opt > 0 && t < m->n_tensors; t++)
    for (size_t i = 0; !m->tensors[t].frozen && i < m->tensors[t].size; i++)
      s->opt[0][m->tensors[t].offset + i] = r->cfg->momentum_init * r->theta0[m->tensors[t].offset + i];
  s->n = probe_n(r->cfg, r->train);
  s->lo = (int)((int64_t)s->n * r->grank / r->gsize), s->hi = (int)((int64_t)s->n * (r->grank + 1) / r->gsize);
  PetscCheck(tape_create(&s->tape, r->model, s->hi - s->lo > 0 ? s->hi - s->lo : 1) == 0, PETSC_COMM_SELF, PETSC_ERR_MEM, "linearized: tape");
  PetscCall(PetscMalloc1((size_t)(s->hi - s->lo > 0 ? s->hi - s->lo : 1) * r->train->k, &s->f));
  return 0;
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return true; /* it steps every step; it records on its schedule */ }

static void delta(const MeasureRun *r, LinState *s)
{
  for (size_t p = 0; p < r->P; p++) s->dtheta[p] = s->theta[p] - r->theta0[p];
}

/* RMS(f - f_lin) over the probe batch: both on this rank's slice, summed over the group (every rank
 * calls the model, also with no samples: batch norm's statistics are collective). */
static PetscErrorCode rms_f_flin(MeasureRun *r, LinState *s, double *rms)
{
  const Dataset *tr = r->train;
  const int k = tr->k, nl = s->hi - s->lo;
  MPI_Comm comm = r->group;
  const Reducer red = {group_sum, &comm}, *rd = model_has_batch_norm(r->model) ? &red : NULL;
  const double *x = tr->x + (size_t)s->lo * tr->d;
  const double *f = model_forward(r->model, r->theta, x, nl, &s->tape, rd);
  memcpy(s->f, f, (size_t)nl * k * sizeof(double));
  const double *f0 = model_forward(r->model, r->theta0, x, nl, &s->tape, rd);
  model_jvp(r->model, r->theta0, s->dtheta, nl, &s->tape, NULL, rd);
  const double *jd = s->tape.tan[r->model->out_buf];
  double ss = 0;
  for (size_t q = 0; q < (size_t)nl * k; q++) {
    const double e = s->f[q] - (f0[q] + jd[q]);
    ss += e * e;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, comm));
  *rms = sqrt(ss / ((double)s->n * k));
  return 0;
}

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  LinState *s = state;
  delta(r, s);
  if (record_due(r->cfg->steps, every(r->cfg), st->t) || st->final) {
    double *row = records_append(out, out->n);
    PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "linearized records full at step %lld", (long long)st->t);
    double loss = INFINITY, acc = NAN, tloss = r->test && r->test->n > 0 ? INFINITY : NAN, tacc = NAN, rms = NAN, dist = 0;
    if (!s->diverged) {
      r->evaluate_lin(r->loop, s->dtheta, r->train, &loss, &acc);
      if (r->test && r->test->n > 0) r->evaluate_lin(r->loop, s->dtheta, r->test, &tloss, &tacc);
      PetscCall(rms_f_flin(r, s, &rms));
    }
    for (size_t p = 0; p < r->P; p++) dist += s->dtheta[p] * s->dtheta[p];
    row[0] = (double)st->t, row[1] = loss, row[2] = acc, row[3] = tloss, row[4] = tacc, row[5] = rms, row[6] = sqrt(dist);
  }
  if (st->final || s->diverged) return 0;
  /* one step on step t's batch, before the network's own */
  double acc;
  const double bl = r->gradient_lin(r->loop, s->dtheta, st->t, s->grad, &acc);
  if (!isfinite(bl)) { /* the same on every rank: the loss was summed over the group */
    s->diverged = true;
    return 0;
  }
  r->update(r->loop, s->theta, s->opt, s->grad, st->lr);
  return 0;
}

/* Checkpoint state: theta_lin with one more entry, 1 once diverged; then the optimizer's vectors. */
static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a)
{
  LinState *s = state;
  if (r->grank != 0) return 0;
  const size_t P = r->P;
  PetscCall(PetscMalloc1(P + 1, &a[0].data)); /* theta_lin, then 1 if diverged */
  memcpy(a[0].data, s->theta, P * sizeof(double));
  a[0].data[P] = s->diverged ? 1.0 : 0.0;
  a[0].n = (int64_t)P + 1;
  for (int j = 0; j < s->n_opt; j++) {
    PetscCall(PetscMalloc1(P, &a[1 + j].data));
    memcpy(a[1 + j].data, s->opt[j], P * sizeof(double));
    a[1 + j].n = (int64_t)P;
  }
  return 0;
}

static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a)
{
  LinState *s = state;
  const size_t P = r->P;
  PetscCheck(a[0].n == (int64_t)P + 1, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "linearized: the checkpoint has no theta_lin of %zu parameters", P);
  memcpy(s->theta, a[0].data, P * sizeof(double));
  s->diverged = a[0].data[P] != 0.0;
  for (int j = 0; j < s->n_opt; j++) {
    PetscCheck(a[1 + j].n == (int64_t)P, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "linearized: the checkpoint has no optimizer state %d", j);
    memcpy(s->opt[j], a[1 + j].data, P * sizeof(double));
  }
  return 0;
}

static void destroy(void *state)
{
  LinState *s = state;
  if (!s) return;
  tape_destroy(&s->tape);
  for (int j = 0; j < s->n_opt; j++) PetscFree(s->opt[j]);
  PetscFree3(s->theta, s->dtheta, s->grad);
  PetscFree(s->f);
  PetscFree(s);
}

const MeasurementClass measure_linearized = {
  .name = "linearized", .option_heading = "Training", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .setup = setup, .due = due, .measure = measure,
  .n_state = 3, .state_names = {"theta", "opt0", "opt1"}, .state_get = state_get, .state_set = state_set, .destroy = destroy,
};
