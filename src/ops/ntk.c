/* The empirical NTK: matrix-free operator, Krylov-Schur top eigenvalues, structured Gram matrix
 * and its ScaLAPACK spectrum (see ntk.h and CONVENTIONS.md "Empirical NTK").
 *
 * Tapes. The operator is linearised at theta once per ntk_set_params: every local sample's
 * activations stay on a tape, chunk by chunk (-ntk_chunk samples per tape), so each product costs
 * one VJP and one JVP and no forward pass. All chunk tapes share one set of cotangent/tangent
 * buffers (workspace, needed one chunk at a time), which keeps the memory at
 * n_local * sum(buf_size) doubles for activations plus 2 * chunk * sum(buf_size). If the
 * activations exceed -ntk_tape_mb, one tape is used and the forward pass is recomputed per chunk
 * (twice per product: before the VJP and before the JVP).
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
 * ScaLAPACK. Debian's SLEPc 3.18 is configured with ScaLAPACK (SLEPC_HAVE_SCALAPACK in
 * slepcconf.h; EPSCreate_ScaLAPACK is in libslepc_real.so), so the full spectrum goes through
 * EPSSCALAPACK, which converts the dense matrix to MATSCALAPACK and calls pdsyev. pdsyev also
 * forms the eigenvectors (about 9 R^3 flops against 4/3 R^3 for values only): negligible up to
 * R = Nk ~ 5000; for lambda alone on a larger Gram matrix use ntk_gram_top_eigs.
 */
#include "ntk.h"
#include "warm_start.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <slepceps.h>

#include "rng.h"

/* Cost-model constants (flops). One double on the wire of an allreduce counts as this many flops:
 * ~8 bytes at ~10 GB/s against ~20 GFLOP/s per core. */
#define NTK_FLOPS_PER_WORD 16.0
/* pdsyev with eigenvectors (tridiagonal reduction, QR with accumulation, back-transform). */
#define NTK_EIG_FLOPS_COEF 9.0
/* Seed of the deterministic, rank-count independent Krylov start vector (stream RNG_STREAM_PROBE). */
#define NTK_START_SEED 0x4e544bULL

static PetscLogEvent EV_MATMULT, EV_EIGENSOLVE, EV_GRAM_ASSEMBLE, EV_GRAM_EIGEN;
static PetscBool events_registered = PETSC_FALSE;

PetscErrorCode ntk_register_events(void)
{
  PetscClassId cls;

  PetscFunctionBeginUser;
  if (events_registered) PetscFunctionReturn(0);
  PetscCall(PetscClassIdRegister("NTK", &cls));
  PetscCall(PetscLogEventRegister("NtkMatMult", cls, &EV_MATMULT));
  PetscCall(PetscLogEventRegister("NtkEigensolve", cls, &EV_EIGENSOLVE));
  PetscCall(PetscLogEventRegister("NtkGramAssemble", cls, &EV_GRAM_ASSEMBLE));
  PetscCall(PetscLogEventRegister("NtkGramEigen", cls, &EV_GRAM_EIGEN));
  events_registered = PETSC_TRUE;
  PetscFunctionReturn(0);
}

const char *ntk_variant_name(NtkVariant v) { return v == NTK_TRACED ? "traced" : "full"; }

struct NtkOperator {
  MPI_Comm comm;          /* the caller's comm: PETSc objects live here */
  MPI_Comm pcomm;         /* a duplicate for our own collectives */
  int rank, size;
  const Model *m;
  NtkVariant v;
  int n_local, first, n_global, k, d;
  int rps;                /* rows per sample: k (full) or 1 (traced) */
  int *nl_all, *first_all;/* [size] every rank's slice */
  double *x;              /* n_local x d */
  double *theta;          /* P, the linearisation point */
  double *g;              /* P, J^T v summed over ranks */
  double *dout, *tout;    /* n_local x k scratch (traced products) */
  int chunk, n_chunks;
  PetscBool stored;       /* activations of every chunk kept on tapes[c] */
  int n_tapes;
  Tape *tapes;
  PetscBool have_params, theta_finite;
  Mat A;                  /* the MATSHELL */
  EPS eps;                /* Krylov-Schur on A, options prefix ntk_ */
  PetscInt ncv_user, mpd_user;
  Vec warm;               /* last converged eigenvectors, summed; NULL = none */
  Reducer red;            /* batch-norm statistics summed over pcomm */
  const Reducer *redp;    /* &red if the model has batch norm, else NULL (no extra messages) */
  long n_mult;            /* products applied */
  int last_its;
  long last_matvecs;
};

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

/* Reducer.sum over the operator's communicator (model.h). */
static void reducer_allreduce(double *buf, int n, void *ctx)
{
  MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx);
}

static int chunk_len(const NtkOperator *op, int c)
{
  const int lo = c * op->chunk;
  return op->n_local - lo < op->chunk ? op->n_local - lo : op->chunk;
}

/* The tape holding chunk c's activations at theta: stored, or recomputed now. */
static Tape *chunk_tape(NtkOperator *op, int c)
{
  if (op->stored) return &op->tapes[c];
  Tape *t = &op->tapes[0];
  model_forward(op->m, op->theta, op->x + (size_t)c * op->chunk * op->d, chunk_len(op, c), t, op->redp);
  return t;
}

/* Flops of the input layer (dense or conv): its input needs no tangent/cotangent. */
static double first_layer_flops(const Model *m) { return model_first_layer_flops(m); }

/* One J J^T product on n samples: VJP (dW and din GEMMs, no din for the input layer) + JVP
 * (tin W^T and in dW^T, no tin for the input layer) = 4F - 2F1 per sample. */
static double product_flops(const Model *m, double n)
{
  return n * (4.0 * model_flops_per_sample(m) - 2.0 * first_layer_flops(m));
}

/* ------------------------------------------------------------------ products */

/* yv = J (sum over ranks of J^T dv) on the local samples, unscaled. dv, yv: n_local x k. */
static PetscErrorCode jjt_apply(NtkOperator *op, const double *dv, double *yv)
{
  const int k = op->k;

  PetscFunctionBeginUser;
  memset(op->g, 0, op->m->n_params * sizeof *op->g); /* model_vjp accumulates */
  for (int c = 0; c < op->n_chunks; c++)
    model_vjp(op->m, op->theta, dv + (size_t)c * op->chunk * k, chunk_len(op, c), chunk_tape(op, c), op->g, op->redp);
  PetscCall(allreduce_sum(op->g, op->m->n_params, op->pcomm));
  for (int c = 0; c < op->n_chunks; c++)
    model_jvp(op->m, op->theta, op->g, chunk_len(op, c), chunk_tape(op, c), yv + (size_t)c * op->chunk * k, op->redp);
  PetscFunctionReturn(0);
}

/* Full: y = J J^T v / N (one VJP, one allreduce, one JVP). Traced: Theta_bar = (1/k) sum_i
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
  PetscCall(PetscLogEventBegin(EV_MATMULT, A, x, y, 0));
  PetscCall(VecGetArrayRead(x, &xv));
  PetscCall(VecGetArray(y, &yv));
  const double invN = 1.0 / (double)op->n_global;
  const int k = op->k, nl = op->n_local;
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
  op->n_mult++;
  PetscCall(PetscLogFlops(product_flops(op->m, nl) * (op->v == NTK_TRACED ? k : 1)));
  PetscCall(PetscLogEventEnd(EV_MATMULT, A, x, y, 0));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ create / destroy */

PetscErrorCode ntk_operator_create(NtkOperator **out, MPI_Comm comm, const Model *m, const double *x_local, int n_local,
                                   int first, int n_global, NtkVariant v)
{
  NtkOperator *op;
  PetscInt chunk = 512;
  PetscReal tape_mb = 4096;

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCall(ntk_register_events());
  PetscCheck(v == NTK_FULL || v == NTK_TRACED, comm, PETSC_ERR_ARG_OUTOFRANGE, "ntk: unknown variant %d", (int)v);
  PetscCheck(n_local >= 0 && first >= 0 && n_global > 0 && (int64_t)first + n_local <= n_global, comm,
             PETSC_ERR_ARG_OUTOFRANGE, "ntk: bad slice first %d n_local %d of %d samples", first, n_local, n_global);
  PetscCall(PetscNew(&op));
  op->comm = comm;
  PetscCallMPI(MPI_Comm_dup(comm, &op->pcomm));
  PetscCallMPI(MPI_Comm_rank(comm, &op->rank));
  PetscCallMPI(MPI_Comm_size(comm, &op->size));
  op->m = m;
  op->v = v;
  op->n_local = n_local;
  op->first = first;
  op->n_global = n_global;
  op->k = m->cfg.out_dim;
  op->d = (int)m->buf_size[0];
  op->rps = v == NTK_FULL ? op->k : 1;

  /* The slices must tile [0, N) in rank order: the vector layout relies on it. */
  PetscCall(PetscMalloc2(op->size, &op->nl_all, op->size, &op->first_all));
  PetscCallMPI(MPI_Allgather(&n_local, 1, MPI_INT, op->nl_all, 1, MPI_INT, op->pcomm));
  PetscCallMPI(MPI_Allgather(&first, 1, MPI_INT, op->first_all, 1, MPI_INT, op->pcomm));
  int64_t next = 0;
  PetscBool tiled = PETSC_TRUE;
  for (int r = 0; r < op->size; r++) {
    if (op->first_all[r] != next) tiled = PETSC_FALSE;
    next += op->nl_all[r];
  }
  PetscCheck(tiled && next == n_global, comm, PETSC_ERR_ARG_INCOMP,
             "ntk: the ranks' slices do not tile the %d samples contiguously in rank order", n_global);
  PetscCheck((int64_t)n_global * op->rps <= INT_MAX, comm, PETSC_ERR_ARG_OUTOFRANGE, "ntk: %d x %d rows overflow int",
             n_global, op->rps);

  PetscCall(PetscMalloc1((size_t)n_local * op->d + 1, &op->x));
  if (n_local) PetscCall(PetscArraycpy(op->x, x_local, (size_t)n_local * op->d));
  PetscCall(PetscMalloc2(m->n_params, &op->theta, m->n_params, &op->g));
  if (v == NTK_TRACED) PetscCall(PetscMalloc2((size_t)n_local * op->k + 1, &op->dout, (size_t)n_local * op->k + 1, &op->tout));

  /* Tapes: chunks of at most -ntk_chunk samples; keep them all if they fit -ntk_tape_mb. */
  PetscCall(PetscOptionsGetInt(NULL, "ntk_", "-chunk", &chunk, NULL));
  PetscCall(PetscOptionsGetReal(NULL, "ntk_", "-tape_mb", &tape_mb, NULL));
  PetscCheck(chunk > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "ntk: -ntk_chunk must be positive, got %" PetscInt_FMT, chunk);
  op->chunk = (int)(chunk < n_local ? chunk : (n_local > 0 ? n_local : 1));
  op->n_chunks = (n_local + op->chunk - 1) / op->chunk;
  double per_sample = 0;
  for (int i = 0; i < m->n_bufs; i++) per_sample += (double)m->buf_size[i];
  op->stored = (double)n_local * per_sample * sizeof(double) <= tape_mb * 1048576.0 ? PETSC_TRUE : PETSC_FALSE;
  op->red = (Reducer){reducer_allreduce, &op->pcomm};
  op->redp = NULL;
  if (model_has_batch_norm(m)) { /* one batch-norm batch: one chunk per rank, every rank calls */
    op->redp = &op->red;
    op->chunk = n_local > 0 ? n_local : 1;
    op->n_chunks = 1;
    op->stored = PETSC_TRUE; /* the one tape holds the slice either way */
  }
  op->n_tapes = op->stored ? op->n_chunks : (n_local > 0);
  PetscCall(PetscCalloc1(op->n_tapes + 1, &op->tapes));
  for (int c = 0; c < op->n_tapes; c++) {
    PetscCheck(tape_create(&op->tapes[c], m, op->chunk) == 0, PETSC_COMM_SELF, PETSC_ERR_MEM,
               "ntk: cannot allocate a tape of %d samples", op->chunk);
    if (c > 0) { /* borrow tape 0's cotangent/tangent workspace (equal capacities) */
      free(op->tapes[c].grad);
      free(op->tapes[c].tan);
      op->tapes[c].grad = op->tapes[0].grad;
      op->tapes[c].tan = op->tapes[0].tan;
    }
  }

  /* The shell matrix, in the layout of the batch slices. */
  const PetscInt nloc = (PetscInt)n_local * op->rps;
  PetscCall(MatCreateShell(comm, nloc, nloc, PETSC_DETERMINE, PETSC_DETERMINE, op, &op->A));
  PetscCall(MatShellSetOperation(op->A, MATOP_MULT, (void (*)(void))NtkMult));
  PetscCall(MatSetOption(op->A, MAT_SYMMETRIC, PETSC_TRUE));
  PetscCall(PetscObjectSetName((PetscObject)op->A, "NTK"));

  /* Krylov-Schur for the largest eigenvalues, residuals relative to |lambda|; options read once. */
  PetscCall(EPSCreate(comm, &op->eps));
  PetscCall(EPSSetOperators(op->eps, op->A, NULL));
  PetscCall(EPSSetProblemType(op->eps, EPS_HEP));
  PetscCall(EPSSetType(op->eps, EPSKRYLOVSCHUR));
  PetscCall(EPSSetWhichEigenpairs(op->eps, EPS_LARGEST_REAL));
  PetscCall(EPSSetConvergenceTest(op->eps, EPS_CONV_REL));
  PetscCall(EPSSetOptionsPrefix(op->eps, "ntk_"));
  PetscCall(EPSSetFromOptions(op->eps));
  PetscInt nev0;
  PetscCall(EPSGetDimensions(op->eps, &nev0, &op->ncv_user, &op->mpd_user));
  *out = op;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_operator_destroy(NtkOperator **pop)
{
  NtkOperator *op = *pop;

  PetscFunctionBeginUser;
  if (!op) PetscFunctionReturn(0);
  PetscCall(EPSDestroy(&op->eps));
  PetscCall(MatDestroy(&op->A));
  PetscCall(VecDestroy(&op->warm));
  for (int c = op->n_tapes - 1; c >= 0; c--) {
    if (c > 0) op->tapes[c].grad = op->tapes[c].tan = NULL; /* borrowed from tape 0 */
    tape_destroy(&op->tapes[c]);
  }
  PetscCall(PetscFree(op->tapes));
  PetscCall(PetscFree2(op->dout, op->tout));
  PetscCall(PetscFree2(op->theta, op->g));
  PetscCall(PetscFree(op->x));
  PetscCall(PetscFree2(op->nl_all, op->first_all));
  PetscCallMPI(MPI_Comm_free(&op->pcomm));
  PetscCall(PetscFree(op));
  *pop = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_operator_mat(NtkOperator *op, Mat *A)
{
  PetscFunctionBeginUser;
  *A = op->A;
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_set_params(NtkOperator *op, const double *theta)
{
  const size_t P = op->m->n_params;
  int finite = 1;

  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(op->theta, theta, P));
  for (size_t p = 0; p < P; p++) finite &= isfinite(theta[p]) != 0;
  /* theta is replicated, but agree anyway so every rank takes the same branch in the solvers. */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &finite, 1, MPI_INT, MPI_LAND, op->pcomm));
  op->theta_finite = finite ? PETSC_TRUE : PETSC_FALSE;
  if (op->stored)
    for (int c = 0; c < op->n_chunks; c++)
      model_forward(op->m, op->theta, op->x + (size_t)c * op->chunk * op->d, chunk_len(op, c), &op->tapes[c], op->redp);
  op->have_params = PETSC_TRUE;
  /* The operator changed: assembly bumps the matrix state for anything that caches on it. */
  PetscCall(MatAssemblyBegin(op->A, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(op->A, MAT_FINAL_ASSEMBLY));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ eigensolves */

/* Top-nev of the matrix behind eps (A, with rows rows): NaN for what is missing, never an error
 * from the solver itself (a failure is reported through PetscInfo and leaves NaN). If warm is
 * given it is used as the start vector and replaced by the sum of the converged eigenvectors. */
static PetscErrorCode solve_top(NtkOperator *op, EPS eps, Mat A, PetscInt ncv_user, PetscInt mpd_user, Vec *warm, int nev,
                                double *eig, double *resid, int *nconv)
{
  PetscInt rows, nc = 0, its = 0;
  PetscErrorCode ierr;
  Vec xr, start;

  PetscFunctionBeginUser;
  PetscCall(MatGetSize(A, &rows, NULL));
  const int want = nev < rows ? nev : (int)rows;
  PetscInt ncv = ncv_user > 0 && ncv_user > rows ? rows : ncv_user;
  PetscCall(EPSSetOperators(eps, A, NULL));
  PetscCall(EPSSetDimensions(eps, want, ncv, mpd_user));

  /* Start: the warm vector, or a Philox vector indexed by global row (rank-count independent). */
  PetscCall(MatCreateVecs(A, &start, &xr));
  if (warm && *warm) PetscCall(VecCopy(*warm, start));
  else {
    PetscInt lo, hi;
    PetscScalar *s;
    PetscCall(VecGetOwnershipRange(start, &lo, &hi));
    PetscCall(VecGetArray(start, &s));
    rng_normal_fill(s, (size_t)(hi - lo), NTK_START_SEED, RNG_STREAM_PROBE, (uint64_t)lo);
    PetscCall(VecRestoreArray(start, &s));
  }
  PetscCall(EPSSetInitialSpace(eps, 1, &start));

  const long m0 = op->n_mult;
  PetscCall(PetscLogEventBegin(EV_EIGENSOLVE, eps, 0, 0, 0));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = EPSSolve(eps);
  PetscCall(PetscPopErrorHandler());
  PetscCall(PetscLogEventEnd(EV_EIGENSOLVE, eps, 0, 0, 0));
  op->last_matvecs = op->n_mult - m0;
  if (ierr) {
    PetscCall(PetscInfo(eps, "ntk: eigensolve failed (error %d): NaN reported\n", (int)ierr));
    if (warm) PetscCall(VecDestroy(warm));
    op->last_its = -1;
  } else {
    PetscCall(EPSGetConverged(eps, &nc));
    PetscCall(EPSGetIterationNumber(eps, &its));
    op->last_its = (int)its;
    if (nc > want) nc = want;
    if (warm && nc > 0) {
      if (!*warm) PetscCall(VecDuplicate(start, warm));
      PetscCall(VecSet(*warm, 0.0));
    }
    for (PetscInt i = 0; i < nc; i++) {
      PetscScalar kr;
      PetscReal err;
      PetscCall(EPSGetEigenpair(eps, i, &kr, NULL, xr, NULL));
      PetscCall(EPSComputeError(eps, i, EPS_ERROR_RELATIVE, &err));
      eig[i] = PetscRealPart(kr);
      resid[i] = err;
      if (warm) PetscCall(VecAXPY(*warm, 1.0, xr));
    }
  }
  *nconv = (int)nc;
  PetscCall(VecDestroy(&start));
  PetscCall(VecDestroy(&xr));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_top_eigs(NtkOperator *op, int nev, double *eig, double *resid, int *nconv)
{
  PetscFunctionBeginUser;
  for (int i = 0; i < nev; i++) eig[i] = resid[i] = NAN;
  *nconv = 0;
  op->last_its = 0;
  op->last_matvecs = 0;
  PetscCheck(op->have_params, op->comm, PETSC_ERR_ORDER, "ntk: call ntk_set_params before ntk_top_eigs");
  if (nev <= 0 || !op->theta_finite) PetscFunctionReturn(0); /* NaN theta: nothing to solve */
  PetscCall(solve_top(op, op->eps, op->A, op->ncv_user, op->mpd_user, &op->warm, nev, eig, resid, nconv));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_last_solve_stats(NtkOperator *op, int *its, long *matvecs)
{
  PetscFunctionBeginUser;
  if (its) *its = op->last_its;
  if (matvecs) *matvecs = op->last_matvecs;
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

PetscErrorCode ntk_gram_assemble(NtkOperator *op, Mat *Gout)
{
  const Model *m = op->m;
  const int k = op->k, nl = op->n_local, N = op->n_global, rps = op->rps;
  const PetscInt mloc = (PetscInt)nl * rps, R = (PetscInt)N * rps;
  int nd = 0, max_nl = 0;
  int *dense_ops;
  double **Dloc, **Aloc, *eout, *Dsrc, *Asrc, *C, *KA;
  size_t max_D = 1, max_A = 1;
  Mat G;
  PetscScalar *g;
  PetscInt lda;

  PetscFunctionBeginUser;
  PetscCheck(op->have_params, op->comm, PETSC_ERR_ORDER, "ntk: call ntk_set_params before ntk_gram_assemble");
  PetscCheck(ntk_gram_supported(m), op->comm, PETSC_ERR_SUP, "ntk: the exact Gram matrix needs a dense/activation-only model");
  PetscCall(PetscLogEventBegin(EV_GRAM_ASSEMBLE, 0, 0, 0, 0));
  for (int r = 0; r < op->size; r++) max_nl = op->nl_all[r] > max_nl ? op->nl_all[r] : max_nl;
  PetscCall(PetscMalloc1(m->n_ops, &dense_ops));
  for (int i = 0; i < m->n_ops; i++)
    if (m->ops[i].kind == OP_DENSE) dense_ops[nd++] = i;
  PetscCall(PetscCalloc2(nd, &Dloc, nd, &Aloc));
  for (int l = 0; l < nd; l++) {
    const Op *o = &m->ops[dense_ops[l]];
    const size_t nD = (size_t)max_nl * k * o->n_out, nA = (size_t)max_nl * o->n_in;
    PetscCheck(nD <= INT_MAX && nA <= INT_MAX, op->comm, PETSC_ERR_ARG_OUTOFRANGE,
               "ntk: a rank's Gram signals (%zu doubles) exceed an MPI count", nD);
    max_D = nD > max_D ? nD : max_D;
    max_A = nA > max_A ? nA : max_A;
    PetscCall(PetscMalloc1((size_t)nl * k * o->n_out + 1, &Dloc[l]));
    PetscCall(PetscMalloc1((size_t)nl * o->n_in + 1, &Aloc[l]));
  }

  /* Local signals Delta_l[(a,i)] = d f_i(x_a) / d h_l: k cotangent-only VJPs per chunk with
   * dout = e_i on every sample; and the layers' inputs A_{l-1}[a], packed per layer. */
  PetscCall(PetscMalloc1((size_t)op->chunk * k, &eout));
  for (int c = 0; c < op->n_chunks; c++) {
    const int B = chunk_len(op, c), a0 = c * op->chunk;
    Tape *t = chunk_tape(op, c);
    for (int l = 0; l < nd; l++) {
      const Op *o = &m->ops[dense_ops[l]];
      PetscCall(PetscArraycpy(Aloc[l] + (size_t)a0 * o->n_in, t->act[o->in], (size_t)B * o->n_in));
    }
    for (int i = 0; i < k; i++) {
      PetscCall(PetscArrayzero(eout, (size_t)B * k));
      for (int a = 0; a < B; a++) eout[(size_t)a * k + i] = 1.0;
      model_vjp(m, op->theta, eout, B, t, NULL, NULL);
      for (int l = 0; l < nd; l++) {
        const Op *o = &m->ops[dense_ops[l]];
        const double *sig = t->grad[o->out]; /* B x n_out */
        for (int a = 0; a < B; a++)
          PetscCall(PetscArraycpy(Dloc[l] + ((size_t)(a0 + a) * k + i) * o->n_out, sig + (size_t)a * o->n_out, o->n_out));
      }
    }
  }
  PetscCall(PetscFree(eout));

  PetscCall(MatCreateDense(op->comm, mloc, mloc, R, R, NULL, &G));
  PetscCall(MatDenseGetLDA(G, &lda));
  PetscCall(MatDenseGetArray(G, &g));
  for (PetscInt j = 0; j < R; j++) PetscCall(PetscArrayzero(g + j * lda, mloc));

  /* Column blocks of cb source samples (-ntk_gram_block, else temporaries of about 2^23 doubles). */
  PetscInt cb_opt = 0;
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
    const double w2 = wm * wm, b2 = bm * bm;
    for (int s = 0; s < op->size; s++) {
      const int ns = op->nl_all[s];
      if (!ns) continue;
      /* Source rank s's signals and inputs: every rank needs them for its rows' columns. */
      if (s == op->rank) {
        PetscCall(PetscArraycpy(Dsrc, Dloc[l], (size_t)ns * k * nout));
        PetscCall(PetscArraycpy(Asrc, Aloc[l], (size_t)ns * nin));
      }
      PetscCallMPI(MPI_Bcast(Dsrc, ns * k * nout, MPI_DOUBLE, s, op->pcomm));
      PetscCallMPI(MPI_Bcast(Asrc, ns * nin, MPI_DOUBLE, s, op->pcomm));
      if (!mloc) continue;
      for (int b0 = 0; b0 < ns; b0 += cb) {
        const int nb = ns - b0 < cb ? ns - b0 : cb, ncol = nb * rps;
        /* In this rank's own diagonal block only the rows down to the end of the column block are
         * computed; the rest is mirrored from later blocks below: half the GEMM work there. */
        const int na = s == op->rank ? b0 + nb : nl, mrows = na * rps;
        /* C (column-major, mrows x ncol) = Dloc Dsrc[b0:b0+nb]^T, KA (row-major, na x nb) = A_loc A_src^T */
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, mrows, ncol, K, 1.0, Dloc[l], K, Dsrc + (size_t)b0 * k * nout, K,
                    0.0, C, mrows);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, na, nb, nin, 1.0, Aloc[l], nin, Asrc + (size_t)b0 * nin, nin, 0.0,
                    KA, nb);
        PetscCall(PetscLogFlops(2.0 * mrows * ncol * K + 2.0 * na * nb * nin + 2.0 * mrows * ncol));
        const PetscInt col0 = ((PetscInt)op->first_all[s] + b0) * rps;
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
  const PetscInt own0 = (PetscInt)op->first * rps;
  for (PetscInt c = 0; c < mloc; c++)
    for (PetscInt r = c + 1; r < mloc; r++) g[r + (own0 + c) * lda] = g[c + (own0 + r) * lda];
  PetscCall(MatDenseRestoreArray(G, &g));
  PetscCall(MatAssemblyBegin(G, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(G, MAT_FINAL_ASSEMBLY));
  PetscCall(MatSetOption(G, MAT_SYMMETRIC, PETSC_TRUE));
  PetscCall(PetscObjectSetName((PetscObject)G, "NTK_Gram"));

  PetscCall(PetscFree4(Dsrc, Asrc, C, KA));
  for (int l = 0; l < nd; l++) {
    PetscCall(PetscFree(Dloc[l]));
    PetscCall(PetscFree(Aloc[l]));
  }
  PetscCall(PetscFree2(Dloc, Aloc));
  PetscCall(PetscFree(dense_ops));
  PetscCall(PetscLogEventEnd(EV_GRAM_ASSEMBLE, 0, 0, 0, 0));
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
  PetscCall(dense_all_finite(G, op->pcomm, &ok));
  if (!ok) PetscFunctionReturn(0); /* a diverged run: NaN, not a ScaLAPACK failure */
  PetscCall(PetscLogEventBegin(EV_GRAM_EIGEN, G, 0, 0, 0));
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
  PetscCall(PetscLogEventEnd(EV_GRAM_EIGEN, G, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode ntk_gram_top_eigs(NtkOperator *op, Mat G, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool ok;
  EPS eps;
  PetscInt nev0, ncv, mpd;

  PetscFunctionBeginUser;
  for (int i = 0; i < nev; i++) eig[i] = resid[i] = NAN;
  *nconv = 0;
  op->last_its = 0;
  op->last_matvecs = 0;
  if (nev <= 0) PetscFunctionReturn(0);
  PetscCall(dense_all_finite(G, op->pcomm, &ok));
  if (!ok) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(EV_GRAM_EIGEN, G, 0, 0, 0));
  PetscCall(EPSCreate(PetscObjectComm((PetscObject)G), &eps));
  PetscCall(EPSSetOperators(eps, G, NULL));
  PetscCall(EPSSetProblemType(eps, EPS_HEP));
  PetscCall(EPSSetType(eps, EPSKRYLOVSCHUR));
  PetscCall(EPSSetWhichEigenpairs(eps, EPS_LARGEST_REAL));
  PetscCall(EPSSetConvergenceTest(eps, EPS_CONV_REL));
  PetscCall(EPSSetOptionsPrefix(eps, "ntk_gram_"));
  PetscCall(EPSSetFromOptions(eps));
  PetscCall(EPSGetDimensions(eps, &nev0, &ncv, &mpd));
  PetscCall(solve_top(op, eps, G, ncv, mpd, NULL, nev, eig, resid, nconv));
  PetscCall(EPSDestroy(&eps));
  PetscCall(PetscLogEventEnd(EV_GRAM_EIGEN, G, 0, 0, 0));
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
 * traced) with its allreduce of P doubles (2P words per rank in a ring, NTK_FLOPS_PER_WORD each)
 * and Krylov-Schur's orthogonalisation against ~24 basis vectors of R rows. */
double ntk_cost_matfree(const Model *m, int n_global, NtkVariant v, int expected_iters)
{
  const double N = n_global, k = m->cfg.out_dim, P = (double)m->n_params;
  const double R = v == NTK_FULL ? N * k : N, rounds = v == NTK_FULL ? 1.0 : k;
  const double per_iter = rounds * (product_flops(m, N) + NTK_FLOPS_PER_WORD * 2.0 * P) + 4.0 * 24.0 * R;
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

/* Every option this module reads later (when an operator is created or a Gram matrix assembled),
 * read once up front: -help then lists them, and the deck's check for unused options (a typo is an
 * error) sees them as used before any expensive work. The eigensolvers' own options come from
 * EPSSetFromOptions on throw-away solvers with the same prefixes. */
PetscErrorCode ntk_options_register(MPI_Comm comm)
{
  PetscInt chunk = 512, block = 0;
  PetscReal tape_mb = 4096;
  EPS eps;
  PetscOptionsBegin(comm, "ntk_", "NTK operator (prefix -ntk_; its eigensolver takes -ntk_eps_*, the exact Gram matrix's -ntk_gram_eps_*)", NULL);
  PetscCall(PetscOptionsInt("-chunk", "Samples per tape chunk in NTK products", NULL, chunk, &chunk, NULL));
  PetscCall(PetscOptionsReal("-tape_mb", "Keep the NTK batch's activations up to this many MB, else recompute them per product", NULL, tape_mb, &tape_mb, NULL));
  PetscCall(PetscOptionsInt("-gram_block", "Source samples per column block when assembling the exact Gram matrix (0 = automatic)", NULL, block, &block, NULL));
  PetscOptionsEnd();
  const char *prefixes[] = {"ntk_", "ntk_gram_"};
  for (int i = 0; i < 2; i++) {
    PetscCall(EPSCreate(comm, &eps));
    PetscCall(EPSSetOptionsPrefix(eps, prefixes[i]));
    PetscCall(EPSSetFromOptions(eps));
    PetscCall(EPSDestroy(&eps));
  }
  return 0;
}
