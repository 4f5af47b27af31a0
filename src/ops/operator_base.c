/* The operator base of the NTK and Hessian shell operators (see operator_base.h).
 *
 * Tapes. A chunk tape holds a chunk's activations (and, for the Hessian, its first-order
 * cotangents) at theta. When the whole slice fits the budget every chunk keeps its tape from
 * set_params to the products; otherwise one tape serves all chunks and each product recomputes
 * what it needs. The per-product workspace is needed one chunk at a time, so tapes 1.. borrow
 * tape 0's: the memory is the kept part per sample plus one chunk's workspace.
 *
 * Eigensolves. A solve starts from the warm vector (the sum of the last kept eigenvectors), else
 * from the operator's cold start, else from a Philox vector indexed by global row, so a run gives
 * the same answer on any rank count. A solver failure (a diverged run) is caught and reported as
 * NaN instead of ending the run.
 */
#include "operator_base.h"

#include <math.h>
#include <stdlib.h>

#include "rng.h"

PetscErrorCode opbase_register_events(OpEvents *ev)
{
  PetscClassId id;

  PetscFunctionBeginUser;
  if (ev->registered) PetscFunctionReturn(0);
  PetscCall(PetscClassIdRegister(ev->cls, &id));
  for (int i = 0; i < ev->n; i++) PetscCall(PetscLogEventRegister(ev->names[i], id, &ev->id[i]));
  ev->registered = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_read_tape_options(MPI_Comm comm, const char *name, const char *prefix, PetscInt *chunk, PetscReal *tape_mb)
{
  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetInt(NULL, prefix, "-chunk", chunk, NULL));
  PetscCall(PetscOptionsGetReal(NULL, prefix, "-tape_mb", tape_mb, NULL));
  PetscCheck(*chunk > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "%s: -%schunk must be positive, got %" PetscInt_FMT, name, prefix, *chunk);
  PetscFunctionReturn(0);
}

/* Reducer.sum over the operator's communicator (model.h). */
static void reducer_allreduce(double *buf, int n, void *ctx)
{
  MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx);
}

PetscErrorCode opbase_create(OpBase *b, const char *name, MPI_Comm comm, const Model *m, const double *x_local, int n_local,
                             int first, int n_global)
{
  PetscFunctionBeginUser;
  PetscCheck(n_local >= 0 && first >= 0 && n_global > 0 && (int64_t)first + n_local <= n_global, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "%s: bad slice first %d n_local %d of %d samples", name, first, n_local, n_global);
  b->name = name;
  b->comm = comm;
  PetscCallMPI(MPI_Comm_dup(comm, &b->pcomm));
  PetscCallMPI(MPI_Comm_rank(comm, &b->rank));
  PetscCallMPI(MPI_Comm_size(comm, &b->size));
  b->m = m;
  b->n_local = n_local;
  b->first = first;
  b->n_global = n_global;
  b->d = (int)m->buf_size[0];

  /* The slices must tile [0, N) in rank order: the vector layouts rely on it. */
  PetscCall(PetscMalloc2(b->size, &b->nl_all, b->size, &b->first_all));
  PetscCallMPI(MPI_Allgather(&n_local, 1, MPI_INT, b->nl_all, 1, MPI_INT, b->pcomm));
  PetscCallMPI(MPI_Allgather(&first, 1, MPI_INT, b->first_all, 1, MPI_INT, b->pcomm));
  int64_t next = 0;
  PetscBool tiled = PETSC_TRUE;
  for (int r = 0; r < b->size; r++) {
    if (b->first_all[r] != next) tiled = PETSC_FALSE;
    next += b->nl_all[r];
  }
  PetscCheck(tiled && next == n_global, comm, PETSC_ERR_ARG_INCOMP,
             "%s: the ranks' slices do not tile the %d samples contiguously in rank order", name, n_global);

  PetscCall(PetscMalloc1((size_t)n_local * b->d + 1, &b->x));
  if (n_local) PetscCall(PetscArraycpy(b->x, x_local, (size_t)n_local * b->d));
  PetscCall(PetscMalloc1(m->n_params, &b->theta));
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_tapes_create(OpBase *b, PetscInt chunk, PetscReal tape_mb, PetscBool cotangents)
{
  const Model *m = b->m;
  const int n_local = b->n_local;

  PetscFunctionBeginUser;
  b->cotangents = cotangents;
  b->chunk = (int)(chunk < n_local ? chunk : (n_local > 0 ? n_local : 1));
  b->n_chunks = (n_local + b->chunk - 1) / b->chunk;
  /* Doubles kept per sample: activations, and cotangents of every buffer but the data. */
  double per_sample = 0;
  for (int i = 0; i < m->n_bufs; i++) per_sample += (cotangents ? 2.0 : 1.0) * (double)m->buf_size[i];
  if (cotangents) per_sample -= (double)m->buf_size[0];
  b->stored = (double)n_local * per_sample * sizeof(double) <= tape_mb * 1048576.0 ? PETSC_TRUE : PETSC_FALSE;
  b->red = (Reducer){reducer_allreduce, &b->pcomm};
  b->redp = NULL;
  if (model_has_batch_norm(m)) { /* one batch-norm batch: one chunk per rank, every rank calls */
    b->redp = &b->red;
    b->chunk = n_local > 0 ? n_local : 1;
    b->n_chunks = 1;
    b->stored = PETSC_TRUE; /* the one tape holds the slice either way */
  }
  b->n_tapes = b->stored ? b->n_chunks : (n_local > 0);
  PetscCall(PetscCalloc1(b->n_tapes + 1, &b->tapes));
  for (int c = 0; c < b->n_tapes; c++) {
    Tape *t = &b->tapes[c];
    PetscCheck(tape_create(t, m, b->chunk) == 0, PETSC_COMM_SELF, PETSC_ERR_MEM, "%s: cannot allocate a tape of %d samples", b->name,
               b->chunk);
    if (c == 0) continue;
    /* Borrow tape 0's workspace (equal capacities): the tangents, and the first-order cotangents
     * unless they are kept per chunk, else the R-cotangents of fan-out buffers (per product too). */
    free(t->tan);
    t->tan = b->tapes[0].tan;
    if (cotangents) {
      free(t->rgrad);
      t->rgrad = b->tapes[0].rgrad;
    } else {
      free(t->grad);
      t->grad = b->tapes[0].grad;
    }
  }
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_shell_create(OpBase *b, PetscInt nloc, PetscInt N, void *ctx, PetscErrorCode (*mult)(Mat, Vec, Vec),
                                   const char *name, Mat *A)
{
  PetscFunctionBeginUser;
  PetscCheck(b->n_mats < OP_MAX_MATS, b->comm, PETSC_ERR_PLIB, "%s: more than %d shell matrices", b->name, OP_MAX_MATS);
  PetscCall(MatCreateShell(b->comm, nloc, nloc, N, N, ctx, A));
  PetscCall(MatShellSetOperation(*A, MATOP_MULT, (void (*)(void))mult));
  PetscCall(MatSetOption(*A, MAT_SYMMETRIC, PETSC_TRUE));
  PetscCall(PetscObjectSetName((PetscObject)*A, name));
  b->mats[b->n_mats++] = *A;
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_destroy(OpBase *b)
{
  PetscFunctionBeginUser;
  for (int i = 0; i < b->n_mats; i++) PetscCall(MatDestroy(&b->mats[i]));
  b->n_mats = 0;
  for (int c = b->n_tapes - 1; c >= 0; c--) {
    Tape *t = &b->tapes[c];
    if (c > 0) { /* borrowed from tape 0 */
      t->tan = NULL;
      if (b->cotangents) t->rgrad = NULL;
      else t->grad = NULL;
    }
    tape_destroy(t);
  }
  PetscCall(PetscFree(b->tapes));
  PetscCall(PetscFree(b->theta));
  PetscCall(PetscFree(b->x));
  PetscCall(PetscFree2(b->nl_all, b->first_all));
  PetscCallMPI(MPI_Comm_free(&b->pcomm));
  PetscFunctionReturn(0);
}

int opbase_chunk_len(const OpBase *b, int c)
{
  const int lo = c * b->chunk;
  return b->n_local - lo < b->chunk ? b->n_local - lo : b->chunk;
}

const double *opbase_chunk_x(const OpBase *b, int c) { return b->x + (size_t)c * b->chunk * b->d; }

Tape *opbase_chunk_tape(OpBase *b, int c)
{
  if (b->stored) return &b->tapes[c];
  Tape *t = &b->tapes[0];
  model_forward(b->m, b->theta, opbase_chunk_x(b, c), opbase_chunk_len(b, c), t, b->redp);
  return t;
}

PetscErrorCode opbase_set_params_begin(OpBase *b, const double *theta)
{
  const size_t P = b->m->n_params;
  int finite = 1;

  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(b->theta, theta, P));
  for (size_t p = 0; p < P; p++) finite &= isfinite(theta[p]) != 0;
  /* theta is replicated, but agree anyway so every rank takes the same branch in the solvers. */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &finite, 1, MPI_INT, MPI_LAND, b->pcomm));
  b->theta_finite = finite ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_set_params_end(OpBase *b)
{
  PetscFunctionBeginUser;
  b->have_params = PETSC_TRUE;
  /* The operators changed: assembly bumps the matrix state for anything that caches on it. */
  for (int i = 0; i < b->n_mats; i++) {
    PetscCall(MatAssemblyBegin(b->mats[i], MAT_FINAL_ASSEMBLY));
    PetscCall(MatAssemblyEnd(b->mats[i], MAT_FINAL_ASSEMBLY));
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ eigensolves */

PetscErrorCode opbase_eps_create(MPI_Comm comm, Mat A, EPSWhich which, EPS *eps)
{
  PetscFunctionBeginUser;
  PetscCall(EPSCreate(comm, eps));
  PetscCall(EPSSetOperators(*eps, A, NULL));
  PetscCall(EPSSetProblemType(*eps, EPS_HEP));
  PetscCall(EPSSetType(*eps, EPSKRYLOVSCHUR));
  PetscCall(EPSSetWhichEigenpairs(*eps, which));
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_eps_from_options(EPS eps, const char *prefix, PetscInt *ncv, PetscInt *mpd)
{
  PetscInt nev0;

  PetscFunctionBeginUser;
  PetscCall(EPSSetOptionsPrefix(eps, prefix));
  PetscCall(EPSSetFromOptions(eps));
  PetscCall(EPSGetDimensions(eps, &nev0, ncv, mpd));
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_eps_solve(EPS eps, PetscErrorCode *ierr)
{
  PetscFunctionBeginUser;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  *ierr = EPSSolve(eps);
  PetscCall(PetscPopErrorHandler());
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_solve_reset(OpBase *b, int nev, double *eig, double *resid, int *nconv)
{
  PetscFunctionBeginUser;
  for (int i = 0; i < nev; i++) eig[i] = resid[i] = NAN;
  *nconv = 0;
  b->last_its = 0;
  b->last_matvecs = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_solve_prologue(OpBase *b, int nev, double *eig, double *resid, int *nconv, PetscBool *go)
{
  PetscFunctionBeginUser;
  PetscCall(opbase_solve_reset(b, nev, eig, resid, nconv));
  PetscCheck(b->have_params, b->comm, PETSC_ERR_ORDER, "%s: call %s_set_params before an eigensolve", b->name, b->name);
  *go = nev > 0 && b->theta_finite ? PETSC_TRUE : PETSC_FALSE; /* NaN theta: nothing to solve */
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_solve(OpBase *b, const OpSolve *s, int nev, double *eig, double *resid, int *nconv)
{
  EPS eps = s->eps;
  PetscInt rows, nc = 0, its = 0;
  PetscErrorCode ierr = 0;
  PetscBool good_start = PETSC_FALSE;
  Vec xr, start;

  PetscFunctionBeginUser;
  PetscCall(MatGetSize(s->A, &rows, NULL));
  const int want = nev < rows ? nev : (int)rows;
  PetscCall(EPSSetOperators(eps, s->A, NULL));

  PetscCall(MatCreateVecs(s->A, &start, &xr));
  if (s->warm && *s->warm) {
    PetscCall(VecCopy(*s->warm, start));
    good_start = PETSC_TRUE;
  } else if (s->cold_start) PetscCall(s->cold_start(s->ctx, want, start, &good_start));
  if (!good_start) {
    PetscInt lo, hi;
    PetscScalar *a;
    PetscCall(VecGetOwnershipRange(start, &lo, &hi));
    PetscCall(VecGetArray(start, &a));
    rng_normal_fill(a, (size_t)(hi - lo), s->seed, RNG_STREAM_PROBE, (uint64_t)lo);
    PetscCall(VecRestoreArray(start, &a));
  }
  PetscCall(EPSSetInitialSpace(eps, 1, &start));

  const long m0 = b->n_mult;
  PetscCall(PetscLogEventBegin(s->event, eps, 0, 0, 0));
  if (s->run) PetscCall(s->run(s->ctx, eps, start, want, rows, good_start, &ierr));
  else {
    PetscCall(EPSSetDimensions(eps, want, s->ncv > 0 && s->ncv > rows ? rows : s->ncv, s->mpd));
    PetscCall(opbase_eps_solve(eps, &ierr));
  }
  PetscCall(PetscLogEventEnd(s->event, eps, 0, 0, 0));
  b->last_matvecs = b->n_mult - m0;
  if (ierr) {
    PetscCall(PetscInfo(eps, "%s: eigensolve failed (error %d): NaN reported\n", b->name, (int)ierr));
    if (s->warm) PetscCall(VecDestroy(s->warm));
    b->last_its = -1;
  } else {
    PetscCall(EPSGetConverged(eps, &nc));
    PetscCall(EPSGetIterationNumber(eps, &its));
    b->last_its = (int)its;
    if (nc > want) nc = want;
    PetscInt kept = 0;
    for (PetscInt i = 0; i < nc; i++) {
      PetscScalar kr;
      PetscReal rel;
      PetscBool keep = PETSC_TRUE;
      PetscCall(EPSGetEigenpair(eps, i, &kr, NULL, xr, NULL));
      if (s->check) PetscCall(s->check(s->ctx, eps, i, kr, xr, &rel, &keep));
      else PetscCall(EPSComputeError(eps, i, EPS_ERROR_RELATIVE, &rel));
      if (!keep) break;
      eig[i] = PetscRealPart(kr);
      resid[i] = rel;
      if (s->warm) {
        if (!*s->warm) PetscCall(VecDuplicate(start, s->warm));
        if (kept == 0) PetscCall(VecSet(*s->warm, 0.0));
        PetscCall(VecAXPY(*s->warm, 1.0, xr));
      }
      kept++;
    }
    nc = kept;
  }
  if (s->count_checks) b->last_matvecs = b->n_mult - m0;
  *nconv = (int)nc;
  PetscCall(VecDestroy(&start));
  PetscCall(VecDestroy(&xr));
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_last_solve_stats(const OpBase *b, int *its, long *matvecs)
{
  PetscFunctionBeginUser;
  if (its) *its = b->last_its;
  if (matvecs) *matvecs = b->last_matvecs;
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ the shared solve */

/* The extrapolated error of opbase_ritz_error, times this: rho from two steps is a rough estimate. */
#define OP_STEP_SAFETY 2.0

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
 * holds. With c->value, the eigenvalue error is estimated as max(extrapolated step, res^2/gap):
 * a Ritz value converges with the square of its residual, res^2/gap (Parlett, The Symmetric
 * Eigenvalue Problem, 11.7), gap being the distance to the other Ritz values of the last restart;
 * and since those can still be far below their eigenvalues (the gap then overestimated), the
 * error is also taken at least as large as what the last two steps of theta extrapolate to
 * (Aitken: d_j rho / (1 - rho), rho = d_j / d_{j-1}; doubled), which is infinite -- the residual
 * bound rules -- until two restarts have passed or while theta is not converging geometrically. */
double opbase_ritz_error(const OpConv *c, double theta, double res)
{
  if (!c->value || c->n_ritz_prev[1] < 1 || c->n_ritz_prev[0] < 2) return res;
  double gap;
  const double p1 = nearest(c->ritz_prev[0], c->n_ritz_prev[0], theta, &gap);
  const double p2 = nearest(c->ritz_prev[1], c->n_ritz_prev[1], p1, NULL);
  const double d1 = fabs(theta - p1), d0 = fabs(p1 - p2);
  double step = INFINITY;
  if (d1 == 0) step = 0;
  else if (d0 > d1) step = OP_STEP_SAFETY * d1 * (d1 / d0) / (1.0 - d1 / d0);
  if (!(gap > 0) || !isfinite(gap) || !(step < INFINITY)) return res;
  return PetscMin(res, PetscMax(step, res * res / gap));
}

/* Krylov-Schur convergence test: opbase_ritz_error relative to max(|lambda|, the largest |Ritz
 * value| seen in this solve, the scale at its start). */
static PetscErrorCode ConvergedScaled(EPS eps, PetscScalar eigr, PetscScalar eigi, PetscReal res, PetscReal *errest, void *ctx)
{
  OpConv *c = (OpConv *)ctx;

  PetscFunctionBeginUser;
  const double a = PetscAbsScalar(eigr);
  if (a > c->scale) c->scale = a;
  const double err = opbase_ritz_error(c, PetscRealPart(eigr), res);
  *errest = c->scale > 0 ? err / c->scale : err;
  PetscFunctionReturn(0);
}

/* Monitor: keeps the Ritz values of each restart for the next convergence test. */
static PetscErrorCode RitzRecord(EPS eps, PetscInt its, PetscInt nconv, PetscScalar *eigr, PetscScalar *eigi, PetscReal *errest,
                                 PetscInt nest, void *ctx)
{
  OpConv *c = (OpConv *)ctx;

  PetscFunctionBeginUser;
  c->n_ritz_prev[1] = c->n_ritz_prev[0];
  PetscCall(PetscArraycpy(c->ritz_prev[1], c->ritz_prev[0], c->n_ritz_prev[0]));
  c->n_ritz_prev[0] = (int)PetscMin(nest, (PetscInt)OP_RITZ_MAX);
  for (int j = 0; j < c->n_ritz_prev[0]; j++) c->ritz_prev[0][j] = PetscRealPart(eigr[j]);
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_conv_install(OpBase *b, EPS eps)
{
  PetscFunctionBeginUser;
  PetscCall(EPSSetConvergenceTestFunction(eps, ConvergedScaled, &b->conv, NULL));
  PetscCall(EPSMonitorSet(eps, RitzRecord, &b->conv, NULL));
  PetscFunctionReturn(0);
}

/* The solve. From a good start (warm, or the coarse level's) a top solve often converges in a
 * few products: a quick solve with a basis of nev + 1, which tests after every product, for at
 * most OP_QUICK_RESTARTS restarts. If that is not enough (a tight tolerance, a poor start), the
 * solve proper follows from the same start with the chosen basis (SLEPc's default unless given):
 * a small basis restarts too often to converge fast. Afterwards: the spectral scale of the
 * converged values and the tolerance, for the check. */
PetscErrorCode opbase_run(void *ctx, EPS eps, Vec start, int want, PetscInt rows, PetscBool good_start, PetscErrorCode *ierr)
{
  OpRun *s = (OpRun *)ctx;
  OpConv *c = &s->b->conv;
  PetscInt ncv = s->ncv_user > rows ? rows : s->ncv_user, maxit0, nc = 0;
  PetscReal tol0;

  PetscFunctionBeginUser;
  /* A coarse level's loose tolerance is met within a few products: a basis of nev + 3 tests
   * often enough, where SLEPc's default (nev + 15) would run 16 products first. */
  if (ncv <= 0 && s->coarse) ncv = PetscMin(want + 3, rows);
  const PetscInt ncv_full = ncv > 0 ? ncv : PETSC_DEFAULT, mpd_full = ncv > 0 && s->mpd_user > ncv ? ncv : s->mpd_user;
  const PetscBool quick_ok = s->from_coarse ? s->quick_coarse : s->quick;
  const PetscBool quick = s->ncv_user <= 0 && quick_ok && good_start && want + 1 <= rows ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(EPSGetTolerances(eps, &tol0, &maxit0));
  if (quick) {
    PetscCall(EPSSetDimensions(eps, want, want + 1, PETSC_DEFAULT));
    PetscCall(EPSSetTolerances(eps, tol0, OP_QUICK_RESTARTS));
  } else PetscCall(EPSSetDimensions(eps, want, ncv_full, mpd_full));

  c->scale = s->scale;
  c->n_ritz_prev[0] = c->n_ritz_prev[1] = 0;
  PetscCall(opbase_eps_solve(eps, ierr));
  if (quick) {
    if (!*ierr) PetscCall(EPSGetConverged(eps, &nc));
    if (!*ierr && nc < want) {
      c->n_ritz_prev[0] = c->n_ritz_prev[1] = 0;
      PetscCall(EPSSetDimensions(eps, want, ncv_full, mpd_full));
      PetscCall(EPSSetTolerances(eps, tol0, maxit0));
      PetscCall(EPSSetInitialSpace(eps, 1, &start));
      PetscCall(opbase_eps_solve(eps, ierr));
    }
    /* the caller's iteration limit back; the tolerance as the solve resolved it */
    PetscReal tol_now;
    PetscCall(EPSGetTolerances(eps, &tol_now, NULL));
    PetscCall(EPSSetTolerances(eps, tol_now, maxit0));
  }
  if (*ierr) PetscFunctionReturn(0);
  PetscCall(EPSGetTolerances(eps, &s->tol, NULL));
  PetscCall(EPSGetConverged(eps, &nc));
  if (nc > want) nc = want;
  for (PetscInt i = 0; i < nc; i++) {
    PetscScalar kr;
    PetscCall(EPSGetEigenvalue(eps, i, &kr, NULL));
    s->scale = PetscMax(s->scale, PetscAbsScalar(kr));
  }
  PetscFunctionReturn(0);
}

/* Residual check of pair i: an explicit product, independent of the solver's estimate, judged by
 * the same error measure as the solve (opbase_ritz_error with the last restart's Ritz values),
 * relative to |lambda| (rel_lambda) or max(|lambda|, scale). Coarse levels only supply a start
 * vector and skip it; so does check_resid false, which then reports the solver's own estimate. */
PetscErrorCode opbase_check(void *ctx, EPS eps, PetscInt i, PetscScalar kr, Vec xr, PetscReal *resid, PetscBool *keep)
{
  OpRun *s = (OpRun *)ctx;
  PetscReal nx, nr, est;
  double rel, err;

  PetscFunctionBeginUser;
  PetscCall(VecNorm(xr, NORM_2, &nx));
  PetscCall(VecScale(xr, 1.0 / nx));
  const double sc = s->rel_lambda ? PetscAbsScalar(kr) : PetscMax(PetscAbsScalar(kr), s->scale);
  if (s->check_resid && !s->coarse) {
    PetscCall(MatMult(s->A, xr, s->r));
    PetscCall(VecAXPY(s->r, -kr, xr));
    PetscCall(VecNorm(s->r, NORM_2, &nr));
    rel = nr / sc;
    err = opbase_ritz_error(&s->b->conv, PetscRealPart(kr), nr) / sc;
  } else {
    PetscCall(EPSGetErrorEstimate(eps, i, &est));
    rel = err = est;
  }
  *resid = rel;
  *keep = err <= OP_RESID_FACTOR * s->tol && isfinite(PetscRealPart(kr)) ? PETSC_TRUE : PETSC_FALSE;
  if (!*keep)
    PetscCall(PetscInfo(eps, "%s: pair %" PetscInt_FMT " (%g) fails the residual check (%g): dropped\n", s->b->name, i,
                        (double)PetscRealPart(kr), rel));
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_cold_start(void *ctx, int want, Vec start, PetscBool *done)
{
  OpRun *s = (OpRun *)ctx;

  PetscFunctionBeginUser;
  *done = PETSC_FALSE;
  if (s->cold_start) PetscCall(s->cold_start(s->cold_ctx, want, start, done));
  s->from_coarse = *done;
  PetscFunctionReturn(0);
}

PetscErrorCode opbase_solve_shared(OpBase *b, OpSolve *s, OpRun *run, int nev, double *eig, double *resid, int *nconv)
{
  PetscFunctionBeginUser;
  run->b = b;
  s->ctx = run;
  s->run = opbase_run;
  s->check = opbase_check;
  s->cold_start = run->cold_start ? opbase_cold_start : NULL;
  run->from_coarse = PETSC_FALSE;
  b->coarse_matvecs = 0;
  b->coarse_work = 0;
  PetscCall(MatCreateVecs(s->A, NULL, &run->r));
  PetscCall(opbase_solve(b, s, nev, eig, resid, nconv));
  PetscCall(VecDestroy(&run->r));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ coarse levels */

PetscErrorCode opbase_read_coarse_options(MPI_Comm comm, const char *name, const char *prefix, OpCoarse *c)
{
  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetInt(NULL, prefix, "-coarse_levels", &c->levels, NULL));
  PetscCall(PetscOptionsGetInt(NULL, prefix, "-coarse_factor", &c->factor, NULL));
  PetscCall(PetscOptionsGetInt(NULL, prefix, "-coarse_min", &c->min, NULL));
  PetscCheck(c->levels >= 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "%s: -%scoarse_levels must be >= 0, got %" PetscInt_FMT, name, prefix,
             c->levels);
  PetscCheck(c->factor >= 2, comm, PETSC_ERR_ARG_OUTOFRANGE, "%s: -%scoarse_factor must be >= 2, got %" PetscInt_FMT, name, prefix,
             c->factor);
  PetscCheck(c->min >= 1, comm, PETSC_ERR_ARG_OUTOFRANGE, "%s: -%scoarse_min must be >= 1, got %" PetscInt_FMT, name, prefix, c->min);
  PetscFunctionReturn(0);
}

PetscBool opbase_coarse_slice(const OpCoarse *c, int levels, int first, int n_local, int n_global, int *cfirst, int *cn, int *n_coarse)
{
  const int f = (int)c->factor;
  *n_coarse = (n_global + f - 1) / f;
  *cfirst = (first + f - 1) / f;
  *cn = (first + n_local + f - 1) / f - *cfirst;
  return levels > 0 && *n_coarse >= c->min && *n_coarse < n_global ? PETSC_TRUE : PETSC_FALSE;
}

void opbase_coarse_account(OpBase *b, const OpBase *c)
{
  b->coarse_matvecs += c->last_matvecs + c->coarse_matvecs;
  b->coarse_work += (c->last_matvecs + c->coarse_work) * (double)c->n_global / (double)b->n_global;
}
