/* loss_peak/: the step of the train loss's largest value over the whole run and that value, with
 * L_0 and their ratio (docs/conventions.md "Learning rates and phases": the catapult's signature;
 * the summary's peak_step/peak_ratio look only within -catapult_window). With -loss_peak true the
 * train loss is evaluated at every step (free for full-batch gd, one more pass per step for sgd);
 * one row, written at the last step (or the step the run blew up). The running maximum is kept in
 * checkpoints. */
#include <math.h>
#include <stdlib.h>
#include "measure.h"

static bool in_deck(const Config *c) { return c->loss_peak; }

static const OptionDesc options[] = {
  {.name = "-loss_peak", .kind = KIND_BOOL, .def = "false",
   .meaning = "Record the step and value of the train loss's peak over the whole run (evaluates the loss every step)",
   .in_deck = in_deck, OPTION_FIELD(loss_peak)},
};

typedef struct {
  double l0, peak, peak_step;
} PeakState;

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "peak of the train loss over the whole run: its step and value, L_0 and L_peak/L_0";
  s->n_records = cfg->loss_peak ? 1 : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "last step seen (the run's last, or the step it blew up)");
  schema_add(s, "peak_step", DS_INT64, SCALAR, "steps", "step of the largest train loss (the first one if tied)");
  schema_add(s, "peak_loss", DS_FLOAT64, SCALAR, "1", "the largest train loss L_peak (inf/NaN if the run blew up there)");
  schema_add(s, "loss0", DS_FLOAT64, SCALAR, "1", "train loss L_0 at step 0");
  schema_add(s, "peak_ratio", DS_FLOAT64, SCALAR, "1", "L_peak / L_0");
}

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  PeakState *s;
  PetscCall(PetscCalloc1(1, &s));
  s->l0 = s->peak = NAN, s->peak_step = -1;
  *state = s;
  return 0;
}

static void destroy(void *state) { PetscFree(state); }

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return true; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  PeakState *s = state;
  const double l = st->loss;
  if (st->t == 0) s->l0 = l;
  /* a non-finite loss is the peak (the blow-up); otherwise the first strict maximum */
  if (s->peak_step < 0 || (isfinite(s->peak) && (!isfinite(l) || l > s->peak))) s->peak = l, s->peak_step = (double)st->t;
  const bool last = st->final || !isfinite(l) || l > r->cfg->diverge_factor * s->l0;
  if (!last) return 0;
  double *row = records_append(out, 0);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "loss_peak records full at step %lld", (long long)st->t);
  row[0] = (double)st->t, row[1] = s->peak_step, row[2] = s->peak, row[3] = s->l0, row[4] = s->peak / s->l0;
  return 0;
}

static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a)
{
  const PeakState *s = state;
  a[0].n = 3;
  if (r->grank == 0) {
    a[0].data = malloc(3 * sizeof *a[0].data);
    PetscCheck(a[0].data, PETSC_COMM_SELF, PETSC_ERR_MEM, "loss_peak: out of memory");
    a[0].data[0] = s->l0, a[0].data[1] = s->peak, a[0].data[2] = s->peak_step;
  }
  return 0;
}

static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a)
{
  PeakState *s = state;
  if (a[0].n == 3) s->l0 = a[0].data[0], s->peak = a[0].data[1], s->peak_step = a[0].data[2];
  return 0;
}

const MeasurementClass measure_loss_peak = {
  .name = "loss_peak", .option_heading = "Training", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .at_divergent_step = true, .needs_loss = true, .setup = setup, .due = due, .measure = measure,
  .n_state = 1, .state_names = {"running_peak"}, .state_get = state_get, .state_set = state_set, .destroy = destroy,
};
