/* lambda_plain/: the top of the plain NTK J J^T / N, without the learning-rate weighting D, at the
 * steps of lambda/ (-ntk_weighting plain). THE NTK of ntkhpc is the lr-weighted J D J^T / N: it
 * sets the dynamics, and lambda/, eta = c / lambda_0 and the phases use it. The plain kernel is the
 * one a parameterization-blind code would report: under muP its lambda grows like the width while
 * the weighted one stays put (docs/conventions.md "Empirical NTK"). For ntk and sp the two are the
 * same matrix. Its own operator and warm start (checkpointed): the shared probe's stays the
 * weighted one's. */
#include <math.h>
#include <string.h>
#include "measure.h"

typedef struct {
  NtkOperator *op;
  bool exact;              /* top eigenvalues from the assembled Gram matrix, as the probe does */
  double *topk, *resid;    /* ntk_nev each */
} PlainState;

static const char *weighting_choice(int i) { return ntk_weighting_name(i); }
static bool records_plain(const Config *c) { return c->ntk_weighting == NTK_WEIGHT_PLAIN; }

static const OptionDesc options[] = {
  {.name = "-ntk_weighting", .kind = KIND_CHOICE, .def = "lr", .n_choices = 2, .choice = weighting_choice, .in_deck = records_plain,
   .meaning = "NTK recorded: lr (the lr-weighted J D J^T / N only) or plain (lambda_plain/ records J J^T / N too)",
   OPTION_FIELD(ntk_weighting)},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "top of the plain NTK J J^T / N (no learning-rate weighting) on the NTK batch, at the steps of lambda/";
  s->n_records = records_plain(cfg) ? ntk_lambda_record_count(cfg) : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "value", DS_FLOAT64, SCALAR, "1", "top eigenvalue of the plain NTK J J^T / N at theta_t");
  schema_add(s, "nconv", DS_INT64, SCALAR, "1", "eigenpairs the solver converged");
  schema_add(s, "topk", DS_FLOAT64, cfg->ntk_nev, "1", "top -ntk_nev eigenvalues of J J^T / N, largest first (NaN where not converged)");
}

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  const Config *cfg = r->cfg;
  const Dataset *tr = r->train;
  NtkProbe *probe;
  PlainState *s;
  PetscCall(PetscCalloc1(1, &s));
  PetscCall(ntk_probe_get(r, &probe));
  s->exact = ntk_probe_uses_exact(probe); /* the same method as lambda/, so the two compare */
  const int64_t lo = (int64_t)cfg->ntk_batch * r->grank / r->gsize, hi = (int64_t)cfg->ntk_batch * (r->grank + 1) / r->gsize;
  PetscCall(ntk_operator_create(&s->op, r->group, r->model, tr->x + (size_t)lo * tr->d, (int)(hi - lo), (int)lo, cfg->ntk_batch,
                                cfg->ntk_variant ? NTK_TRACED : NTK_FULL));
  PetscCall(ntk_set_weighting(s->op, NTK_WEIGHT_PLAIN));
  PetscCall(PetscMalloc2(cfg->ntk_nev, &s->topk, cfg->ntk_nev, &s->resid));
  *state = s;
  return 0;
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return ntk_lambda_due(r->cfg, st->t) || st->final; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  PlainState *s = state;
  const int nev = r->cfg->ntk_nev;
  int nconv = 0;
  for (int j = 0; j < nev; j++) s->topk[j] = s->resid[j] = NAN;
  PetscCall(ntk_set_params(s->op, r->theta));
  if (s->exact) {
    Mat G;
    PetscCall(ntk_gram_assemble(s->op, &G));
    PetscCall(ntk_gram_top_eigs(s->op, G, nev, s->topk, s->resid, &nconv));
    PetscCall(MatDestroy(&G));
  } else {
    PetscCall(ntk_top_eigs(s->op, nev, s->topk, s->resid, &nconv));
  }
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "lambda_plain records full at step %lld", (long long)st->t);
  row[0] = (double)st->t, row[1] = s->topk[0], row[2] = nconv;
  memcpy(row + 3, s->topk, (size_t)nev * sizeof(double));
  return 0;
}

static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a)
{
  PetscInt n = 0;
  PetscCall(ntk_warm_start_get(((PlainState *)state)->op, &n, &a[0].data));
  a[0].n = n;
  return 0;
}

static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a)
{
  return ntk_warm_start_set(((PlainState *)state)->op, (PetscInt)a[0].n, a[0].data);
}

static void destroy(void *state)
{
  PlainState *s = state;
  if (!s) return;
  ntk_operator_destroy(&s->op);
  PetscFree2(s->topk, s->resid);
  PetscFree(s);
}

const MeasurementClass measure_ntk_plain = {
  .name = "lambda_plain", .option_heading = "NTK", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .setup = setup, .due = due, .measure = measure,
  .n_state = 1, .state_names = {"warm_ntk_plain"}, .state_get = state_get, .state_set = state_set, .destroy = destroy,
};
