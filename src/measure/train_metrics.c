/* train/: the train loss and accuracy on the whole training subset, the parameter norm, the
 * distance from initialisation and the learning rate, every -record_every steps and at the last
 * step. Recorded even at a step where the loss blew up: that row shows the blow-up. */
#include <math.h>
#include "measure.h"

static const OptionDesc options[] = {
  {.name = "-record_every", .kind = KIND_INT64, .def = "1", .lo = 1, .hi = PETSC_MAX_INT,
   .meaning = "Record train loss/accuracy/norms every m steps", OPTION_FIELD(record_every)},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "train metrics on the training subset, every -record_every steps and at the last step";
  s->n_records = record_count(cfg->steps, cfg->record_every);
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "loss", DS_FLOAT64, SCALAR, "1",
             cfg->model.loss == LOSS_XENT ? "train loss (1/N) sum_a CE(softmax f(x_a), y_a) (-loss xent) on the training subset at theta_t"
                                          : "train loss (1/2N) sum ||f(x) - y||^2 on the training subset at theta_t");
  schema_add(s, "accuracy", DS_FLOAT64, SCALAR, "1", "fraction of training samples whose argmax output is the label (NaN for regression)");
  schema_add(s, "param_norm", DS_FLOAT64, SCALAR, "1", "||theta_t||_2");
  schema_add(s, "dist_init", DS_FLOAT64, SCALAR, "1", "||theta_t - theta_0||_2");
  schema_add(s, "lr", DS_FLOAT64, SCALAR, "1", "base learning rate in force at step t (schedule and warm-up applied)");
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return st->final || st->t % r->cfg->record_every == 0; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  double a = 0, b = 0;
  for (size_t p = 0; p < r->P; p++) {
    a += r->theta[p] * r->theta[p];
    const double d = r->theta[p] - r->theta0[p];
    b += d * d;
  }
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "train records full at step %lld", (long long)st->t);
  row[0] = (double)st->t, row[1] = st->loss, row[2] = st->acc, row[3] = sqrt(a), row[4] = sqrt(b), row[5] = st->lr;
  return 0;
}

const MeasurementClass measure_train_metrics = {
  .name = "train", .option_heading = "Training", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .at_divergent_step = true, .needs_loss = true, .due = due, .measure = measure,
};
