/* outputs/: the network's outputs f(x_a) on the first -outputs_batch training samples, every
 * -outputs_every steps and at the last step (0: off). The function-space trajectory itself: what
 * finite widths are compared with the exact muP limit by (docs/mup_limit.md), and what a user needs
 * to look at f_t - f_lin or the catapult in function space. The samples are cut in contiguous
 * slices over the run's group; with batch norm they form one batch, statistics summed over the
 * group, as in the NTK batch. */
#include <math.h>
#include <string.h>
#include "measure.h"

typedef struct {
  int n, lo, hi;           /* samples recorded, this rank's slice [lo, hi) */
  Tape tape;
  double *f;               /* n x k, gathered */
  int *counts, *displs;    /* per group rank, in doubles */
} OutputsState;

static bool on(const Config *c) { return c->outputs_every > 0; }

static const OptionDesc options[] = {
  {.name = "-outputs_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT, .in_deck = on, /* decks before it stay as they were */
   .meaning = "Record the outputs f(x) on the first -outputs_batch training samples every this many steps (0 = never)",
   OPTION_FIELD(outputs_every)},
  {.name = "-outputs_batch", .kind = KIND_INT, .def = "10", .lo = 1, .hi = 1e6, .in_deck = on,
   .meaning = "Training samples whose outputs -outputs_every records (the first ones; at most -n_train)", OPTION_FIELD(outputs_batch)},
};

static int outputs_n(const Config *cfg, const Dataset *train) { return cfg->outputs_batch < train->n ? cfg->outputs_batch : (int)train->n; }

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "network outputs f(x_a) on the first -outputs_batch training samples";
  s->n_records = on(cfg) ? record_count(cfg->steps, cfg->outputs_every) : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "f", DS_FLOAT64, (int64_t)outputs_n(cfg, train) * train->k, "1",
             "f_i(x_a) at theta_t, sample-major (index a*k + i), a over the first -outputs_batch training samples");
}

static void group_sum(double *buf, int n, void *ctx) { MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx); }

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  OutputsState *s;
  const int k = r->train->k;
  PetscCall(PetscCalloc1(1, &s));
  s->n = outputs_n(r->cfg, r->train);
  s->lo = (int)((int64_t)s->n * r->grank / r->gsize), s->hi = (int)((int64_t)s->n * (r->grank + 1) / r->gsize);
  PetscCheck(tape_create(&s->tape, r->model, s->hi - s->lo > 0 ? s->hi - s->lo : 1) == 0, PETSC_COMM_SELF, PETSC_ERR_MEM, "outputs: tape");
  PetscCall(PetscMalloc3((size_t)s->n * k, &s->f, r->gsize, &s->counts, r->gsize, &s->displs));
  for (int q = 0; q < r->gsize; q++) {
    const int lo = (int)((int64_t)s->n * q / r->gsize), hi = (int)((int64_t)s->n * (q + 1) / r->gsize);
    s->counts[q] = (hi - lo) * k, s->displs[q] = lo * k;
  }
  *state = s;
  return 0;
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return record_due(r->cfg->steps, r->cfg->outputs_every, st->t) || st->final; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  OutputsState *s = state;
  const Dataset *tr = r->train;
  const int k = tr->k, nl = s->hi - s->lo;
  MPI_Comm comm = r->group;
  const Reducer red = {group_sum, &comm};
  /* Every rank calls the model (batch norm's statistics are collective), also with no samples. */
  const double *f = model_forward(r->model, r->theta, tr->x + (size_t)s->lo * tr->d, nl, &s->tape, model_has_batch_norm(r->model) ? &red : NULL);
  PetscCallMPI(MPI_Allgatherv(f, nl * k, MPI_DOUBLE, s->f, s->counts, s->displs, MPI_DOUBLE, comm));
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "outputs records full at step %lld", (long long)st->t);
  row[0] = (double)st->t;
  memcpy(row + 1, s->f, (size_t)s->n * k * sizeof(double));
  return 0;
}

static void destroy(void *state)
{
  OutputsState *s = state;
  if (!s) return;
  tape_destroy(&s->tape);
  PetscFree3(s->f, s->counts, s->displs);
  PetscFree(s);
}

const MeasurementClass measure_outputs = {
  .name = "outputs", .option_heading = "Training", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .at_divergent_step = true, .setup = setup, .due = due, .measure = measure, .destroy = destroy,
};
