/* test/: loss and accuracy on the test set every -test_every steps (0: first and last step only).
 * Recorded even at a step where the loss blew up. The last values go into /summary. */
#include "measure.h"

static const OptionDesc options[] = {
  {.name = "-test_every", .kind = KIND_INT64, .def = "10", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Record test loss/accuracy every M steps (0 = start and end only)", OPTION_FIELD(test_every)},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "test metrics on the test set, every -test_every steps and at the first and last step";
  s->n_records = record_count(cfg->steps, cfg->test_every);
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "loss", DS_FLOAT64, SCALAR, "1",
             cfg->model.loss == LOSS_XENT ? "test loss (1/M) sum_a CE(softmax f(x_a), y_a) (-loss xent) on the test set at theta_t"
                                          : "test loss (1/2M) sum ||f(x) - y||^2 on the test set at theta_t");
  schema_add(s, "accuracy", DS_FLOAT64, SCALAR, "1", "fraction of test samples whose argmax output is the label (NaN for regression)");
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return record_due(r->cfg->steps, r->cfg->test_every, st->t) || st->final; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  double loss, acc;
  r->evaluate(r->loop, r->test, &loss, &acc);
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "test records full at step %lld", (long long)st->t);
  row[0] = (double)st->t, row[1] = loss, row[2] = acc;
  st->test_recorded = true, st->test_loss = loss, st->test_acc = acc;
  return 0;
}

const MeasurementClass measure_test_metrics = {
  .name = "test", .option_heading = "Training", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .at_divergent_step = true, .due = due, .measure = measure,
};
