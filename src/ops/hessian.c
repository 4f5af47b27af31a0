/* The loss Hessian as a shell matrix over the parameters, and its spectrum (see hessian.h and
 * CONVENTIONS.md "Hessian").
 *
 * Tapes. hessian_set_params runs, chunk by chunk (-hess_chunk samples), the forward pass and the
 * first-order cotangents of the local samples (model_hvp_prepare) and keeps both when they fit
 * -hess_tape_mb: a product is then one JVP and one R-backward sweep per chunk (6F - 4F1 flops per
 * sample), the minimum for an exact H v. The tangent/R-cotangent workspace is shared by all chunk
 * tapes (needed one chunk at a time). Otherwise one tape is used and every product recomputes the
 * forward pass and cotangents first (8F - 5F1).
 *
 * Batch norm. With batch norm the Hessian batch is ONE batch-norm batch: each rank's slice is one
 * chunk (one tape, whatever -hess_chunk says; every rank calls the model, also with 0 samples) and
 * the statistics are summed over the ranks through a Reducer on pcomm, so H is the Hessian of the
 * loss of the network evaluated on the whole batch, statistics included.
 *
 * Products. v is distributed over comm in PETSc's default layout of P rows. Every rank gathers
 * the whole v (MPI_Allgatherv: theta and v are needed whole by the sample-parallel kernels), adds
 * its samples' H v into a P-vector, and MPI_Reduce_scatter sums those into each rank's rows. Per
 * product that is 2P doubles on the wire per rank against n_local (6F - 4F1) flops.
 *
 * Eigensolves. Krylov-Schur with a convergence test relative to the spectrum's scale
 * max(|lambda|, |lambda_max|) on the eigenvalue error or the residual (see hessian.h),
 * warm-started from the last eigenvectors or, cold, from the coarse levels: HessianOperators over
 * strided subsamples that borrow this level's product buffers. The final residuals are recomputed
 * by an explicit product. SLQ runs its own Lanczos with full reorthogonalisation on the same shell
 * matrix.
 */
#include "hessian.h"
#include "warm_start.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <slepceps.h>
#include <petscblaslapack.h> /* after slepceps.h: it needs petscsys.h */

#include "rng.h"

/* One double on the wire priced in flops, as in ntk.c's cost model. */
#define HESS_FLOPS_PER_WORD 16.0
/* Seed of the deterministic, rank-count independent Krylov start vector (stream RNG_STREAM_PROBE). */
#define HESS_START_SEED 0x48455353ULL
/* A converged pair is kept only if its recomputed residual is below this many solver tolerances. */
#define HESS_RESID_FACTOR 100.0
/* Lanczos breakdown: beta below this fraction of the largest |alpha|, beta seen. */
#define HESS_BREAKDOWN 1e-10
/* Ritz values of the previous restart kept for the eigenvalue-error test. */
#define HESS_RITZ_MAX 64
/* Restarts of the quick solve with a basis of nev + 1 from a good start (see solve). */
#define HESS_QUICK_RESTARTS 4
/* The extrapolated error of ritz_error, times this: rho from two steps is a rough estimate. */
#define HESS_STEP_SAFETY 2.0
/* Default tolerance of the coarse (subsample) solves that only provide a start vector. */
#define HESS_COARSE_TOL 1e-2

static PetscLogEvent EV_MATMULT, EV_EIGENSOLVE, EV_TRACE, EV_SLQ;
static PetscBool events_registered = PETSC_FALSE;

PetscErrorCode hessian_register_events(void)
{
  PetscClassId cls;

  PetscFunctionBeginUser;
  if (events_registered) PetscFunctionReturn(0);
  PetscCall(PetscClassIdRegister("Hessian", &cls));
  PetscCall(PetscLogEventRegister("HessMatMult", cls, &EV_MATMULT));
  PetscCall(PetscLogEventRegister("HessEigensolve", cls, &EV_EIGENSOLVE));
  PetscCall(PetscLogEventRegister("HessTrace", cls, &EV_TRACE));
  PetscCall(PetscLogEventRegister("HessSLQ", cls, &EV_SLQ));
  events_registered = PETSC_TRUE;
  PetscFunctionReturn(0);
}

struct HessianOperator {
  MPI_Comm comm;            /* the caller's comm: PETSc objects live here */
  MPI_Comm pcomm;           /* a duplicate for our own collectives */
  int rank, size;
  const Model *m;
  int n_local, first, n_global, d, k;
  double *x, *y;            /* n_local x d, n_local x k */
  double *theta;            /* P, the linearisation point */
  double *vfull, *hfull;    /* P: gathered direction, local samples' product */
  PetscMPIInt *counts, *displs; /* [size] every rank's rows of P */
  PetscInt plo, pn;         /* this rank's rows */
  int chunk, n_chunks;
  PetscBool stored;         /* activations and cotangents of every chunk kept on tapes[c] */
  int n_tapes;
  Tape *tapes;
  PetscBool have_params, theta_finite;
  double loss;
  Mat H, G;                 /* the MATSHELLs */
  EPS eps_top, eps_min;     /* prefixes hess_ and hess_min_ */
  PetscInt ncv_top, mpd_top, ncv_min, mpd_min;
  Vec warm_top, warm_min;   /* sums of the last eigenvectors; NULL = none */
  PetscBool have_lmax;      /* lmax is lambda_max at the current theta */
  double lmax;
  double conv_scale;        /* running spectral scale of the current solve's convergence test */
  Reducer red;              /* batch-norm statistics summed over pcomm */
  const Reducer *redp;      /* &red if the model has batch norm, else NULL (no extra messages) */
  long n_mult;              /* products applied (H or G) */
  int last_its;
  long last_matvecs;
  /* Cold starts (no warm vector) of the top-eigenvalue solve begin from the top eigenvectors of
   * the Hessian of a strided subsample, itself solved the same way: see hessian.h. */
  HessianOperator *coarse;  /* every coarse_factor-th sample of this batch, or NULL */
  PetscBool coarse_stale;   /* coarse not yet linearised at theta */
  PetscBool borrowed;       /* vfull, hfull belong to the finer level */
  PetscBool conv_value;     /* -hess_conv value: test the eigenvalue error, else the residual */
  PetscBool check_resid;    /* -hess_check_residual */
  double ritz_prev[2][HESS_RITZ_MAX]; /* Ritz values at the last two restarts of the current solve */
  int n_ritz_prev[2];                 /* [0] the last, [1] the one before */
  long coarse_matvecs;      /* products of the coarse levels in the last solve */
  double coarse_work;       /* the same in full-batch products (samples / n_global) */
};

/* Settings read once by hessian_operator_create and handed to every level. */
typedef struct {
  PetscInt chunk;
  PetscReal tape_mb;
  PetscInt coarse_levels, coarse_factor, coarse_min;
  PetscBool conv_value, check_resid;
} HessSettings;

/* ------------------------------------------------------------------ helpers */

/* Reducer.sum over the operator's communicator (model.h). */
static void reducer_allreduce(double *buf, int n, void *ctx)
{
  MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx);
}

static int chunk_len(const HessianOperator *op, int c)
{
  const int lo = c * op->chunk;
  return op->n_local - lo < op->chunk ? op->n_local - lo : op->chunk;
}

/* Flops of the input layer (dense or conv): its input needs no tangent or cotangent. */
static double first_layer_flops(const Model *m) { return model_first_layer_flops(m); }

/* Per-sample flops: JVP 2F - F1; R-backward with residual 4F - 3F1 (two GEMMs for rdW, two for
 * rdin, none into the data), without (Gauss-Newton) 2F - F1; recomputing forward + cotangents
 * 2F - F1. */
static double product_flops(const Model *m, PetscBool gn, PetscBool stored)
{
  const double F = model_flops_per_sample(m), F1 = first_layer_flops(m);
  double f = (2.0 * F - F1) + (gn ? 2.0 * F - F1 : 4.0 * F - 3.0 * F1);
  if (!stored) f += gn ? F : 2.0 * F - F1;
  return f;
}

double hessian_cost_matvec(const Model *m, int n_global)
{
  return (double)n_global * product_flops(m, PETSC_FALSE, PETSC_TRUE) + HESS_FLOPS_PER_WORD * 2.0 * (double)m->n_params;
}

/* The tape holding chunk c at theta: stored, or recomputed now (with cotangents for H). */
static Tape *chunk_tape(HessianOperator *op, int c, PetscBool gn)
{
  if (op->stored) return &op->tapes[c];
  Tape *t = &op->tapes[0];
  const double *xc = op->x + (size_t)c * op->chunk * op->d, *yc = op->y + (size_t)c * op->chunk * op->k;
  if (gn) model_forward(op->m, op->theta, xc, chunk_len(op, c), t, op->redp);
  else model_hvp_prepare(op->m, op->theta, xc, yc, chunk_len(op, c), (double)op->n_global, t, op->redp);
  return t;
}

/* z <- Rademacher probe j of seed on this rank's rows (global index, so rank-count independent). */
static PetscErrorCode fill_rademacher(HessianOperator *op, Vec z, uint64_t seed, int j)
{
  PetscScalar *a;

  PetscFunctionBeginUser;
  const uint64_t stream = (uint64_t)RNG_STREAM_PROBE + ((uint64_t)j << 32);
  PetscCall(VecGetArray(z, &a));
  for (PetscInt i = 0; i < op->pn; i++) a[i] = (rng_u64(seed, stream, (uint64_t)(op->plo + i)) & 1u) ? 1.0 : -1.0;
  PetscCall(VecRestoreArray(z, &a));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ products */

static PetscErrorCode apply(Mat A, Vec x, Vec y, PetscBool gn)
{
  HessianOperator *op;
  const PetscScalar *xv;
  PetscScalar *yv;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &op));
  PetscCheck(op->have_params, op->comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params before a product");
  PetscCall(PetscLogEventBegin(EV_MATMULT, A, x, y, 0));
  PetscCall(VecGetArrayRead(x, &xv));
  PetscCallMPI(MPI_Allgatherv(xv, op->counts[op->rank], MPI_DOUBLE, op->vfull, op->counts, op->displs, MPI_DOUBLE, op->pcomm));
  PetscCall(VecRestoreArrayRead(x, &xv));
  PetscCall(PetscArrayzero(op->hfull, op->m->n_params)); /* the products accumulate */
  for (int c = 0; c < op->n_chunks; c++) {
    Tape *t = chunk_tape(op, c, gn);
    if (gn) model_gnvp_apply(op->m, op->theta, op->vfull, chunk_len(op, c), (double)op->n_global, t, op->hfull, op->redp);
    else model_hvp_apply(op->m, op->theta, op->vfull, chunk_len(op, c), (double)op->n_global, t, op->hfull, op->redp);
  }
  PetscCall(VecGetArray(y, &yv));
  PetscCallMPI(MPI_Reduce_scatter(op->hfull, yv, op->counts, MPI_DOUBLE, MPI_SUM, op->pcomm));
  PetscCall(VecRestoreArray(y, &yv));
  op->n_mult++;
  PetscCall(PetscLogFlops((double)op->n_local * product_flops(op->m, gn, op->stored)));
  PetscCall(PetscLogEventEnd(EV_MATMULT, A, x, y, 0));
  PetscFunctionReturn(0);
}

static PetscErrorCode HessMult(Mat A, Vec x, Vec y)
{
  PetscFunctionBeginUser;
  PetscCall(apply(A, x, y, PETSC_FALSE));
  PetscFunctionReturn(0);
}

static PetscErrorCode GaussNewtonMult(Mat A, Vec x, Vec y)
{
  PetscFunctionBeginUser;
  PetscCall(apply(A, x, y, PETSC_TRUE));
  PetscFunctionReturn(0);
}

/* The value of prev (n) nearest t, and the distance from t to the next nearest (INFINITY if none). */
static double nearest(const double *prev, int n, double t, double *next)
{
  double d1 = INFINITY, d2 = INFINITY, best = NAN;
  for (int j = 0; j < n; j++) {
    const double d = fabs(t - prev[j]);
    if (d < d1) {
      d2 = d1;
      d1 = d;
      best = prev[j];
    } else if (d < d2) d2 = d;
  }
  if (next) *next = d2;
  return best;
}

/* Error estimate of a Ritz value theta with residual norm res. The residual bound res always
 * holds. With conv_value, the eigenvalue error is estimated as max(extrapolated step, res^2/gap):
 * a Ritz value converges with the square of its residual, res^2/gap (Parlett, The Symmetric
 * Eigenvalue Problem, 11.7), gap being the distance to the other Ritz values of the last restart;
 * and since those can still be far below their eigenvalues (the gap then overestimated), the
 * error is also taken at least as large as what the last two steps of theta extrapolate to
 * (Aitken: d_j rho / (1 - rho), rho = d_j / d_{j-1}; doubled), which is infinite -- the residual bound
 * rules -- until two restarts have passed or while theta is not converging geometrically. */
static double ritz_error(const HessianOperator *op, double theta, double res)
{
  if (!op->conv_value || op->n_ritz_prev[1] < 1 || op->n_ritz_prev[0] < 2) return res;
  double gap;
  const double p1 = nearest(op->ritz_prev[0], op->n_ritz_prev[0], theta, &gap);
  const double p2 = nearest(op->ritz_prev[1], op->n_ritz_prev[1], p1, NULL);
  const double d1 = fabs(theta - p1), d0 = fabs(p1 - p2);
  double step = INFINITY;
  if (d1 == 0) step = 0;
  else if (d0 > d1) step = HESS_STEP_SAFETY * d1 * (d1 / d0) / (1.0 - d1 / d0);
  if (!(gap > 0) || !isfinite(gap) || !(step < INFINITY)) return res;
  return PetscMin(res, PetscMax(step, res * res / gap));
}

/* Krylov-Schur convergence test: ritz_error relative to max(|lambda|, the largest |Ritz value| seen
 * in this solve, op->conv_scale at its start). */
static PetscErrorCode ConvergedScaled(EPS eps, PetscScalar eigr, PetscScalar eigi, PetscReal res, PetscReal *errest, void *ctx)
{
  HessianOperator *op = (HessianOperator *)ctx;

  PetscFunctionBeginUser;
  const double a = PetscAbsScalar(eigr);
  if (a > op->conv_scale) op->conv_scale = a;
  const double err = ritz_error(op, PetscRealPart(eigr), res);
  *errest = op->conv_scale > 0 ? err / op->conv_scale : err;
  PetscFunctionReturn(0);
}

/* Monitor: keeps the Ritz values of each restart for the next convergence test. */
static PetscErrorCode RitzRecord(EPS eps, PetscInt its, PetscInt nconv, PetscScalar *eigr, PetscScalar *eigi, PetscReal *errest,
                                 PetscInt nest, void *ctx)
{
  HessianOperator *op = (HessianOperator *)ctx;

  PetscFunctionBeginUser;
  op->n_ritz_prev[1] = op->n_ritz_prev[0];
  PetscCall(PetscArraycpy(op->ritz_prev[1], op->ritz_prev[0], op->n_ritz_prev[0]));
  op->n_ritz_prev[0] = (int)PetscMin(nest, (PetscInt)HESS_RITZ_MAX);
  for (int j = 0; j < op->n_ritz_prev[0]; j++) op->ritz_prev[0][j] = PetscRealPart(eigr[j]);
  PetscFunctionReturn(0);
}

/* Krylov-Schur for eigenvalues of A at one end, options read once, with the scaled test. */
static PetscErrorCode make_eps(HessianOperator *op, Mat A, EPSWhich which, const char *prefix, EPS *eps, PetscInt *ncv,
                               PetscInt *mpd)
{
  PetscInt nev0;

  PetscFunctionBeginUser;
  PetscCall(EPSCreate(op->comm, eps));
  PetscCall(EPSSetOperators(*eps, A, NULL));
  PetscCall(EPSSetProblemType(*eps, EPS_HEP));
  PetscCall(EPSSetType(*eps, EPSKRYLOVSCHUR));
  PetscCall(EPSSetWhichEigenpairs(*eps, which));
  PetscCall(EPSSetConvergenceTestFunction(*eps, ConvergedScaled, op, NULL));
  PetscCall(EPSMonitorSet(*eps, RitzRecord, op, NULL));
  if (op->borrowed) PetscCall(EPSSetTolerances(*eps, HESS_COARSE_TOL, PETSC_DEFAULT)); /* a start vector only */
  PetscCall(EPSSetOptionsPrefix(*eps, prefix));
  PetscCall(EPSSetFromOptions(*eps));
  PetscCall(EPSGetDimensions(*eps, &nev0, ncv, mpd));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ create / destroy */

/* One level: the batch given (levels > 0 adds a coarse level below it); parent: the finer level
 * whose product buffers it borrows, or NULL. */
static PetscErrorCode operator_create(HessianOperator **out, MPI_Comm comm, const Model *m, const double *x_local,
                                      const double *y_local, int n_local, int first, int n_global, const HessSettings *set,
                                      int levels, HessianOperator *parent)
{
  HessianOperator *op;
  const PetscInt chunk = set->chunk;
  const PetscReal tape_mb = set->tape_mb;

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCheck(n_local >= 0 && first >= 0 && n_global > 0 && (int64_t)first + n_local <= n_global, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "hessian: bad slice first %d n_local %d of %d samples", first, n_local, n_global);
  PetscCheck(m->n_params > 0 && m->n_params <= (size_t)INT_MAX, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "hessian: %zu parameters exceed an MPI count", m->n_params);
  PetscCall(PetscNew(&op));
  op->comm = comm;
  PetscCallMPI(MPI_Comm_dup(comm, &op->pcomm));
  PetscCallMPI(MPI_Comm_rank(comm, &op->rank));
  PetscCallMPI(MPI_Comm_size(comm, &op->size));
  op->m = m;
  op->n_local = n_local;
  op->first = first;
  op->n_global = n_global;
  op->d = (int)m->buf_size[0];
  op->k = (int)m->buf_size[m->out_buf];
  op->lmax = NAN;

  /* The slices must tile the batch in rank order (the caller's split, checked once here). */
  int mine[2] = {first, n_local}, *all;
  PetscCall(PetscMalloc1(2 * op->size, &all));
  PetscCallMPI(MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, op->pcomm));
  int64_t next = 0;
  PetscBool tiled = PETSC_TRUE;
  for (int r = 0; r < op->size; r++) {
    if (all[2 * r] != next) tiled = PETSC_FALSE;
    next += all[2 * r + 1];
  }
  PetscCall(PetscFree(all));
  PetscCheck(tiled && next == n_global, comm, PETSC_ERR_ARG_INCOMP,
             "hessian: the ranks' slices do not tile the %d samples contiguously in rank order", n_global);

  /* Rows of P: PETSc's default split, and every rank's share for the collectives. */
  PetscInt P = (PetscInt)m->n_params;
  op->pn = PETSC_DECIDE;
  PetscCall(PetscSplitOwnership(comm, &op->pn, &P));
  PetscCall(PetscMalloc2(op->size, &op->counts, op->size, &op->displs));
  PetscMPIInt pn = (PetscMPIInt)op->pn;
  PetscCallMPI(MPI_Allgather(&pn, 1, MPI_INT, op->counts, 1, MPI_INT, op->pcomm));
  op->displs[0] = 0;
  for (int r = 1; r < op->size; r++) op->displs[r] = op->displs[r - 1] + op->counts[r - 1];
  op->plo = op->displs[op->rank];

  PetscCall(PetscMalloc2((size_t)n_local * op->d + 1, &op->x, (size_t)n_local * op->k + 1, &op->y));
  if (n_local) {
    PetscCall(PetscArraycpy(op->x, x_local, (size_t)n_local * op->d));
    PetscCall(PetscArraycpy(op->y, y_local, (size_t)n_local * op->k));
  }
  op->conv_value = set->conv_value;
  op->check_resid = set->check_resid;
  op->borrowed = parent ? PETSC_TRUE : PETSC_FALSE;
  if (parent) { /* levels are used one at a time: the finer level's product buffers serve */
    PetscCall(PetscMalloc1(m->n_params, &op->theta));
    op->vfull = parent->vfull;
    op->hfull = parent->hfull;
  } else PetscCall(PetscMalloc3(m->n_params, &op->theta, m->n_params, &op->vfull, m->n_params, &op->hfull));

  /* Tapes: chunks of at most -hess_chunk samples; keep activations and cotangents if they fit. */
  op->chunk = (int)(chunk < n_local ? chunk : (n_local > 0 ? n_local : 1));
  op->n_chunks = (n_local + op->chunk - 1) / op->chunk;
  double per_sample = 0;
  for (int i = 0; i < m->n_bufs; i++) per_sample += 2.0 * (double)m->buf_size[i];
  per_sample -= (double)m->buf_size[0]; /* no cotangent for the data */
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
               "hessian: cannot allocate a tape of %d samples", op->chunk);
    if (c > 0) { /* borrow tape 0's tangent workspace (equal capacities); cotangents stay per chunk */
      free(op->tapes[c].tan);
      free(op->tapes[c].rgrad);
      op->tapes[c].tan = op->tapes[0].tan;
      op->tapes[c].rgrad = op->tapes[0].rgrad; /* R-cotangents of fan-out buffers: also per product */
    }
  }

  PetscCall(MatCreateShell(comm, op->pn, op->pn, P, P, op, &op->H));
  PetscCall(MatShellSetOperation(op->H, MATOP_MULT, (void (*)(void))HessMult));
  PetscCall(MatSetOption(op->H, MAT_SYMMETRIC, PETSC_TRUE));
  PetscCall(PetscObjectSetName((PetscObject)op->H, "Hessian"));
  PetscCall(MatCreateShell(comm, op->pn, op->pn, P, P, op, &op->G));
  PetscCall(MatShellSetOperation(op->G, MATOP_MULT, (void (*)(void))GaussNewtonMult));
  PetscCall(MatSetOption(op->G, MAT_SYMMETRIC, PETSC_TRUE));
  PetscCall(MatSetOption(op->G, MAT_SPD, PETSC_TRUE));
  PetscCall(PetscObjectSetName((PetscObject)op->G, "GaussNewton"));

  PetscCall(make_eps(op, op->H, EPS_LARGEST_REAL, parent ? "hess_coarse_" : "hess_", &op->eps_top, &op->ncv_top, &op->mpd_top));
  if (!parent) PetscCall(make_eps(op, op->H, EPS_SMALLEST_REAL, "hess_min_", &op->eps_min, &op->ncv_min, &op->mpd_min));

  /* The coarse level: samples whose global index is a multiple of the factor (the same set for
   * any rank count; each rank keeps its own, so the level stays balanced). */
  const int f = (int)set->coarse_factor, n_coarse = (n_global + f - 1) / f;
  if (levels > 0 && n_coarse >= set->coarse_min && n_coarse < n_global) {
    const int cfirst = (first + f - 1) / f, cend = (first + n_local + f - 1) / f, cn = cend - cfirst;
    double *xc, *yc;
    PetscCall(PetscMalloc2((size_t)cn * op->d + 1, &xc, (size_t)cn * op->k + 1, &yc));
    for (int j = 0; j < cn; j++) {
      const size_t a = (size_t)(cfirst + j) * f - (size_t)first; /* local row of coarse sample j */
      PetscCall(PetscArraycpy(xc + (size_t)j * op->d, x_local + a * op->d, op->d));
      PetscCall(PetscArraycpy(yc + (size_t)j * op->k, y_local + a * op->k, op->k));
    }
    PetscCall(operator_create(&op->coarse, comm, m, xc, yc, cn, cfirst, n_coarse, set, levels - 1, op));
    PetscCall(PetscFree2(xc, yc));
  }
  *out = op;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_operator_create(HessianOperator **out, MPI_Comm comm, const Model *m, const double *x_local,
                                       const double *y_local, int n_local, int first, int n_global)
{
  HessianOperator *op = NULL;
  HessSettings set = {HESS_DEFAULT_CHUNK,         HESS_DEFAULT_TAPE_MB,
                      HESS_DEFAULT_COARSE_LEVELS, HESS_DEFAULT_COARSE_FACTOR,
                      HESS_DEFAULT_COARSE_MIN,    PETSC_TRUE,
                      strcmp(HESS_DEFAULT_CHECK_RESIDUAL, "true") == 0 ? PETSC_TRUE : PETSC_FALSE};
  char conv[16] = HESS_DEFAULT_CONV;
  PetscBool has;

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCall(hessian_register_events());
  PetscCall(PetscOptionsGetInt(NULL, "hess_", "-chunk", &set.chunk, NULL));
  PetscCall(PetscOptionsGetReal(NULL, "hess_", "-tape_mb", &set.tape_mb, NULL));
  PetscCall(PetscOptionsGetInt(NULL, "hess_", "-coarse_levels", &set.coarse_levels, NULL));
  PetscCall(PetscOptionsGetInt(NULL, "hess_", "-coarse_factor", &set.coarse_factor, NULL));
  PetscCall(PetscOptionsGetInt(NULL, "hess_", "-coarse_min", &set.coarse_min, NULL));
  PetscCall(PetscOptionsGetString(NULL, "hess_", "-conv", conv, sizeof conv, &has));
  PetscCall(PetscOptionsGetBool(NULL, "hess_", "-check_residual", &set.check_resid, NULL));
  PetscCheck(set.chunk > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "hessian: -hess_chunk must be positive, got %" PetscInt_FMT, set.chunk);
  PetscCheck(set.coarse_levels >= 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "hessian: -hess_coarse_levels must be >= 0, got %" PetscInt_FMT,
             set.coarse_levels);
  PetscCheck(set.coarse_factor >= 2, comm, PETSC_ERR_ARG_OUTOFRANGE, "hessian: -hess_coarse_factor must be >= 2, got %" PetscInt_FMT,
             set.coarse_factor);
  PetscCheck(set.coarse_min >= 1, comm, PETSC_ERR_ARG_OUTOFRANGE, "hessian: -hess_coarse_min must be >= 1, got %" PetscInt_FMT,
             set.coarse_min);
  PetscCheck(!strcmp(conv, "value") || !strcmp(conv, "residual"), comm, PETSC_ERR_ARG_WRONG,
             "hessian: -hess_conv must be value or residual, got %s", conv);
  set.conv_value = strcmp(conv, "value") == 0 ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(operator_create(&op, comm, m, x_local, y_local, n_local, first, n_global, &set, (int)set.coarse_levels, NULL));
  *out = op;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_operator_destroy(HessianOperator **pop)
{
  HessianOperator *op = *pop;

  PetscFunctionBeginUser;
  if (!op) PetscFunctionReturn(0);
  PetscCall(hessian_operator_destroy(&op->coarse));
  PetscCall(EPSDestroy(&op->eps_top));
  PetscCall(EPSDestroy(&op->eps_min));
  PetscCall(MatDestroy(&op->H));
  PetscCall(MatDestroy(&op->G));
  PetscCall(VecDestroy(&op->warm_top));
  PetscCall(VecDestroy(&op->warm_min));
  for (int c = op->n_tapes - 1; c >= 0; c--) {
    if (c > 0) op->tapes[c].tan = op->tapes[c].rgrad = NULL; /* borrowed from tape 0 */
    tape_destroy(&op->tapes[c]);
  }
  PetscCall(PetscFree(op->tapes));
  if (op->borrowed) PetscCall(PetscFree(op->theta));
  else PetscCall(PetscFree3(op->theta, op->vfull, op->hfull));
  PetscCall(PetscFree2(op->x, op->y));
  PetscCall(PetscFree2(op->counts, op->displs));
  PetscCallMPI(MPI_Comm_free(&op->pcomm));
  PetscCall(PetscFree(op));
  *pop = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_operator_mat(HessianOperator *op, Mat *H)
{
  PetscFunctionBeginUser;
  *H = op->H;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_gn_mat(HessianOperator *op, Mat *G)
{
  PetscFunctionBeginUser;
  *G = op->G;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_set_params(HessianOperator *op, const double *theta)
{
  const size_t P = op->m->n_params;
  int finite = 1;
  double half_sq = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(op->theta, theta, P));
  for (size_t p = 0; p < P; p++) finite &= isfinite(theta[p]) != 0;
  /* theta is replicated, but agree anyway so every rank takes the same branch in the solvers. */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &finite, 1, MPI_INT, MPI_LAND, op->pcomm));
  op->theta_finite = finite ? PETSC_TRUE : PETSC_FALSE;
  for (int c = 0; c < op->n_chunks; c++) {
    const int B = chunk_len(op, c);
    const double *xc = op->x + (size_t)c * op->chunk * op->d, *yc = op->y + (size_t)c * op->chunk * op->k;
    if (op->stored) half_sq += model_hvp_prepare(op->m, op->theta, xc, yc, B, (double)op->n_global, &op->tapes[c], op->redp);
    else half_sq += mse_loss(NULL, model_forward(op->m, op->theta, xc, B, &op->tapes[0], op->redp), yc, B, op->k, 1.0);
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &half_sq, 1, MPI_DOUBLE, MPI_SUM, op->pcomm));
  op->loss = half_sq / op->n_global;
  op->have_params = PETSC_TRUE;
  op->have_lmax = PETSC_FALSE;
  op->coarse_stale = PETSC_TRUE; /* linearised when a cold solve needs it */
  /* The operators changed: assembly bumps the matrix state for anything that caches on it. */
  PetscCall(MatAssemblyBegin(op->H, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(op->H, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyBegin(op->G, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(op->G, MAT_FINAL_ASSEMBLY));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_loss(HessianOperator *op, double *loss)
{
  PetscFunctionBeginUser;
  PetscCheck(op->have_params, op->comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params first");
  *loss = op->loss;
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ eigensolves */

/* start <- the sum of the coarse level's top-nev eigenvectors (its own cold solve, linearised at
 * op's theta first if needed); *ok = false if that solve found none. */
static PetscErrorCode coarse_start(HessianOperator *op, int nev, Vec start, PetscBool *ok)
{
  HessianOperator *c = op->coarse;
  double *e, *r;
  int nc = 0;

  PetscFunctionBeginUser;
  *ok = PETSC_FALSE;
  if (op->coarse_stale) {
    PetscCall(hessian_set_params(c, op->theta));
    op->coarse_stale = PETSC_FALSE;
  }
  PetscCall(hessian_reset_warm_start(c)); /* a pure function of theta: no memory of other solves */
  PetscCall(PetscMalloc2(nev, &e, nev, &r));
  PetscCall(hessian_top_eigs(c, nev, e, r, &nc));
  PetscCall(PetscFree2(e, r));
  op->coarse_matvecs += c->last_matvecs + c->coarse_matvecs;
  op->coarse_work += (c->last_matvecs + c->coarse_work) * (double)c->n_global / (double)op->n_global;
  if (nc > 0 && c->warm_top) {
    PetscCall(VecCopy(c->warm_top, start));
    *ok = PETSC_TRUE;
  }
  PetscFunctionReturn(0);
}

/* nev eigenpairs of A at the end eps is set for, NaN for what is missing, never an error from the
 * solver itself (reported through PetscInfo). scale0 seeds the convergence test's spectral scale
 * (0: the solve's own Ritz values). If warm is given it is the start vector and is replaced by
 * the sum of the accepted eigenvectors; without one, use_coarse starts from the coarse level's
 * eigenvectors. resid[i] = ||A x - lambda x|| / max(|lambda|, scale). */
static PetscErrorCode solve(HessianOperator *op, EPS eps, Mat A, PetscInt ncv_user, PetscInt mpd_user, double scale0, Vec *warm,
                            PetscBool use_coarse, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool from_coarse = PETSC_FALSE;

  PetscInt rows, nc = 0, its = 0, maxit;
  PetscReal tol;
  PetscErrorCode ierr;
  Vec xr, r, start;

  PetscFunctionBeginUser;
  PetscCall(MatGetSize(A, &rows, NULL));
  const int want = nev < rows ? nev : (int)rows;
  PetscCall(EPSSetOperators(eps, A, NULL));

  /* Start: the warm vector, the coarse level's eigenvectors, or a Philox vector indexed by global
   * row (all rank-count independent). */
  PetscCall(MatCreateVecs(A, &start, &xr));
  PetscCall(VecDuplicate(xr, &r));
  op->coarse_matvecs = 0;
  op->coarse_work = 0;
  if (warm && *warm) PetscCall(VecCopy(*warm, start));
  else if (use_coarse && op->coarse) PetscCall(coarse_start(op, want, start, &from_coarse));
  if (!(warm && *warm) && !from_coarse) {
    PetscScalar *s;
    PetscCall(VecGetArray(start, &s));
    rng_normal_fill(s, (size_t)op->pn, HESS_START_SEED, RNG_STREAM_PROBE, (uint64_t)op->plo);
    PetscCall(VecRestoreArray(start, &s));
  }
  PetscCall(EPSSetInitialSpace(eps, 1, &start));
  /* From a good start (warm, or the coarse level's) the top solve often converges in a few
   * products: a quick solve with a basis of nev + 1, which tests after every product, for at most
   * HESS_QUICK_RESTARTS restarts. If that is not enough (a tight tolerance, a poor start), the
   * solve proper follows from the same start with the chosen basis (SLEPc's default unless
   * -hess_eps_ncv): a small basis restarts too often to converge fast. */
  PetscInt ncv = ncv_user > rows ? rows : ncv_user, maxit0;
  /* A coarse level's loose tolerance is met within a few products: a basis of nev + 3 tests
   * often enough, where SLEPc's default (nev + 15) would run 16 products first. */
  if (ncv <= 0 && op->borrowed) ncv = PetscMin(want + 3, rows);
  PetscReal tol0;
  const PetscBool quick = ncv_user <= 0 && use_coarse && ((warm && *warm) || from_coarse) && want + 1 <= rows ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(EPSGetTolerances(eps, &tol0, &maxit0));
  if (quick) {
    PetscCall(EPSSetDimensions(eps, want, want + 1, PETSC_DEFAULT));
    PetscCall(EPSSetTolerances(eps, tol0, HESS_QUICK_RESTARTS));
  } else PetscCall(EPSSetDimensions(eps, want, ncv > 0 ? ncv : PETSC_DEFAULT, ncv > 0 && mpd_user > ncv ? ncv : mpd_user));

  const long m0 = op->n_mult;
  op->conv_scale = scale0;
  op->n_ritz_prev[0] = op->n_ritz_prev[1] = 0;
  PetscCall(PetscLogEventBegin(EV_EIGENSOLVE, eps, 0, 0, 0));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = EPSSolve(eps);
  if (quick && !ierr) {
    ierr = EPSGetConverged(eps, &nc);
    if (!ierr && nc < want) {
      op->n_ritz_prev[0] = op->n_ritz_prev[1] = 0;
      ierr = EPSSetDimensions(eps, want, ncv > 0 ? ncv : PETSC_DEFAULT, ncv > 0 && mpd_user > ncv ? ncv : mpd_user);
      if (!ierr) ierr = EPSSetTolerances(eps, tol0, maxit0);
      if (!ierr) ierr = EPSSetInitialSpace(eps, 1, &start);
      if (!ierr) ierr = EPSSolve(eps);
    }
  }
  PetscCall(PetscPopErrorHandler());
  if (quick) { /* the caller's iteration limit back; the tolerance as the solve resolved it */
    PetscReal tol_now;
    PetscCall(EPSGetTolerances(eps, &tol_now, NULL));
    PetscCall(EPSSetTolerances(eps, tol_now, maxit0));
  }
  PetscCall(PetscLogEventEnd(EV_EIGENSOLVE, eps, 0, 0, 0));
  if (ierr) {
    PetscCall(PetscInfo(eps, "hessian: eigensolve failed (error %d): NaN reported\n", (int)ierr));
    if (warm) PetscCall(VecDestroy(warm));
    op->last_its = -1;
  } else {
    PetscCall(EPSGetConverged(eps, &nc));
    PetscCall(EPSGetIterationNumber(eps, &its));
    PetscCall(EPSGetTolerances(eps, &tol, &maxit));
    op->last_its = (int)its;
    if (nc > want) nc = want;
    double scale = scale0;
    for (PetscInt i = 0; i < nc; i++) {
      PetscScalar kr;
      PetscCall(EPSGetEigenvalue(eps, i, &kr, NULL));
      scale = PetscMax(scale, PetscAbsScalar(kr));
    }
    /* Residual check: an explicit product per pair, independent of the solver's estimate, judged
     * by the same error measure as the solve (ritz_error with the last restart's Ritz values).
     * Coarse levels only supply a start vector and skip it; so does -hess_check_residual false,
     * which then reports the solver's own estimate. */
    const PetscBool check = op->check_resid && !op->borrowed;
    PetscInt ok = 0;
    for (PetscInt i = 0; i < nc; i++) {
      PetscScalar kr;
      PetscReal nx, nr, est;
      PetscCall(EPSGetEigenpair(eps, i, &kr, NULL, xr, NULL));
      PetscCall(VecNorm(xr, NORM_2, &nx));
      PetscCall(VecScale(xr, 1.0 / nx));
      const double sc = PetscMax(PetscAbsScalar(kr), scale);
      double rel, err;
      if (check) {
        PetscCall(MatMult(A, xr, r));
        PetscCall(VecAXPY(r, -kr, xr));
        PetscCall(VecNorm(r, NORM_2, &nr));
        rel = nr / sc;
        err = ritz_error(op, PetscRealPart(kr), nr) / sc;
      } else {
        PetscCall(EPSGetErrorEstimate(eps, i, &est));
        rel = err = est;
      }
      if (!(err <= HESS_RESID_FACTOR * tol) || !isfinite(PetscRealPart(kr))) {
        PetscCall(PetscInfo(eps, "hessian: pair %" PetscInt_FMT " (%g) fails the residual check (%g): dropped\n", i,
                            (double)PetscRealPart(kr), rel));
        break;
      }
      eig[i] = PetscRealPart(kr);
      resid[i] = rel;
      if (warm) {
        if (!*warm) PetscCall(VecDuplicate(start, warm));
        if (ok == 0) PetscCall(VecSet(*warm, 0.0));
        PetscCall(VecAXPY(*warm, 1.0, xr));
      }
      ok++;
    }
    nc = ok;
  }
  op->last_matvecs = op->n_mult - m0;
  *nconv = (int)nc;
  PetscCall(VecDestroy(&start));
  PetscCall(VecDestroy(&xr));
  PetscCall(VecDestroy(&r));
  PetscFunctionReturn(0);
}

static PetscErrorCode solve_prologue(HessianOperator *op, int nev, double *eig, double *resid, int *nconv, PetscBool *go)
{
  PetscFunctionBeginUser;
  for (int i = 0; i < nev; i++) eig[i] = resid[i] = NAN;
  *nconv = 0;
  op->last_its = 0;
  op->last_matvecs = 0;
  PetscCheck(op->have_params, op->comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params before an eigensolve");
  *go = nev > 0 && op->theta_finite ? PETSC_TRUE : PETSC_FALSE; /* NaN theta: nothing to solve */
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_top_eigs(HessianOperator *op, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool go = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(solve_prologue(op, nev, eig, resid, nconv, &go));
  if (!go) PetscFunctionReturn(0);
  PetscCall(solve(op, op->eps_top, op->H, op->ncv_top, op->mpd_top, 0.0, &op->warm_top, PETSC_TRUE, nev, eig, resid, nconv));
  if (*nconv > 0) {
    op->lmax = eig[0];
    op->have_lmax = PETSC_TRUE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_min_eig(HessianOperator *op, double *eig, double *resid, int *nconv)
{
  PetscBool go = PETSC_FALSE;
  long mv_top = 0;
  int its_top = 0;

  PetscFunctionBeginUser;
  PetscCall(solve_prologue(op, 1, eig, resid, nconv, &go));
  if (!go) PetscFunctionReturn(0);
  if (!op->have_lmax) { /* the scale of the spectrum, for the convergence test */
    double e, rs;
    int nc;
    PetscCall(hessian_top_eigs(op, 1, &e, &rs, &nc));
    mv_top = op->last_matvecs;
    its_top = op->last_its;
    if (nc < 1) PetscFunctionReturn(0); /* no scale: report NaN rather than a meaningless test */
  }
  PetscCall(solve(op, op->eps_min, op->H, op->ncv_min, op->mpd_min, fabs(op->lmax), &op->warm_min, PETSC_FALSE, 1, eig, resid, nconv));
  op->last_matvecs += mv_top;
  op->last_its += its_top;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_gn_top_eigs(HessianOperator *op, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool go = PETSC_FALSE;
  EPS eps;
  PetscInt ncv, mpd;

  PetscFunctionBeginUser;
  PetscCall(solve_prologue(op, nev, eig, resid, nconv, &go));
  if (!go) PetscFunctionReturn(0);
  PetscCall(make_eps(op, op->G, EPS_LARGEST_REAL, "hess_gn_", &eps, &ncv, &mpd));
  PetscCall(solve(op, eps, op->G, ncv, mpd, 0.0, NULL, PETSC_FALSE, nev, eig, resid, nconv));
  PetscCall(EPSDestroy(&eps));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_last_solve_stats(HessianOperator *op, int *its, long *matvecs)
{
  PetscFunctionBeginUser;
  if (its) *its = op->last_its;
  if (matvecs) *matvecs = op->last_matvecs;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_last_solve_coarse(HessianOperator *op, long *matvecs, double *work)
{
  PetscFunctionBeginUser;
  if (matvecs) *matvecs = op->coarse_matvecs;
  if (work) *work = op->coarse_work;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_reset_warm_start(HessianOperator *op)
{
  PetscFunctionBeginUser;
  PetscCall(VecDestroy(&op->warm_top));
  PetscCall(VecDestroy(&op->warm_min));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_warm_start_get(HessianOperator *op, int which, PetscInt *n, double **buf)
{
  PetscFunctionBeginUser;
  PetscCall(warm_start_gather(which ? op->warm_min : op->warm_top, n, buf));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_warm_start_set(HessianOperator *op, int which, PetscInt n, const double *buf)
{
  PetscFunctionBeginUser;
  PetscCall(warm_start_scatter(op->H, which ? &op->warm_min : &op->warm_top, n, buf));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ trace and SLQ */

PetscErrorCode hessian_trace(HessianOperator *op, int n_probe, uint64_t seed, double *trace, double *stderr_)
{
  Vec z, hz;
  double mean = 0, m2 = 0;

  PetscFunctionBeginUser;
  *trace = *stderr_ = NAN;
  PetscCheck(op->have_params, op->comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params before hessian_trace");
  if (n_probe <= 0 || !op->theta_finite) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(EV_TRACE, op->H, 0, 0, 0));
  PetscCall(MatCreateVecs(op->H, &z, &hz));
  for (int j = 0; j < n_probe; j++) {
    PetscScalar t;
    PetscCall(fill_rademacher(op, z, seed, j));
    PetscCall(MatMult(op->H, z, hz));
    PetscCall(VecDot(hz, z, &t));
    /* Welford: the mean and the sum of squared deviations without cancellation. */
    const double delta = PetscRealPart(t) - mean;
    mean += delta / (j + 1);
    m2 += delta * (PetscRealPart(t) - mean);
  }
  *trace = mean;
  *stderr_ = n_probe > 1 ? sqrt(m2 / (n_probe - 1) / n_probe) : NAN;
  PetscCall(VecDestroy(&z));
  PetscCall(VecDestroy(&hz));
  PetscCall(PetscLogEventEnd(EV_TRACE, op->H, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_slq(HessianOperator *op, int n_probe, int m, uint64_t seed, double *nodes, double *weights)
{
  Vec *V, w;
  PetscScalar *h;
  PetscReal *alpha, *beta, *e, *Z, *work;

  PetscFunctionBeginUser;
  for (size_t i = 0; i < (size_t)(n_probe > 0 ? n_probe : 0) * (size_t)(m > 0 ? m : 0); i++) nodes[i] = weights[i] = NAN;
  PetscCheck(op->have_params, op->comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params before hessian_slq");
  if (n_probe <= 0 || m <= 0 || !op->theta_finite) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(EV_SLQ, op->H, 0, 0, 0));
  PetscCall(MatCreateVecs(op->H, &w, NULL));
  PetscCall(VecDuplicateVecs(w, m, &V));
  PetscCall(PetscMalloc6(m, &h, m, &alpha, m, &beta, m, &e, (size_t)m * m, &Z, 2 * m, &work));
  const double invsqrtP = 1.0 / sqrt((double)op->m->n_params);
  for (int j = 0; j < n_probe; j++) {
    int s = 0;                  /* Lanczos steps taken (size of T) */
    double tnorm = 0;           /* largest |alpha|, beta so far: the scale for breakdown */
    PetscCall(fill_rademacher(op, V[0], seed, j));
    PetscCall(VecScale(V[0], invsqrtP)); /* ||z|| = sqrt(P) exactly */
    for (int i = 0; i < m; i++) {
      PetscCall(MatMult(op->H, V[i], w));
      /* Full reorthogonalisation against v_0..v_i: classical Gram-Schmidt twice. The coefficient on
       * v_i is alpha_i; the others are beta_{i-1} (on v_{i-1}) and rounding, dropped from T. */
      alpha[i] = 0;
      for (int pass = 0; pass < 2; pass++) {
        PetscCall(VecMDot(w, i + 1, V, h));
        for (int q = 0; q <= i; q++) h[q] = -h[q];
        PetscCall(VecMAXPY(w, i + 1, h, V));
        alpha[i] -= PetscRealPart(h[i]);
      }
      s = i + 1;
      tnorm = PetscMax(tnorm, PetscAbsReal(alpha[i]));
      if (i == m - 1) break;
      PetscReal b;
      PetscCall(VecNorm(w, NORM_2, &b));
      tnorm = PetscMax(tnorm, b);
      if (!(b > HESS_BREAKDOWN * tnorm)) break; /* invariant subspace: T is exact at size s */
      beta[i] = b;
      PetscCall(VecAXPBY(V[i + 1], 1.0 / b, 0.0, w));
    }
    /* Eigen-decomposition of T (s x s): nodes = eigenvalues, weights = squared first components. */
    PetscBLASInt n = (PetscBLASInt)s, ldz = (PetscBLASInt)s, info = 0;
    PetscCall(PetscArraycpy(nodes + (size_t)j * m, alpha, s));
    double *d = nodes + (size_t)j * m;
    if (s > 1) PetscCall(PetscArraycpy(e, beta, s - 1)); /* steqr overwrites e */
    PetscCallBLAS("LAPACKsteqr", LAPACKREALsteqr_("I", &n, d, e, Z, &ldz, work, &info));
    PetscCheck(info == 0, PETSC_COMM_SELF, PETSC_ERR_LIB, "hessian: LAPACK steqr failed (info %d)", (int)info);
    for (int i = 0; i < s; i++) weights[(size_t)j * m + i] = Z[(size_t)i * s] * Z[(size_t)i * s] / n_probe;
    for (int i = s; i < m; i++) { /* after a breakdown: zero-weight repeats of a real node */
      nodes[(size_t)j * m + i] = d[0];
      weights[(size_t)j * m + i] = 0.0;
    }
  }
  PetscCall(PetscFree6(h, alpha, beta, e, Z, work));
  PetscCall(VecDestroyVecs(m, &V));
  PetscCall(VecDestroy(&w));
  PetscCall(PetscLogEventEnd(EV_SLQ, op->H, 0, 0, 0));
  PetscFunctionReturn(0);
}

void hessian_slq_density(double *density /* n_grid */, const double *grid /* n_grid */, int n_grid,
                         const double *nodes /* n_nodes */, const double *weights /* n_nodes */,
                         int n_nodes, double sigma)
{
  const double norm = 1.0 / (sigma * sqrt(2.0 * M_PI));
  for (int g = 0; g < n_grid; g++) {
    double s = 0;
    for (int i = 0; i < n_nodes; i++) {
      const double u = (grid[g] - nodes[i]) / sigma;
      s += weights[i] * exp(-0.5 * u * u);
    }
    density[g] = s * norm;
  }
}
