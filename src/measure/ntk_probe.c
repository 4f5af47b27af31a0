/* The NTK of a run, shared by the measurements that need lambda_t (measure.h: NtkProbe).
 *
 * The operator lives on the run's NTK batch, the first -ntk_batch training samples, cut in
 * contiguous slices over the group. Lambda comes from the exact Gram matrix when the deck asks
 * for it, or (auto) when the cost model says the Gram matrix is cheaper than Krylov-Schur on the
 * matrix-free operator and it fits in -gram_max_rows. A step's result is cached: the spectrum,
 * lambda and Hessian measurements of one step share one linearisation and one eigensolve, so the
 * solver's warm start advances once per step whoever asks first. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "measure.h"

struct NtkProbe {
  NtkOperator *op;
  NtkVariant variant;
  bool gram_ok, use_exact;
  Mat gram0;               /* Theta_0 for kernel distances (NULL until step 0 or not recorded) */
  bool keep_grams;         /* a measurement needs Theta_0 and Theta_t (ntk_probe_grams) */
  Mat gram_t;              /* with keep_grams: the last assembled Theta_t, of step gram_step */
  int64_t gram_step;
  int nev;
  double *topk, *resid;    /* nev each: the cached step's */
  double *spectrum;        /* spectrum_len when gram_ok */
  int64_t cached_t;        /* -1: nothing cached */
  bool cached_spectrum;
  NtkResult res;
};

int64_t ntk_probe_spectrum_len(const Config *cfg, const Dataset *train)
{
  return (int64_t)cfg->ntk_batch * (cfg->ntk_variant ? 1 : train->k);
}

PetscErrorCode ntk_probe_get(MeasureRun *r, NtkProbe **out)
{
  if (r->ntk) {
    *out = r->ntk;
    return 0;
  }
  const Config *cfg = r->cfg;
  const Dataset *tr = r->train;
  NtkProbe *p = NULL;
  PetscCall(PetscCalloc1(1, &p));
  p->variant = cfg->ntk_variant ? NTK_TRACED : NTK_FULL;
  p->nev = cfg->ntk_nev;
  p->cached_t = p->gram_step = -1;
  const int64_t lo = (int64_t)cfg->ntk_batch * r->grank / r->gsize, hi = (int64_t)cfg->ntk_batch * (r->grank + 1) / r->gsize;
  PetscCall(ntk_operator_create(&p->op, r->group, r->model, tr->x + (size_t)lo * tr->d, (int)(hi - lo), (int)lo, cfg->ntk_batch, p->variant));
  const int64_t rows = ntk_probe_spectrum_len(cfg, tr);
  p->gram_ok = ntk_gram_supported(r->model) && rows <= cfg->gram_max_rows;
  if (cfg->ntk_method == NTK_METHOD_EXACT) p->use_exact = p->gram_ok;
  else if (cfg->ntk_method == NTK_METHOD_AUTO)
    p->use_exact = p->gram_ok && ntk_cost_exact_top(r->model, cfg->ntk_batch, p->variant, 40) < ntk_cost_matfree(r->model, cfg->ntk_batch, p->variant, 40);
  PetscCall(PetscMalloc2(p->nev, &p->topk, p->nev, &p->resid));
  if (p->gram_ok) PetscCall(PetscMalloc1(rows, &p->spectrum));
  r->ntk = p;
  *out = p;
  return 0;
}

bool ntk_probe_gram_ok(const NtkProbe *p) { return p->gram_ok; }
bool ntk_probe_uses_exact(const NtkProbe *p) { return p->use_exact; }

/* One NTK measurement at theta: lambda_t, the top nev eigenvalues with residuals, the kernel
 * distance to Theta_0 when the exact Gram matrix is affordable, and with want_spectrum the full
 * spectrum. Never fails the run: a solver that does not converge leaves NaN and nconv < nev. */
static PetscErrorCode measure_now(MeasureRun *r, NtkProbe *p, int64_t t, bool want_spectrum)
{
  const Config *cfg = r->cfg;
  const int nev = p->nev;
  int nconv = 0;
  for (int j = 0; j < nev; j++) p->topk[j] = p->resid[j] = NAN;
  PetscCall(ntk_set_params(p->op, r->theta));
  const bool want_gram = p->gram_ok && (p->use_exact || want_spectrum || cfg->kernel_distance);
  double dist = NAN;
  if (want_gram) {
    Mat G;
    PetscCall(ntk_gram_assemble(p->op, &G));
    if (want_spectrum) PetscCall(ntk_gram_spectrum(p->op, G, p->spectrum));
    if (p->use_exact && want_spectrum) { /* the full spectrum is a direct solve: residuals 0 */
      PetscInt rows;
      PetscCall(MatGetSize(G, &rows, NULL));
      nconv = nev < rows ? nev : (int)rows;
      for (int j = 0; j < nconv; j++) p->topk[j] = p->spectrum[j], p->resid[j] = 0.0;
    } else if (p->use_exact) { /* only the top: Krylov-Schur on the assembled matrix is cheap */
      PetscCall(ntk_gram_top_eigs(p->op, G, nev, p->topk, p->resid, &nconv));
    }
    if ((cfg->kernel_distance || p->keep_grams) && !p->gram0) {
      p->gram0 = G; /* Theta_0: kept for the rest of the run */
      PetscCall(PetscObjectReference((PetscObject)G));
      if (cfg->kernel_distance) dist = 0.0;
    } else if (cfg->kernel_distance) {
      PetscCall(ntk_kernel_distance(p->gram0, G, &dist));
    }
    if (p->keep_grams) { /* the feature measurements of this step reuse it */
      PetscCall(MatDestroy(&p->gram_t));
      p->gram_t = G, p->gram_step = t;
      G = NULL;
    }
    if (G) PetscCall(MatDestroy(&G));
  }
  if (!p->use_exact) PetscCall(ntk_top_eigs(p->op, nev, p->topk, p->resid, &nconv));
  p->res = (NtkResult){p->topk[0], dist, nconv, p->topk, p->resid, want_spectrum && p->gram_ok ? p->spectrum : NULL};
  return 0;
}

PetscErrorCode ntk_probe_measure(MeasureRun *r, int64_t t, bool want_spectrum, bool fresh, NtkResult *res)
{
  NtkProbe *p = NULL;
  PetscCall(ntk_probe_get(r, &p));
  want_spectrum = want_spectrum && p->gram_ok;
  const bool hit = p->cached_t == t && (!want_spectrum || p->cached_spectrum) && !(fresh && isnan(p->res.lambda));
  if (!hit) {
    PetscCall(measure_now(r, p, t, want_spectrum));
    p->cached_t = t;
    p->cached_spectrum = want_spectrum;
  }
  *res = p->res;
  return 0;
}

PetscErrorCode ntk_probe_warm_get(MeasureRun *r, StateArray *a)
{
  NtkProbe *p = NULL;
  PetscInt n = 0;
  PetscCall(ntk_probe_get(r, &p));
  PetscCall(ntk_warm_start_get(p->op, &n, &a->data));
  a->n = n;
  return 0;
}

PetscErrorCode ntk_probe_warm_set(MeasureRun *r, const StateArray *a)
{
  NtkProbe *p = NULL;
  PetscCall(ntk_probe_get(r, &p));
  PetscCall(ntk_warm_start_set(p->op, (PetscInt)a->n, a->data));
  return 0;
}

PetscErrorCode ntk_probe_resume(MeasureRun *r)
{
  NtkProbe *p = NULL;
  PetscCall(ntk_probe_get(r, &p));
  if (!(r->cfg->kernel_distance || p->keep_grams) || !p->gram_ok || p->gram0) return 0;
  PetscCall(ntk_set_params(p->op, r->theta0)); /* Theta_0, as measure_now keeps it at step 0 */
  PetscCall(ntk_gram_assemble(p->op, &p->gram0));
  return 0;
}

PetscErrorCode ntk_probe_keep_grams(MeasureRun *r)
{
  NtkProbe *p = NULL;
  PetscCall(ntk_probe_get(r, &p));
  p->keep_grams = true;
  return 0;
}

PetscErrorCode ntk_probe_grams(MeasureRun *r, int64_t t, Mat *G0, Mat *Gt)
{
  NtkProbe *p = NULL;
  PetscCall(ntk_probe_get(r, &p));
  *G0 = *Gt = NULL;
  if (!p->gram_ok) return 0;
  PetscCheck(p->keep_grams, r->group, PETSC_ERR_ORDER, "ntk_probe_grams without ntk_probe_keep_grams");
  if (!p->gram0) PetscCall(ntk_probe_resume(r)); /* a measurement that starts after step 0 */
  if (p->gram_step != t) { /* not assembled by lambda at this step: assemble it alone, no eigensolve */
    PetscCall(MatDestroy(&p->gram_t));
    PetscCall(ntk_set_params(p->op, r->theta));
    PetscCall(ntk_gram_assemble(p->op, &p->gram_t));
    p->gram_step = t;
  }
  *G0 = p->gram0, *Gt = p->gram_t;
  return 0;
}

void ntk_probe_destroy(NtkProbe **pp)
{
  NtkProbe *p = *pp;
  if (!p) return;
  if (p->gram0) MatDestroy(&p->gram0);
  if (p->gram_t) MatDestroy(&p->gram_t);
  if (p->op) ntk_operator_destroy(&p->op);
  PetscFree2(p->topk, p->resid);
  PetscFree(p->spectrum);
  PetscFree(p);
  *pp = NULL;
}
