/* hessian/: the sharpness s_t (top eigenvalue of the loss Hessian on the Hessian batch) with the
 * top -hess_nev eigenvalues and residuals, the most negative eigenvalue (-hess_min_eig), lambda_t
 * at the same theta and the learning rate (2/lr is the edge of stability), every -hess_every steps
 * and at the last step. Non-convergence gives NaN, not failure. Both eigensolvers' warm starts are
 * checkpointed. */
#include <math.h>
#include <string.h>
#include "measure.h"

static const OptionDesc options[] = {
  {.name = "-hess_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Sharpness (top Hessian eigenvalues) every this many steps (0 = never)", OPTION_FIELD(hess_every)},
  {.name = "-hess_nev", .kind = KIND_INT, .def = "1", .lo = 1, .hi = 1000, .meaning = "Top eigenvalues of the Hessian recorded",
   OPTION_FIELD(hess_nev)},
  {.name = "-hess_min_eig", .kind = KIND_BOOL, .def = "true", .meaning = "Also record the most negative Hessian eigenvalue",
   OPTION_FIELD(hess_min_eig)},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "top and bottom of the lr-weighted loss Hessian D^1/2 H D^1/2 (H for ntk and sp) on the Hessian batch";
  s->n_records = cfg->hess_every > 0 ? record_count(cfg->steps, cfg->hess_every) : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "sharpness", DS_FLOAT64, SCALAR, "1", "sharpness s_t: top eigenvalue of the lr-weighted Hessian D^1/2 H D^1/2 at theta_t");
  schema_add(s, "min_eig", DS_FLOAT64, SCALAR, "1", "most negative eigenvalue (NaN unless -hess_min_eig)");
  schema_add(s, "min_resid", DS_FLOAT64, SCALAR, "1", "relative residual of min_eig");
  schema_add(s, "lambda", DS_FLOAT64, SCALAR, "1", "lambda_t of the lr-weighted NTK at the same theta");
  schema_add(s, "lr", DS_FLOAT64, SCALAR, "1", "learning rate in force at step t (2/lr: the edge of stability)");
  schema_add(s, "nconv", DS_INT64, SCALAR, "1", "eigenpairs the solver converged");
  schema_add(s, "topk", DS_FLOAT64, cfg->hess_nev, "1", "top -hess_nev eigenvalues, largest first (NaN where not converged)");
  schema_add(s, "resid", DS_FLOAT64, cfg->hess_nev, "1", "relative residuals of topk");
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return st->final || st->t % r->cfg->hess_every == 0; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  const Config *cfg = r->cfg;
  HessianOperator *H;
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "hessian records full at step %lld", (long long)st->t);
  const int nev = cfg->hess_nev;
  double *topk = row + 7, *resid = row + 7 + nev;
  int nconv = 0, nmin = 0;
  double mn = NAN, mres = NAN;
  PetscCall(hess_probe_at(r, st->t, &H));
  PetscCall(hessian_top_eigs(H, nev, topk, resid, &nconv));
  if (cfg->hess_min_eig) PetscCall(hessian_min_eig(H, &mn, &mres, &nmin));
  double lambda = st->lambda_recorded ? st->lambda : NAN;
  if (isnan(lambda)) { /* not on the lambda trajectory at this step: measured off it */
    NtkResult res;
    PetscCall(ntk_probe_measure(r, st->t, false, true, &res));
    lambda = res.lambda;
  }
  row[0] = (double)st->t, row[1] = topk[0], row[2] = nmin ? mn : NAN, row[3] = mres, row[4] = lambda, row[5] = st->lr, row[6] = nconv;
  return 0;
}

static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a)
{
  HessianOperator *H;
  PetscCall(hess_probe_operator(r, &H));
  for (int which = 0; which < 2; which++) {
    PetscInt n = 0;
    PetscCall(hessian_warm_start_get(H, which, &n, &a[which].data));
    a[which].n = n;
  }
  return 0;
}

static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a)
{
  HessianOperator *H;
  PetscCall(hess_probe_operator(r, &H));
  for (int which = 0; which < 2; which++) PetscCall(hessian_warm_start_set(H, which, (PetscInt)a[which].n, a[which].data));
  return 0;
}

const MeasurementClass measure_hessian_sharpness = {
  .name = "hessian", .option_heading = "Hessian", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .due = due, .measure = measure,
  .n_state = 2, .state_names = {"warm_hess_top", "warm_hess_min"}, .state_get = state_get, .state_set = state_set,
};
