/* lambda/: the NTK's top eigenvalue lambda_t with the top -ntk_nev eigenvalues, their residuals and
 * the kernel distance ||Theta_t - Theta_0||_F / ||Theta_0||_F, at every step t < -lambda_dense_steps
 * (the catapult's spike and lambda's fall happen in the first steps), then every -lambda_every
 * steps, and at the first and last step. Its warm start (the NTK eigensolver's) is checkpointed, so that a resumed
 * run's lambda_t equals the uninterrupted run's bit for bit. */
#include <string.h>
#include "measure.h"

/* in the effective deck only when set, so that decks and checkpoints from before it stay valid */
static bool dense_in_deck(const Config *cfg) { return cfg->lambda_dense_steps > 0; }

static const OptionDesc options[] = {
  {.name = "-ntk_nev", .kind = KIND_INT, .def = "3", .lo = 1, .hi = 1000, .meaning = "Top eigenvalues of the NTK recorded at each lambda step",
   OPTION_FIELD(ntk_nev)},
  {.name = "-lambda_every", .kind = KIND_INT64, .def = "10", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Measure lambda_t every this many steps (0 = first and last step only)", OPTION_FIELD(lambda_every)},
  {.name = "-lambda_dense_steps", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Also measure lambda_t at every step t < K (the catapult's first steps; 0 = none)", .in_deck = dense_in_deck,
   OPTION_FIELD(lambda_dense_steps)},
  {.name = "-kernel_distance", .kind = KIND_BOOL, .def = "true",
   .meaning = "Record ||Theta_t - Theta_0||_F / ||Theta_0||_F when the exact Gram matrix is affordable", OPTION_FIELD(kernel_distance)},
};

/* The schedule: t < dense, or on the -lambda_every schedule (record_due). Its length over
 * [0, steps]: the dense steps 0 .. min(dense, steps + 1) - 1, plus the scheduled steps >= dense.
 * Shared with lambda_plain/ (measure.h). */
bool ntk_lambda_due(const Config *cfg, int64_t t)
{
  return t < cfg->lambda_dense_steps || record_due(cfg->steps, cfg->lambda_every, t);
}

int64_t ntk_lambda_record_count(const Config *cfg)
{
  const int64_t steps = cfg->steps, every = cfg->lambda_every, dense = cfg->lambda_dense_steps;
  if (steps <= 0 || dense <= 0) return record_count(steps, every);
  if (dense > steps) return steps + 1;
  int64_t n = dense; /* steps 0 .. dense-1 */
  if (every > 0) n += steps / every - (dense - 1) / every; /* multiples of every in [dense, steps] */
  if (every <= 0 || steps % every) n += 1;                 /* the final step */
  return n;
}

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "top of the lr-weighted empirical NTK Theta = J D J^T / N (D = I for ntk and sp) on the NTK batch";
  s->n_records = ntk_lambda_record_count(cfg);
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "value", DS_FLOAT64, SCALAR, "1", "lambda_t, the top eigenvalue of the lr-weighted NTK J D J^T / N at theta_t");
  schema_add(s, "kernel_distance", DS_FLOAT64, SCALAR, "1", "||Theta_t - Theta_0||_F / ||Theta_0||_F (NaN when the exact Gram matrix is not affordable)");
  schema_add(s, "nconv", DS_INT64, SCALAR, "1", "eigenpairs the solver converged");
  schema_add(s, "topk", DS_FLOAT64, cfg->ntk_nev, "1", "top -ntk_nev eigenvalues, largest first (NaN where not converged)");
  schema_add(s, "resid", DS_FLOAT64, cfg->ntk_nev, "1", "relative residuals ||Theta x - l x|| / |l| of topk");
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return ntk_lambda_due(r->cfg, st->t) || st->final; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  NtkResult res;
  PetscCall(ntk_probe_measure(r, st->t, false, false, &res));
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "lambda records full at step %lld", (long long)st->t);
  const int nev = r->cfg->ntk_nev;
  row[0] = (double)st->t, row[1] = res.lambda, row[2] = res.kernel_distance, row[3] = res.nconv;
  memcpy(row + 4, res.topk, (size_t)nev * sizeof(double));
  memcpy(row + 4 + nev, res.resid, (size_t)nev * sizeof(double));
  st->lambda_recorded = true, st->lambda = res.lambda;
  return 0;
}

static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a) { return ntk_probe_warm_get(r, &a[0]); }
static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a) { return ntk_probe_warm_set(r, &a[0]); }
static PetscErrorCode resume(MeasureRun *r, void *state) { return ntk_probe_resume(r); }

const MeasurementClass measure_ntk_lambda = {
  .name = "lambda", .option_heading = "NTK", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .due = due, .measure = measure,
  .n_state = 1, .state_names = {"warm_ntk"}, .state_get = state_get, .state_set = state_set, .resume = resume,
};
