/* density/: the Hutchinson trace of the loss Hessian and its spectral density by stochastic
 * Lanczos quadrature (nodes and weights of -slq_probes starts of -slq_lanczos steps) at the steps
 * of -density_steps. Probes are counter-based in (seed, step), so a restart draws the same ones. */
#include "measure.h"

static bool has_density(const Config *c) { return c->n_density_steps > 0; }

static const OptionDesc options[] = {
  {.name = "-density_steps", .kind = KIND_INT64_LIST, .lo = 0, .hi = PETSC_MAX_INT, .flags = OPTION_INCREASING, .entry = "step",
   .rule = "must be >= 0", .in_deck = has_density,
   .meaning = "Steps at which the Hessian trace (Hutchinson) and spectral density (SLQ) are stored (comma separated)",
   OPTION_LIST(density_steps, n_density_steps)},
  {.name = "-trace_probes", .kind = KIND_INT, .def = "30", .lo = 1, .hi = 100000, .in_deck = has_density,
   .meaning = "Rademacher probes of the Hutchinson trace", OPTION_FIELD(trace_probes)},
  {.name = "-slq_probes", .kind = KIND_INT, .def = "10", .lo = 1, .hi = 100000, .in_deck = has_density,
   .meaning = "Random starts of stochastic Lanczos quadrature", OPTION_FIELD(slq_probes)},
  {.name = "-slq_lanczos", .kind = KIND_INT, .def = "40", .lo = 2, .hi = 100000, .in_deck = has_density,
   .meaning = "Lanczos steps per SLQ start", OPTION_FIELD(slq_lanczos)},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  const int64_t len = (int64_t)cfg->slq_probes * cfg->slq_lanczos;
  s->description = "trace (Hutchinson) and spectral density (SLQ) of the lr-weighted Hessian D^1/2 H D^1/2 at the steps of -density_steps";
  s->n_records = cfg->n_density_steps;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the row (-1: not measured)");
  schema_add(s, "trace", DS_FLOAT64, SCALAR, "1", "Hutchinson estimate of tr H with -trace_probes Rademacher probes");
  schema_add(s, "trace_stderr", DS_FLOAT64, SCALAR, "1", "standard error of trace");
  schema_add(s, "nodes", DS_FLOAT64, len, "1", "SLQ quadrature nodes (Ritz values), -slq_lanczos per start");
  schema_add(s, "weights", DS_FLOAT64, len, "1", "SLQ quadrature weights; they sum to 1");
}

static int listed(const Config *cfg, int64_t t) { return measure_listed_index(cfg->density_steps, cfg->n_density_steps, t); }

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return listed(r->cfg, st->t) >= 0; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  const Config *cfg = r->cfg;
  const uint64_t seed = (uint64_t)r->run->seed * 1000003u + (uint64_t)st->t;
  const int64_t len = (int64_t)cfg->slq_probes * cfg->slq_lanczos;
  HessianOperator *H;
  double *row = records_append(out, listed(cfg, st->t));
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "density records full at step %lld", (long long)st->t);
  PetscCall(hess_probe_at(r, st->t, &H));
  PetscCall(hessian_trace(H, cfg->trace_probes, seed, &row[1], &row[2]));
  PetscCall(hessian_slq(H, cfg->slq_probes, cfg->slq_lanczos, seed, row + 3, row + 3 + len));
  row[0] = (double)st->t;
  return 0;
}

static int validate(const Config *cfg, char *err, size_t errlen)
{
  return measure_check_listed("-density_steps", cfg->density_steps, cfg->n_density_steps, cfg->steps, err, errlen);
}

const MeasurementClass measure_hessian_density = {
  .name = "density", .validate = validate, .option_heading = "Hessian", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .due = due, .measure = measure,
};
