/* Training of one run, data-parallel over its sub-communicator (see train.h).
 *
 * Every rank of the group holds the full parameter vector. For each step the global batch (the
 * whole training subset for gd, a minibatch for sgd) is cut into contiguous slices, one per rank;
 * each rank accumulates its slice's gradient in chunks of at most eval_chunk samples, and one
 * allreduce sums gradient, loss and correct count. The minibatch order is a pure function of
 * (seed, epoch), so the trajectory does not depend on the number of ranks beyond round-off. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <petscsys.h>
#include "augment.h"
#include "checkpoint.h"
#include "hessian.h"
#include "ntk.h"
#include "petsc_compat.h"
#include "rng.h"
#include "train.h"

static PetscLogEvent EV_GRADIENT, EV_ALLREDUCE, EV_UPDATE, EV_EVALUATE, EV_OUTPUT;

int train_register_events(void)
{
  PetscClassId cls;
  PetscCall(PetscClassIdRegister("ntkhpc training", &cls));
  PetscCall(PetscLogEventRegister("NtkGradient", cls, &EV_GRADIENT));
  PetscCall(PetscLogEventRegister("NtkAllreduce", cls, &EV_ALLREDUCE));
  PetscCall(PetscLogEventRegister("NtkUpdate", cls, &EV_UPDATE));
  PetscCall(PetscLogEventRegister("NtkEvaluate", cls, &EV_EVALUATE));
  PetscCall(PetscLogEventRegister("NtkOutput", cls, &EV_OUTPUT));
  return 0;
}

/* State of one run on one rank. */
typedef struct {
  const TrainContext *ctx;
  const RunSpec *run;
  Model model;
  Tape tape;
  int grank, gsize;
  size_t P;
  double *theta;        /* P */
  double *theta0;       /* P, initialisation (distance from init) */
  double *grad;         /* P + 2: gradient, then loss sum and correct count (one allreduce) */
  double *velocity;     /* P, momentum buffer (NULL without momentum) */
  double *lr_scale;     /* P, per-parameter learning-rate multipliers (muP) */
  double *xbuf, *ybuf;  /* eval_chunk x d, eval_chunk x k: gathered minibatch rows */
  int *lbuf;            /* eval_chunk labels */
  double *dfbuf;        /* eval_chunk x k: dL/df of a chunk */
  int64_t *perm;        /* n_train, minibatch permutation of the current epoch */
  int64_t perm_epoch;
  /* NTK on the NTK batch (the first ntk_batch training samples, sliced over the group) */
  NtkOperator *ntk;
  bool use_exact;       /* lambda from the exact Gram matrix rather than Krylov-Schur */
  bool gram_ok;         /* the exact Gram matrix is supported and affordable */
  Mat gram0;            /* Theta_0, for kernel distances (NULL if not recorded) */
  double *spectrum;     /* spectrum_len: all eigenvalues of the last exact Gram matrix */
  double *scratch;      /* 2 nev: eigenvalues and residuals of a measurement not recorded */
  /* loss Hessian on the Hessian batch (NULL unless -hess_every or -density_steps) */
  HessianOperator *hess;
  int64_t hess_step;    /* step whose theta the Hessian operator holds (-1: none) */
} RunState;

/* [lo, hi) of n items for rank g of G: contiguous, sizes differ by at most one. */
static void slice(int64_t n, int g, int G, int64_t *lo, int64_t *hi)
{
  *lo = n * g / G;
  *hi = n * (g + 1) / G;
}

static void sum_group(RunState *s, double *buf, int n)
{
  if (s->gsize == 1) return;
  PetscLogEventBegin(EV_ALLREDUCE, 0, 0, 0, 0);
  MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, s->ctx->group);
  PetscLogEventEnd(EV_ALLREDUCE, 0, 0, 0, 0);
}

/* Forward (and, if grad != NULL, backward) over the samples idx[0..n) of ds (idx == NULL: the
 * contiguous samples first..first+n). Adds sum_a ||f_a - y_a||^2 / 2 to *loss_sum and the number
 * of correct argmax predictions to *correct; grad += d/dtheta of that sum / n_global.
 * aug_step >= 0: the inputs are augmented (random crop + flip keyed by (seed, aug_step, sample),
 * augment.h); only training steps pass it, evaluations pass -1.
 * With batch norm the n samples are this rank's slice of ONE batch: one model call (the tape holds
 * the slice, see setup), made even with n = 0, statistics summed over the group. */
static void group_reduce(double *buf, int n, void *ctx) { sum_group((RunState *)ctx, buf, n); }

static void pass(RunState *s, const Dataset *ds, const int64_t *idx, int64_t first, int64_t n, double n_global,
                 double *grad, double *loss_sum, double *correct, int64_t aug_step)
{
  const Model *m = &s->model;
  const int d = ds->d, k = ds->k, chunk = s->tape.capacity;
  const bool bn = model_has_batch_norm(m);
  const Reducer group = {group_reduce, s}, *red = bn ? &group : NULL;
  if (bn && n > chunk) { /* setup sizes the tape for the largest slice: a caller bug */
    fprintf(stderr, "ntkhpc: batch-norm slice of %lld samples exceeds the tape (%d)\n", (long long)n, chunk);
    abort();
  }
  for (int64_t c0 = 0; c0 < n || (bn && c0 == 0); c0 += chunk) {
    int B = (int)(n - c0 < chunk ? n - c0 : chunk);
    const double *x, *y;
    const int *lab;
    if (idx) {
      for (int a = 0; a < B; a++) {
        int64_t i = idx[c0 + a];
        if (aug_step < 0) memcpy(s->xbuf + (size_t)a * d, ds->x + (size_t)i * d, (size_t)d * sizeof(double)); /* else augment_gather */
        memcpy(s->ybuf + (size_t)a * k, ds->y + (size_t)i * k, (size_t)k * sizeof(double));
        s->lbuf[a] = ds->label[i];
      }
      x = s->xbuf, y = s->ybuf, lab = s->lbuf;
    } else {
      x = ds->x + (size_t)(first + c0) * d;
      y = ds->y + (size_t)(first + c0) * k;
      lab = ds->label + first + c0;
    }
    if (aug_step >= 0) { /* overwrites the gathered rows with their augmented copies */
      augment_gather(s->xbuf, ds->x, idx ? idx + c0 : NULL, first + c0, B, ds->channels, ds->height, ds->width,
                     s->ctx->cfg->augment_pad, (uint64_t)s->run->seed, aug_step);
      x = s->xbuf;
    }
    const double *f = model_forward(m, s->theta, x, B, &s->tape, red);
    if (grad) {
      /* dL/df = (f - y) / N over the global batch. */
      *loss_sum += mse_loss(s->dfbuf, f, y, B, k, 1.0 / n_global);
      model_vjp(m, s->theta, s->dfbuf, B, &s->tape, grad, red);
    } else {
      *loss_sum += mse_loss(NULL, f, y, B, k, 1.0);
    }
    *correct += count_correct(f, lab, B, k);
  }
}

/* Samples per batch-norm batch: the training batch (gd: the training subset; sgd: -batch_size). */
static int64_t bn_batch(const RunState *s)
{
  return s->ctx->cfg->optimizer == OPT_GD ? s->ctx->train->n : s->ctx->cfg->batch_size;
}

/* Train loss and accuracy over the whole training subset, or test metrics over the test set.
 * With batch norm (train mode, no running statistics) the set is cut, in its order, into batches
 * of bn_batch samples (the last one shorter), each normalised with its own statistics and split
 * over the group like a training batch: deterministic and independent of the number of ranks; for
 * gd the train loss equals the loss of the gradient pass. */
static void evaluate(RunState *s, const Dataset *ds, double *loss, double *acc)
{
  PetscLogEventBegin(EV_EVALUATE, 0, 0, 0, 0);
  int64_t lo, hi;
  double sums[2] = {0, 0};
  if (model_has_batch_norm(&s->model)) {
    const int64_t E = bn_batch(s);
    for (int64_t b0 = 0; b0 < ds->n; b0 += E) {
      const int64_t nb = ds->n - b0 < E ? ds->n - b0 : E;
      slice(nb, s->grank, s->gsize, &lo, &hi);
      pass(s, ds, NULL, b0 + lo, hi - lo, ds->n, NULL, &sums[0], &sums[1], -1);
    }
  } else {
    slice(ds->n, s->grank, s->gsize, &lo, &hi);
    pass(s, ds, NULL, lo, hi - lo, ds->n, NULL, &sums[0], &sums[1], -1);
  }
  sum_group(s, sums, 2);
  *loss = sums[0] / ds->n;
  *acc = ds->label[0] >= 0 ? sums[1] / ds->n : NAN;
  PetscLogEventEnd(EV_EVALUATE, 0, 0, 0, 0);
}

/* The global minibatch of step t: positions [(t mod spe) B, +B) of epoch t / spe's permutation. */
static const int64_t *minibatch(RunState *s, int64_t t)
{
  const Config *cfg = s->ctx->cfg;
  const int64_t n = s->ctx->train->n, B = cfg->batch_size, per_epoch = n / B;
  const int64_t epoch = t / per_epoch;
  if (epoch != s->perm_epoch) {
    rng_permutation(s->perm, n, (uint64_t)s->run->seed, RNG_STREAM_SHUFFLE, (uint64_t)epoch);
    s->perm_epoch = epoch;
  }
  return s->perm + (t % per_epoch) * B;
}

/* Gradient of the loss at theta over step t's batch, summed over the group. Returns the batch loss
 * (train loss at theta for gd) and writes the batch accuracy. */
static double gradient(RunState *s, int64_t t, double *acc)
{
  const Config *cfg = s->ctx->cfg;
  const Dataset *tr = s->ctx->train;
  PetscLogEventBegin(EV_GRADIENT, 0, 0, 0, 0);
  memset(s->grad, 0, (s->P + 2) * sizeof(double));
  int64_t n_global, lo, hi;
  const int64_t *batch = NULL;
  if (cfg->optimizer == OPT_GD) {
    n_global = tr->n;
  } else {
    n_global = cfg->batch_size;
    batch = minibatch(s, t);
  }
  slice(n_global, s->grank, s->gsize, &lo, &hi);
  pass(s, tr, batch ? batch + lo : NULL, lo, hi - lo, (double)n_global, s->grad, &s->grad[s->P], &s->grad[s->P + 1],
       cfg->augment ? t : -1);
  PetscLogEventEnd(EV_GRADIENT, 0, 0, 0, 0);
  sum_group(s, s->grad, (int)(s->P + 2));
  *acc = tr->label[0] >= 0 ? s->grad[s->P + 1] / n_global : NAN;
  return s->grad[s->P] / n_global;
}

/* theta -= lr * scale .* (mu v + g + wd theta), heavy-ball momentum with coupled weight decay. */
static void update(RunState *s, double lr)
{
  const Config *cfg = s->ctx->cfg;
  PetscLogEventBegin(EV_UPDATE, 0, 0, 0, 0);
  const double mu = cfg->momentum, wd = cfg->weight_decay;
  double *th = s->theta, *g = s->grad, *v = s->velocity;
  const double *sc = s->lr_scale;
  for (size_t p = 0; p < s->P; p++) {
    double step = g[p] + wd * th[p];
    if (v) step = v[p] = mu * v[p] + step;
    th[p] -= lr * sc[p] * step;
  }
  PetscLogEventEnd(EV_UPDATE, 0, 0, 0, 0);
}

static void norms(const RunState *s, double *norm, double *dist)
{
  double a = 0, b = 0;
  for (size_t p = 0; p < s->P; p++) {
    a += s->theta[p] * s->theta[p];
    double d = s->theta[p] - s->theta0[p];
    b += d * d;
  }
  *norm = sqrt(a);
  *dist = sqrt(b);
}

/* Buffered trajectory rows, written by the group leader at least every flush_seconds. */
typedef struct {
  TrainRecord *train;
  TestRecord *test;
  LambdaRecord *lambda;
  double *topk, *resid; /* n_lambda x nev, pointed to by the lambda records */
  HessianRecord *hess;
  double *htopk, *hresid; /* n_hess x hess_nev */
  int64_t n_train, n_test, n_lambda, n_hess, flushed_train, flushed_test, flushed_lambda, flushed_hess;
  double last_flush;
  /* spectra and densities, written to the output at once but kept for checkpoints */
  int64_t spec_len, n_spec, dens_len, n_dens;
  double *spec;         /* n_spectrum_steps x (2 + spec_len): row, step, eigenvalues */
  double *dens;         /* n_density_steps x (4 + 2 dens_len): row, step, trace, stderr, nodes, weights */
} Records;

static int flush_records(RunState *s, Records *r)
{
  if (s->grank != 0 || !s->ctx->out) return 0; /* probe runs (eta_max search) write nothing */
  int err = 0;
  PetscLogEventBegin(EV_OUTPUT, 0, 0, 0, 0);
  OutputFile *of = s->ctx->out;
  if (r->n_train > r->flushed_train)
    err |= output_write_train(of, s->run->index, r->flushed_train, r->n_train - r->flushed_train, r->train + r->flushed_train);
  if (r->n_test > r->flushed_test)
    err |= output_write_test(of, s->run->index, r->flushed_test, r->n_test - r->flushed_test, r->test + r->flushed_test);
  if (r->n_lambda > r->flushed_lambda)
    err |= output_write_lambda(of, s->run->index, r->flushed_lambda, r->n_lambda - r->flushed_lambda, r->lambda + r->flushed_lambda);
  if (r->n_hess > r->flushed_hess)
    err |= output_write_hessian(of, s->run->index, r->flushed_hess, r->n_hess - r->flushed_hess, r->hess + r->flushed_hess);
  r->flushed_train = r->n_train;
  r->flushed_test = r->n_test;
  r->flushed_lambda = r->n_lambda;
  r->flushed_hess = r->n_hess;
  r->last_flush = MPI_Wtime();
  PetscLogEventEnd(EV_OUTPUT, 0, 0, 0, 0);
  return err;
}

/* The NTK operator over this rank's slice of the NTK batch, and the choice of method for lambda:
 * the exact Gram matrix when the deck asks for it, or (auto) when the cost model says it is
 * cheaper than Krylov-Schur on the matrix-free operator and it fits in -gram_max_rows. */
static int ntk_setup(RunState *s)
{
  const Config *cfg = s->ctx->cfg;
  const Dataset *tr = s->ctx->train;
  int64_t lo, hi;
  slice(cfg->ntk_batch, s->grank, s->gsize, &lo, &hi);
  if (ntk_operator_create(&s->ntk, s->ctx->group, &s->model, tr->x + (size_t)lo * tr->d, (int)(hi - lo), (int)lo, cfg->ntk_batch,
                          cfg->ntk_variant ? NTK_TRACED : NTK_FULL))
    return -1;
  const int64_t rows = (int64_t)cfg->ntk_batch * (cfg->ntk_variant ? 1 : tr->k);
  s->gram_ok = ntk_gram_supported(&s->model) && rows <= cfg->gram_max_rows;
  if (cfg->ntk_method == NTK_METHOD_EXACT) s->use_exact = s->gram_ok;
  else if (cfg->ntk_method == NTK_METHOD_AUTO)
    s->use_exact = s->gram_ok && ntk_cost_exact_top(&s->model, cfg->ntk_batch, cfg->ntk_variant ? NTK_TRACED : NTK_FULL, 40) <
                                     ntk_cost_matfree(&s->model, cfg->ntk_batch, cfg->ntk_variant ? NTK_TRACED : NTK_FULL, 40);
  s->spectrum = s->gram_ok ? malloc((size_t)rows * sizeof(double)) : NULL;
  s->scratch = malloc(2 * (size_t)cfg->ntk_nev * sizeof(double));
  return (s->gram_ok && !s->spectrum) || !s->scratch ? -1 : 0;
}

/* One NTK measurement at the current theta: lambda_t, the top nev eigenvalues with residuals,
 * and the kernel distance to Theta_0 when the exact Gram matrix is affordable. With want_spectrum
 * the full spectrum is left in s->spectrum (needs gram_ok). Never fails the run: a solver that does
 * not converge leaves NaN and nconv < nev. */
static PetscErrorCode measure_ntk(RunState *s, int64_t t, bool want_spectrum, LambdaRecord *rec, double *topk, double *resid)
{
  const Config *cfg = s->ctx->cfg;
  const int nev = cfg->ntk_nev;
  int nconv = 0;
  for (int j = 0; j < nev; j++) topk[j] = resid[j] = NAN;
  PetscCall(ntk_set_params(s->ntk, s->theta));
  const bool want_gram = s->gram_ok && (s->use_exact || want_spectrum || cfg->kernel_distance);
  double dist = NAN;
  if (want_gram) {
    Mat G;
    PetscCall(ntk_gram_assemble(s->ntk, &G));
    if (want_spectrum) PetscCall(ntk_gram_spectrum(s->ntk, G, s->spectrum));
    if (s->use_exact && want_spectrum) { /* the full spectrum is a direct solve: residuals 0 */
      PetscInt rows;
      PetscCall(MatGetSize(G, &rows, NULL));
      nconv = nev < rows ? nev : (int)rows;
      for (int j = 0; j < nconv; j++) topk[j] = s->spectrum[j], resid[j] = 0.0;
    } else if (s->use_exact) { /* only the top: Krylov-Schur on the assembled matrix is cheap */
      PetscCall(ntk_gram_top_eigs(s->ntk, G, nev, topk, resid, &nconv));
    }
    if (cfg->kernel_distance) {
      if (!s->gram0) {
        s->gram0 = G; /* Theta_0: kept for the rest of the run */
        G = NULL;
        dist = 0.0;
      } else {
        PetscCall(ntk_kernel_distance(s->gram0, G, &dist));
      }
    }
    if (G) PetscCall(MatDestroy(&G));
  }
  if (!s->use_exact) PetscCall(ntk_top_eigs(s->ntk, nev, topk, resid, &nconv));
  *rec = (LambdaRecord){t, topk[0], dist, nconv, topk, resid};
  return 0;
}

static int setup(RunState *s, const TrainContext *ctx, const RunSpec *run)
{
  const Config *cfg = ctx->cfg;
  char err[256];
  memset(s, 0, sizeof *s);
  s->ctx = ctx;
  s->run = run;
  MPI_Comm_rank(ctx->group, &s->grank);
  MPI_Comm_size(ctx->group, &s->gsize);
  ModelConfig mc = cfg->model;
  mc.width = run->width;
  mc.param = run->param;
  mc.in_dim = ctx->train->d;
  mc.in_channels = ctx->train->channels, mc.in_height = ctx->train->height, mc.in_width = ctx->train->width;
  mc.out_dim = ctx->train->k;
  if (model_build(&s->model, &mc, err, sizeof err)) {
    fprintf(stderr, "ntkhpc: error: run %d: %s\n", run->index, err);
    return -1;
  }
  s->P = s->model.n_params;
  int chunk = cfg->eval_chunk;
  /* Batch norm: a rank's slice of a batch is one model call, so the tape holds the largest slice
   * (-eval_chunk does not apply; docs/layers.md). */
  if (model_has_batch_norm(&s->model)) chunk = (int)((bn_batch(s) + s->gsize - 1) / s->gsize);
  if (tape_create(&s->tape, &s->model, chunk)) return -1;
  s->theta = malloc(s->P * sizeof(double));
  s->theta0 = malloc(s->P * sizeof(double));
  s->grad = malloc((s->P + 2) * sizeof(double));
  s->lr_scale = malloc(s->P * sizeof(double));
  s->velocity = cfg->momentum > 0 ? calloc(s->P, sizeof(double)) : NULL;
  s->xbuf = malloc((size_t)chunk * ctx->train->d * sizeof(double));
  s->ybuf = malloc((size_t)chunk * ctx->train->k * sizeof(double));
  s->lbuf = malloc((size_t)chunk * sizeof(int));
  s->dfbuf = malloc((size_t)chunk * ctx->train->k * sizeof(double));
  s->perm = cfg->optimizer == OPT_SGD ? malloc((size_t)ctx->train->n * sizeof(int64_t)) : NULL;
  s->perm_epoch = -1;
  s->hess_step = -1;
  if (!s->theta || !s->theta0 || !s->grad || !s->lr_scale || !s->xbuf || !s->ybuf || !s->lbuf || !s->dfbuf ||
      (cfg->momentum > 0 && !s->velocity) || (cfg->optimizer == OPT_SGD && !s->perm)) {
    fprintf(stderr, "ntkhpc: error: run %d: out of memory for %zu parameters\n", run->index, s->P);
    return -1;
  }
  model_init(&s->model, s->theta, (uint64_t)run->seed);
  memcpy(s->theta0, s->theta, s->P * sizeof(double));
  model_lr_scales(&s->model, s->lr_scale);
  if (ntk_setup(s)) return -1;
  if (cfg->hess_every > 0 || cfg->n_density_steps > 0) {
    const Dataset *tr = ctx->train;
    int64_t lo, hi;
    slice(cfg->hess_batch, s->grank, s->gsize, &lo, &hi);
    if (hessian_operator_create(&s->hess, ctx->group, &s->model, tr->x + (size_t)lo * tr->d, tr->y + (size_t)lo * tr->k, (int)(hi - lo), (int)lo,
                                cfg->hess_batch))
      return -1;
  }
  return 0;
}

static void teardown(RunState *s)
{
  free(s->theta), free(s->theta0), free(s->grad), free(s->lr_scale), free(s->velocity);
  free(s->xbuf), free(s->ybuf), free(s->lbuf), free(s->dfbuf), free(s->perm);
  if (s->gram0) MatDestroy(&s->gram0);
  if (s->ntk) ntk_operator_destroy(&s->ntk); /* before the model it points to */
  if (s->hess) hessian_operator_destroy(&s->hess);
  free(s->spectrum);
  free(s->scratch);
  tape_destroy(&s->tape);
  model_destroy(&s->model);
}

Phase phase_classify(const Config *cfg, double loss0, double peak_window, double loss_peak, double loss_final, bool diverged)
{
  if (diverged || !isfinite(loss_final) || !isfinite(loss_peak) || loss_peak > cfg->diverge_factor * loss0 || loss_final > loss0)
    return PHASE_DIVERGENT;
  if (peak_window > cfg->catapult_factor * loss0 && loss_final < loss0) return PHASE_CATAPULT;
  return PHASE_LAZY;
}

/* Is t one of the n steps of list? Then *r is its position. */
static bool is_listed(const int64_t *list, int n, int64_t t, int *r)
{
  for (int i = 0; i < n; i++)
    if (list[i] == t) {
      *r = i;
      return true;
    }
  return false;
}

/* Sharpness at the current theta: the top hess_nev eigenvalues of the loss Hessian, the most
 * negative one, and lambda_t of the NTK at the same theta. Non-convergence gives NaN, not failure. */
static PetscErrorCode measure_hessian(RunState *s, int64_t t, double lr, double lambda_t, HessianRecord *rec, double *topk, double *resid)
{
  const Config *cfg = s->ctx->cfg;
  int nconv = 0, nmin = 0;
  double mn = NAN, mres = NAN;
  if (s->hess_step != t) { /* one forward-backward per theta, shared by the measurements */
    PetscCall(hessian_set_params(s->hess, s->theta));
    s->hess_step = t;
  }
  PetscCall(hessian_top_eigs(s->hess, cfg->hess_nev, topk, resid, &nconv));
  if (cfg->hess_min_eig) PetscCall(hessian_min_eig(s->hess, &mn, &mres, &nmin));
  if (isnan(lambda_t)) { /* not measured at this step yet: into scratch, off the lambda trajectory */
    LambdaRecord lrec;
    PetscCall(measure_ntk(s, t, false, &lrec, s->scratch, s->scratch + cfg->ntk_nev));
    lambda_t = lrec.lambda;
  }
  *rec = (HessianRecord){t, topk[0], nmin ? mn : NAN, mres, lambda_t, lr, nconv, topk, resid};
  return 0;
}

/* Hutchinson trace and SLQ density at the current theta; probes are counter-based (seed, step). */
static PetscErrorCode measure_density(RunState *s, int64_t t, DensityRecord *rec, double *nodes, double *weights)
{
  const Config *cfg = s->ctx->cfg;
  const uint64_t seed = (uint64_t)s->run->seed * 1000003u + (uint64_t)t;
  double tr = NAN, se = NAN;
  if (s->hess_step != t) { /* one forward-backward per theta, shared by the measurements */
    PetscCall(hessian_set_params(s->hess, s->theta));
    s->hess_step = t;
  }
  PetscCall(hessian_trace(s->hess, cfg->trace_probes, seed, &tr, &se));
  PetscCall(hessian_slq(s->hess, cfg->slq_probes, cfg->slq_lanczos, seed, nodes, weights));
  *rec = (DensityRecord){t, tr, se, nodes, weights};
  return 0;
}

int train_measure_instance(const TrainContext *ctx, const RunSpec *run, InstanceRow *row)
{
  RunState s;
  double t0 = MPI_Wtime();
  int rc = setup(&s, ctx, run), any_rc;
  MPI_Allreduce(&rc, &any_rc, 1, MPI_INT, MPI_MIN, ctx->group);
  *row = (InstanceRow){run->instance, run->width, (int32_t)run->param, run->seed, run->n_params, NAN, NAN, 0, NAN, NAN, NAN, 0};
  if (!any_rc) {
    LambdaRecord rec;
    double *topk = s.scratch, *resid = s.scratch + ctx->cfg->ntk_nev;
    if (measure_ntk(&s, 0, false, &rec, topk, resid)) any_rc = -1;
    row->lambda0 = rec.lambda;
    row->lambda0_resid = resid[0];
    row->method = s.use_exact ? NTK_METHOD_EXACT : NTK_METHOD_MATFREE;
  }
  row->seconds = MPI_Wtime() - t0;
  teardown(&s);
  return any_rc ? -1 : 0;
}

/* A short run at eta = c / lambda_0 with nothing written: does it diverge? */
static int probe_diverges(const TrainContext *ctx, const RunSpec *run, double lambda0, double c, int *diverges)
{
  Config pc = *ctx->cfg;
  pc.steps = ctx->cfg->eta_max_steps;
  pc.record_every = pc.steps;
  pc.test_every = 0;
  pc.lambda_every = 0;
  pc.n_spectrum_steps = 0;
  pc.hess_every = 0; /* a probe only asks whether the run diverges */
  pc.n_density_steps = 0;
  pc.kernel_distance = false;
  TrainContext pctx = *ctx;
  pctx.cfg = &pc;
  pctx.out = NULL;
  pctx.progress = NULL;
  pctx.ckpt_dir = NULL; /* probes are short: never checkpointed */
  pctx.stopped = NULL;
  RunSpec r = *run;
  r.eta_factor = c;
  r.lambda0 = lambda0;
  r.eta = c / lambda0;
  SummaryRow row;
  double t0 = MPI_Wtime();
  int rc = train_run(&pctx, &r, &row), grank;
  *diverges = row.phase == PHASE_DIVERGENT;
  MPI_Comm_rank(ctx->group, &grank);
  if (grank == 0 && !ctx->cfg->quiet) { /* the search runs before the progress channel exists */
    printf("[ntkhpc] instance %d: eta_max probe at eta*lambda0 = %.4g %s after %lld steps (%.1f s)\n", run->instance, c,
           *diverges ? "diverges" : "converges", (long long)row.steps_done, MPI_Wtime() - t0);
    fflush(stdout);
  }
  return rc;
}

int train_search_eta_max(const TrainContext *ctx, const RunSpec *run, double lambda0, InstanceRow *row)
{
  const Config *cfg = ctx->cfg;
  double lo = cfg->eta_max_lo, hi = cfg->eta_max_hi;
  int d, rc = 0, probes = 0;
  rc |= probe_diverges(ctx, run, lambda0, hi, &d), probes++;
  if (!d) { /* even the top of the bracket converges: only a lower bound */
    row->eta_max_lo = hi, row->eta_max_hi = INFINITY, row->eta_max_probes = probes;
    return rc;
  }
  rc |= probe_diverges(ctx, run, lambda0, lo, &d), probes++;
  if (d) hi = lo, lo = 0.0; /* diverges already at the bottom: search below it */
  while (hi - lo > cfg->eta_max_tol && !rc) {
    const double mid = 0.5 * (lo + hi);
    rc |= probe_diverges(ctx, run, lambda0, mid, &d), probes++;
    if (d) hi = mid;
    else lo = mid;
  }
  row->eta_max_lo = lo, row->eta_max_hi = hi, row->eta_max_probes = probes;
  return rc;
}

/* ------------------------------------------------------------------ checkpoints */

/* Writes the run's checkpoint (group leader only): status RUN_RUNNING with theta and momentum to
 * resume at step next, or a finished run's summary row; both with every record so far. */
static int save_checkpoint(const RunState *s, const Records *rec, int32_t status, int64_t next, const double *stats, const SummaryRow *row,
                           const PetscInt *n_warm /* CKPT_NWARM or NULL */, double *const *warm /* CKPT_NWARM */)
{
  const TrainContext *ctx = s->ctx;
  RunCheckpoint c;
  memset(&c, 0, sizeof c);
  c.run = s->run->index, c.status = status, c.next_step = next, c.n_params = (int64_t)s->P;
  memcpy(c.stats, stats, sizeof c.stats);
  if (status == RUN_RUNNING) c.theta = s->theta, c.velocity = s->velocity;
  c.n_train = rec->n_train, c.train = rec->train, c.n_test = rec->n_test, c.test = rec->test;
  c.nev = ctx->cfg->ntk_nev, c.n_lambda = rec->n_lambda, c.lambda = rec->lambda;
  c.hess_nev = ctx->cfg->hess_nev, c.n_hess = rec->n_hess, c.hess = rec->hess;
  c.spec_len = rec->spec_len, c.n_spec = rec->n_spec, c.spec = rec->spec;
  c.dens_len = rec->dens_len, c.n_dens = rec->n_dens, c.dens = rec->dens;
  if (row) c.summary = *row;
  for (int i = 0; n_warm && i < CKPT_NWARM; i++) c.n_warm[i] = n_warm[i], c.warm[i] = warm[i];
  char err[4600];
  if (ckpt_write_run(ctx->ckpt_dir, ctx->deck, &c, err, sizeof err)) {
    fprintf(stderr, "ntkhpc: error: %s\n", err);
    return -1;
  }
  return 0;
}

/* Restores a running run from its checkpoint, if it has one: theta, momentum, records and
 * statistics; *next is the step to resume at (0: nothing restored). Theta_0's Gram matrix (kernel
 * distances) is recomputed from theta_0. Every rank of the group reads the file. Collective over
 * the group: 0 (restored, or nothing to restore) or -1. */
static int restore_checkpoint(RunState *s, Records *rec, double *stats, int64_t *next)
{
  const TrainContext *ctx = s->ctx;
  const Config *cfg = ctx->cfg;
  RunCheckpoint c;
  char err[4600] = "";
  int got = ckpt_read_run(ctx->ckpt_dir, ctx->deck, s->run->index, &c, err, sizeof err);
  int bad = got < 0;
  if (got == 0) {
    bad = c.status != RUN_RUNNING || c.n_params != (int64_t)s->P || (s->velocity && !c.velocity) || c.nev != cfg->ntk_nev ||
          c.hess_nev != cfg->hess_nev || c.n_train > output_n_train_records(cfg) || c.n_test > output_n_test_records(cfg) ||
          c.n_lambda > output_n_lambda_records(cfg) || c.n_hess > output_n_hess_records(cfg) + 1 || c.n_spec > cfg->n_spectrum_steps ||
          c.n_dens > cfg->n_density_steps || (c.n_spec && c.spec_len != rec->spec_len) || (c.n_dens && c.dens_len != rec->dens_len);
    if (bad) snprintf(err, sizeof err, "checkpoint of run %d in %s does not fit this deck's run", s->run->index, ctx->ckpt_dir);
  }
  int lo, hi;
  MPI_Allreduce(&got, &lo, 1, MPI_INT, MPI_MIN, ctx->group);
  MPI_Allreduce(&got, &hi, 1, MPI_INT, MPI_MAX, ctx->group);
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, ctx->group);
  if (bad || lo != hi) {
    if (s->grank == 0) fprintf(stderr, "ntkhpc: error: %s\n", err[0] ? err : "checkpoint: the group's ranks see different files");
    if (got == 0) ckpt_run_free(&c);
    return -1;
  }
  if (got == 1) return 0;
  memcpy(s->theta, c.theta, s->P * sizeof(double));
  if (s->velocity) memcpy(s->velocity, c.velocity, s->P * sizeof(double));
  memcpy(stats, c.stats, sizeof c.stats);
  *next = c.next_step;
  memcpy(rec->train, c.train, (size_t)c.n_train * sizeof *c.train);
  memcpy(rec->test, c.test, (size_t)c.n_test * sizeof *c.test);
  rec->n_train = c.n_train, rec->n_test = c.n_test;
  for (int64_t i = 0; i < c.n_lambda; i++) { /* the records point into our own top-k buffers */
    LambdaRecord r = c.lambda[i];
    memcpy(rec->topk + i * c.nev, r.topk, (size_t)c.nev * sizeof(double));
    memcpy(rec->resid + i * c.nev, r.resid, (size_t)c.nev * sizeof(double));
    r.topk = rec->topk + i * c.nev, r.resid = rec->resid + i * c.nev;
    rec->lambda[i] = r;
  }
  rec->n_lambda = c.n_lambda;
  for (int64_t i = 0; i < c.n_hess; i++) {
    HessianRecord r = c.hess[i];
    memcpy(rec->htopk + i * c.hess_nev, r.topk, (size_t)c.hess_nev * sizeof(double));
    memcpy(rec->hresid + i * c.hess_nev, r.resid, (size_t)c.hess_nev * sizeof(double));
    r.topk = rec->htopk + i * c.hess_nev, r.resid = rec->hresid + i * c.hess_nev;
    rec->hess[i] = r;
  }
  rec->n_hess = c.n_hess;
  if (c.n_spec) memcpy(rec->spec, c.spec, (size_t)(c.n_spec * (2 + c.spec_len)) * sizeof(double));
  if (c.n_dens) memcpy(rec->dens, c.dens, (size_t)(c.n_dens * (4 + 2 * c.dens_len)) * sizeof(double));
  rec->n_spec = c.n_spec, rec->n_dens = c.n_dens;
  int rc = 0; /* the solvers start where the uninterrupted run's would (every rank read the same file) */
  if (s->ntk) rc |= ntk_warm_start_set(s->ntk, (PetscInt)c.n_warm[CKPT_WARM_NTK], c.warm[CKPT_WARM_NTK]) != 0;
  if (s->hess) {
    rc |= hessian_warm_start_set(s->hess, 0, (PetscInt)c.n_warm[CKPT_WARM_HESS_TOP], c.warm[CKPT_WARM_HESS_TOP]) != 0;
    rc |= hessian_warm_start_set(s->hess, 1, (PetscInt)c.n_warm[CKPT_WARM_HESS_MIN], c.warm[CKPT_WARM_HESS_MIN]) != 0;
  }
  ckpt_run_free(&c);
  if (cfg->kernel_distance && s->gram_ok) { /* Theta_0, as measure_ntk keeps it at step 0 */
    rc |= ntk_set_params(s->ntk, s->theta0) != 0;
    rc |= ntk_gram_assemble(s->ntk, &s->gram0) != 0;
  }
  /* The output was rebuilt: spectra and densities so far go back in now, rows at the next flush. */
  if (s->grank == 0 && ctx->out) {
    for (int64_t i = 0; i < rec->n_spec; i++) {
      const double *o = rec->spec + i * (2 + rec->spec_len);
      rc |= output_write_spectrum(ctx->out, s->run->index, (int)o[0], (int64_t)o[1], o + 2) != 0;
    }
    for (int64_t i = 0; i < rec->n_dens; i++) {
      const double *o = rec->dens + i * (4 + 2 * rec->dens_len);
      DensityRecord d = {(int64_t)o[1], o[2], o[3], o + 4, o + 4 + rec->dens_len};
      rc |= output_write_density(ctx->out, s->run->index, (int)o[0], &d) != 0;
    }
  }
  return rc ? -1 : 0;
}

/* The eigensolvers' warm starts, gathered on the group leader (collective), for save_checkpoint. */
static int gather_warm_starts(const RunState *s, PetscInt *n, double **buf /* CKPT_NWARM each */)
{
  for (int i = 0; i < CKPT_NWARM; i++) n[i] = 0, buf[i] = NULL;
  int rc = 0;
  if (s->ntk) rc |= ntk_warm_start_get(s->ntk, &n[CKPT_WARM_NTK], &buf[CKPT_WARM_NTK]) != 0;
  if (s->hess) {
    rc |= hessian_warm_start_get(s->hess, 0, &n[CKPT_WARM_HESS_TOP], &buf[CKPT_WARM_HESS_TOP]) != 0;
    rc |= hessian_warm_start_get(s->hess, 1, &n[CKPT_WARM_HESS_MIN], &buf[CKPT_WARM_HESS_MIN]) != 0;
  }
  return rc ? -1 : 0;
}

/* After a step: what the group does, agreed by all its ranks (one small allreduce per step, cheap
 * next to a step): bit 0 write a checkpoint, bit 1 then stop (a signal here or in another group). */
static int checkpoint_action(const RunState *s, int64_t next, double last_ckpt, double *last_poll)
{
  const Config *cfg = s->ctx->cfg;
  int act = ckpt_signal_received() ? 3 : 0;
  if (cfg->checkpoint_every > 0 && next % cfg->checkpoint_every == 0) act |= 1;
  if (s->grank == 0) { /* the leader's clock decides for the group */
    const double now = MPI_Wtime();
    if (cfg->checkpoint_minutes > 0 && now - last_ckpt >= 60.0 * cfg->checkpoint_minutes) act |= 1;
    if (s->ctx->sched && now - *last_poll >= 1.0) {
      *last_poll = now;
      if (scheduler_stop_requested(s->ctx->sched)) act |= 3;
    }
  }
  if (s->gsize > 1) MPI_Allreduce(MPI_IN_PLACE, &act, 1, MPI_INT, MPI_BOR, s->ctx->group);
  if ((act & 2) && s->grank == 0 && s->ctx->sched) scheduler_request_stop(s->ctx->sched); /* stop the other groups too */
  return act;
}

int train_run(const TrainContext *ctx, const RunSpec *run, SummaryRow *row)
{
  const Config *cfg = ctx->cfg;
  RunState s;
  double t_start = MPI_Wtime();
  int rc = setup(&s, ctx, run);
  int any_rc;
  MPI_Allreduce(&rc, &any_rc, 1, MPI_INT, MPI_MIN, ctx->group);
  if (any_rc) {
    teardown(&s);
    return -1;
  }

  memset(row, 0, sizeof *row);
  row->run = run->index;
  row->instance = run->instance;
  row->width = run->width;
  row->param = run->param;
  row->seed = run->seed;
  row->eta = run->eta;
  row->eta_factor = run->eta_factor;
  row->status = RUN_RUNNING;
  row->loss0 = row->loss_peak = row->loss_final = NAN;
  row->acc_final = row->test_loss_final = row->test_acc_final = row->wall_seconds = NAN;
  row->lambda0 = row->lambda_final = row->peak_ratio = row->eta_lambda0 = row->eta_lambda_final = row->lambda_ratio = NAN;
  row->phase = PHASE_UNKNOWN;
  const bool writer = s.grank == 0 && ctx->out; /* probe runs have no output and no progress */
  if (writer) output_write_summary(ctx->out, row);

  const int nev = cfg->ntk_nev;
  Records rec = {0};
  const int64_t n_lambda = output_n_lambda_records(cfg);
  rec.train = calloc((size_t)output_n_train_records(cfg), sizeof *rec.train);
  rec.test = calloc((size_t)output_n_test_records(cfg), sizeof *rec.test);
  rec.lambda = calloc((size_t)n_lambda, sizeof *rec.lambda);
  rec.topk = calloc((size_t)(n_lambda * nev), sizeof(double));
  rec.resid = calloc((size_t)(n_lambda * nev), sizeof(double));
  const int64_t n_hess = output_n_hess_records(cfg), hnev = cfg->hess_nev;
  rec.hess = calloc((size_t)(n_hess + 1), sizeof *rec.hess);
  rec.htopk = calloc((size_t)((n_hess + 1) * hnev), sizeof(double));
  rec.hresid = calloc((size_t)((n_hess + 1) * hnev), sizeof(double));
  const size_t n_nodes = (size_t)cfg->slq_probes * (size_t)cfg->slq_lanczos;
  double *nodes = cfg->n_density_steps ? malloc(2 * n_nodes * sizeof(double)) : NULL;
  rec.spec_len = (int64_t)cfg->ntk_batch * (cfg->ntk_variant ? 1 : ctx->train->k);
  rec.dens_len = (int64_t)n_nodes;
  rec.spec = calloc((size_t)(cfg->n_spectrum_steps * (2 + rec.spec_len)) + 1, sizeof(double));
  rec.dens = calloc((size_t)(cfg->n_density_steps * (4 + 2 * rec.dens_len)) + 1, sizeof(double));
  rec.last_flush = MPI_Wtime();

  const int64_t m = cfg->record_every, M = cfg->test_every, ML = cfg->lambda_every, MH = cfg->hess_every, T = cfg->steps;
  double loss0 = NAN, peak = -INFINITY, peak_window = -INFINITY, last_loss = NAN, last_acc = NAN;
  double lambda_first = NAN, lambda_last = NAN;
  int diverged = 0;
  const bool grad_is_train_loss = cfg->optimizer == OPT_GD && !cfg->augment;
  int64_t t = 0, t_first = 0;
  double stats[CKPT_NSTATS] = {0}, wall_before = 0, last_ckpt = MPI_Wtime(), last_poll = last_ckpt;
  int stopped = 0;
  if (ctx->ckpt_dir) { /* resume where the checkpoint left off */
    rc = restore_checkpoint(&s, &rec, stats, &t_first);
    MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, ctx->group);
    if (rc) goto cleanup;
    if (t_first > 0) {
      loss0 = stats[CKPT_LOSS0], peak = stats[CKPT_PEAK], peak_window = stats[CKPT_PEAK_WINDOW];
      last_loss = stats[CKPT_LAST_LOSS], last_acc = stats[CKPT_LAST_ACC];
      lambda_first = stats[CKPT_LAMBDA_FIRST], lambda_last = stats[CKPT_LAMBDA_LAST];
      row->test_loss_final = stats[CKPT_TEST_LOSS_FINAL], row->test_acc_final = stats[CKPT_TEST_ACC_FINAL];
      wall_before = stats[CKPT_WALL_SECONDS];
      if (writer) rc |= flush_records(&s, &rec);
    }
  }
#define FILL_STATS()                                                                                                  \
  do {                                                                                                                 \
    const double st_[CKPT_NSTATS] = {loss0,     peak,         peak_window, last_loss, last_acc, lambda_first, lambda_last, \
                                     row->test_loss_final, row->test_acc_final, wall_before + MPI_Wtime() - t_start};  \
    memcpy(stats, st_, sizeof stats);                                                                                  \
  } while (0)
  for (t = t_first;; t++) {
    const bool final = t == T;
    const bool record = t % m == 0 || final;
    const bool test_now = t == 0 || final || (M > 0 && t % M == 0);
    const bool lambda_now = t == 0 || final || (ML > 0 && t % ML == 0);
    const double lr = config_lr_at(cfg, run->eta, t);
    double loss = NAN, acc = NAN, batch_acc;

    /* For gd the gradient pass already evaluates the train loss at theta_t (not when it sees
     * augmented inputs: the train loss is always on the data as they are). */
    if (grad_is_train_loss && !final) {
      loss = gradient(&s, t, &batch_acc);
      acc = batch_acc;
    } else if (record || t == 0) {
      evaluate(&s, ctx->train, &loss, &acc);
    }
    if (t == 0) loss0 = loss;
    if (!isnan(loss)) {
      last_loss = loss, last_acc = acc;
      double l = isfinite(loss) ? loss : INFINITY;
      if (l > peak) peak = l;
      if (t <= cfg->catapult_window && l > peak_window) peak_window = l;
    }
    if (record) {
      double norm, dist;
      norms(&s, &norm, &dist);
      rec.train[rec.n_train++] = (TrainRecord){t, loss, acc, norm, dist, lr};
    }
    if (test_now) {
      double tl, ta;
      evaluate(&s, ctx->test, &tl, &ta);
      rec.test[rec.n_test++] = (TestRecord){t, tl, ta};
      row->test_loss_final = tl, row->test_acc_final = ta;
    }
    /* A run whose loss blows up stops here; its rows so far are kept. */
    if (!isnan(loss) && (!isfinite(loss) || loss > cfg->diverge_factor * loss0)) {
      diverged = 1;
      break;
    }
    int spec_row = 0;
    double lambda_t = NAN; /* lambda at this theta, once measured: the Hessian record reuses it */
    const bool spectrum_now = s.gram_ok && is_listed(cfg->spectrum_steps, cfg->n_spectrum_steps, t, &spec_row);
    if (lambda_now || spectrum_now) {
      /* A spectrum-only step measures into scratch: only the spectrum is kept. */
      double *topk = lambda_now ? rec.topk + rec.n_lambda * nev : s.scratch;
      double *resid = lambda_now ? rec.resid + rec.n_lambda * nev : s.scratch + nev;
      LambdaRecord lrec;
      if (measure_ntk(&s, t, spectrum_now, &lrec, topk, resid)) {
        rc = -1;
        break;
      }
      lambda_t = lrec.lambda;
      if (lambda_now) {
        rec.lambda[rec.n_lambda++] = lrec;
        if (t == 0) lambda_first = lrec.lambda;
        lambda_last = lrec.lambda;
      }
      if (spectrum_now && writer) rc |= output_write_spectrum(ctx->out, run->index, spec_row, t, s.spectrum);
      if (spectrum_now) { /* kept for checkpoints */
        double *o = rec.spec + rec.n_spec++ * (2 + rec.spec_len);
        o[0] = spec_row, o[1] = (double)t;
        memcpy(o + 2, s.spectrum, (size_t)rec.spec_len * sizeof(double));
      }
    }
    if (MH > 0 && (t % MH == 0 || final)) {
      HessianRecord hrec;
      if (measure_hessian(&s, t, lr, lambda_t, &hrec, rec.htopk + rec.n_hess * hnev, rec.hresid + rec.n_hess * hnev)) {
        rc = -1;
        break;
      }
      rec.hess[rec.n_hess++] = hrec;
    }
    int dens_row;
    if (s.hess && is_listed(cfg->density_steps, cfg->n_density_steps, t, &dens_row)) {
      DensityRecord drec;
      if (measure_density(&s, t, &drec, nodes, nodes + n_nodes)) {
        rc = -1;
        break;
      }
      if (writer) rc |= output_write_density(ctx->out, run->index, dens_row, &drec);
      double *o = rec.dens + rec.n_dens++ * (4 + 2 * rec.dens_len); /* kept for checkpoints */
      o[0] = dens_row, o[1] = (double)t, o[2] = drec.trace, o[3] = drec.trace_stderr;
      memcpy(o + 4, drec.nodes, (size_t)rec.dens_len * sizeof(double));
      memcpy(o + 4 + rec.dens_len, drec.weights, (size_t)rec.dens_len * sizeof(double));
    }
    if (final) break;
    if (!grad_is_train_loss) {
      double bl = gradient(&s, t, &batch_acc);
      if (!isfinite(bl) || bl > cfg->diverge_factor * loss0) {
        last_loss = bl;
        diverged = 1;
        break;
      }
    }
    update(&s, lr);
    if (writer) {
      if (MPI_Wtime() - rec.last_flush >= cfg->flush_seconds) flush_records(&s, &rec);
      progress_heartbeat(ctx->progress, run->index, t + 1, T, last_loss, lambda_last);
    }
    if (ctx->ckpt_dir) {
      const int act = checkpoint_action(&s, t + 1, last_ckpt, &last_poll);
      if (act & 1) {
        FILL_STATS();
        PetscInt n_warm[CKPT_NWARM];
        double *warm[CKPT_NWARM];
        rc |= gather_warm_starts(&s, n_warm, warm);
        if (s.grank == 0) rc |= save_checkpoint(&s, &rec, RUN_RUNNING, t + 1, stats, NULL, n_warm, warm);
        for (int i = 0; i < CKPT_NWARM; i++) free(warm[i]);
        last_ckpt = MPI_Wtime();
      }
      if (act & 2) { /* signal: the state is saved; leave the run unfinished */
        stopped = 1;
        t++;
        break;
      }
    }
  }

  rc |= flush_records(&s, &rec);
  if (stopped && ctx->stopped) *ctx->stopped = 1;
  if (stopped) goto cleanup;
  row->status = diverged ? RUN_DIVERGED : RUN_DONE;
  row->steps_done = t;
  row->n_train_records = (int32_t)rec.n_train;
  row->n_test_records = (int32_t)rec.n_test;
  row->loss0 = loss0;
  row->loss_peak = peak;
  row->loss_final = last_loss;
  row->acc_final = last_acc;
  row->wall_seconds = wall_before + MPI_Wtime() - t_start;
  /* Phase and the raw numbers behind it: lambda_0 is the instance's (shared by its runs). */
  row->lambda0 = isfinite(run->lambda0) ? run->lambda0 : lambda_first;
  row->lambda_final = diverged ? NAN : lambda_last;
  row->peak_ratio = peak_window / loss0;
  row->eta_lambda0 = run->eta * row->lambda0;
  row->eta_lambda_final = run->eta * row->lambda_final;
  row->lambda_ratio = row->lambda_final / row->lambda0;
  row->phase = phase_classify(cfg, loss0, peak_window, peak, last_loss, diverged);
  if (ctx->ckpt_dir && s.grank == 0) { /* before the output: a finished run is never redone */
    FILL_STATS();
    rc |= save_checkpoint(&s, &rec, row->status, t, stats, row, NULL, NULL);
  }
#undef FILL_STATS
  if (writer) {
    rc |= output_write_summary(ctx->out, row);
    progress_run_done(ctx->progress, row);
  }
cleanup:
  free(rec.spec);
  free(rec.dens);
  free(rec.train);
  free(rec.test);
  free(rec.lambda);
  free(rec.topk);
  free(rec.resid);
  free(rec.hess);
  free(rec.htopk);
  free(rec.hresid);
  free(nodes);
  teardown(&s);
  return rc;
}
