/* grad_alignment/: the gradient-Hessian alignment g^T (D^1/2 H D^1/2) g / |g|^2 with
 * g = D^1/2 grad L on the Hessian batch (docs/conventions.md "Hessian"): the curvature along the
 * step direction, in the units of the sharpness (2/lr is the edge of stability). Every
 * -align_every steps and at the last step; one gradient pass and one Hessian product on the shared
 * Hessian probe (the same linearisation as hessian/ at that step). */
#include <math.h>
#include "measure.h"

static bool in_deck(const Config *c) { return c->align_every > 0; }

static const OptionDesc options[] = {
  {.name = "-align_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Gradient-Hessian alignment g^T H g / |g|^2 every this many steps (0 = never)", .in_deck = in_deck, OPTION_FIELD(align_every)},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "gradient-Hessian alignment g^T (D^1/2 H D^1/2) g / |g|^2, g = D^1/2 grad L, on the Hessian batch";
  s->n_records = cfg->align_every > 0 ? record_count(cfg->steps, cfg->align_every) : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "alignment", DS_FLOAT64, SCALAR, "1", "g^T (D^1/2 H D^1/2) g / |g|^2 at theta_t (units of the sharpness)");
  schema_add(s, "grad_norm", DS_FLOAT64, SCALAR, "1", "|g| = |D^1/2 grad L| on the Hessian batch");
  schema_add(s, "loss", DS_FLOAT64, SCALAR, "1", "loss on the Hessian batch at theta_t");
  schema_add(s, "lr", DS_FLOAT64, SCALAR, "1", "learning rate in force at step t (lr * alignment > 2: the step overshoots along g)");
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return st->final || st->t % r->cfg->align_every == 0; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  HessianOperator *H;
  double align = NAN, gnorm = NAN, loss = NAN;
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "grad_alignment records full at step %lld", (long long)st->t);
  PetscCall(hess_probe_at(r, st->t, &H));
  PetscCall(hessian_alignment(H, &align, &gnorm));
  PetscCall(hessian_loss(H, &loss));
  row[0] = (double)st->t, row[1] = align, row[2] = gnorm, row[3] = loss, row[4] = st->lr;
  return 0;
}

const MeasurementClass measure_grad_alignment = {
  .name = "grad_alignment", .option_heading = "Hessian", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .due = due, .measure = measure,
};
