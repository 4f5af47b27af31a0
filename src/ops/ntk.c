/* The empirical NTK: matrix-free operator, Krylov-Schur top eigenvalues, structured Gram matrix
 * and its ScaLAPACK spectrum (see ntk.h and docs/conventions.md "Empirical NTK").
 *
 * Tapes. The operator is linearised at theta once per ntk_set_params: every local sample's
 * activations stay on a tape, chunk by chunk (-ntk_chunk samples per tape), so each product costs
 * one VJP and one JVP and no forward pass. All chunk tapes share one set of cotangent/tangent
 * buffers (workspace, needed one chunk at a time), which keeps the memory at
 * n_local * sum(buf_size) doubles for activations plus 2 * chunk * sum(buf_size). If the
 * activations exceed -ntk_tape_mb, one tape is used and the forward pass is recomputed per chunk
 * (twice per product: before the VJP and before the JVP). The slice, the tapes, setting the
 * parameters and the warm-started solve are the operator base's (operator_base.h); this file keeps
 * the product, the Gram matrix and the cost models.
 *
 * Gram matrix. Per dense layer the Jacobian row of (sample a, output i) restricted to W_l is
 * w_mult * Delta_l[(a,i)] (x) A_{l-1}[a], so rows' inner products factor into
 * (Delta Delta^T) .* (A A^T): two GEMMs per layer instead of the Nk x P Jacobian. The signals
 * come from k cotangent-only VJPs (grad == NULL) per chunk. Columns are filled one source rank at
 * a time (its signals and inputs broadcast), in blocks of columns, so the temporaries stay small;
 * a rank's own diagonal block is computed as its upper triangle only and mirrored (exactly
 * symmetric, half the work on one rank). Off-diagonal blocks are computed by both ranks of the
 * pair: the transposed-block exchange that would halve them too is left for later.
 *
 * Batch norm. With batch norm the NTK batch is ONE batch-norm batch: each rank's slice is one chunk
 * (one tape, whatever -ntk_chunk says; every rank calls the model, also with 0 samples) and the
 * model's statistics are summed over the ranks through a Reducer on pcomm, so J is the Jacobian of
 * the network evaluated on the whole NTK batch, statistics included.
 *
 * Factored Gram matrix. For lambda alone the exact matrix need not be assembled: with the signals
 * and the layers' N x N input kernels kept, sum_l (Delta_l Delta_l^T) .* K_l applies in one
 * N x N x n_out GEMM per layer (ntk_gram_factored_top_eigs), so a solve costs the signals plus
 * 2 N^2 sum(n_out) flops per product instead of R^2 sum(n_out) for the assembly.
 *
 * Coarse levels. Cold solves start from the coarse levels (ntk.h, operator_base.h): NtkOperators
 * on every factor-th sample for the matrix-free solve, principal submatrices for the assembled
 * Gram matrix; their eigenvectors are zero-padded onto the finer level (prolong_padded).
 *
 * ScaLAPACK. Debian's SLEPc 3.18 is configured with ScaLAPACK (SLEPC_HAVE_SCALAPACK in
 * slepcconf.h; EPSCreate_ScaLAPACK is in libslepc_real.so), so the full spectrum goes through
 * EPSSCALAPACK, which converts the dense matrix to MATSCALAPACK and calls pdsyev. pdsyev also
 * forms the eigenvectors (about 9 R^3 flops against 4/3 R^3 for values only): negligible up to
 * R = Nk ~ 5000; for lambda alone on a larger Gram matrix use ntk_gram_top_eigs.
 */
#include "ntk.h"
#include "operator_base.h"
#include "warm_start.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <slepceps.h>

/* pdsyev with eigenvectors (tridiagonal reduction, QR with accumulation, back-transform). */
#define NTK_EIG_FLOPS_COEF 9.0
/* Seed of the deterministic, rank-count independent Krylov start vector (stream RNG_STREAM_PROBE). */
#define NTK_START_SEED 0x4e544bULL

/* EV_COARSE: the coarse levels' solves of a cold start (matrix-free and exact Gram), not inside EV_EIGENSOLVE. */
/* EV_FACTORED: the products (and the setup) of the factored Gram matrix (ntk_gram_factored_top_eigs). */
enum { EV_MATMULT, EV_EIGENSOLVE, EV_GRAM_ASSEMBLE, EV_GRAM_EIGEN, EV_COARSE, EV_FACTORED };
static OpEvents events = {.cls = "NTK",
                          .n = 6,
                          .names = {"NtkMatMult", "NtkEigensolve", "NtkGramAssemble", "NtkGramEigen", "NtkCoarseSolve", "NtkFactoredMult"}};

const char *ntk_variant_name(NtkVariant v) { return v == NTK_TRACED ? "traced" : "full"; }

/* The context of the MATSHELL Theta. */
struct NtkOperator {
  OpBase b;               /* slice, tapes, theta, solve statistics (operator_base.h) */
  NtkVariant v;
  int k;
  int rps;                /* rows per sample: k (full) or 1 (traced) */
  double *g;              /* P, J^T v summed over ranks */
  double *d;              /* P, D = diag(lr_scale) of the lr-weighted kernel; NULL: plain J J^T (or D = I) */
  NtkWeighting weighting;
  double *dout, *tout;    /* n_local x k scratch (traced products) */
  Mat A;                  /* the MATSHELL (owned by b) */
  EPS eps;                /* Krylov-Schur on A, options prefix ntk_ (ntk_coarse_ on a coarse level) */
  PetscInt ncv_user, mpd_user;
  Vec warm;               /* last converged eigenvectors, summed; NULL = none */
  PetscBool check_resid;  /* -ntk_check_residual */
  OpCoarse cset;          /* -ntk_coarse_*: also the exact Gram solve's levels */
  /* Cold starts (no warm vector) begin from the top eigenvectors of the NTK of a strided
   * subsample, itself solved the same way (see ntk.h). */
  NtkOperator *coarse;    /* every coarse_factor-th sample of this batch, or NULL */
  PetscBool coarse_stale; /* coarse not yet linearised at theta */
  PetscBool borrowed;     /* a coarse level: g and d belong to the finer level */
};

/* Settings read once by ntk_operator_create and handed to every level. */
typedef struct {
  PetscInt chunk;
  PetscReal tape_mb;
  OpCoarse coarse;
  PetscBool conv_value, check_resid;
} NtkSettings;

/* ------------------------------------------------------------------ helpers */

/* In-place sum over comm; MPI counts are int, so longer vectors go in pieces. */
static PetscErrorCode allreduce_sum(double *buf, size_t n, MPI_Comm comm)
{
  PetscFunctionBeginUser;
  for (size_t off = 0; off < n;) {
    const int cnt = (int)(n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX);
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_DOUBLE, MPI_SUM, comm));
    off += (size_t)cnt;
  }
  PetscFunctionReturn(0);
}

/* Flops of the input layer (dense or conv): its input needs no tangent/cotangent. */
static double first_layer_flops(const Model *m) { return model_first_layer_flops(m); }

/* One J J^T product on n samples: VJP (dW and din GEMMs, no din for the input layer) + JVP
 * (tin W^T and in dW^T, no tin for the input layer) = 4F - 2F1 per sample. */
static double product_flops(const Model *m, double n)
{
  return n * (4.0 * model_flops_per_sample(m) - 2.0 * first_layer_flops(m));
}

/* Krylov-Schur for the largest eigenvalues of A, options read once. The test: with -ntk_conv
 * value, and always on a coarse level, the shared eigenvalue-error test of b (operator_base.h),
 * relative to the spectral scale (lambda_max for the top values); with residual SLEPc's own,
 * ||A x - lambda x|| / |lambda|. A coarse level's tolerance is OP_COARSE_TOL unless set. */
static PetscErrorCode make_eps(OpBase *b, MPI_Comm comm, Mat A, const char *prefix, PetscBool coarse, EPS *eps, PetscInt *ncv,
                               PetscInt *mpd)
{
  PetscFunctionBeginUser;
  PetscCall(opbase_eps_create(comm, A, EPS_LARGEST_REAL, eps));
  if (b->conv.value || coarse) PetscCall(opbase_conv_install(b, *eps));
  else PetscCall(EPSSetConvergenceTest(*eps, EPS_CONV_REL));
  if (coarse) PetscCall(EPSSetTolerances(*eps, OP_COARSE_TOL, PETSC_DEFAULT)); /* a start vector only */
  PetscCall(opbase_eps_from_options(*eps, prefix, ncv, mpd));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ products */

/* yv = J D (sum over ranks of J^T dv) on the local samples, unscaled. dv, yv: n_local x k. */
static PetscErrorCode jjt_apply(NtkOperator *op, const double *dv, double *yv)
{
  OpBase *b = &op->b;
  const int k = op->k;

  PetscFunctionBeginUser;
  memset(op->g, 0, b->m->n_params * sizeof *op->g); /* model_vjp accumulates */
  for (int c = 0; c < b->n_chunks; c++)
    model_vjp(b->m, b->theta, dv + (size_t)c * b->chunk * k, opbase_chunk_len(b, c), opbase_chunk_tape(b, c), op->g, b->redp);
  PetscCall(allreduce_sum(op->g, b->m->n_params, b->pcomm));
  if (op->d)
    for (size_t p = 0; p < b->m->n_params; p++) op->g[p] *= op->d[p];
  for (int c = 0; c < b->n_chunks; c++)
    model_jvp(b->m, b->theta, op->g, opbase_chunk_len(b, c), opbase_chunk_tape(b, c), yv + (size_t)c * b->chunk * k, b->redp);
  PetscFunctionReturn(0);
}

/* Full: y = J D J^T v / N (one VJP, one allreduce, one JVP). Traced: Theta_bar = (1/k) sum_i
 * J_i J_i^T / N keeps only the diagonal output blocks, and one product with v spread over all
 * outputs would mix i != j, so it takes k rounds with dout supported on output i: k full products
 * (k allreduces of P). The exact traced Gram matrix is the cheap route when it fits. */
static PetscErrorCode NtkMult(Mat A, Vec x, Vec y)
{
  NtkOperator *op;
  const PetscScalar *xv;
  PetscScalar *yv;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &op));
  PetscCall(PetscLogEventBegin(events.id[EV_MATMULT], A, x, y, 0));
  PetscCall(VecGetArrayRead(x, &xv));
  PetscCall(VecGetArray(y, &yv));
  const double invN = 1.0 / (double)op->b.n_global;
  const int k = op->k, nl = op->b.n_local;
  if (op->v == NTK_FULL) {
    PetscCall(jjt_apply(op, xv, yv));
    for (size_t r = 0; r < (size_t)nl * k; r++) yv[r] *= invN;
  } else {
    for (int a = 0; a < nl; a++) yv[a] = 0.0;
    for (int i = 0; i < k; i++) {
      memset(op->dout, 0, (size_t)nl * k * sizeof *op->dout);
      for (int a = 0; a < nl; a++) op->dout[(size_t)a * k + i] = xv[a];
      PetscCall(jjt_apply(op, op->dout, op->tout));
      for (int a = 0; a < nl; a++) yv[a] += op->tout[(size_t)a * k + i];
    }
    for (int a = 0; a < nl; a++) yv[a] *= invN / (double)k;
  }
  PetscCall(VecRestoreArray(y, &yv));
  PetscCall(VecRestoreArrayRead(x, &xv));
  op->b.n_mult++;
  PetscCall(PetscLogFlops(product_flops(op->b.m, nl) * (op->v == NTK_TRACED ? k : 1)));
  PetscCall(PetscLogEventEnd(events.id[EV_MATMULT], A, x, y, 0));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ create / destroy */

/* One level: the batch given (levels > 0 adds a coarse level below it); parent: the finer level
 * whose product buffer and lr weights it borrows, or NULL. */
static PetscErrorCode operator_create(NtkOperator **out, MPI_Comm comm, const Model *m, const double *x_local, int n_local, int first,
                                      int n_global, NtkVariant v, const NtkSettings *set, int levels, NtkOperator *parent)
{
  NtkOperator *op;

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCall(PetscNew(&op));
  PetscCall(opbase_create(&op->b, "ntk", comm, m, x_local, n_local, first, n_global));
  op->v = v;
  op->k = m->cfg.out_dim;
  op->rps = v == NTK_FULL ? op->k : 1;
  PetscCheck((int64_t)n_global * op->rps <= INT_MAX, comm, PETSC_ERR_ARG_OUTOFRANGE, "ntk: %d x %d rows overflow int", n_global,
             op->rps);
  op->b.conv.value = set->conv_value || parent; /* a coarse level: the eigenvalue test, loosely */
  op->check_resid = set->check_resid;
  op->cset = set->coarse;
  op->borrowed = parent ? PETSC_TRUE : PETSC_FALSE;
  if (parent) { /* levels are used one at a time: the finer level's J^T v buffer and weights serve */
    op->g = parent->g;
    op->d = parent->d;
    op->weighting = parent->weighting;
  } else {
    PetscCall(PetscMalloc1(m->n_params, &op->g));
  }
  if (v == NTK_TRACED) PetscCall(PetscMalloc2((size_t)n_local * op->k + 1, &op->dout, (size_t)n_local * op->k + 1, &op->tout));
  /* Products need activations only: the cotangents are per-product workspace. */
  PetscCall(opbase_tapes_create(&op->b, set->chunk, set->tape_mb, PETSC_FALSE));

  /* The shell matrix, in the layout of the batch slices. */
  const PetscInt nloc = (PetscInt)n_local * op->rps;
  PetscCall(opbase_shell_create(&op->b, nloc, PETSC_DETERMINE, op, NtkMult, "NTK", &op->A));
  PetscCall(make_eps(&op->b, comm, op->A, parent ? "ntk_coarse_" : "ntk_", op->borrowed, &op->eps, &op->ncv_user, &op->mpd_user));

  /* The coarse level: samples whose global index is a multiple of the factor (the same set for
   * any rank count; each rank keeps its own, so the level stays balanced). */
  int cfirst, cn, n_coarse;
  if (opbase_coarse_slice(&set->coarse, levels, first, n_local, n_global, &cfirst, &cn, &n_coarse)) {
    const int f = (int)set->coarse.factor, d = op->b.d;
    double *xc;
    PetscCall(PetscMalloc1((size_t)cn * d + 1, &xc));
    for (int j = 0; j < cn; j++) /* local row of coarse sample j: (cfirst + j) f - first */
      PetscCall(PetscArraycpy(xc + (size_t)j * d, x_local + ((size_t)(cfirst + j) * f - (size_t)first) * d, d));
    PetscCall(operator_create(&op->coarse, comm, m, xc, cn, cfirst, n_coarse, v, set, levels - 1, op));
    PetscCall(PetscFree(xc));
  }
  *out = op;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_operator_create(NtkOperator **out, MPI_Comm comm, const Model *m, const double *x_local, int n_local,
                                   int first, int n_global, NtkVariant v)
{
  NtkSettings set = {NTK_DEFAULT_CHUNK,
                     NTK_DEFAULT_TAPE_MB,
                     {NTK_DEFAULT_COARSE_LEVELS, NTK_DEFAULT_COARSE_FACTOR, NTK_DEFAULT_COARSE_MIN},
                     strcmp(NTK_DEFAULT_CONV, "value") == 0 ? PETSC_TRUE : PETSC_FALSE,
                     strcmp(NTK_DEFAULT_CHECK_RESIDUAL, "true") == 0 ? PETSC_TRUE : PETSC_FALSE};
  char conv[16] = NTK_DEFAULT_CONV;
  NtkOperator *op = NULL;

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCall(ntk_register_events());
  PetscCheck(v == NTK_FULL || v == NTK_TRACED, comm, PETSC_ERR_ARG_OUTOFRANGE, "ntk: unknown variant %d", (int)v);
  PetscCall(opbase_read_tape_options(comm, "ntk", "ntk_", &set.chunk, &set.tape_mb));
  PetscCall(opbase_read_coarse_options(comm, "ntk", "ntk_", &set.coarse));
  PetscCall(PetscOptionsGetString(NULL, "ntk_", "-conv", conv, sizeof conv, NULL));
  PetscCall(PetscOptionsGetBool(NULL, "ntk_", "-check_residual", &set.check_resid, NULL));
  PetscCheck(!strcmp(conv, "value") || !strcmp(conv, "residual"), comm, PETSC_ERR_ARG_WRONG,
             "ntk: -ntk_conv must be value or residual, got %s", conv);
  set.conv_value = strcmp(conv, "value") == 0 ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(operator_create(&op, comm, m, x_local, n_local, first, n_global, v, &set, (int)set.coarse.levels, NULL));
  PetscCall(ntk_set_weighting(op, NTK_WEIGHT_LR));
  *out = op;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_operator_destroy(NtkOperator **pop)
{
  NtkOperator *op = *pop;

  PetscFunctionBeginUser;
  if (!op) PetscFunctionReturn(0);
  PetscCall(ntk_operator_destroy(&op->coarse));
  PetscCall(PetscFree2(op->dout, op->tout));
  if (!op->borrowed) {
    PetscCall(PetscFree(op->g));
    PetscCall(PetscFree(op->d));
  }
  PetscCall(VecDestroy(&op->warm));
  PetscCall(EPSDestroy(&op->eps));
  PetscCall(opbase_destroy(&op->b));
  PetscCall(PetscFree(*pop)); /* and *pop = NULL */
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_set_weighting(NtkOperator *op, NtkWeighting w)
{
  PetscFunctionBeginUser;
  PetscCheck(w == NTK_WEIGHT_LR || w == NTK_WEIGHT_PLAIN, op->b.comm, PETSC_ERR_ARG_OUTOFRANGE, "ntk: unknown weighting %d", (int)w);
  PetscCheck(!op->borrowed, op->b.comm, PETSC_ERR_ARG_WRONG, "ntk: the weighting is set on the finest level");
  PetscCall(PetscFree(op->d));
  op->weighting = w;
  /* D = I (ntk, sp) multiplies by 1.0: exact, but skipped, so those kernels cost what they did. */
  if (w == NTK_WEIGHT_LR && model_lr_weighted(op->b.m)) {
    PetscCall(PetscMalloc1(op->b.m->n_params, &op->d));
    model_lr_scales(op->b.m, op->d);
  }
  for (NtkOperator *c = op->coarse; c; c = c->coarse) { /* the coarse levels are the same kernel */
    c->d = op->d;
    c->weighting = w;
  }
  PetscCall(ntk_reset_warm_start(op)); /* the other kernel's eigenvectors are no start for this one */
  PetscFunctionReturn(0);
}

NtkWeighting ntk_weighting(const NtkOperator *op) { return op->weighting; }

PetscErrorCode ntk_operator_mat(NtkOperator *op, Mat *A)
{
  PetscFunctionBeginUser;
  *A = op->A;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_set_params(NtkOperator *op, const double *theta)
{
  OpBase *b = &op->b;

  PetscFunctionBeginUser;
  PetscCall(opbase_set_params_begin(b, theta));
  if (b->stored) /* the forward pass once, for every product until the next theta */
    for (int c = 0; c < b->n_chunks; c++)
      model_forward(b->m, b->theta, opbase_chunk_x(b, c), opbase_chunk_len(b, c), &b->tapes[c], b->redp);
  op->coarse_stale = PETSC_TRUE; /* linearised when a cold solve needs it */
  PetscCall(opbase_set_params_end(b));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ eigensolves */

/* Prolongation of a coarse level's vector uc (its samples, sample-major rows) to start (this
 * level's rows): zero-padded, uc on the coarse samples' rows, 0 elsewhere. The other natural
 * choice, the Nystrom extension Theta[:, S] uc (one product; the eigenvector equation
 * u = Theta u / lambda applied to the padded uc), fills in the other samples' rows, but the Krylov
 * space from the padded vector contains that vector at its second step, at no extra cost: from the
 * padded start the solve has every vector the Nystrom start would give it one product later, and one
 * more. So the padded start needs at most as many products, the Nystrom start's product included,
 * and it is purely local (the coarse samples of a rank are among its own). */
static PetscErrorCode prolong_padded(int rps, int factor, int first, int cfirst, int cn, Vec uc, Vec start)
{
  const PetscScalar *u;
  PetscScalar *a;

  PetscFunctionBeginUser;
  PetscCall(VecSet(start, 0.0));
  PetscCall(VecGetArrayRead(uc, &u));
  PetscCall(VecGetArray(start, &a));
  for (int j = 0; j < cn; j++) {
    const size_t row = ((size_t)(cfirst + j) * factor - (size_t)first) * rps;
    for (int i = 0; i < rps; i++) a[row + i] = u[(size_t)j * rps + i];
  }
  PetscCall(VecRestoreArray(start, &a));
  PetscCall(VecRestoreArrayRead(uc, &u));
  PetscFunctionReturn(0);
}

/* start <- the coarse level's top-want eigenvectors, summed and prolonged (its own cold solve,
 * linearised at op's theta first if needed); *ok = false if that solve found none. */
static PetscErrorCode coarse_start(void *ctx, int want, Vec start, PetscBool *ok)
{
  NtkOperator *op = (NtkOperator *)ctx, *c = op->coarse;
  double *e, *r;
  int nc = 0, cfirst, cn, n_coarse;

  PetscFunctionBeginUser;
  *ok = PETSC_FALSE;
  if (op->coarse_stale) {
    PetscCall(ntk_set_params(c, op->b.theta));
    op->coarse_stale = PETSC_FALSE;
  }
  PetscCall(ntk_reset_warm_start(c)); /* a pure function of theta: no memory of other solves */
  PetscCall(PetscMalloc2(want, &e, want, &r));
  PetscCall(ntk_top_eigs(c, want, e, r, &nc));
  PetscCall(PetscFree2(e, r));
  opbase_coarse_account(&op->b, &c->b);
  if (nc > 0 && c->warm) {
    (void)opbase_coarse_slice(&op->cset, 1, op->b.first, op->b.n_local, op->b.n_global, &cfirst, &cn, &n_coarse);
    PetscCall(prolong_padded(op->rps, (int)op->cset.factor, op->b.first, cfirst, cn, c->warm, start));
    *ok = PETSC_TRUE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_top_eigs(NtkOperator *op, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool go;

  PetscFunctionBeginUser;
  PetscCall(opbase_solve_prologue(&op->b, nev, eig, resid, nconv, &go));
  if (!go) PetscFunctionReturn(0);
  /* The quick small-basis try from a warm start only: from a coarse start it would have to
   * resolve the top cluster of about k eigenvalues with 2 vectors, and fails after its 4 restarts. */
  OpRun run = {.A = op->A, .ncv_user = op->ncv_user, .mpd_user = op->mpd_user, .coarse = op->borrowed, .quick = PETSC_TRUE,
               .check_resid = op->check_resid, .rel_lambda = PETSC_TRUE, .cold_start = op->coarse ? coarse_start : NULL,
               .cold_ctx = op};
  OpSolve s = {.eps = op->eps, .A = op->A, .warm = &op->warm, .seed = NTK_START_SEED,
               .event = events.id[op->borrowed ? EV_COARSE : EV_EIGENSOLVE],
               .count_checks = PETSC_TRUE};
  PetscCall(opbase_solve_shared(&op->b, &s, &run, nev, eig, resid, nconv));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_last_solve_coarse(NtkOperator *op, long *matvecs, double *work)
{
  PetscFunctionBeginUser;
  if (matvecs) *matvecs = op->b.coarse_matvecs;
  if (work) *work = op->b.coarse_work;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_last_solve_stats(NtkOperator *op, int *its, long *matvecs)
{
  PetscFunctionBeginUser;
  PetscCall(opbase_last_solve_stats(&op->b, its, matvecs));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_reset_warm_start(NtkOperator *op)
{
  PetscFunctionBeginUser;
  PetscCall(VecDestroy(&op->warm));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_warm_start_get(NtkOperator *op, PetscInt *n, double **buf)
{
  PetscFunctionBeginUser;
  PetscCall(warm_start_gather(op->warm, n, buf));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_warm_start_set(NtkOperator *op, PetscInt n, const double *buf)
{
  PetscFunctionBeginUser;
  PetscCall(warm_start_scatter(op->A, &op->warm, n, buf));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ Gram matrix */

bool ntk_gram_supported(const Model *m)
{
  for (int i = 0; i < m->n_ops; i++)
    if (m->ops[i].kind != OP_DENSE && m->ops[i].kind != OP_ACT) return false;
  return true;
}

/* True (on every rank) iff every local entry of the dense matrix G is finite. */
static PetscErrorCode dense_all_finite(Mat G, MPI_Comm comm, PetscBool *ok)
{
  const PetscScalar *a;
  PetscInt m, n, lda;
  int fin = 1;

  PetscFunctionBeginUser;
  PetscCall(MatGetLocalSize(G, &m, NULL));
  PetscCall(MatGetSize(G, NULL, &n));
  PetscCall(MatDenseGetLDA(G, &lda));
  PetscCall(MatDenseGetArrayRead(G, &a));
  for (PetscInt j = 0; j < n && fin; j++)
    for (PetscInt i = 0; i < m; i++) fin &= isfinite(a[i + j * lda]) != 0;
  PetscCall(MatDenseRestoreArrayRead(G, &a));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &fin, 1, MPI_INT, MPI_LAND, comm));
  *ok = fin ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* The Gram matrix's factors on the local samples: per dense layer l (dense_ops[l], nd of them)
 * the signals Dloc[l] (n_local*k x n_out, row (a, i) = d f_i(x_a) / d h_l) and the inputs Aloc[l]
 * (n_local x n_in), and the largest source-rank sizes max_D, max_A for the broadcasts. */
static PetscErrorCode gram_factors(NtkOperator *op, int *nd_out, int **dense_ops_out, double ***Dloc_out, double ***Aloc_out,
                                   size_t *max_D_out, size_t *max_A_out)
{
  const Model *m = op->b.m;
  const int k = op->k, nl = op->b.n_local;
  int nd = 0, max_nl = 0;
  int *dense_ops;
  double **Dloc, **Aloc, *eout;
  size_t max_D = 1, max_A = 1;

  PetscFunctionBeginUser;
  PetscCheck(op->b.have_params, op->b.comm, PETSC_ERR_ORDER, "ntk: call ntk_set_params before the Gram matrix");
  PetscCheck(ntk_gram_supported(m), op->b.comm, PETSC_ERR_SUP, "ntk: the exact Gram matrix needs a dense/activation-only model");
  for (int r = 0; r < op->b.size; r++) max_nl = op->b.nl_all[r] > max_nl ? op->b.nl_all[r] : max_nl;
  PetscCall(PetscMalloc1(m->n_ops, &dense_ops));
  for (int i = 0; i < m->n_ops; i++)
    if (m->ops[i].kind == OP_DENSE) dense_ops[nd++] = i;
  PetscCall(PetscCalloc2(nd, &Dloc, nd, &Aloc));
  for (int l = 0; l < nd; l++) {
    const Op *o = &m->ops[dense_ops[l]];
    const size_t nD = (size_t)max_nl * k * o->n_out, nA = (size_t)max_nl * o->n_in;
    PetscCheck(nD <= INT_MAX && nA <= INT_MAX, op->b.comm, PETSC_ERR_ARG_OUTOFRANGE,
               "ntk: a rank's Gram signals (%zu doubles) exceed an MPI count", nD);
    max_D = nD > max_D ? nD : max_D;
    max_A = nA > max_A ? nA : max_A;
    PetscCall(PetscMalloc1((size_t)nl * k * o->n_out + 1, &Dloc[l]));
    PetscCall(PetscMalloc1((size_t)nl * o->n_in + 1, &Aloc[l]));
  }

  /* Local signals Delta_l[(a,i)] = d f_i(x_a) / d h_l: k cotangent-only VJPs per chunk with
   * dout = e_i on every sample; and the layers' inputs A_{l-1}[a], packed per layer. */
  PetscCall(PetscMalloc1((size_t)op->b.chunk * k, &eout));
  for (int c = 0; c < op->b.n_chunks; c++) {
    const int B = opbase_chunk_len(&op->b, c), a0 = c * op->b.chunk;
    Tape *t = opbase_chunk_tape(&op->b, c);
    for (int l = 0; l < nd; l++) {
      const Op *o = &m->ops[dense_ops[l]];
      PetscCall(PetscArraycpy(Aloc[l] + (size_t)a0 * o->n_in, t->act[o->in], (size_t)B * o->n_in));
    }
    for (int i = 0; i < k; i++) {
      PetscCall(PetscArrayzero(eout, (size_t)B * k));
      for (int a = 0; a < B; a++) eout[(size_t)a * k + i] = 1.0;
      model_vjp(m, op->b.theta, eout, B, t, NULL, NULL);
      for (int l = 0; l < nd; l++) {
        const Op *o = &m->ops[dense_ops[l]];
        const double *sig = t->grad[o->out]; /* B x n_out */
        for (int a = 0; a < B; a++)
          PetscCall(PetscArraycpy(Dloc[l] + ((size_t)(a0 + a) * k + i) * o->n_out, sig + (size_t)a * o->n_out, o->n_out));
      }
    }
  }
  PetscCall(PetscFree(eout));

  *nd_out = nd;
  *dense_ops_out = dense_ops;
  *Dloc_out = Dloc;
  *Aloc_out = Aloc;
  *max_D_out = max_D;
  *max_A_out = max_A;
  PetscFunctionReturn(0);
}

static PetscErrorCode gram_factors_free(int nd, int **dense_ops, double ***Dloc, double ***Aloc)
{
  PetscFunctionBeginUser;
  for (int l = 0; l < nd; l++) {
    PetscCall(PetscFree((*Dloc)[l]));
    PetscCall(PetscFree((*Aloc)[l]));
  }
  PetscCall(PetscFree2(*Dloc, *Aloc));
  PetscCall(PetscFree(*dense_ops));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_gram_assemble(NtkOperator *op, Mat *Gout)
{
  const Model *m = op->b.m;
  const int k = op->k, nl = op->b.n_local, N = op->b.n_global, rps = op->rps;
  const PetscInt mloc = (PetscInt)nl * rps, R = (PetscInt)N * rps;
  int nd = 0, max_nl = 0;
  int *dense_ops;
  double **Dloc, **Aloc, *Dsrc, *Asrc, *C, *KA;
  size_t max_D = 1, max_A = 1;
  Mat G;
  PetscScalar *g;
  PetscInt lda;

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(events.id[EV_GRAM_ASSEMBLE], 0, 0, 0, 0));
  for (int r = 0; r < op->b.size; r++) max_nl = op->b.nl_all[r] > max_nl ? op->b.nl_all[r] : max_nl;
  PetscCall(gram_factors(op, &nd, &dense_ops, &Dloc, &Aloc, &max_D, &max_A));

  PetscCall(MatCreateDense(op->b.comm, mloc, mloc, R, R, NULL, &G));
  PetscCall(MatDenseGetLDA(G, &lda));
  PetscCall(MatDenseGetArray(G, &g));
  for (PetscInt j = 0; j < R; j++) PetscCall(PetscArrayzero(g + j * lda, mloc));

  /* Column blocks of cb source samples (-ntk_gram_block, else temporaries of about 2^23 doubles). */
  PetscInt cb_opt = NTK_DEFAULT_GRAM_BLOCK;
  PetscCall(PetscOptionsGetInt(NULL, "ntk_", "-gram_block", &cb_opt, NULL));
  int cb = mloc > 0 ? (int)PetscMax(1, PetscMin((PetscInt)max_nl, (PetscInt)(8388608 / (mloc * rps)))) : 1;
  if (cb_opt > 0 && cb_opt < cb) cb = (int)cb_opt;
  PetscCall(PetscMalloc4(max_D, &Dsrc, max_A, &Asrc, (size_t)mloc * cb * rps + 1, &C, (size_t)nl * cb + 1, &KA));
  const double scale = op->v == NTK_FULL ? 1.0 / N : 1.0 / ((double)N * k);
  /* Traced rows are samples with the k outputs' signals concatenated, so the same GEMM then sums
   * over i == j only, as the trace needs. */
  const int Kmul = op->v == NTK_FULL ? 1 : k;
  for (int l = 0; l < nd; l++) {
    const Op *o = &m->ops[dense_ops[l]];
    const int nin = o->n_in, nout = o->n_out, K = Kmul * nout;
    const double wm = m->tensors[o->w].mult, bm = o->b >= 0 ? m->tensors[o->b].mult : 0.0;
    /* The lr-weighted kernel weighs each tensor's block by its learning-rate multiplier. */
    const bool lrw = op->d != NULL;
    const double wd = lrw ? m->tensors[o->w].lr_scale : 1.0, bd = lrw && o->b >= 0 ? m->tensors[o->b].lr_scale : 1.0;
    const double w2 = wm * wm * wd, b2 = bm * bm * bd;
    for (int s = 0; s < op->b.size; s++) {
      const int ns = op->b.nl_all[s];
      if (!ns) continue;
      /* Source rank s's signals and inputs: every rank needs them for its rows' columns. */
      if (s == op->b.rank) {
        PetscCall(PetscArraycpy(Dsrc, Dloc[l], (size_t)ns * k * nout));
        PetscCall(PetscArraycpy(Asrc, Aloc[l], (size_t)ns * nin));
      }
      PetscCallMPI(MPI_Bcast(Dsrc, ns * k * nout, MPI_DOUBLE, s, op->b.pcomm));
      PetscCallMPI(MPI_Bcast(Asrc, ns * nin, MPI_DOUBLE, s, op->b.pcomm));
      if (!mloc) continue;
      for (int b0 = 0; b0 < ns; b0 += cb) {
        const int nb = ns - b0 < cb ? ns - b0 : cb, ncol = nb * rps;
        /* In this rank's own diagonal block only the rows down to the end of the column block are
         * computed; the rest is mirrored from later blocks below: half the GEMM work there. */
        const int na = s == op->b.rank ? b0 + nb : nl, mrows = na * rps;
        /* C (column-major, mrows x ncol) = Dloc Dsrc[b0:b0+nb]^T, KA (row-major, na x nb) = A_loc A_src^T */
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, mrows, ncol, K, 1.0, Dloc[l], K, Dsrc + (size_t)b0 * k * nout, K,
                    0.0, C, mrows);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, na, nb, nin, 1.0, Aloc[l], nin, Asrc + (size_t)b0 * nin, nin, 0.0,
                    KA, nb);
        PetscCall(PetscLogFlops(2.0 * mrows * ncol * K + 2.0 * na * nb * nin + 2.0 * mrows * ncol));
        const PetscInt col0 = ((PetscInt)op->b.first_all[s] + b0) * rps;
        for (int b = 0; b < nb; b++)
          for (int j = 0; j < rps; j++) {
            PetscScalar *gcol = g + (col0 + (PetscInt)b * rps + j) * lda;
            const double *ccol = C + ((size_t)b * rps + j) * mrows;
            for (int a = 0; a < na; a++) {
              const double sab = (w2 * KA[(size_t)a * nb + b] + b2) * scale;
              for (int i = 0; i < rps; i++) gcol[a * rps + i] += ccol[a * rps + i] * sab;
            }
          }
      }
    }
  }
  /* Own diagonal block: lower triangle from the upper, which every column block computed. */
  const PetscInt own0 = (PetscInt)op->b.first * rps;
  for (PetscInt c = 0; c < mloc; c++)
    for (PetscInt r = c + 1; r < mloc; r++) g[r + (own0 + c) * lda] = g[c + (own0 + r) * lda];
  PetscCall(MatDenseRestoreArray(G, &g));
  PetscCall(MatAssemblyBegin(G, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(G, MAT_FINAL_ASSEMBLY));
  PetscCall(MatSetOption(G, MAT_SYMMETRIC, PETSC_TRUE));
  PetscCall(PetscObjectSetName((PetscObject)G, "NTK_Gram"));

  PetscCall(PetscFree4(Dsrc, Asrc, C, KA));
  PetscCall(gram_factors_free(nd, &dense_ops, &Dloc, &Aloc));
  PetscCall(PetscLogEventEnd(events.id[EV_GRAM_ASSEMBLE], 0, 0, 0, 0));
  *Gout = G;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_gram_spectrum(NtkOperator *op, Mat G, double *eig_desc)
{
  PetscInt R, nc = 0;
  PetscBool ok;
  EPS eps;
  Mat Gs;

  PetscFunctionBeginUser;
  PetscCall(MatGetSize(G, &R, NULL));
  for (PetscInt i = 0; i < R; i++) eig_desc[i] = NAN;
  PetscCall(dense_all_finite(G, op->b.pcomm, &ok));
  if (!ok) PetscFunctionReturn(0); /* a diverged run: NaN, not a ScaLAPACK failure */
  PetscCall(PetscLogEventBegin(events.id[EV_GRAM_EIGEN], G, 0, 0, 0));
  /* Converted here rather than by EPSSCALAPACK: its own MatConvert of a dense matrix bumps the
   * matrix state (a writable array access), after which EPSSolve refuses the "modified" operator. */
  PetscCall(MatConvert(G, MATSCALAPACK, MAT_INITIAL_MATRIX, &Gs));
  PetscCall(EPSCreate(PetscObjectComm((PetscObject)G), &eps));
  PetscCall(EPSSetOperators(eps, Gs, NULL));
  PetscCall(EPSSetProblemType(eps, EPS_HEP));
  PetscCall(EPSSetType(eps, EPSSCALAPACK));
  PetscCall(EPSSetDimensions(eps, R, PETSC_DEFAULT, PETSC_DEFAULT));
  PetscCall(EPSSetWhichEigenpairs(eps, EPS_LARGEST_REAL)); /* sorted descending */
  PetscCall(EPSSolve(eps));
  PetscCall(EPSGetConverged(eps, &nc));
  for (PetscInt i = 0; i < nc && i < R; i++) {
    PetscScalar kr;
    PetscCall(EPSGetEigenvalue(eps, i, &kr, NULL));
    eig_desc[i] = PetscRealPart(kr);
  }
  PetscCall(EPSDestroy(&eps));
  PetscCall(MatDestroy(&Gs));
  PetscCall(PetscLogEventEnd(events.id[EV_GRAM_EIGEN], G, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* A dense Gram matrix seen through a shell whose products count in b->n_mult like the operator's. */
typedef struct {
  Mat G;
  OpBase *b;
} GramCount;

static PetscErrorCode GramCountMult(Mat A, Vec x, Vec y)
{
  GramCount *gc;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &gc));
  PetscCall(MatMult(gc->G, x, y));
  gc->b->n_mult++;
  PetscFunctionReturn(0);
}

/* One level of the exact Gram solve: G holds the rows of samples [first, first + n_local) of
 * n_global of this level (the finest level's G, or a principal submatrix on every factor-th
 * sample), levels more below it. */
typedef struct {
  NtkOperator *op;
  OpBase *b; /* statistics and convergence test of this level's solve */
  Mat G;
  int first, n_local, n_global, levels;
} GramLevel;

static PetscErrorCode gram_level_solve(GramLevel *L, int nev, double *eig, double *resid, int *nconv, Vec *warm);

/* The exact Gram solve's cold start, as the matrix-free one's: the top eigenvectors of the
 * principal submatrix on every factor-th sample (the coarse level's Gram matrix, up to the factor
 * N / N_c, which leaves the eigenvectors alone), summed and zero-padded (prolong_padded). */
static PetscErrorCode gram_coarse_start(void *ctx, int want, Vec start, PetscBool *ok)
{
  GramLevel *L = (GramLevel *)ctx, C = *L;
  NtkOperator *op = L->op;
  const int rps = op->rps, f = (int)op->cset.factor;
  OpBase cb = {.name = "ntk"}; /* this level's statistics and test only */
  int cfirst, cn, n_coarse, nc = 0;
  PetscInt *rows;
  IS is;
  Vec warm = NULL;
  double *e, *r;

  PetscFunctionBeginUser;
  *ok = PETSC_FALSE;
  if (!opbase_coarse_slice(&op->cset, L->levels, L->first, L->n_local, L->n_global, &cfirst, &cn, &n_coarse)) PetscFunctionReturn(0);
  PetscCall(PetscMalloc1((size_t)cn * rps + 1, &rows));
  for (int j = 0; j < cn; j++)
    for (int i = 0; i < rps; i++) rows[(size_t)j * rps + i] = ((PetscInt)(cfirst + j) * f) * rps + i;
  PetscCall(ISCreateGeneral(PetscObjectComm((PetscObject)L->G), (PetscInt)cn * rps, rows, PETSC_OWN_POINTER, &is));
  PetscCall(MatCreateSubMatrix(L->G, is, is, MAT_INITIAL_MATRIX, &C.G));
  PetscCall(ISDestroy(&is));
  C.b = &cb;
  C.first = cfirst;
  C.n_local = cn;
  C.n_global = n_coarse;
  cb.n_global = n_coarse;
  C.levels = L->levels - 1;
  PetscCall(PetscMalloc2(want, &e, want, &r));
  PetscCall(gram_level_solve(&C, want, e, r, &nc, &warm));
  PetscCall(PetscFree2(e, r));
  opbase_coarse_account(L->b, &cb);
  if (nc > 0 && warm) {
    PetscCall(prolong_padded(rps, f, L->first, cfirst, cn, warm, start));
    *ok = PETSC_TRUE;
  }
  PetscCall(VecDestroy(&warm));
  PetscCall(MatDestroy(&C.G));
  PetscFunctionReturn(0);
}

static PetscErrorCode gram_level_solve(GramLevel *L, int nev, double *eig, double *resid, int *nconv, Vec *warm)
{
  NtkOperator *op = L->op;
  const PetscBool coarse = L->b != &op->b;
  GramCount gc = {L->G, L->b};
  PetscInt mloc, R;
  Mat A;

  PetscFunctionBeginUser;
  PetscCall(opbase_solve_reset(L->b, nev, eig, resid, nconv));
  if (coarse) L->b->conv.value = PETSC_TRUE;
  PetscCall(MatGetLocalSize(L->G, &mloc, NULL));
  PetscCall(MatGetSize(L->G, &R, NULL));
  PetscCall(MatCreateShell(PetscObjectComm((PetscObject)L->G), mloc, mloc, R, R, &gc, &A));
  PetscCall(MatShellSetOperation(A, MATOP_MULT, (void (*)(void))GramCountMult));
  PetscCall(MatSetOption(A, MAT_SYMMETRIC, PETSC_TRUE));
  OpRun run = {.A = A, .coarse = coarse, .quick = PETSC_TRUE, .check_resid = op->check_resid, .rel_lambda = PETSC_TRUE,
               .cold_start = gram_coarse_start, .cold_ctx = L};
  OpSolve s = {.A = A, .warm = warm, .seed = NTK_START_SEED, .event = events.id[coarse ? EV_COARSE : EV_EIGENSOLVE],
               .count_checks = PETSC_TRUE};
  PetscCall(make_eps(L->b, PetscObjectComm((PetscObject)L->G), A, coarse ? "ntk_coarse_" : "ntk_gram_", coarse, &s.eps, &run.ncv_user,
                     &run.mpd_user));
  PetscCall(opbase_solve_shared(L->b, &s, &run, nev, eig, resid, nconv));
  PetscCall(EPSDestroy(&s.eps));
  PetscCall(MatDestroy(&A));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_gram_top_eigs(NtkOperator *op, Mat G, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool ok;
  GramLevel L = {op, &op->b, G, op->b.first, op->b.n_local, op->b.n_global, (int)op->cset.levels};

  PetscFunctionBeginUser;
  PetscCall(opbase_solve_reset(&op->b, nev, eig, resid, nconv));
  if (nev <= 0) PetscFunctionReturn(0);
  PetscCall(dense_all_finite(G, op->b.pcomm, &ok));
  if (!ok) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(events.id[EV_GRAM_EIGEN], G, 0, 0, 0));
  PetscCall(gram_level_solve(&L, nev, eig, resid, nconv, NULL)); /* no warm start */
  PetscCall(PetscLogEventEnd(events.id[EV_GRAM_EIGEN], G, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ factored Gram matrix */

/* The exact full Gram matrix applied from its factors, never assembled:
 *   (Theta v)[(a,i)] = sum_l Delta_l[(a,i)] . sum_b K_l[a,b] u_l[b],  u_l[b] = sum_j v[(b,j)] Delta_l[(b,j)],
 *   K_l[a,b] = (w2_l A_{l-1}[a] . A_{l-1}[b] + b2_l) / N,
 * the same terms as ntk_gram_assemble's, summed in another order: per layer one N x N x n_out GEMM
 * (K_l times the gathered u_l) and two n_local k n_out contractions, against R^2 n_out (R = N k)
 * for assembling the matrix and 8 N n_in n_out for a matrix-free product. The signals are the
 * Gram assembly's (gram_factors); K_l's local rows are formed once. */
typedef struct {
  NtkOperator *op;
  int nd, *dense_ops;
  double **Dloc, **Aloc; /* gram_factors */
  double **K;            /* [nd] n_local x N, row-major */
  double *u, *U, *Z;     /* n_local x n_max, N x n_max, n_local x n_max */
  PetscMPIInt *cnt, *dsp; /* [size] per-rank counts of the gathers */
} GramFactored;

static PetscErrorCode GramFactoredMult(Mat A, Vec x, Vec y)
{
  GramFactored *F;
  const PetscScalar *xv;
  PetscScalar *yv;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &F));
  NtkOperator *op = F->op;
  const Model *m = op->b.m;
  const int k = op->k, nl = op->b.n_local, N = op->b.n_global;
  double flops = 0;
  PetscCall(PetscLogEventBegin(events.id[EV_FACTORED], A, x, y, 0));
  PetscCall(VecGetArrayRead(x, &xv));
  PetscCall(VecGetArray(y, &yv));
  PetscCall(PetscArrayzero(yv, (size_t)nl * k));
  for (int l = 0; l < F->nd; l++) {
    const int nout = m->ops[F->dense_ops[l]].n_out;
    const double *D = F->Dloc[l]; /* (n_local k) x nout */
    /* u[b] = v[b, :] Delta_l[b] (1 x k times k x nout) */
    for (int b = 0; b < nl; b++)
      cblas_dgemv(CblasRowMajor, CblasTrans, k, nout, 1.0, D + (size_t)b * k * nout, nout, xv + (size_t)b * k, 1, 0.0,
                  F->u + (size_t)b * nout, 1);
    for (int r = 0; r < op->b.size; r++) {
      F->cnt[r] = (PetscMPIInt)(op->b.nl_all[r] * nout);
      F->dsp[r] = (PetscMPIInt)(op->b.first_all[r] * nout);
    }
    PetscCallMPI(MPI_Allgatherv(F->u, F->cnt[op->b.rank], MPI_DOUBLE, F->U, F->cnt, F->dsp, MPI_DOUBLE, op->b.pcomm));
    if (nl) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nl, nout, N, 1.0, F->K[l], N, F->U, nout, 0.0, F->Z, nout);
      for (int b = 0; b < nl; b++) /* y[b, :] += Delta_l[b] Z[b] (k x nout times nout) */
        cblas_dgemv(CblasRowMajor, CblasNoTrans, k, nout, 1.0, D + (size_t)b * k * nout, nout, F->Z + (size_t)b * nout, 1, 1.0,
                    yv + (size_t)b * k, 1);
    }
    flops += 2.0 * nl * (double)N * nout + 4.0 * nl * (double)k * nout;
  }
  PetscCall(VecRestoreArray(y, &yv));
  PetscCall(VecRestoreArrayRead(x, &xv));
  op->b.n_mult++;
  PetscCall(PetscLogFlops(flops));
  PetscCall(PetscLogEventEnd(events.id[EV_FACTORED], A, x, y, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_gram_factored_top_eigs(NtkOperator *op, int nev, double *eig, double *resid, int *nconv)
{
  const Model *m = op->b.m;
  const int nl = op->b.n_local, N = op->b.n_global, k = op->k;
  GramFactored F = {.op = op};
  size_t max_D, max_A;
  int n_max = 1, in_max = 1;
  double *Aall;
  PetscBool go;
  Mat A;

  PetscFunctionBeginUser;
  PetscCheck(op->v == NTK_FULL, op->b.comm, PETSC_ERR_SUP, "ntk: the factored Gram matrix is of the full NTK only");
  PetscCall(opbase_solve_prologue(&op->b, nev, eig, resid, nconv, &go));
  if (!go) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(events.id[EV_GRAM_EIGEN], 0, 0, 0, 0));
  PetscCall(PetscLogEventBegin(events.id[EV_GRAM_ASSEMBLE], 0, 0, 0, 0));
  PetscCall(gram_factors(op, &F.nd, &F.dense_ops, &F.Dloc, &F.Aloc, &max_D, &max_A));
  for (int l = 0; l < F.nd; l++) {
    const Op *o = &m->ops[F.dense_ops[l]];
    n_max = PetscMax(n_max, o->n_out);
    in_max = PetscMax(in_max, o->n_in);
  }
  PetscCall(PetscMalloc3(F.nd, &F.K, op->b.size, &F.cnt, op->b.size, &F.dsp));
  PetscCall(PetscMalloc3((size_t)nl * n_max + 1, &F.u, (size_t)N * n_max, &F.U, (size_t)nl * n_max + 1, &F.Z));
  PetscCall(PetscMalloc1((size_t)N * in_max, &Aall));
  /* K_l's local rows: (w2 A_loc A_all^T + b2) / N, the weights as in ntk_gram_assemble */
  for (int l = 0; l < F.nd; l++) {
    const Op *o = &m->ops[F.dense_ops[l]];
    const int nin = o->n_in;
    const double wm = m->tensors[o->w].mult, bm = o->b >= 0 ? m->tensors[o->b].mult : 0.0;
    const bool lrw = op->d != NULL;
    const double wd = lrw ? m->tensors[o->w].lr_scale : 1.0, bd = lrw && o->b >= 0 ? m->tensors[o->b].lr_scale : 1.0;
    const double w2 = wm * wm * wd, b2 = bm * bm * bd;
    for (int r = 0; r < op->b.size; r++) {
      F.cnt[r] = (PetscMPIInt)(op->b.nl_all[r] * nin);
      F.dsp[r] = (PetscMPIInt)(op->b.first_all[r] * nin);
    }
    PetscCallMPI(MPI_Allgatherv(F.Aloc[l], F.cnt[op->b.rank], MPI_DOUBLE, Aall, F.cnt, F.dsp, MPI_DOUBLE, op->b.pcomm));
    PetscCall(PetscMalloc1((size_t)nl * N + 1, &F.K[l]));
    if (nl) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nl, N, nin, w2 / N, F.Aloc[l], nin, Aall, nin, 0.0, F.K[l], N);
    for (size_t e = 0; e < (size_t)nl * N; e++) F.K[l][e] += b2 / N;
    PetscCall(PetscLogFlops(2.0 * nl * (double)N * nin));
  }
  PetscCall(PetscFree(Aall));
  PetscCall(PetscLogEventEnd(events.id[EV_GRAM_ASSEMBLE], 0, 0, 0, 0));

  PetscCall(MatCreateShell(op->b.comm, (PetscInt)nl * k, (PetscInt)nl * k, (PetscInt)N * k, (PetscInt)N * k, &F, &A));
  PetscCall(MatShellSetOperation(A, MATOP_MULT, (void (*)(void))GramFactoredMult));
  PetscCall(MatSetOption(A, MAT_SYMMETRIC, PETSC_TRUE));
  OpRun run = {.A = A, .quick = PETSC_TRUE, .check_resid = op->check_resid, .rel_lambda = PETSC_TRUE};
  OpSolve sv = {.A = A, .seed = NTK_START_SEED, .event = events.id[EV_EIGENSOLVE], .count_checks = PETSC_TRUE};
  PetscCall(make_eps(&op->b, op->b.comm, A, "ntk_gram_", PETSC_FALSE, &sv.eps, &run.ncv_user, &run.mpd_user));
  PetscCall(opbase_solve_shared(&op->b, &sv, &run, nev, eig, resid, nconv)); /* no warm start */
  PetscCall(EPSDestroy(&sv.eps));
  PetscCall(MatDestroy(&A));

  for (int l = 0; l < F.nd; l++) PetscCall(PetscFree(F.K[l]));
  PetscCall(PetscFree3(F.K, F.cnt, F.dsp));
  PetscCall(PetscFree3(F.u, F.U, F.Z));
  PetscCall(gram_factors_free(F.nd, &F.dense_ops, &F.Dloc, &F.Aloc));
  PetscCall(PetscLogEventEnd(events.id[EV_GRAM_EIGEN], 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_kernel_distance(Mat G0, Mat Gt, double *dist)
{
  Mat D;
  PetscReal n0, nd;

  PetscFunctionBeginUser;
  PetscCall(MatNorm(G0, NORM_FROBENIUS, &n0));
  PetscCall(MatDuplicate(Gt, MAT_COPY_VALUES, &D));
  PetscCall(MatAXPY(D, -1.0, G0, SAME_NONZERO_PATTERN));
  PetscCall(MatNorm(D, NORM_FROBENIUS, &nd));
  PetscCall(MatDestroy(&D));
  *dist = n0 > 0 ? nd / n0 : INFINITY;
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ cost models */

/* Matrix-free: one forward (ntk_set_params), then per iteration one product on N samples (k for
 * traced) with its allreduce of P doubles (2P words per rank in a ring, OP_FLOPS_PER_WORD each)
 * and Krylov-Schur's orthogonalisation against ~24 basis vectors of R rows. */
double ntk_cost_matfree(const Model *m, int n_global, NtkVariant v, int expected_iters)
{
  const double N = n_global, k = m->cfg.out_dim, P = (double)m->n_params;
  const double R = v == NTK_FULL ? N * k : N, rounds = v == NTK_FULL ? 1.0 : k;
  const double per_iter = rounds * (product_flops(m, N) + OP_FLOPS_PER_WORD * 2.0 * P) + 4.0 * 24.0 * R;
  return N * model_flops_per_sample(m) + (double)expected_iters * per_iter;
}

/* Exact: one forward, k cotangent-only backward passes (din GEMMs: F - F1 per sample), per dense
 * layer the signal Gram product (R^2 n_out for full, N^2 k n_out for traced, full GEMM) and the
 * input Gram product (N^2 n_in), and the full-spectrum pdsyev with vectors (NTK_EIG_FLOPS_COEF R^3). */
static double gram_flops(const Model *m, int n_global, NtkVariant v)
{
  const double N = n_global, k = m->cfg.out_dim, F = model_flops_per_sample(m);
  const double R = v == NTK_FULL ? N * k : N;
  double gram = 0;
  for (int i = 0; i < m->n_ops; i++) {
    const Op *o = &m->ops[i];
    if (o->kind != OP_DENSE) continue;
    gram += (v == NTK_FULL ? 2.0 * R * R * o->n_out : 2.0 * N * N * k * o->n_out) + 2.0 * N * N * o->n_in + 3.0 * R * R;
  }
  return N * F + k * N * (F - first_layer_flops(m)) + gram;
}

double ntk_cost_exact(const Model *m, int n_global, NtkVariant v)
{
  if (!ntk_gram_supported(m)) return INFINITY; /* conv nets: matrix-free only */
  const double R = v == NTK_FULL ? (double)n_global * m->cfg.out_dim : (double)n_global;
  return gram_flops(m, n_global, v) + NTK_EIG_FLOPS_COEF * R * R * R;
}

/* Gram matrix, then Krylov-Schur on it: per iteration one dense product (2 R^2) and the
 * orthogonalisation. */
double ntk_cost_exact_top(const Model *m, int n_global, NtkVariant v, int expected_iters)
{
  if (!ntk_gram_supported(m)) return INFINITY;
  const double R = v == NTK_FULL ? (double)n_global * m->cfg.out_dim : (double)n_global;
  return gram_flops(m, n_global, v) + (double)expected_iters * (2.0 * R * R + 4.0 * 24.0 * R);
}

/* ------------------------------------------------------------------ registration */

PetscErrorCode ntk_register_events(void)
{
  PetscFunctionBeginUser;
  PetscCall(opbase_register_events(&events));
  PetscFunctionReturn(0);
}

/* Every option this module reads later (when an operator is created or a Gram matrix assembled),
 * read once up front: -help then lists them, and the deck's check for unused options (a typo is an
 * error) sees them as used before any expensive work. The eigensolvers' own options come from
 * EPSSetFromOptions on throw-away solvers with the same prefixes. */
PetscErrorCode ntk_options_register(MPI_Comm comm)
{
  EPS eps;

  PetscFunctionBeginUser;
  const char *prefixes[] = {"ntk_", "ntk_gram_", "ntk_coarse_"};
  for (int i = 0; i < 3; i++) {
    PetscCall(EPSCreate(comm, &eps));
    PetscCall(EPSSetOptionsPrefix(eps, prefixes[i]));
    PetscCall(EPSSetFromOptions(eps));
    PetscCall(EPSDestroy(&eps));
  }
  PetscFunctionReturn(0);
}
