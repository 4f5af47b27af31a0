/* ntk.c against explicit matrices: the shell operator and the structured Gram matrix equal the
 * lr-weighted J D J^T / N (full and traced; D = diag(lr_scale), I for ntk and sp) for every
 * parameterization, and the plain J J^T / N when asked, with J built column by column from model_jvp
 * over all samples; the
 * Krylov-Schur top eigenvalues and the ScaLAPACK spectrum equal LAPACK dsyev of that matrix; the
 * kernel distance equals its direct value; the warm start saves products; cold solves from the
 * coarse levels (matrix-free and exact Gram) give the same eigenvalues; a NaN theta or an
 * unconverged solve gives NaN and no error; and every result equals the one of an MPI_COMM_SELF
 * operator over all samples on rank 0 (rank-count independence). Run at 1 and 4 ranks.
 *
 * Every check is collective: a condition counts as passed only if it holds on every rank, so the
 * counts are the same everywhere and rank 0's summary line is the verdict. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <slepceps.h>
#include <petscblaslapack.h> /* after slepceps.h: it needs petscsys.h */

#include "model.h"
#include "ntk.h"
#include "rng.h"
#include "testutil_mpi.h"

static MPI_Comm W;
static int rank, size;

static const char *const act_names_[] = {"identity", "relu", "tanh", "erf"};

static ModelConfig small_cfg(Activation act, Parameterization p, int bias)
{
  ModelConfig c = {0};
  c.arch = ARCH_FC;
  c.in_dim = 6;
  c.out_dim = 3;
  c.depth = 2;
  c.width = 9;
  c.act = act;
  c.bias = bias;
  c.sigma_w = 1.4;
  c.sigma_b = 0.6;
  c.param = p;
  c.base_width = 4; /* r = 9/4 for mup, abc, mf */
  /* abc: fractional exponents of every kind, so that r^e goes through pow() */
  const double abc[ABC_KINDS][3] = {{0.5, -0.25, -1.5}, {0.25, 0.25, -0.5}, {1, 0.5, 0.75}, {0.5, 0.5, -1}};
  memcpy(c.abc, abc, sizeof abc);
  return c;
}

/* |a - b| <= tol * scale, both finite. */
static int close_to(double a, double b, double tol, double scale)
{
  return isfinite(a) && isfinite(b) && fabs(a - b) <= tol * scale;
}

/* Theta = J D J^T / N (full, R = Nk) or its logit trace (R = N), J from model_jvp with unit
 * tangents over all N samples, D the tensors' lr_scale (w = NTK_WEIGHT_LR) or I (plain):
 * independent of ntk.c. T is R x R row-major. */
static void explicit_theta(const Model *m, const double *theta, const double *x, int N, NtkVariant v, NtkWeighting w, double *T)
{
  const size_t P = m->n_params;
  double *D = malloc(P * sizeof *D);
  for (int ti = 0; ti < m->n_tensors; ti++)
    for (size_t i = 0; i < m->tensors[ti].size; i++) D[m->tensors[ti].offset + i] = w == NTK_WEIGHT_LR ? m->tensors[ti].lr_scale : 1.0;
  const int k = m->cfg.out_dim, Nk = N * k;
  Tape t;
  tape_create(&t, m, N);
  model_forward(m, theta, x, N, &t, NULL);
  double *J = malloc((size_t)Nk * P * sizeof *J), *e = calloc(P, sizeof *e), *col = malloc((size_t)Nk * sizeof *col);
  for (size_t mu = 0; mu < P; mu++) {
    e[mu] = 1.0;
    model_jvp(m, theta, e, N, &t, col, NULL);
    e[mu] = 0.0;
    for (int r = 0; r < Nk; r++) J[(size_t)r * P + mu] = col[r];
  }
  if (v == NTK_FULL) {
    for (int r = 0; r < Nk; r++)
      for (int s = 0; s < Nk; s++) {
        double acc = 0;
        for (size_t mu = 0; mu < P; mu++) acc += J[(size_t)r * P + mu] * D[mu] * J[(size_t)s * P + mu];
        T[(size_t)r * Nk + s] = acc / N;
      }
  } else {
    for (int a = 0; a < N; a++)
      for (int b = 0; b < N; b++) {
        double acc = 0;
        for (int i = 0; i < k; i++)
          for (size_t mu = 0; mu < P; mu++) acc += J[(size_t)(a * k + i) * P + mu] * D[mu] * J[(size_t)(b * k + i) * P + mu];
        T[(size_t)a * N + b] = acc / ((double)N * k);
      }
  }
  free(J);
  free(D);
  free(e);
  free(col);
  tape_destroy(&t);
}

/* All eigenvalues of the symmetric R x R matrix T, descending (LAPACK dsyev). */
static void dense_eigs_desc(const double *T, int R, double *w)
{
  PetscBLASInt n = R, lwork = 8 * R + 64, info;
  double *a = malloc((size_t)R * R * sizeof *a), *work = malloc((size_t)lwork * sizeof *work), *asc = malloc((size_t)R * sizeof *asc);
  memcpy(a, T, (size_t)R * R * sizeof *a);
  LAPACKsyev_("N", "U", &n, a, &n, asc, work, &lwork, &info);
  for (int i = 0; i < R; i++) w[i] = info ? NAN : asc[R - 1 - i];
  free(a);
  free(work);
  free(asc);
}

/* The operator's matrix, column by column from unit vectors, on every rank (R x R row-major). */
static PetscErrorCode shell_full(Mat A, int R, double *T)
{
  Vec x, y, yall;
  VecScatter sc;
  const PetscScalar *ya;

  PetscFunctionBeginUser;
  PetscCall(MatCreateVecs(A, &x, &y));
  PetscCall(VecScatterCreateToAll(y, &sc, &yall));
  for (int j = 0; j < R; j++) {
    PetscCall(VecZeroEntries(x));
    PetscInt lo, hi;
    PetscCall(VecGetOwnershipRange(x, &lo, &hi));
    if (j >= lo && j < hi) PetscCall(VecSetValue(x, j, 1.0, INSERT_VALUES));
    PetscCall(VecAssemblyBegin(x));
    PetscCall(VecAssemblyEnd(x));
    PetscCall(MatMult(A, x, y));
    PetscCall(VecScatterBegin(sc, y, yall, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecScatterEnd(sc, y, yall, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecGetArrayRead(yall, &ya));
    for (int r = 0; r < R; r++) T[(size_t)r * R + j] = ya[r];
    PetscCall(VecRestoreArrayRead(yall, &ya));
  }
  PetscCall(VecScatterDestroy(&sc));
  PetscCall(VecDestroy(&yall));
  PetscCall(VecDestroy(&x));
  PetscCall(VecDestroy(&y));
  PetscFunctionReturn(0);
}

/* A dense PETSc matrix gathered to every rank of its comm (R x R row-major). */
static PetscErrorCode dense_full(Mat G, int R, double *T)
{
  const PetscScalar *a;
  PetscInt lo, hi, lda;

  PetscFunctionBeginUser;
  memset(T, 0, (size_t)R * R * sizeof *T);
  PetscCall(MatGetOwnershipRange(G, &lo, &hi));
  PetscCall(MatDenseGetLDA(G, &lda));
  PetscCall(MatDenseGetArrayRead(G, &a));
  for (PetscInt i = lo; i < hi; i++)
    for (int j = 0; j < R; j++) T[(size_t)i * R + j] = a[(i - lo) + (PetscInt)j * lda];
  PetscCall(MatDenseRestoreArrayRead(G, &a));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, T, R * R, MPI_DOUBLE, MPI_SUM, PetscObjectComm((PetscObject)G)));
  PetscFunctionReturn(0);
}

static double frob_rel(const double *a, const double *b, size_t n) { return tu_rel_err(a, b, n); }

static double frob_dist(const double *A0, const double *At, size_t n)
{
  double d = 0, z = 0;
  for (size_t i = 0; i < n; i++) {
    d += (At[i] - A0[i]) * (At[i] - A0[i]);
    z += A0[i] * A0[i];
  }
  return sqrt(d) / sqrt(z);
}

/* What one operator computes, for the comparison across communicators. */
typedef struct {
  double *theta_op, *gram, *eig, *spec, *eig_t;
  double dist;
  int nconv, nconv_t;
} Results;

static void results_alloc(Results *r, int R)
{
  r->theta_op = malloc((size_t)R * R * sizeof(double));
  r->gram = malloc((size_t)R * R * sizeof(double));
  r->spec = malloc((size_t)R * sizeof(double));
  r->eig = malloc(3 * sizeof(double));
  r->eig_t = malloc(3 * sizeof(double));
}

static void results_free(Results *r)
{
  free(r->theta_op);
  free(r->gram);
  free(r->spec);
  free(r->eig);
  free(r->eig_t);
}

/* Runs the operator on comm over this rank's slice: the matrix by unit vectors, the Gram matrix,
 * the top 3 eigenvalues and the spectrum at theta0, then the kernel distance and the top 3 at
 * theta_t (warm-started). */
static PetscErrorCode run_operator(MPI_Comm comm, const Model *m, const double *x, int N, int first, int nl, NtkVariant v,
                                   NtkWeighting w, const double *theta0, const double *theta_t, Results *res, double *resid)
{
  NtkOperator *op;
  Mat A, G0, Gt;
  const int R = v == NTK_FULL ? N * m->cfg.out_dim : N;
  const int nev = R < 3 ? R : 3;
  double resid_t[3];

  PetscFunctionBeginUser;
  PetscCall(ntk_operator_create(&op, comm, m, x + (size_t)first * m->cfg.in_dim, nl, first, N, v));
  if (w != NTK_WEIGHT_LR) PetscCall(ntk_set_weighting(op, w)); /* lr-weighted is the default */
  PetscCall(ntk_set_params(op, theta0));
  PetscCall(ntk_operator_mat(op, &A));
  PetscCall(shell_full(A, R, res->theta_op));
  PetscCall(ntk_gram_assemble(op, &G0));
  PetscCall(dense_full(G0, R, res->gram));
  PetscCall(ntk_top_eigs(op, nev, res->eig, resid, &res->nconv));
  PetscCall(ntk_gram_spectrum(op, G0, res->spec));
  PetscCall(ntk_set_params(op, theta_t));
  PetscCall(ntk_gram_assemble(op, &Gt));
  PetscCall(ntk_kernel_distance(G0, Gt, &res->dist));
  PetscCall(ntk_top_eigs(op, nev, res->eig_t, resid_t, &res->nconv_t));
  PetscCall(MatDestroy(&G0));
  PetscCall(MatDestroy(&Gt));
  PetscCall(ntk_operator_destroy(&op));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ the configuration sweep */

static PetscErrorCode test_config(int idx, Activation act, Parameterization p, int bias)
{
  Model m;
  char err[256], name[96];
  ModelConfig c = small_cfg(act, p, bias);
  if (p == PARAM_MF) c.depth = 1; /* mean field has one hidden layer */

  PetscFunctionBeginUser;
  if (model_build(&m, &c, err, sizeof err)) {
    MCHECK(0, "build: %s", err);
    PetscFunctionReturn(0);
  }
  snprintf(name, sizeof name, "%s/%s/bias%d", act_names_[act], param_name(p), bias);
  const int N = 8 + idx % 5, k = c.out_dim, skew = idx % 2;
  const size_t P = m.n_params;
  double *x = malloc((size_t)N * c.in_dim * sizeof *x), *theta0 = malloc(P * sizeof *theta0), *theta_t = malloc(P * sizeof *theta_t);
  rng_normal_fill(x, (size_t)N * c.in_dim, 7 + idx, RNG_STREAM_TEACHER_X, 0);
  model_init(&m, theta0, 100 + idx);
  rng_normal_fill(theta_t, P, 900 + idx, RNG_STREAM_PROBE, 0);
  for (size_t i = 0; i < P; i++) theta_t[i] = theta0[i] + 0.05 * theta_t[i];
  int first, nl;
  tu_slice_of(N, rank, size, skew, &first, &nl);

  /* Tape layouts: several chunks per rank, and recomputation instead of stored activations. */
  if (idx % 3 == 0) PetscCall(PetscOptionsSetValue(NULL, "-ntk_chunk", "2"));
  if (idx % 3 != 2) PetscCall(PetscOptionsSetValue(NULL, "-ntk_gram_block", idx % 3 ? "1" : "2"));
  if (idx % 4 == 1) PetscCall(PetscOptionsSetValue(NULL, "-ntk_tape_mb", "0"));

  /* D = I for ntk and sp: their one kernel; the others also plain. */
  const int n_cases = model_lr_weighted(&m) ? 4 : 2;
  MCHECK(model_lr_weighted(&m) == (p != PARAM_NTK && p != PARAM_SP), "%s: lr-weighted %d", name, (int)model_lr_weighted(&m));
  for (int vi = 0; vi < n_cases; vi++) {
    const NtkVariant v = (NtkVariant)(vi % 2);
    const NtkWeighting w = vi < 2 ? NTK_WEIGHT_LR : NTK_WEIGHT_PLAIN;
    char lbl[128];
    snprintf(lbl, sizeof lbl, "%s/%s", name, w == NTK_WEIGHT_LR ? "lr" : "plain");
    const int R = v == NTK_FULL ? N * k : N, nev = 3;
    double *T0 = malloc((size_t)R * R * sizeof *T0), *Tt = malloc((size_t)R * R * sizeof *Tt);
    double *w0 = malloc((size_t)R * sizeof *w0), *wt = malloc((size_t)R * sizeof *wt), resid[3];
    explicit_theta(&m, theta0, x, N, v, w, T0);
    explicit_theta(&m, theta_t, x, N, v, w, Tt);
    dense_eigs_desc(T0, R, w0);
    dense_eigs_desc(Tt, R, wt);
    const double scale0 = fabs(w0[0]), scalet = fabs(wt[0]);

    Results res, ref;
    results_alloc(&res, R);
    results_alloc(&ref, R);
    PetscCall(run_operator(W, &m, x, N, first, nl, v, w, theta0, theta_t, &res, resid));

    double e;
    MCHECK((e = frob_rel(res.theta_op, T0, (size_t)R * R)) <= 1e-10, "%s %s: shell operator vs J J^T/N: rel err %.3e", lbl,
           ntk_variant_name(v), e);
    MCHECK((e = frob_rel(res.gram, T0, (size_t)R * R)) <= 1e-10, "%s %s: Gram matrix vs J J^T/N: rel err %.3e", lbl,
           ntk_variant_name(v), e);
    MCHECK(res.nconv == nev && tu_all_finite(res.eig, nev), "%s %s: nconv %d of %d", lbl, ntk_variant_name(v), res.nconv, nev);
    int ok = 1;
    for (int i = 0; i < nev; i++) ok &= close_to(res.eig[i], w0[i], 1e-10, scale0) && resid[i] <= 1e-10;
    MCHECK(ok, "%s %s: Krylov-Schur top %d (%.15g %.15g %.15g) vs dsyev (%.15g %.15g %.15g), resid %.2e", lbl,
           ntk_variant_name(v), nev, res.eig[0], res.eig[1], res.eig[2], w0[0], w0[1], w0[2], resid[0]);
    ok = 1;
    for (int i = 0; i < R; i++) ok &= close_to(res.spec[i], w0[i], 1e-10, scale0);
    MCHECK(ok, "%s %s: ScaLAPACK spectrum vs dsyev (first %.15g vs %.15g, last %.3e vs %.3e)", lbl, ntk_variant_name(v),
           res.spec[0], w0[0], res.spec[R - 1], w0[R - 1]);
    ok = res.nconv_t == nev;
    for (int i = 0; i < nev; i++) ok &= close_to(res.eig_t[i], wt[i], 1e-10, scalet);
    MCHECK(ok, "%s %s: warm-started top eigenvalues at theta_t %.15g vs %.15g", lbl, ntk_variant_name(v), res.eig_t[0], wt[0]);
    const double dref = frob_dist(T0, Tt, (size_t)R * R);
    MCHECK(close_to(res.dist, dref, 1e-10, dref) && dref > 1e-4, "%s %s: kernel distance %.15g vs direct %.15g", lbl,
           ntk_variant_name(v), res.dist, dref);

    /* Rank-count independence: the same on one rank over all samples (rank 0, MPI_COMM_SELF). */
    if (rank == 0) {
      double rs[3];
      PetscCall(run_operator(PETSC_COMM_SELF, &m, x, N, 0, N, v, w, theta0, theta_t, &ref, rs));
    }
    PetscCallMPI(MPI_Bcast(ref.theta_op, R * R, MPI_DOUBLE, 0, W));
    PetscCallMPI(MPI_Bcast(ref.gram, R * R, MPI_DOUBLE, 0, W));
    PetscCallMPI(MPI_Bcast(ref.spec, R, MPI_DOUBLE, 0, W));
    PetscCallMPI(MPI_Bcast(ref.eig, 3, MPI_DOUBLE, 0, W));
    PetscCallMPI(MPI_Bcast(ref.eig_t, 3, MPI_DOUBLE, 0, W));
    PetscCallMPI(MPI_Bcast(&ref.dist, 1, MPI_DOUBLE, 0, W));
    ok = frob_rel(res.theta_op, ref.theta_op, (size_t)R * R) <= 1e-12 && frob_rel(res.gram, ref.gram, (size_t)R * R) <= 1e-12 &&
         close_to(res.dist, ref.dist, 1e-12, ref.dist);
    for (int i = 0; i < nev; i++) ok &= close_to(res.eig[i], ref.eig[i], 1e-12, scale0) && close_to(res.eig_t[i], ref.eig_t[i], 1e-12, scalet);
    for (int i = 0; i < R; i++) ok &= close_to(res.spec[i], ref.spec[i], 1e-12, scale0);
    MCHECK(ok, "%s %s: %d ranks differ from 1 rank (operator %.2e, Gram %.2e, lambda %.17g vs %.17g)", lbl, ntk_variant_name(v),
           size, frob_rel(res.theta_op, ref.theta_op, (size_t)R * R), frob_rel(res.gram, ref.gram, (size_t)R * R), res.eig[0],
           ref.eig[0]);
    results_free(&res);
    results_free(&ref);
    free(T0);
    free(Tt);
    free(w0);
    free(wt);
  }
  PetscCall(PetscOptionsClearValue(NULL, "-ntk_chunk"));
  PetscCall(PetscOptionsClearValue(NULL, "-ntk_gram_block"));
  PetscCall(PetscOptionsClearValue(NULL, "-ntk_tape_mb"));
  free(x);
  free(theta0);
  free(theta_t);
  model_destroy(&m);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ warm start and failures */

/* A larger batch with a small Krylov basis, so that the solve takes several restarts: the second
 * call at a slightly perturbed theta must need fewer products when warm-started than cold. */
static PetscErrorCode test_warm_start(NtkVariant v)
{
  Model m;
  char err[256];
  ModelConfig c = small_cfg(ACT_TANH, PARAM_NTK, 1);
  NtkOperator *op;
  const int N = 40, k = c.out_dim, nev = 2;

  PetscFunctionBeginUser;
  MCHECK(model_build(&m, &c, err, sizeof err) == 0, "build: %s", err);
  const size_t P = m.n_params;
  const int R = v == NTK_FULL ? N * k : N;
  double *x = malloc((size_t)N * c.in_dim * sizeof *x), *th0 = malloc(P * sizeof *th0), *th1 = malloc(P * sizeof *th1);
  double *T1 = malloc((size_t)R * R * sizeof *T1), *w1 = malloc((size_t)R * sizeof *w1), eig[2], resid[2];
  rng_normal_fill(x, (size_t)N * c.in_dim, 5, RNG_STREAM_TEACHER_X, 0);
  model_init(&m, th0, 11);
  rng_normal_fill(th1, P, 12, RNG_STREAM_PROBE, 0);
  for (size_t i = 0; i < P; i++) th1[i] = th0[i] + 1e-3 * th1[i];
  explicit_theta(&m, th1, x, N, v, NTK_WEIGHT_LR, T1);
  dense_eigs_desc(T1, R, w1);
  int first, nl, nconv, its_cold, its_warm;
  long mv_cold, mv_warm;
  tu_slice_of(N, rank, size, 0, &first, &nl);

  PetscCall(PetscOptionsSetValue(NULL, "-ntk_eps_ncv", "6"));
  PetscCall(ntk_operator_create(&op, W, &m, x + (size_t)first * c.in_dim, nl, first, N, v));
  PetscCall(PetscOptionsClearValue(NULL, "-ntk_eps_ncv"));
  /* cold at theta_1 */
  PetscCall(ntk_set_params(op, th1));
  PetscCall(ntk_top_eigs(op, nev, eig, resid, &nconv));
  PetscCall(ntk_last_solve_stats(op, &its_cold, &mv_cold));
  MCHECK(nconv == nev && close_to(eig[0], w1[0], 1e-10, w1[0]) && close_to(eig[1], w1[1], 1e-10, w1[0]),
         "warm test %s: cold solve %.15g %.15g vs %.15g %.15g", ntk_variant_name(v), eig[0], eig[1], w1[0], w1[1]);
  /* theta_0, then warm at theta_1 */
  PetscCall(ntk_reset_warm_start(op));
  PetscCall(ntk_set_params(op, th0));
  PetscCall(ntk_top_eigs(op, nev, eig, resid, &nconv));
  PetscCall(ntk_set_params(op, th1));
  PetscCall(ntk_top_eigs(op, nev, eig, resid, &nconv));
  PetscCall(ntk_last_solve_stats(op, &its_warm, &mv_warm));
  MCHECK(nconv == nev && close_to(eig[0], w1[0], 1e-10, w1[0]) && close_to(eig[1], w1[1], 1e-10, w1[0]),
         "warm test %s: warm solve %.15g %.15g vs %.15g %.15g", ntk_variant_name(v), eig[0], eig[1], w1[0], w1[1]);
  MCHECK(mv_warm < mv_cold && its_warm <= its_cold, "warm test %s: warm %ld products (%d its) not fewer than cold %ld (%d its)",
         ntk_variant_name(v), mv_warm, its_warm, mv_cold, its_cold);
  if (rank == 0)
    printf("warm start (%s, R = %d, ncv 6, nev %d, tol 1e-13): cold %ld products / %d restarts, warm %ld / %d\n",
           ntk_variant_name(v), R, nev, mv_cold, its_cold, mv_warm, its_warm);

  /* A non-finite theta: NaN, nconv 0, no error; the Gram spectrum likewise. */
  double *thn = malloc(P * sizeof *thn), *spec = malloc((size_t)R * sizeof *spec);
  memcpy(thn, th1, P * sizeof *thn);
  thn[P / 2] = NAN;
  PetscCall(ntk_set_params(op, thn));
  PetscErrorCode ierr = ntk_top_eigs(op, nev, eig, resid, &nconv);
  MCHECK(ierr == 0 && nconv == 0 && isnan(eig[0]) && isnan(eig[1]) && isnan(resid[0]), "NaN theta: ierr %d nconv %d eig %g",
         (int)ierr, nconv, eig[0]);
  Mat G;
  PetscCall(ntk_gram_assemble(op, &G));
  ierr = ntk_gram_spectrum(op, G, spec);
  MCHECK(ierr == 0 && isnan(spec[0]) && isnan(spec[R - 1]), "NaN theta: Gram spectrum ierr %d spec[0] %g", (int)ierr, spec[0]);
  PetscCall(MatDestroy(&G));
  /* After the NaN, a finite theta works again. */
  PetscCall(ntk_set_params(op, th1));
  PetscCall(ntk_top_eigs(op, nev, eig, resid, &nconv));
  MCHECK(nconv == nev && close_to(eig[0], w1[0], 1e-10, w1[0]), "after NaN: %.15g vs %.15g", eig[0], w1[0]);
  PetscCall(ntk_operator_destroy(&op));

  /* An unconverged solve (one restart of a 4-vector basis): NaN for the missing ones, no error. */
  PetscCall(PetscOptionsSetValue(NULL, "-ntk_eps_ncv", "4"));
  PetscCall(PetscOptionsSetValue(NULL, "-ntk_eps_max_it", "1"));
  PetscCall(ntk_operator_create(&op, W, &m, x + (size_t)first * c.in_dim, nl, first, N, v));
  PetscCall(PetscOptionsClearValue(NULL, "-ntk_eps_ncv"));
  PetscCall(PetscOptionsClearValue(NULL, "-ntk_eps_max_it"));
  PetscCall(ntk_set_params(op, th1));
  ierr = ntk_top_eigs(op, nev, eig, resid, &nconv);
  int nan_tail = 1;
  for (int i = nconv; i < nev; i++) nan_tail &= isnan(eig[i]) && isnan(resid[i]);
  MCHECK(ierr == 0 && nconv < nev && nan_tail, "unconverged: ierr %d nconv %d eig %g %g", (int)ierr, nconv, eig[0], eig[1]);
  PetscCall(ntk_operator_destroy(&op));

  free(thn);
  free(spec);
  free(x);
  free(th0);
  free(th1);
  free(T1);
  free(w1);
  model_destroy(&m);
  PetscFunctionReturn(0);
}

/* Coarse-level cold starts (-ntk_coarse_*): on N = 130 samples (levels of 33 and 9 with
 * -ntk_coarse_min 8; uneven and empty slices), an lr-weighted muP net, the cold matrix-free
 * solve and the exact Gram solve both use the coarse levels and give the top eigenvalues of the
 * explicit J D J^T / N (LAPACK dsyev) to 1e-10, with the residual test and with the eigenvalue
 * test, and so does the factored Gram solve (full variant); a second solve at a nearby theta is warm (no coarse products); and the distributed result
 * equals an MPI_COMM_SELF operator's over all samples (rank-count independence) to 1e-12. */
static PetscErrorCode test_coarse(NtkVariant v)
{
  Model m;
  char err[256];
  ModelConfig c = small_cfg(ACT_TANH, PARAM_MUP, 1);
  const int N = 130, k = c.out_dim, nev = 3;

  PetscFunctionBeginUser;
  MCHECK(model_build(&m, &c, err, sizeof err) == 0, "build: %s", err);
  const size_t P = m.n_params;
  const int R = v == NTK_FULL ? N * k : N;
  double *x = malloc((size_t)N * c.in_dim * sizeof *x), *th0 = malloc(P * sizeof *th0), *th1 = malloc(P * sizeof *th1);
  double *T = malloc((size_t)R * R * sizeof *T), *w0 = malloc((size_t)R * sizeof *w0), *w1 = malloc((size_t)R * sizeof *w1);
  double eig[3], resid[3], eig_self[3];
  rng_normal_fill(x, (size_t)N * c.in_dim, 21, RNG_STREAM_TEACHER_X, 0);
  model_init(&m, th0, 23);
  rng_normal_fill(th1, P, 24, RNG_STREAM_PROBE, 0);
  for (size_t i = 0; i < P; i++) th1[i] = th0[i] + 1e-3 * th1[i];
  explicit_theta(&m, th0, x, N, v, NTK_WEIGHT_LR, T);
  dense_eigs_desc(T, R, w0);
  explicit_theta(&m, th1, x, N, v, NTK_WEIGHT_LR, T);
  dense_eigs_desc(T, R, w1);
  int first, nl, nconv;
  long mv, cmv;
  double cwork;
  tu_slice_of(N, rank, size, 1, &first, &nl);
  const char *vn = ntk_variant_name(v);

  PetscCall(PetscOptionsSetValue(NULL, "-ntk_coarse_min", "8"));
  for (int conv = 0; conv < 2; conv++) {
    NtkOperator *op;
    if (conv) PetscCall(PetscOptionsSetValue(NULL, "-ntk_conv", "value"));
    PetscCall(ntk_operator_create(&op, W, &m, x + (size_t)first * c.in_dim, nl, first, N, v));
    PetscCall(ntk_set_params(op, th0));
    PetscCall(ntk_top_eigs(op, nev, eig, resid, &nconv));
    PetscCall(ntk_last_solve_stats(op, NULL, &mv));
    PetscCall(ntk_last_solve_coarse(op, &cmv, &cwork));
    int ok = nconv == nev && cmv > 0 && cwork > 0 && cwork < cmv;
    for (int i = 0; i < nev; i++) ok &= close_to(eig[i], w0[i], 1e-10, w0[0]);
    MCHECK(ok, "coarse %s conv %d: matrix-free %.15g %.15g %.15g vs dsyev %.15g %.15g %.15g, nconv %d, coarse products %ld (%g)",
           vn, conv, eig[0], eig[1], eig[2], w0[0], w0[1], w0[2], nconv, cmv, cwork);
    if (rank == 0)
      printf("coarse start (%s, R = %d, conv %s): matrix-free %ld products + %ld coarse (= %.2f full)\n", vn, R,
             conv ? "value" : "residual", mv, cmv, cwork);
    /* the same from the exact Gram matrix, its own coarse levels being principal submatrices */
    Mat G;
    PetscCall(ntk_gram_assemble(op, &G));
    PetscCall(ntk_gram_top_eigs(op, G, nev, eig, resid, &nconv));
    PetscCall(ntk_last_solve_stats(op, NULL, &mv));
    PetscCall(ntk_last_solve_coarse(op, &cmv, &cwork));
    ok = nconv == nev && cmv > 0;
    for (int i = 0; i < nev; i++) ok &= close_to(eig[i], w0[i], 1e-10, w0[0]);
    MCHECK(ok, "coarse %s conv %d: Gram %.15g %.15g %.15g vs dsyev %.15g %.15g %.15g, nconv %d, coarse products %ld", vn, conv, eig[0],
           eig[1], eig[2], w0[0], w0[1], w0[2], nconv, cmv);
    if (rank == 0) printf("coarse start (%s, R = %d): Gram %ld products + %ld coarse\n", vn, R, mv, cmv);
    PetscCall(MatDestroy(&G));
    if (v == NTK_FULL) { /* the exact Gram matrix applied from its factors: the same eigenvalues */
      PetscCall(ntk_gram_factored_top_eigs(op, nev, eig, resid, &nconv));
      PetscCall(ntk_last_solve_stats(op, NULL, &mv));
      ok = nconv == nev && mv > 0;
      for (int i = 0; i < nev; i++) ok &= close_to(eig[i], w0[i], 1e-10, w0[0]);
      MCHECK(ok, "conv %d: factored Gram %.15g %.15g %.15g vs dsyev %.15g %.15g %.15g, nconv %d", conv, eig[0], eig[1], eig[2], w0[0],
             w0[1], w0[2], nconv);
    }
    /* along a trajectory: warm, no coarse products */
    PetscCall(ntk_set_params(op, th1));
    PetscCall(ntk_top_eigs(op, nev, eig, resid, &nconv));
    PetscCall(ntk_last_solve_coarse(op, &cmv, NULL));
    ok = nconv == nev && cmv == 0;
    for (int i = 0; i < nev; i++) ok &= close_to(eig[i], w1[i], 1e-10, w1[0]);
    MCHECK(ok, "coarse %s conv %d: warm %.15g vs %.15g, coarse products %ld", vn, conv, eig[0], w1[0], cmv);
    /* rank-count independence: the same cold solve by one rank over all samples */
    PetscCall(ntk_reset_warm_start(op));
    PetscCall(ntk_set_params(op, th0));
    PetscCall(ntk_top_eigs(op, nev, eig, resid, &nconv));
    NtkOperator *self;
    int nself;
    PetscCall(ntk_operator_create(&self, PETSC_COMM_SELF, &m, x, N, 0, N, v));
    PetscCall(ntk_set_params(self, th0));
    PetscCall(ntk_top_eigs(self, nev, eig_self, resid, &nself));
    ok = nself == nconv && nconv == nev;
    for (int i = 0; i < nev; i++) ok &= close_to(eig[i], eig_self[i], 1e-12, eig_self[0]);
    MCHECK(ok, "coarse %s conv %d: %d ranks %.17g vs one %.17g", vn, conv, size, eig[0], eig_self[0]);
    PetscCall(ntk_operator_destroy(&self));
    PetscCall(ntk_operator_destroy(&op));
    if (conv) PetscCall(PetscOptionsClearValue(NULL, "-ntk_conv"));
  }
  PetscCall(PetscOptionsClearValue(NULL, "-ntk_coarse_min"));
  free(x);
  free(th0);
  free(th1);
  free(T);
  free(w0);
  free(w1);
  model_destroy(&m);
  PetscFunctionReturn(0);
}

/* The cost models: positive, growing with N, and exact cheaper than matrix-free for a wide net on
 * a small batch (the lambda_0 benchmark's case), dearer for a narrow net on a large batch. */
static void test_cost_models(void)
{
  Model wide, narrow;
  char err[256];
  ModelConfig c = small_cfg(ACT_RELU, PARAM_NTK, 1);
  c.in_dim = 784;
  c.out_dim = 10;
  c.depth = 3;
  c.width = 2048;
  model_build(&wide, &c, err, sizeof err);
  c.width = 16;
  model_build(&narrow, &c, err, sizeof err);
  const double e100 = ntk_cost_exact(&wide, 100, NTK_FULL), m100 = ntk_cost_matfree(&wide, 100, NTK_FULL, 40);
  const double e5k = ntk_cost_exact(&narrow, 5000, NTK_FULL), m5k = ntk_cost_matfree(&narrow, 5000, NTK_FULL, 40);
  MCHECK(e100 > 0 && m100 > 0 && e100 < m100, "wide net, N = 100: exact %.3g should beat matrix-free %.3g", e100, m100);
  MCHECK(e5k > m5k, "narrow net, N = 5000: exact %.3g should cost more than matrix-free %.3g", e5k, m5k);
  MCHECK(ntk_cost_exact(&wide, 200, NTK_FULL) > e100 && ntk_cost_matfree(&wide, 200, NTK_FULL, 40) > m100 &&
             ntk_cost_matfree(&wide, 100, NTK_TRACED, 40) > m100 && ntk_cost_exact(&wide, 100, NTK_TRACED) < e100,
         "cost models not monotone");
  const double t1k = ntk_cost_exact_top(&wide, 1000, NTK_FULL, 40);
  MCHECK(t1k < ntk_cost_exact(&wide, 1000, NTK_FULL) && t1k < ntk_cost_matfree(&wide, 1000, NTK_FULL, 40) &&
             ntk_cost_exact(&wide, 1000, NTK_FULL) > ntk_cost_matfree(&wide, 1000, NTK_FULL, 40),
         "wide net, N = 1000: Gram + Krylov-Schur %.3g should beat matrix-free %.3g, which beats Gram + full spectrum %.3g",
         t1k, ntk_cost_matfree(&wide, 1000, NTK_FULL, 40), ntk_cost_exact(&wide, 1000, NTK_FULL));
  model_destroy(&wide);
  model_destroy(&narrow);
}

int main(int argc, char **argv)
{
  PetscCall(SlepcInitialize(&argc, &argv, NULL, NULL));
  W = PETSC_COMM_WORLD;
  MPI_Comm_rank(W, &rank);
  tu_comm = W;
  tu_rank = rank;
  MPI_Comm_size(W, &size);
  /* Tight enough that the top eigenvalues agree with dsyev to 1e-10 relative. */
  PetscCall(PetscOptionsSetValue(NULL, "-ntk_eps_tol", "1e-13"));

  const Activation acts[] = {ACT_IDENTITY, ACT_RELU, ACT_TANH, ACT_ERF};
  const Parameterization params[] = {PARAM_NTK, PARAM_SP, PARAM_MUP, PARAM_ABC, PARAM_MF};
  int idx = 0;
  for (int a = 0; a < 4; a++)
    for (int p = 0; p < 5; p++)
      for (int b = 0; b <= 1; b++) PetscCall(test_config(idx++, acts[a], params[p], b));
  PetscCall(test_warm_start(NTK_FULL));
  PetscCall(test_warm_start(NTK_TRACED));
  PetscCall(test_coarse(NTK_FULL));
  PetscCall(test_coarse(NTK_TRACED));
  test_cost_models();

  int fails = tu_failed;
  if (rank == 0) tu_report("test_ntk");
  PetscCall(SlepcFinalize());
  return fails ? 1 : 0;
}
