/* The loss Hessian as a shell matrix over the parameters, and its spectrum (see hessian.h and
 * docs/conventions.md "Hessian").
 *
 * Tapes. hessian_set_params runs, chunk by chunk (-hess_chunk samples), the forward pass and the
 * first-order cotangents of the local samples (model_hvp_prepare) and keeps both when they fit
 * -hess_tape_mb: a product is then one JVP and one R-backward sweep per chunk (6F - 4F1 flops per
 * sample), the minimum for an exact H v. The tangent/R-cotangent workspace is shared by all chunk
 * tapes (needed one chunk at a time). Otherwise one tape is used and every product recomputes the
 * forward pass and cotangents first (8F - 5F1). The slice, the tapes, setting the parameters and
 * the warm-started solve are the operator base's (operator_base.h); this file keeps the products,
 * the convergence test, the coarse levels, the trace and SLQ.
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
#include "operator_base.h"
#include "warm_start.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <slepceps.h>
#include <petscblaslapack.h> /* after slepceps.h: it needs petscsys.h */

#include "rng.h"

/* Seed of the deterministic, rank-count independent Krylov start vector (stream RNG_STREAM_PROBE). */
#define HESS_START_SEED 0x48455353ULL
/* Lanczos breakdown: beta below this fraction of the largest |alpha|, beta seen. */
#define HESS_BREAKDOWN 1e-10
/* EV_COARSE: the coarse levels' solves of a cold start, not inside EV_EIGENSOLVE. */
enum { EV_MATMULT, EV_EIGENSOLVE, EV_TRACE, EV_SLQ, EV_ALIGN, EV_COARSE };
static OpEvents events = {.cls = "Hessian",
                          .n = 6,
                          .names = {"HessMatMult", "HessEigensolve", "HessTrace", "HessSLQ", "HessAlignment", "HessCoarseSolve"}};

PetscErrorCode hessian_register_events(void)
{
  PetscFunctionBeginUser;
  PetscCall(opbase_register_events(&events));
  PetscFunctionReturn(0);
}

/* The context of the MATSHELLs H and G. */
struct HessianOperator {
  OpBase b;                 /* slice, tapes, theta, solve statistics (operator_base.h) */
  int k;
  double *y;                /* n_local x k */
  double *vfull, *hfull;    /* P: gathered direction, local samples' product */
  double *sqrtd;            /* P: D^1/2 of the lr-weighted D^1/2 H D^1/2 (NULL when D = I); the
                               finer level's for a coarse level */
  PetscMPIInt *counts, *displs; /* [size] every rank's rows of P */
  PetscInt plo, pn;         /* this rank's rows */
  double loss;
  Mat H, G;                 /* the MATSHELLs (owned by b) */
  EPS eps_top, eps_min;     /* prefixes hess_ and hess_min_ */
  PetscInt ncv_top, mpd_top, ncv_min, mpd_min;
  Vec warm_top, warm_min;   /* sums of the last eigenvectors; NULL = none */
  PetscBool have_lmax;      /* lmax is lambda_max at the current theta */
  double lmax;
  /* Cold starts (no warm vector) of the top-eigenvalue solve begin from the top eigenvectors of
   * the Hessian of a strided subsample, itself solved the same way: see hessian.h. */
  HessianOperator *coarse;  /* every coarse_factor-th sample of this batch, or NULL */
  PetscBool coarse_stale;   /* coarse not yet linearised at theta */
  PetscBool borrowed;       /* vfull, hfull belong to the finer level */
  PetscBool check_resid;    /* -hess_check_residual */
};

/* Settings read once by hessian_operator_create and handed to every level. */
typedef struct {
  PetscInt chunk;
  PetscReal tape_mb;
  OpCoarse coarse;
  PetscBool conv_value, check_resid;
} HessSettings;

/* ------------------------------------------------------------------ helpers */

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
  return (double)n_global * product_flops(m, PETSC_FALSE, PETSC_TRUE) + OP_FLOPS_PER_WORD * 2.0 * (double)m->n_params;
}

/* The tape holding chunk c at theta: stored, or recomputed now (with cotangents for H). */
static Tape *chunk_tape(HessianOperator *op, int c, PetscBool gn)
{
  OpBase *b = &op->b;
  if (b->stored || gn) return opbase_chunk_tape(b, c);
  Tape *t = &b->tapes[0];
  const double *yc = op->y + (size_t)c * b->chunk * op->k;
  model_hvp_prepare(b->m, b->theta, opbase_chunk_x(b, c), yc, opbase_chunk_len(b, c), (double)b->n_global, t, b->redp);
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
  OpBase *b = &op->b;
  PetscCheck(b->have_params, b->comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params before a product");
  PetscCall(PetscLogEventBegin(events.id[EV_MATMULT], A, x, y, 0));
  PetscCall(VecGetArrayRead(x, &xv));
  PetscCallMPI(MPI_Allgatherv(xv, op->counts[b->rank], MPI_DOUBLE, op->vfull, op->counts, op->displs, MPI_DOUBLE, b->pcomm));
  PetscCall(VecRestoreArrayRead(x, &xv));
  if (op->sqrtd)
    for (size_t p = 0; p < b->m->n_params; p++) op->vfull[p] *= op->sqrtd[p];
  PetscCall(PetscArrayzero(op->hfull, b->m->n_params)); /* the products accumulate */
  for (int c = 0; c < b->n_chunks; c++) {
    Tape *t = chunk_tape(op, c, gn);
    const int B = opbase_chunk_len(b, c);
    if (gn) model_gnvp_apply(b->m, b->theta, op->vfull, B, (double)b->n_global, t, op->hfull, b->redp);
    else model_hvp_apply(b->m, b->theta, op->vfull, B, (double)b->n_global, t, op->hfull, b->redp);
  }
  PetscCall(VecGetArray(y, &yv));
  PetscCallMPI(MPI_Reduce_scatter(op->hfull, yv, op->counts, MPI_DOUBLE, MPI_SUM, b->pcomm));
  if (op->sqrtd)
    for (PetscInt i = 0; i < op->pn; i++) yv[i] *= op->sqrtd[op->plo + i];
  PetscCall(VecRestoreArray(y, &yv));
  b->n_mult++;
  PetscCall(PetscLogFlops((double)b->n_local * product_flops(b->m, gn, b->stored)));
  PetscCall(PetscLogEventEnd(events.id[EV_MATMULT], A, x, y, 0));
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


/* Krylov-Schur for eigenvalues of A at one end, options read once, with the scaled test. */
static PetscErrorCode make_eps(HessianOperator *op, Mat A, EPSWhich which, const char *prefix, EPS *eps, PetscInt *ncv,
                               PetscInt *mpd)
{
  PetscFunctionBeginUser;
  PetscCall(opbase_eps_create(op->b.comm, A, which, eps));
  PetscCall(opbase_conv_install(&op->b, *eps));
  if (op->borrowed) PetscCall(EPSSetTolerances(*eps, OP_COARSE_TOL, PETSC_DEFAULT)); /* a start vector only */
  PetscCall(opbase_eps_from_options(*eps, prefix, ncv, mpd));
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

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCheck(m->n_params > 0 && m->n_params <= (size_t)INT_MAX, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "hessian: %zu parameters exceed an MPI count", m->n_params);
  PetscCall(PetscNew(&op));
  PetscCall(opbase_create(&op->b, "hessian", comm, m, x_local, n_local, first, n_global));
  op->k = (int)m->buf_size[m->out_buf];
  op->lmax = NAN;

  /* Rows of P: PETSc's default split, and every rank's share for the collectives. */
  const int size = op->b.size;
  PetscInt P = (PetscInt)m->n_params;
  op->pn = PETSC_DECIDE;
  PetscCall(PetscSplitOwnership(comm, &op->pn, &P));
  PetscCall(PetscMalloc2(size, &op->counts, size, &op->displs));
  PetscMPIInt pn = (PetscMPIInt)op->pn;
  PetscCallMPI(MPI_Allgather(&pn, 1, MPI_INT, op->counts, 1, MPI_INT, op->b.pcomm));
  op->displs[0] = 0;
  for (int r = 1; r < size; r++) op->displs[r] = op->displs[r - 1] + op->counts[r - 1];
  op->plo = op->displs[op->b.rank];

  PetscCall(PetscMalloc1((size_t)n_local * op->k + 1, &op->y));
  if (n_local) PetscCall(PetscArraycpy(op->y, y_local, (size_t)n_local * op->k));
  op->b.conv.value = set->conv_value;
  op->check_resid = set->check_resid;
  op->borrowed = parent ? PETSC_TRUE : PETSC_FALSE;
  if (parent) { /* levels are used one at a time: the finer level's product buffers serve */
    op->vfull = parent->vfull;
    op->hfull = parent->hfull;
    op->sqrtd = parent->sqrtd;
  } else {
    PetscCall(PetscMalloc2(m->n_params, &op->vfull, m->n_params, &op->hfull));
    if (model_lr_weighted(m)) { /* D = I (ntk, sp): no scaling, the products as they were */
      PetscCall(PetscMalloc1(m->n_params, &op->sqrtd));
      model_lr_scales(m, op->sqrtd);
      for (size_t p = 0; p < m->n_params; p++) op->sqrtd[p] = sqrt(op->sqrtd[p]);
    }
  }
  /* Products reuse the first-order cotangents: keep them with the activations if they fit. */
  PetscCall(opbase_tapes_create(&op->b, set->chunk, set->tape_mb, PETSC_TRUE));

  PetscCall(opbase_shell_create(&op->b, op->pn, P, op, HessMult, "Hessian", &op->H));
  PetscCall(opbase_shell_create(&op->b, op->pn, P, op, GaussNewtonMult, "GaussNewton", &op->G));
  PetscCall(MatSetOption(op->G, MAT_SPD, PETSC_TRUE));

  PetscCall(make_eps(op, op->H, EPS_LARGEST_REAL, parent ? "hess_coarse_" : "hess_", &op->eps_top, &op->ncv_top, &op->mpd_top));
  if (!parent) PetscCall(make_eps(op, op->H, EPS_SMALLEST_REAL, "hess_min_", &op->eps_min, &op->ncv_min, &op->mpd_min));

  /* The coarse level: samples whose global index is a multiple of the factor (the same set for
   * any rank count; each rank keeps its own, so the level stays balanced). */
  const int f = (int)set->coarse.factor, d = op->b.d, k = op->k;
  int cfirst, cn, n_coarse;
  if (opbase_coarse_slice(&set->coarse, levels, first, n_local, n_global, &cfirst, &cn, &n_coarse)) {
    double *xc, *yc;
    PetscCall(PetscMalloc2((size_t)cn * d + 1, &xc, (size_t)cn * k + 1, &yc));
    for (int j = 0; j < cn; j++) {
      const size_t a = (size_t)(cfirst + j) * f - (size_t)first; /* local row of coarse sample j */
      PetscCall(PetscArraycpy(xc + (size_t)j * d, x_local + a * d, d));
      PetscCall(PetscArraycpy(yc + (size_t)j * k, y_local + a * k, k));
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
  HessSettings set = {HESS_DEFAULT_CHUNK,
                      HESS_DEFAULT_TAPE_MB,
                      {HESS_DEFAULT_COARSE_LEVELS, HESS_DEFAULT_COARSE_FACTOR, HESS_DEFAULT_COARSE_MIN},
                      PETSC_TRUE,
                      strcmp(HESS_DEFAULT_CHECK_RESIDUAL, "true") == 0 ? PETSC_TRUE : PETSC_FALSE};
  char conv[16] = HESS_DEFAULT_CONV;
  PetscBool has;

  PetscFunctionBeginUser;
  *out = NULL;
  PetscCall(hessian_register_events());
  PetscCall(opbase_read_tape_options(comm, "hessian", "hess_", &set.chunk, &set.tape_mb));
  PetscCall(opbase_read_coarse_options(comm, "hessian", "hess_", &set.coarse));
  PetscCall(PetscOptionsGetString(NULL, "hess_", "-conv", conv, sizeof conv, &has));
  PetscCall(PetscOptionsGetBool(NULL, "hess_", "-check_residual", &set.check_resid, NULL));
  PetscCheck(!strcmp(conv, "value") || !strcmp(conv, "residual"), comm, PETSC_ERR_ARG_WRONG,
             "hessian: -hess_conv must be value or residual, got %s", conv);
  set.conv_value = strcmp(conv, "value") == 0 ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(operator_create(&op, comm, m, x_local, y_local, n_local, first, n_global, &set, (int)set.coarse.levels, NULL));
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
  PetscCall(VecDestroy(&op->warm_top));
  PetscCall(VecDestroy(&op->warm_min));
  if (!op->borrowed) {
    PetscCall(PetscFree2(op->vfull, op->hfull));
    PetscCall(PetscFree(op->sqrtd));
  }
  PetscCall(PetscFree(op->y));
  PetscCall(PetscFree2(op->counts, op->displs));
  PetscCall(opbase_destroy(&op->b));
  PetscCall(PetscFree(*pop)); /* and *pop = NULL */
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_set_params(HessianOperator *op, const double *theta)
{
  OpBase *b = &op->b;
  double half_sq = 0;

  PetscFunctionBeginUser;
  PetscCall(opbase_set_params_begin(b, theta));
  /* Forward pass and cotangents kept on the tapes (else the forward pass alone, for the loss). */
  for (int c = 0; c < b->n_chunks; c++) {
    const int B = opbase_chunk_len(b, c);
    const double *xc = opbase_chunk_x(b, c), *yc = op->y + (size_t)c * b->chunk * op->k;
    if (b->stored) half_sq += model_hvp_prepare(b->m, b->theta, xc, yc, B, (double)b->n_global, &b->tapes[c], b->redp);
    else half_sq += model_loss(b->m, NULL, model_forward(b->m, b->theta, xc, B, &b->tapes[0], b->redp), yc, B, 1.0);
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &half_sq, 1, MPI_DOUBLE, MPI_SUM, b->pcomm));
  op->loss = half_sq / b->n_global;
  op->have_lmax = PETSC_FALSE;
  op->coarse_stale = PETSC_TRUE; /* linearised when a cold solve needs it */
  PetscCall(opbase_set_params_end(b));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_loss(HessianOperator *op, double *loss)
{
  PetscFunctionBeginUser;
  PetscCheck(op->b.have_params, op->b.comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params first");
  *loss = op->loss;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_alignment(HessianOperator *op, double *align, double *gnorm)
{
  OpBase *b = &op->b;
  const size_t P = b->m->n_params;
  Vec g, hg;
  PetscScalar *gv;
  double *gfull;

  PetscFunctionBeginUser;
  PetscCheck(b->have_params, b->comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params first");
  PetscCall(PetscLogEventBegin(events.id[EV_ALIGN], op->H, 0, 0, 0));
  PetscCall(PetscCalloc1(P, &gfull));
  /* grad L on the local samples: the tapes hold the forward pass and dL/df (model_hvp_prepare) in the
   * output buffer's cotangent slot; the VJP recomputes the same cotangents and adds the parameters'. */
  for (int c = 0; c < b->n_chunks; c++) {
    Tape *t = chunk_tape(op, c, PETSC_FALSE);
    model_vjp(b->m, b->theta, t->grad[b->m->out_buf], opbase_chunk_len(b, c), t, gfull, b->redp);
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, gfull, (int)P, MPI_DOUBLE, MPI_SUM, b->pcomm));
  PetscCall(MatCreateVecs(op->H, &g, &hg));
  PetscCall(VecGetArray(g, &gv));
  for (PetscInt i = 0; i < op->pn; i++) gv[i] = gfull[op->plo + i] * (op->sqrtd ? op->sqrtd[op->plo + i] : 1.0); /* g = D^1/2 grad L */
  PetscCall(VecRestoreArray(g, &gv));
  PetscCall(PetscFree(gfull));
  PetscCall(MatMult(op->H, g, hg)); /* D^1/2 H D^1/2 g */
  PetscScalar ghg, gg;
  PetscCall(VecDot(g, hg, &ghg));
  PetscCall(VecDot(g, g, &gg));
  *align = gg > 0 ? PetscRealPart(ghg) / PetscRealPart(gg) : NAN;
  *gnorm = sqrt(PetscRealPart(gg));
  PetscCall(VecDestroy(&g));
  PetscCall(VecDestroy(&hg));
  PetscCall(PetscLogEventEnd(events.id[EV_ALIGN], op->H, 0, 0, 0));
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

/* ------------------------------------------------------------------ eigensolves */

/* start <- the sum of the coarse level's top-want eigenvectors (its own cold solve, linearised at
 * op's theta first if needed); *ok = false if that solve found none. The coarse level's vectors
 * live in the same parameter space: no prolongation. */
static PetscErrorCode coarse_start(void *ctx, int want, Vec start, PetscBool *ok)
{
  HessianOperator *op = (HessianOperator *)ctx, *c = op->coarse;
  double *e, *r;
  int nc = 0;

  PetscFunctionBeginUser;
  *ok = PETSC_FALSE;
  if (op->coarse_stale) {
    PetscCall(hessian_set_params(c, op->b.theta));
    op->coarse_stale = PETSC_FALSE;
  }
  PetscCall(hessian_reset_warm_start(c)); /* a pure function of theta: no memory of other solves */
  PetscCall(PetscMalloc2(want, &e, want, &r));
  PetscCall(hessian_top_eigs(c, want, e, r, &nc));
  PetscCall(PetscFree2(e, r));
  opbase_coarse_account(&op->b, &c->b);
  if (nc > 0 && c->warm_top) {
    PetscCall(VecCopy(c->warm_top, start));
    *ok = PETSC_TRUE;
  }
  PetscFunctionReturn(0);
}

/* nev eigenpairs of A at the end eps is set for (the shared solve of operator_base.h). scale0
 * seeds the convergence test's spectral scale (0: the solve's own Ritz values). If warm is given
 * it is the start vector and is replaced by the sum of the accepted eigenvectors; without one,
 * use_coarse starts from the coarse level's eigenvectors. resid[i] = ||A x - lambda x|| /
 * max(|lambda|, scale); the products of the check count. */
static PetscErrorCode solve(HessianOperator *op, EPS eps, Mat A, PetscInt ncv_user, PetscInt mpd_user, double scale0, Vec *warm,
                            PetscBool use_coarse, int nev, double *eig, double *resid, int *nconv)
{
  OpRun run = {.A = A, .ncv_user = ncv_user, .mpd_user = mpd_user, .coarse = op->borrowed, .quick = use_coarse, .quick_coarse = use_coarse,
               .check_resid = op->check_resid, .scale = scale0, .cold_start = use_coarse && op->coarse ? coarse_start : NULL,
               .cold_ctx = op};
  OpSolve s = {.eps = eps, .A = A, .warm = warm, .seed = HESS_START_SEED, .event = events.id[op->borrowed ? EV_COARSE : EV_EIGENSOLVE],
               .count_checks = PETSC_TRUE};

  PetscFunctionBeginUser;
  PetscCall(opbase_solve_shared(&op->b, &s, &run, nev, eig, resid, nconv));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_top_eigs(HessianOperator *op, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool go = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(opbase_solve_prologue(&op->b, nev, eig, resid, nconv, &go));
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
  PetscCall(opbase_solve_prologue(&op->b, 1, eig, resid, nconv, &go));
  if (!go) PetscFunctionReturn(0);
  if (!op->have_lmax) { /* the scale of the spectrum, for the convergence test */
    double e, rs;
    int nc;
    PetscCall(hessian_top_eigs(op, 1, &e, &rs, &nc));
    mv_top = op->b.last_matvecs;
    its_top = op->b.last_its;
    if (nc < 1) PetscFunctionReturn(0); /* no scale: report NaN rather than a meaningless test */
  }
  PetscCall(solve(op, op->eps_min, op->H, op->ncv_min, op->mpd_min, fabs(op->lmax), &op->warm_min, PETSC_FALSE, 1, eig, resid, nconv));
  op->b.last_matvecs += mv_top;
  op->b.last_its += its_top;
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_gn_top_eigs(HessianOperator *op, int nev, double *eig, double *resid, int *nconv)
{
  PetscBool go = PETSC_FALSE;
  EPS eps;
  PetscInt ncv, mpd;

  PetscFunctionBeginUser;
  PetscCall(opbase_solve_prologue(&op->b, nev, eig, resid, nconv, &go));
  if (!go) PetscFunctionReturn(0);
  PetscCall(make_eps(op, op->G, EPS_LARGEST_REAL, "hess_gn_", &eps, &ncv, &mpd));
  PetscCall(solve(op, eps, op->G, ncv, mpd, 0.0, NULL, PETSC_FALSE, nev, eig, resid, nconv));
  PetscCall(EPSDestroy(&eps));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_last_solve_stats(HessianOperator *op, int *its, long *matvecs)
{
  PetscFunctionBeginUser;
  PetscCall(opbase_last_solve_stats(&op->b, its, matvecs));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_last_solve_coarse(HessianOperator *op, long *matvecs, double *work)
{
  PetscFunctionBeginUser;
  if (matvecs) *matvecs = op->b.coarse_matvecs;
  if (work) *work = op->b.coarse_work;
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
  PetscCheck(op->b.have_params, op->b.comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params before hessian_trace");
  if (n_probe <= 0 || !op->b.theta_finite) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(events.id[EV_TRACE], op->H, 0, 0, 0));
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
  PetscCall(PetscLogEventEnd(events.id[EV_TRACE], op->H, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode hessian_slq(HessianOperator *op, int n_probe, int m, uint64_t seed, double *nodes, double *weights)
{
  Vec *V, w;
  PetscScalar *h;
  PetscReal *alpha, *beta, *e, *Z, *work;

  PetscFunctionBeginUser;
  for (size_t i = 0; i < (size_t)(n_probe > 0 ? n_probe : 0) * (size_t)(m > 0 ? m : 0); i++) nodes[i] = weights[i] = NAN;
  PetscCheck(op->b.have_params, op->b.comm, PETSC_ERR_ORDER, "hessian: call hessian_set_params before hessian_slq");
  if (n_probe <= 0 || m <= 0 || !op->b.theta_finite) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(events.id[EV_SLQ], op->H, 0, 0, 0));
  PetscCall(MatCreateVecs(op->H, &w, NULL));
  PetscCall(VecDuplicateVecs(w, m, &V));
  PetscCall(PetscMalloc6(m, &h, m, &alpha, m, &beta, m, &e, (size_t)m * m, &Z, 2 * m, &work));
  const double invsqrtP = 1.0 / sqrt((double)op->b.m->n_params);
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
  PetscCall(PetscLogEventEnd(events.id[EV_SLQ], op->H, 0, 0, 0));
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
