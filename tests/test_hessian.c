/* Loss Hessian products and spectra (model_hvp, model_gnvp, hessian.c) against independent
 * references, for every activation x parameterization x bias on a small net (d 5, width 7, k 3,
 * depth 2, N 8-12 samples split evenly or skewed over the ranks):
 *   - the R-operator kernels against their loop twins (aliasing and NULL cases included);
 *   - H v against central differences of the analytic gradient (model_vjp) along v, the whole
 *     matrix against such columns, selected entries against second differences of the loss alone,
 *     the symmetry u^T H v = v^T H u, and for depth 1 identity nets a hand-derived closed form;
 *   - G v against J^T J v / N with J from model_jvp columns, and H = G when the residual is 0;
 *   - the shell operators, column by column, against the products over all samples (rank-count
 *     independent: also against an MPI_COMM_SELF operator on rank 0);
 *   - Krylov-Schur top-3 and most negative eigenvalues against LAPACK dsyev of that matrix,
 *     lambda_max(G) against lambda_max(Theta) from ntk.c (docs/conventions.md "Hessian" identity);
 *   - Hutchinson and SLQ against exact quadratic forms of the same probes (identities up to
 *     rounding) and against the exact tr(H^p)/P within 4 standard errors computed from H itself;
 *   - NaN theta, unconverged solves, warm starts, the cost model.
 * Every check is collective (passes only if it holds on every rank), so rank 0's summary line is
 * the verdict. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <slepceps.h>
#include <petscblaslapack.h> /* after slepceps.h: it needs petscsys.h */

#include "hessian.h"
#include "layers.h"
#include "model.h"
#include "ntk.h"
#include "rng.h"
#include "testutil_mpi.h"

static MPI_Comm W;
static int rank, size;

static const char *const act_names_[] = {"identity", "relu", "tanh", "erf"};

/* Worst value of each checked quantity over all configurations, printed at the end (margins). */
enum { W_HV_FD, W_H_FD, W_H_LOSS, W_SYM, W_CHUNK, W_CLOSED, W_GN, W_GN_ZERO, W_SHELL_H, W_SHELL_G, W_TOP, W_MIN, W_GN_NTK,
       W_TR_ID, W_TR_Z, W_SLQ_ID, W_SLQ_Z, W_RANKS, W_COUNT };
static const char *const worst_name[W_COUNT] = {
  "H v vs gradient differences (rel)", "H vs gradient-difference columns (max/|H|max)",
  "H entries vs loss 2nd differences (max/max(1,|H|max))", "u^T H v - v^T H u (rel)", "chunked vs one-piece H v (rel)",
  "depth-1 identity closed form (max/|H|max)", "G v vs J^T J v / N (rel)", "H v at zero residual vs G v (rel)",
  "shell H vs model_hvp (max/|H|max)", "shell G vs J^T J / N (max/|G|max)", "Krylov-Schur top-3 vs dsyev (/scale)",
  "most negative vs dsyev (/scale)", "lambda_max(G) vs lambda_max(Theta) (rel)", "Hutchinson vs same probes on dense H (rel)",
  "Hutchinson |est - tr H| / theoretical SE", "SLQ moments p=1..3 vs probes' z^T H^p z / P (/scale^p)",
  "SLQ moments |est - tr(H^p)/P| / SE", "these ranks vs 1 rank: max operator diff (/|H|max)"};
static double worst[W_COUNT];
static double track(int w, double e)
{
  if (!(e <= worst[w])) worst[w] = e; /* NaN sticks */
  return e;
}

static ModelConfig small_cfg(Activation act, Parameterization p, int bias, int depth)
{
  ModelConfig c = {0};
  c.arch = ARCH_FC;
  c.in_dim = 5;
  c.out_dim = 3;
  c.depth = depth;
  c.width = 7;
  c.act = act;
  c.bias = bias;
  c.sigma_w = 1.3;
  c.sigma_b = 0.5;
  c.param = p;
  c.base_width = 3; /* r = 7/3 for mup, abc, mf */
  const double abc[ABC_KINDS][3] = {{0.5, -0.25, -1.5}, {0.25, 0.25, -0.5}, {1, 0.5, 0.75}, {0.5, 0.5, -1}};
  memcpy(c.abc, abc, sizeof abc);
  return c;
}

static double max_abs(const double *a, size_t n)
{
  double s = 0;
  for (size_t i = 0; i < n; i++) s = fmax(s, fabs(a[i]));
  return s;
}

/* max |a - b| / scale (inf if non-finite). */
static double max_diff(const double *a, const double *b, size_t n, double scale)
{
  double d = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
    d = fmax(d, fabs(a[i] - b[i]));
  }
  return d / scale;
}

static double dot(const double *a, const double *b, size_t n)
{
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* ------------------------------------------------------------------ serial references */

/* L = 1/(2N) sum ||f - y||^2. */
static double loss_full(const Model *m, const double *theta, const double *x, const double *y, int N)
{
  Tape t;
  tape_create(&t, m, N);
  const double *f = model_forward(m, theta, x, N, &t, NULL);
  const double l = mse_loss(NULL, f, y, N, m->cfg.out_dim, 1.0) / N;
  tape_destroy(&t);
  return l;
}

/* g = dL/dtheta (overwritten). */
static void grad_full(const Model *m, const double *theta, const double *x, const double *y, int N, double *g)
{
  Tape t;
  const int k = m->cfg.out_dim;
  double *dout = malloc((size_t)N * k * sizeof *dout);
  tape_create(&t, m, N);
  const double *f = model_forward(m, theta, x, N, &t, NULL);
  mse_loss(dout, f, y, N, k, 1.0 / N);
  memset(g, 0, m->n_params * sizeof *g);
  model_vjp(m, theta, dout, N, &t, g, NULL);
  tape_destroy(&t);
  free(dout);
}

/* hv = H v over N samples in chunks of cb (accumulating, n_global = N), gn: G v instead. */
static void hvp_full(const Model *m, const double *theta, const double *v, const double *x, const double *y, int N, int cb,
                     int gn, double *hv)
{
  Tape t;
  const int d = m->cfg.in_dim, k = m->cfg.out_dim;
  tape_create(&t, m, cb);
  memset(hv, 0, m->n_params * sizeof *hv);
  for (int a0 = 0; a0 < N; a0 += cb) {
    const int B = N - a0 < cb ? N - a0 : cb;
    if (gn) model_gnvp(m, theta, v, x + (size_t)a0 * d, B, (double)N, &t, hv, NULL);
    else model_hvp(m, theta, v, x + (size_t)a0 * d, y + (size_t)a0 * k, B, (double)N, &t, hv, NULL);
  }
  tape_destroy(&t);
}

/* The P x P matrix of hvp_full by unit vectors (row-major; symmetric up to rounding). */
static void matrix_by_products(const Model *m, const double *theta, const double *x, const double *y, int N, int gn, double *H)
{
  const size_t P = m->n_params;
  double *e = calloc(P, sizeof *e), *col = malloc(P * sizeof *col);
  for (size_t j = 0; j < P; j++) {
    e[j] = 1.0;
    hvp_full(m, theta, e, x, y, N, 5, gn, col);
    e[j] = 0.0;
    for (size_t i = 0; i < P; i++) H[i * P + j] = col[i];
  }
  free(e);
  free(col);
}

/* J (Nk x P, row-major) from model_jvp with unit tangents. */
static void jacobian(const Model *m, const double *theta, const double *x, int N, double *J)
{
  const size_t P = m->n_params;
  const int Nk = N * m->cfg.out_dim;
  Tape t;
  double *e = calloc(P, sizeof *e), *col = malloc((size_t)Nk * sizeof *col);
  tape_create(&t, m, N);
  model_forward(m, theta, x, N, &t, NULL);
  for (size_t mu = 0; mu < P; mu++) {
    e[mu] = 1.0;
    model_jvp(m, theta, e, N, &t, col, NULL);
    e[mu] = 0.0;
    for (int r = 0; r < Nk; r++) J[(size_t)r * P + mu] = col[r];
  }
  tape_destroy(&t);
  free(e);
  free(col);
}

/* All eigenvalues of the symmetric n x n matrix A (its symmetric part), ascending (LAPACK dsyev). */
static void eigs_asc(const double *A, int n, double *w)
{
  PetscBLASInt nn = n, lwork = 8 * n + 64, info;
  double *a = malloc((size_t)n * n * sizeof *a), *work = malloc((size_t)lwork * sizeof *work);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) a[(size_t)i * n + j] = 0.5 * (A[(size_t)i * n + j] + A[(size_t)j * n + i]);
  LAPACKsyev_("N", "U", &nn, a, &nn, w, work, &lwork, &info);
  if (info)
    for (int i = 0; i < n; i++) w[i] = NAN;
  free(a);
  free(work);
}

/* C = A B, all n x n row-major. */
static void matmul(const double *A, const double *B, int n, double *C)
{
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int l = 0; l < n; l++) s += A[(size_t)i * n + l] * B[(size_t)l * n + j];
      C[(size_t)i * n + j] = s;
    }
}

/* Rademacher probe j of seed, as documented in hessian.h (independent re-implementation). */
static void probe(double *z, size_t P, uint64_t seed, int j)
{
  for (size_t i = 0; i < P; i++) z[i] = (rng_u64(seed, (uint64_t)RNG_STREAM_PROBE + ((uint64_t)j << 32), i) & 1u) ? 1.0 : -1.0;
}

/* z^T A z for dense A. */
static double quad(const double *A, const double *z, size_t P)
{
  double s = 0;
  for (size_t i = 0; i < P; i++) s += z[i] * dot(A + i * P, z, P);
  return s;
}

/* Standard error of the mean of n Hutchinson samples z^T A z, Rademacher z: var = 2 sum_{i!=j} A_ij^2
 * (A symmetric). */
static double hutch_se(const double *A, size_t P, int n)
{
  double s = 0;
  for (size_t i = 0; i < P; i++)
    for (size_t j = 0; j < P; j++)
      if (i != j) s += A[i * P + j] * A[i * P + j];
  return sqrt(2.0 * s / n);
}

/* The operator's matrix by unit vectors, on every rank (P x P row-major). */
static PetscErrorCode shell_full(Mat A, int P, double *T)
{
  Vec x, y, yall;
  VecScatter sc;
  const PetscScalar *ya;
  PetscInt lo, hi;

  PetscFunctionBeginUser;
  PetscCall(MatCreateVecs(A, &x, &y));
  PetscCall(VecScatterCreateToAll(y, &sc, &yall));
  PetscCall(VecGetOwnershipRange(x, &lo, &hi));
  for (int j = 0; j < P; j++) {
    PetscCall(VecZeroEntries(x));
    if (j >= lo && j < hi) PetscCall(VecSetValue(x, j, 1.0, INSERT_VALUES));
    PetscCall(VecAssemblyBegin(x));
    PetscCall(VecAssemblyEnd(x));
    PetscCall(MatMult(A, x, y));
    PetscCall(VecScatterBegin(sc, y, yall, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecScatterEnd(sc, y, yall, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecGetArrayRead(yall, &ya));
    for (int r = 0; r < P; r++) T[(size_t)r * P + j] = ya[r];
    PetscCall(VecRestoreArrayRead(yall, &ya));
  }
  PetscCall(VecScatterDestroy(&sc));
  PetscCall(VecDestroy(&yall));
  PetscCall(VecDestroy(&x));
  PetscCall(VecDestroy(&y));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ kernels */

static void test_kernels(void)
{
  const int B = 6, n_in = 5, n_out = 4;
  const size_t ni = (size_t)B * n_in, no = (size_t)B * n_out, nw = (size_t)n_out * n_in;
  double in[30], rin[30], rdout[24], dout[24], Wm[20], vW[20];
  rng_normal_fill(in, ni, 1, 10, 0);
  rng_normal_fill(rin, ni, 1, 11, 0);
  rng_normal_fill(rdout, no, 1, 12, 0);
  rng_normal_fill(dout, no, 1, 13, 0);
  rng_normal_fill(Wm, nw, 1, 14, 0);
  rng_normal_fill(vW, nw, 1, 15, 0);
  for (int a = 0; a < ACT_COUNT; a++)
    for (int withd = 0; withd < 2; withd++) {
      double o1[30], o2[30], o3[30];
      const double *dd = withd ? in : NULL; /* any array serves as dout here */
      act_rvjp(o1, rin, dd, in, rdout, 24, (Activation)a);
      act_rvjp_ref(o2, rin, dd, in, rdout, 24, (Activation)a);
      memcpy(o3, rdout, 24 * sizeof *o3); /* in place over rin */
      act_rvjp(o3, rin, dd, in, o3, 24, (Activation)a);
      /* the R-operator of phi' * dout by hand: rdout phi' + dout phi'' rin */
      double e = 0;
      for (int i = 0; i < 24; i++) {
        double r = rin[i] * act_deriv(in[i], (Activation)a) + (dd ? dd[i] * act_deriv2(in[i], (Activation)a) * rdout[i] : 0);
        e = fmax(e, fabs(r - o1[i]));
      }
      MCHECK(tu_rel_err(o1, o2, 24) <= 1e-14 && tu_rel_err(o1, o3, 24) <= 1e-14 && e <= 1e-14 && max_abs(o1, 24) > 0,
             "act_rvjp %s dout %d: ref %.2e alias %.2e hand %.2e", act_names_[a], withd, tu_rel_err(o1, o2, 24),
             tu_rel_err(o1, o3, 24), e);
    }
  /* dense: every NULL pattern of dout, rin, vW; aliasing rdin == rin. */
  for (int mask = 0; mask < 8; mask++) {
    const double *dd = (mask & 1) ? dout : NULL, *rr = (mask & 2) ? rin : NULL, *vv = (mask & 4) ? vW : NULL;
    double rdin1[30], rdin2[30], rdW1[20], rdW2[20], rdb1[4], rdb2[4], alias[30], rdW3[20], rdb3[4];
    for (int i = 0; i < 20; i++) rdW1[i] = rdW2[i] = rdW3[i] = 0.1 * i; /* accumulated onto */
    for (int i = 0; i < 4; i++) rdb1[i] = rdb2[i] = rdb3[i] = -0.2 * i;
    dense_rvjp(rdin1, rdW1, rdb1, rdout, dd, in, rr, Wm, vv, B, n_in, n_out, 0.7, 1.3);
    dense_rvjp_ref(rdin2, rdW2, rdb2, rdout, dd, in, rr, Wm, vv, B, n_in, n_out, 0.7, 1.3);
    double e = fmax(tu_rel_err(rdin1, rdin2, ni), fmax(tu_rel_err(rdW1, rdW2, nw), tu_rel_err(rdb1, rdb2, 4)));
    if (rr) { /* the operator's in-place use: R-cotangent over the tangent */
      memcpy(alias, rin, sizeof alias);
      dense_rvjp(alias, rdW3, rdb3, rdout, dd, in, alias, Wm, vv, B, n_in, n_out, 0.7, 1.3);
      e = fmax(e, fmax(tu_rel_err(alias, rdin1, ni), tu_rel_err(rdW3, rdW1, nw)));
    }
    /* and against the definition, entry (1,2) of rdW and (3,4) of rdin */
    double sw = 0, si = 0;
    for (int a = 0; a < B; a++) sw += rdout[a * n_out + 1] * in[a * n_in + 2] + (dd && rr ? dd[a * n_out + 1] * rr[a * n_in + 2] : 0);
    for (int j = 0; j < n_out; j++) si += rdout[3 * n_out + j] * Wm[j * n_in + 4] + (dd && vv ? dd[3 * n_out + j] * vv[j * n_in + 4] : 0);
    e = fmax(e, fmax(fabs(rdW2[1 * n_in + 2] - 0.1 * (1 * n_in + 2) - 0.7 * sw), fabs(rdin2[3 * n_in + 4] - 0.7 * si)));
    MCHECK(e <= 1e-14, "dense_rvjp NULL mask %d: rel err %.2e", mask, e);
  }
}

/* ------------------------------------------------------------------ products */

/* Closed form, depth-1 identity net f = wm2 W2 (wm1 W1 x + bm1 b1) + bm2 b2 (derived by hand):
 * G = (1/N) sum_a J_a^T J_a with d f_i/d W1[j,l] = wm2 W2[i,j] wm1 x_l, d f_i/d b1[j] = wm2 W2[i,j] bm1,
 * d f_i/d W2[i',j] = delta_ii' wm2 u_j, d f_i/d b2[i'] = delta_ii' bm2; the only second derivatives
 * are d^2 f_i / dW2[i,j] dW1[j,l] = wm2 wm1 x_l and d^2 f_i / dW2[i,j] db1[j] = wm2 bm1, weighted by
 * the residual r_ai / N. */
static void closed_form_depth1(const Model *m, const double *th, const double *x, const double *y, int N, double *H)
{
  const int d = m->cfg.in_dim, n = m->cfg.width, k = m->cfg.out_dim;
  const size_t P = m->n_params;
  const int bias = m->cfg.bias;
  const ParamTensor *tW1 = &m->tensors[0], *tb1 = bias ? &m->tensors[1] : NULL, *tW2 = &m->tensors[bias ? 2 : 1],
                    *tb2 = bias ? &m->tensors[3] : NULL;
  const double wm1 = tW1->mult, wm2 = tW2->mult, bm1 = bias ? tb1->mult : 0, bm2 = bias ? tb2->mult : 0;
  const double *W1 = th + tW1->offset, *b1 = bias ? th + tb1->offset : NULL, *W2 = th + tW2->offset, *b2 = bias ? th + tb2->offset : NULL;
  double *J = calloc((size_t)k * P, sizeof *J), *u = malloc((size_t)n * sizeof *u), *r = malloc((size_t)k * sizeof *r);
  memset(H, 0, P * P * sizeof *H);
  for (int a = 0; a < N; a++) {
    const double *xa = x + (size_t)a * d;
    for (int j = 0; j < n; j++) {
      u[j] = bias ? bm1 * b1[j] : 0;
      for (int l = 0; l < d; l++) u[j] += wm1 * W1[j * d + l] * xa[l];
    }
    for (int i = 0; i < k; i++) {
      double f = bias ? bm2 * b2[i] : 0;
      for (int j = 0; j < n; j++) f += wm2 * W2[i * n + j] * u[j];
      r[i] = f - y[(size_t)a * k + i];
    }
    memset(J, 0, (size_t)k * P * sizeof *J);
    for (int i = 0; i < k; i++) {
      double *Ji = J + (size_t)i * P;
      for (int j = 0; j < n; j++) {
        for (int l = 0; l < d; l++) Ji[tW1->offset + j * d + l] = wm2 * W2[i * n + j] * wm1 * xa[l];
        if (bias) Ji[tb1->offset + j] = wm2 * W2[i * n + j] * bm1;
        Ji[tW2->offset + i * n + j] = wm2 * u[j];
      }
      if (bias) Ji[tb2->offset + i] = bm2;
    }
    for (size_t p = 0; p < P; p++)
      for (size_t q = 0; q < P; q++) {
        double s = 0;
        for (int i = 0; i < k; i++) s += J[i * P + p] * J[i * P + q];
        H[p * P + q] += s / N;
      }
    for (int i = 0; i < k; i++)
      for (int j = 0; j < n; j++) {
        const size_t pw2 = tW2->offset + i * n + j;
        for (int l = 0; l < d; l++) {
          const size_t pw1 = tW1->offset + j * d + l;
          const double c = r[i] * wm2 * wm1 * xa[l] / N;
          H[pw2 * P + pw1] += c;
          H[pw1 * P + pw2] += c;
        }
        if (bias) {
          const size_t pb1 = tb1->offset + j;
          const double c = r[i] * wm2 * bm1 / N;
          H[pw2 * P + pb1] += c;
          H[pb1 * P + pw2] += c;
        }
      }
  }
  free(J);
  free(u);
  free(r);
}

static void test_closed_form(Parameterization p, int bias)
{
  Model m;
  char err[256];
  ModelConfig c = small_cfg(ACT_IDENTITY, p, bias, 1);
  MCHECK(model_build(&m, &c, err, sizeof err) == 0, "build: %s", err);
  const int N = 9;
  const size_t P = m.n_params;
  double *x = malloc((size_t)N * c.in_dim * sizeof *x), *y = malloc((size_t)N * c.out_dim * sizeof *y);
  double *th = malloc(P * sizeof *th), *Hc = malloc(P * P * sizeof *Hc), *Hp = malloc(P * P * sizeof *Hp);
  rng_normal_fill(x, (size_t)N * c.in_dim, 3, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(y, (size_t)N * c.out_dim, 4, RNG_STREAM_TEACHER_X, 0);
  model_init(&m, th, 21 + p);
  closed_form_depth1(&m, th, x, y, N, Hc);
  matrix_by_products(&m, th, x, y, N, 0, Hp);
  const double s = max_abs(Hc, P * P), e = track(W_CLOSED, max_diff(Hp, Hc, P * P, s));
  MCHECK(e <= 1e-12 && s > 0, "closed form depth 1 identity %s bias %d: max err %.2e (scale %.3g)", param_name(p), bias, e, s);
  free(x);
  free(y);
  free(th);
  free(Hc);
  free(Hp);
  model_destroy(&m);
}

/* ------------------------------------------------------------------ operator runs */

typedef struct {
  double *Hop, *Gop;            /* P x P by unit vectors */
  double eig[3], resid[3], emin, rmin, gtop, trace, tse, loss;
  int nconv, nconv_min, nconv_g;
  double *nodes, *weights;      /* SLQ */
} Results;

#define SLQ_PROBES 12
#define SLQ_STEPS 30
#define TRACE_PROBES 300

static PetscErrorCode run_operator(MPI_Comm comm, const Model *m, const double *x, const double *y, int N, int first, int nl,
                                   const double *theta, Results *r)
{
  HessianOperator *op;
  Mat H, G;
  double gres[1];
  const int d = m->cfg.in_dim, k = m->cfg.out_dim, P = (int)m->n_params;

  PetscFunctionBeginUser;
  PetscCall(hessian_operator_create(&op, comm, m, x + (size_t)first * d, y + (size_t)first * k, nl, first, N));
  PetscCall(hessian_set_params(op, theta));
  PetscCall(hessian_loss(op, &r->loss));
  PetscCall(hessian_operator_mat(op, &H));
  PetscCall(hessian_gn_mat(op, &G));
  PetscCall(shell_full(H, P, r->Hop));
  PetscCall(shell_full(G, P, r->Gop));
  PetscCall(hessian_min_eig(op, &r->emin, &r->rmin, &r->nconv_min)); /* before any top solve: computes its scale */
  PetscCall(hessian_top_eigs(op, 3, r->eig, r->resid, &r->nconv));
  PetscCall(hessian_gn_top_eigs(op, 1, &r->gtop, gres, &r->nconv_g));
  PetscCall(hessian_trace(op, TRACE_PROBES, 77, &r->trace, &r->tse));
  PetscCall(hessian_slq(op, SLQ_PROBES, SLQ_STEPS, 99, r->nodes, r->weights));
  PetscCall(hessian_operator_destroy(&op));
  PetscFunctionReturn(0);
}

/* lambda_max(Theta) of the full NTK on the same samples, from ntk.c. */
static PetscErrorCode ntk_lambda(const Model *m, const double *x, int N, int first, int nl, const double *theta, double *lam)
{
  NtkOperator *op;
  double resid;
  int nc;

  PetscFunctionBeginUser;
  PetscCall(ntk_operator_create(&op, W, m, x + (size_t)first * m->cfg.in_dim, nl, first, N, NTK_FULL));
  PetscCall(ntk_set_params(op, theta));
  PetscCall(ntk_top_eigs(op, 1, lam, &resid, &nc));
  if (nc < 1) *lam = NAN;
  PetscCall(ntk_operator_destroy(&op));
  PetscFunctionReturn(0);
}

/* sum_i w_i nodes_i^p */
static double slq_moment(const double *nodes, const double *w, int n, int p)
{
  double s = 0;
  for (int i = 0; i < n; i++) s += w[i] * pow(nodes[i], p);
  return s;
}

static PetscErrorCode test_config(int idx, Activation act, Parameterization p, int bias)
{
  Model m;
  char err[256], name[96];
  ModelConfig c = small_cfg(act, p, bias, p == PARAM_MF ? 1 : 2); /* mean field: one hidden layer */

  PetscFunctionBeginUser;
  if (model_build(&m, &c, err, sizeof err)) {
    MCHECK(0, "build: %s", err);
    PetscFunctionReturn(0);
  }
  snprintf(name, sizeof name, "%s/%s/bias%d", act_names_[act], param_name(p), bias);
  const int N = 8 + idx % 5, k = c.out_dim, d = c.in_dim, skew = idx % 2, Nk = N * k;
  const size_t P = m.n_params, PP = P * P;
  double *x = malloc((size_t)N * d * sizeof *x), *y = malloc((size_t)Nk * sizeof *y), *th = malloc(P * sizeof *th);
  double *v = malloc(P * sizeof *v), *u = malloc(P * sizeof *u), *hv = malloc(P * sizeof *hv), *hu = malloc(P * sizeof *hu);
  double *tp = malloc(P * sizeof *tp), *gp = malloc(P * sizeof *gp), *gm = malloc(P * sizeof *gm), *fd = malloc(P * sizeof *fd);
  double *H = malloc(PP * sizeof *H), *Hfd = malloc(PP * sizeof *Hfd), *Gm = malloc(PP * sizeof *Gm), *J = malloc((size_t)Nk * P * sizeof *J);
  double *evals = malloc(P * sizeof *evals);
  rng_normal_fill(x, (size_t)N * d, 7 + idx, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(y, (size_t)Nk, 8 + idx, RNG_STREAM_TEACHER_X, 0); /* O(1) residuals: R matters */
  model_init(&m, th, 100 + idx);
  rng_normal_fill(v, P, 200 + idx, RNG_STREAM_PROBE, 0);
  rng_normal_fill(u, P, 300 + idx, RNG_STREAM_PROBE, 0);

  /* H v against central differences of the analytic gradient along v: O(h^2) + O(eps/h). */
  const double h = 1e-5;
  hvp_full(&m, th, v, x, y, N, N, 0, hv);
  for (size_t i = 0; i < P; i++) tp[i] = th[i] + h * v[i];
  grad_full(&m, tp, x, y, N, gp);
  for (size_t i = 0; i < P; i++) tp[i] = th[i] - h * v[i];
  grad_full(&m, tp, x, y, N, gm);
  for (size_t i = 0; i < P; i++) fd[i] = (gp[i] - gm[i]) / (2 * h);
  double e = track(W_HV_FD, tu_rel_err(hv, fd, P));
  MCHECK(e <= 1e-6 && tu_all_finite(hv, P), "%s: H v vs gradient differences: rel err %.2e", name, e);

  /* The whole matrix: products by unit vectors against gradient-difference columns. */
  matrix_by_products(&m, th, x, y, N, 0, H);
  for (size_t j = 0; j < P; j++) {
    memcpy(tp, th, P * sizeof *tp);
    tp[j] = th[j] + h;
    grad_full(&m, tp, x, y, N, gp);
    tp[j] = th[j] - h;
    grad_full(&m, tp, x, y, N, gm);
    for (size_t i = 0; i < P; i++) Hfd[i * P + j] = (gp[i] - gm[i]) / (2 * h);
  }
  double Hs = max_abs(H, PP);
  e = track(W_H_FD, max_diff(H, Hfd, PP, Hs));
  MCHECK(e <= 1e-6 && Hs > 0, "%s: H vs gradient-difference columns: max err %.2e of %.3g", name, e, Hs);

  /* Entries against second differences of the loss alone (no gradient code involved):
   * H_ij ~ [L(++) - L(+-) - L(-+) + L(--)] / (4 h^2), h = 1e-4: truncation ~h^2, rounding ~eps L/h^2. */
  {
    const double hl = 1e-4;
    double worst = 0;
    for (int s = 0; s < 60; s++) {
      const size_t i = (size_t)(rng_u64(5, 40 + idx, 2 * s) % P), j = s < 12 ? i : (size_t)(rng_u64(5, 40 + idx, 2 * s + 1) % P);
      double L4[4];
      for (int q = 0; q < 4; q++) {
        memcpy(tp, th, P * sizeof *tp);
        tp[i] += (q < 2 ? hl : -hl);
        tp[j] += (q % 2 == 0 ? hl : -hl);
        L4[q] = loss_full(&m, tp, x, y, N);
      }
      const double Hij = (L4[0] - L4[1] - L4[2] + L4[3]) / (4 * hl * hl);
      worst = fmax(worst, fabs(Hij - H[i * P + j]) / fmax(1.0, Hs));
    }
    track(W_H_LOSS, worst);
    MCHECK(worst <= 1e-5, "%s: H entries vs loss second differences: max err %.2e", name, worst);
  }

  /* Symmetry: u^T H v = v^T H u (two independent products). */
  hvp_full(&m, th, u, x, y, N, 3, 0, hu);
  const double uhv = dot(u, hv, P), vhu = dot(v, hu, P);
  e = track(W_SYM, fabs(uhv - vhu) / (sqrt(dot(u, u, P) * dot(hv, hv, P))));
  MCHECK(e <= 1e-12, "%s: u^T H v %.17g vs v^T H u %.17g (rel %.2e)", name, uhv, vhu, e);
  /* Chunking: the same product in chunks of 3 (accumulated, normalised by N) and in one piece. */
  hvp_full(&m, th, v, x, y, N, 3, 0, hu);
  MCHECK(track(W_CHUNK, tu_rel_err(hu, hv, P)) <= 1e-13, "%s: chunked H v differs: %.2e", name, tu_rel_err(hu, hv, P));

  /* G v against J^T J v / N with J from JVP columns. */
  jacobian(&m, th, x, N, J);
  {
    double *Jv = malloc((size_t)Nk * sizeof *Jv), *ref = malloc(P * sizeof *ref);
    for (int r = 0; r < Nk; r++) Jv[r] = dot(J + (size_t)r * P, v, P);
    for (size_t i = 0; i < P; i++) {
      double s = 0;
      for (int r = 0; r < Nk; r++) s += J[(size_t)r * P + i] * Jv[r];
      ref[i] = s / N;
    }
    hvp_full(&m, th, v, x, y, N, 4, 1, hu);
    e = track(W_GN, tu_rel_err(hu, ref, P));
    MCHECK(e <= 1e-12 && max_abs(ref, P) > 0, "%s: G v vs J^T J v / N: rel err %.2e", name, e);
    for (size_t i = 0; i < P; i++)
      for (size_t j = 0; j < P; j++) {
        double s = 0;
        for (int r = 0; r < Nk; r++) s += J[(size_t)r * P + i] * J[(size_t)r * P + j];
        Gm[i * P + j] = s / N;
      }
    /* With y = f (zero residual) H is exactly G: the residual term is the only difference. */
    Tape t;
    double *f0 = malloc((size_t)Nk * sizeof *f0);
    tape_create(&t, &m, N);
    memcpy(f0, model_forward(&m, th, x, N, &t, NULL), (size_t)Nk * sizeof *f0);
    tape_destroy(&t);
    hvp_full(&m, th, v, x, f0, N, N, 0, hu);
    e = track(W_GN_ZERO, tu_rel_err(hu, ref, P));
    MCHECK(e <= 1e-12, "%s: H v at zero residual vs G v: rel err %.2e", name, e);
    /* ... and with the real targets the residual term is not negligible (so the checks bite). */
    MCHECK(tu_rel_err(hv, ref, P) > 1e-3 || act == ACT_IDENTITY, "%s: R v suspiciously small (%.2e)", name, tu_rel_err(hv, ref, P));
    free(f0);
    free(Jv);
    free(ref);
  }

  /* The operators are the lr-weighted D^1/2 H D^1/2 and D^1/2 G D^1/2 (docs/conventions.md
   * "Hessian"; D = I for ntk and sp, where this multiplies by 1): weigh the references the same. */
  {
    double *sd = malloc(P * sizeof *sd);
    model_lr_scales(&m, sd);
    for (size_t i = 0; i < P; i++) sd[i] = sqrt(sd[i]);
    for (size_t i = 0; i < P; i++)
      for (size_t j = 0; j < P; j++) H[i * P + j] *= sd[i] * sd[j], Gm[i * P + j] *= sd[i] * sd[j];
    free(sd);
    Hs = max_abs(H, PP);
  }

  /* Dense spectrum of H (products' matrix) and G. */
  eigs_asc(H, (int)P, evals);
  const double lmin = evals[0], lmax = evals[P - 1], top3[3] = {evals[P - 1], evals[P - 2], evals[P - 3]};
  const double scale = fmax(fabs(lmin), fabs(lmax));
  double trH = 0;
  for (size_t i = 0; i < P; i++) trH += H[i * P + i];
  double *gev = malloc(P * sizeof *gev);
  eigs_asc(Gm, (int)P, gev);
  const double gmax = gev[P - 1];
  free(gev);

  /* The operator on this rank's slice. Tape layouts vary: several chunks, and recomputation. */
  int first, nl;
  tu_slice_of(N, rank, size, skew, &first, &nl);
  if (idx % 3 == 0) PetscCall(PetscOptionsSetValue(NULL, "-hess_chunk", "2"));
  if (idx % 4 == 1) PetscCall(PetscOptionsSetValue(NULL, "-hess_tape_mb", "0"));
  Results res, ref;
  res.Hop = malloc(PP * sizeof(double));
  res.Gop = malloc(PP * sizeof(double));
  res.nodes = malloc(SLQ_PROBES * SLQ_STEPS * sizeof(double));
  res.weights = malloc(SLQ_PROBES * SLQ_STEPS * sizeof(double));
  ref = res;
  ref.Hop = malloc(PP * sizeof(double));
  ref.Gop = malloc(PP * sizeof(double));
  ref.nodes = malloc(SLQ_PROBES * SLQ_STEPS * sizeof(double));
  ref.weights = malloc(SLQ_PROBES * SLQ_STEPS * sizeof(double));
  PetscCall(run_operator(W, &m, x, y, N, first, nl, th, &res));

  e = track(W_SHELL_H, max_diff(res.Hop, H, PP, Hs));
  MCHECK(e <= 1e-12, "%s: shell H vs model_hvp over all samples: max err %.2e", name, e);
  e = track(W_SHELL_G, max_diff(res.Gop, Gm, PP, max_abs(Gm, PP)));
  MCHECK(e <= 1e-12, "%s: shell G vs J^T J / N: max err %.2e", name, e);
  MCHECK(tu_close(res.loss, loss_full(&m, th, x, y, N), 1e-13), "%s: loss %.17g vs %.17g", name, res.loss,
         loss_full(&m, th, x, y, N));
  int ok = res.nconv == 3;
  for (int i = 0; i < 3; i++) ok &= track(W_TOP, fabs(res.eig[i] - top3[i]) / scale) <= 1e-10 && res.resid[i] <= 1e-9;
  MCHECK(ok, "%s: Krylov-Schur top 3 (%.15g %.15g %.15g) vs dsyev (%.15g %.15g %.15g), nconv %d resid %.1e", name, res.eig[0],
         res.eig[1], res.eig[2], top3[0], top3[1], top3[2], res.nconv, res.resid[0]);
  MCHECK(res.nconv_min == 1 && track(W_MIN, fabs(res.emin - lmin) / scale) <= 1e-10 && res.rmin <= 1e-9,
         "%s: most negative %.15g vs dsyev %.15g (nconv %d, resid %.1e)", name, res.emin, lmin, res.nconv_min, res.rmin);
  MCHECK(lmin < 0 || act == ACT_IDENTITY, "%s: expected a negative eigenvalue, lambda_min %.3g", name, lmin);
  double lam_ntk;
  PetscCall(ntk_lambda(&m, x, N, first, nl, th, &lam_ntk));
  MCHECK(res.nconv_g == 1 && track(W_GN_NTK, fabs(res.gtop - lam_ntk) / lam_ntk) <= 1e-10 && fabs(res.gtop - gmax) <= 1e-10 * gmax,
         "%s: lambda_max(G) %.15g vs lambda_max(Theta) %.15g vs dsyev(J^T J/N) %.15g", name, res.gtop, lam_ntk, gmax);

  /* Hutchinson: the same probes' quadratic forms on the dense matrix (an identity up to rounding),
   * and the exact trace within 4 standard errors computed from H. */
  {
    double *z = malloc(P * sizeof *z), mean = 0, m2 = 0;
    for (int j = 0; j < TRACE_PROBES; j++) {
      probe(z, P, 77, j);
      const double t = quad(H, z, P), dl = t - mean;
      mean += dl / (j + 1);
      m2 += dl * (t - mean);
    }
    const double se_emp = sqrt(m2 / (TRACE_PROBES - 1) / TRACE_PROBES), se = hutch_se(H, P, TRACE_PROBES);
    MCHECK(track(W_TR_ID, fabs(res.trace - mean) / fmax(fabs(mean), Hs * P)) <= 1e-13 && tu_close(res.tse, se_emp, 1e-9),
           "%s: Hutchinson %.15g +- %.3g vs same probes on dense H %.15g +- %.3g", name, res.trace, res.tse, mean, se_emp);
    MCHECK(track(W_TR_Z, fabs(res.trace - trH) / se) <= 4 && res.tse >= 0.5 * se && res.tse <= 2 * se,
           "%s: Hutchinson %.6g +- %.3g vs exact trace %.6g (theoretical SE %.3g)", name, res.trace, res.tse, trH, se);
    free(z);
  }

  /* SLQ: weights >= 0 summing to 1/n_probe per probe; nodes inside the spectrum (Ritz values of an
   * orthonormal projection); moments p = 1..3 equal (1/n_probe) sum_j z_j^T H^p z_j / P exactly
   * (Gauss quadrature with m nodes is exact to degree 2m-1): tolerance 1e-9 scale^p, rounding of
   * 30 reorthogonalised Lanczos steps; and tr(H^p)/P within 4 standard errors of that estimator. */
  {
    const int nn = SLQ_PROBES * SLQ_STEPS;
    double wsum = 0, wmin = 0, nlo = INFINITY, nhi = -INFINITY, pw_err = 0;
    for (int j = 0; j < SLQ_PROBES; j++) {
      double s = 0;
      for (int i = 0; i < SLQ_STEPS; i++) s += res.weights[j * SLQ_STEPS + i];
      pw_err = fmax(pw_err, fabs(s - 1.0 / SLQ_PROBES));
    }
    for (int i = 0; i < nn; i++) {
      wsum += res.weights[i];
      wmin = fmin(wmin, res.weights[i]);
      nlo = fmin(nlo, res.nodes[i]);
      nhi = fmax(nhi, res.nodes[i]);
    }
    MCHECK(tu_all_finite(res.nodes, nn) && tu_all_finite(res.weights, nn) && fabs(wsum - 1) <= 1e-12 && pw_err <= 1e-13 && wmin >= 0,
           "%s: SLQ weights sum %.17g (per probe err %.1e, min %.3g)", name, wsum, pw_err, wmin);
    MCHECK(nlo >= lmin - 1e-9 * scale && nhi <= lmax + 1e-9 * scale, "%s: SLQ nodes [%.15g, %.15g] outside [%.15g, %.15g]", name,
           nlo, nhi, lmin, lmax);
    double *Hp = malloc(PP * sizeof *Hp), *tmp = malloc(PP * sizeof *tmp), *z = malloc(P * sizeof *z);
    memcpy(Hp, H, PP * sizeof *Hp);
    for (int pw = 1; pw <= 3; pw++) {
      if (pw > 1) {
        matmul(Hp, H, (int)P, tmp);
        memcpy(Hp, tmp, PP * sizeof *Hp);
      }
      double est = 0, tr = 0;
      for (int j = 0; j < SLQ_PROBES; j++) {
        probe(z, P, 99, j);
        est += quad(Hp, z, P) / P / SLQ_PROBES;
      }
      for (size_t i = 0; i < P; i++) tr += Hp[i * P + i] / P;
      const double mom = slq_moment(res.nodes, res.weights, nn, pw), sc = pow(scale, pw);
      const double se = hutch_se(Hp, P, SLQ_PROBES) / P;
      MCHECK(track(W_SLQ_ID, fabs(mom - est) / sc) <= 1e-12, "%s: SLQ moment %d %.15g vs probes' z^T H^p z / P %.15g (err %.2e of scale^p)", name, pw,
             mom, est, fabs(mom - est) / sc);
      MCHECK((track(W_SLQ_Z, fabs(mom - tr) / se), fabs(mom - tr) <= 4 * se + 1e-12 * sc), "%s: SLQ moment %d %.6g vs tr(H^p)/P %.6g, 4 SE = %.3g", name, pw, mom, tr, 4 * se);
    }
    free(Hp);
    free(tmp);
    free(z);
  }

  /* Rank-count independence: the same on one rank over all samples (rank 0, MPI_COMM_SELF). */
  if (rank == 0) PetscCall(run_operator(PETSC_COMM_SELF, &m, x, y, N, 0, N, th, &ref));
  PetscCallMPI(MPI_Bcast(ref.Hop, (int)PP, MPI_DOUBLE, 0, W));
  PetscCallMPI(MPI_Bcast(ref.eig, 3, MPI_DOUBLE, 0, W));
  PetscCallMPI(MPI_Bcast(&ref.emin, 1, MPI_DOUBLE, 0, W));
  PetscCallMPI(MPI_Bcast(&ref.trace, 1, MPI_DOUBLE, 0, W));
  PetscCallMPI(MPI_Bcast(ref.nodes, SLQ_PROBES * SLQ_STEPS, MPI_DOUBLE, 0, W));
  PetscCallMPI(MPI_Bcast(ref.weights, SLQ_PROBES * SLQ_STEPS, MPI_DOUBLE, 0, W));
  ok = track(W_RANKS, max_diff(res.Hop, ref.Hop, PP, Hs)) <= 1e-13 && fabs(res.trace - ref.trace) <= 1e-12 * Hs * P &&
       fabs(res.emin - ref.emin) <= 1e-9 * scale;
  for (int i = 0; i < 3; i++) ok &= fabs(res.eig[i] - ref.eig[i]) <= 1e-9 * scale;
  for (int pw = 1; pw <= 3; pw++)
    ok &= fabs(slq_moment(res.nodes, res.weights, SLQ_PROBES * SLQ_STEPS, pw) -
               slq_moment(ref.nodes, ref.weights, SLQ_PROBES * SLQ_STEPS, pw)) <= 1e-11 * pow(scale, pw);
  MCHECK(ok, "%s: %d ranks differ from 1 rank (operator %.2e, lambda %.17g vs %.17g, trace %.17g vs %.17g)", name, size,
         max_diff(res.Hop, ref.Hop, PP, Hs), res.eig[0], ref.eig[0], res.trace, ref.trace);

  PetscCall(PetscOptionsClearValue(NULL, "-hess_chunk"));
  PetscCall(PetscOptionsClearValue(NULL, "-hess_tape_mb"));
  free(res.Hop);
  free(res.Gop);
  free(res.nodes);
  free(res.weights);
  free(ref.Hop);
  free(ref.Gop);
  free(ref.nodes);
  free(ref.weights);
  free(x);
  free(y);
  free(th);
  free(v);
  free(u);
  free(hv);
  free(hu);
  free(tp);
  free(gp);
  free(gm);
  free(fd);
  free(H);
  free(Hfd);
  free(Gm);
  free(J);
  free(evals);
  model_destroy(&m);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ SLQ with m >= P */

/* A tiny net (P = 17) and m = 24 > P Lanczos steps: the recurrence breaks down at the Krylov
 * dimension, and then the quadrature is exact for every polynomial: moments p = 1..6 match the
 * probes' z^T H^p z / P, and the weights of each probe still sum to 1/n_probe. */
static PetscErrorCode test_slq_full(void)
{
  Model m;
  char err[256];
  ModelConfig c = small_cfg(ACT_TANH, PARAM_SP, 1, 1);
  c.in_dim = 2;
  c.width = 3;
  c.out_dim = 2;
  HessianOperator *op;
  const int N = 5, np = 6, ms = 24;

  PetscFunctionBeginUser;
  MCHECK(model_build(&m, &c, err, sizeof err) == 0, "build: %s", err);
  const size_t P = m.n_params, PP = P * P;
  double *x = malloc((size_t)N * c.in_dim * sizeof *x), *y = malloc((size_t)N * c.out_dim * sizeof *y), *th = malloc(P * sizeof *th);
  double *H = malloc(PP * sizeof *H), *Hp = malloc(PP * sizeof *Hp), *tmp = malloc(PP * sizeof *tmp), *z = malloc(P * sizeof *z);
  double *nodes = malloc((size_t)np * ms * sizeof *nodes), *w = malloc((size_t)np * ms * sizeof *w), *ev = malloc(P * sizeof *ev);
  rng_normal_fill(x, (size_t)N * c.in_dim, 31, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(y, (size_t)N * c.out_dim, 32, RNG_STREAM_TEACHER_X, 0);
  model_init(&m, th, 33);
  matrix_by_products(&m, th, x, y, N, 0, H);
  eigs_asc(H, (int)P, ev);
  const double scale = fmax(fabs(ev[0]), fabs(ev[P - 1]));
  int first, nl;
  tu_slice_of(N, rank, size, 0, &first, &nl);
  PetscCall(hessian_operator_create(&op, W, &m, x + (size_t)first * c.in_dim, y + (size_t)first * c.out_dim, nl, first, N));
  PetscCall(hessian_set_params(op, th));
  PetscCall(hessian_slq(op, np, ms, 5, nodes, w));
  PetscCall(hessian_operator_destroy(&op));
  double wsum = 0, nlo = INFINITY, nhi = -INFINITY;
  int zero_w = 0;
  for (int i = 0; i < np * ms; i++) {
    wsum += w[i];
    nlo = fmin(nlo, nodes[i]);
    nhi = fmax(nhi, nodes[i]);
    zero_w += w[i] == 0.0;
  }
  if (rank == 0) printf("SLQ m = %d > P = %zu: %d zero weights\n", ms, P, zero_w);
  MCHECK(tu_all_finite(nodes, (size_t)np * ms) && fabs(wsum - 1) <= 1e-12 && zero_w >= np * (ms - (int)P),
         "SLQ m > P: weights sum %.17g, %d zero weights (expected >= %d)", wsum, zero_w, np * (ms - (int)P));
  MCHECK(nlo >= ev[0] - 1e-9 * scale && nhi <= ev[P - 1] + 1e-9 * scale, "SLQ m > P: nodes [%.15g, %.15g] outside [%.15g, %.15g]", nlo,
         nhi, ev[0], ev[P - 1]);
  memcpy(Hp, H, PP * sizeof *Hp);
  double worst = 0;
  for (int pw = 1; pw <= 6; pw++) {
    if (pw > 1) {
      matmul(Hp, H, (int)P, tmp);
      memcpy(Hp, tmp, PP * sizeof *Hp);
    }
    double est = 0;
    for (int j = 0; j < np; j++) {
      probe(z, P, 5, j);
      est += quad(Hp, z, P) / P / np;
    }
    worst = fmax(worst, fabs(slq_moment(nodes, w, np * ms, pw) - est) / pow(scale, pw));
  }
  MCHECK(worst <= 1e-10, "SLQ m > P: moments 1..6 vs the probes' quadratic forms: max err %.2e of scale^p", worst);
  /* density: a probability density (integrates to 1 on a grid covering the nodes) */
  const int ng = 4001;
  double *grid = malloc(ng * sizeof *grid), *dens = malloc(ng * sizeof *dens), integral = 0;
  const double sig = 0.05 * scale, lo = nlo - 10 * sig, hi = nhi + 10 * sig, dx = (hi - lo) / (ng - 1);
  for (int g = 0; g < ng; g++) grid[g] = lo + g * dx;
  hessian_slq_density(dens, grid, ng, nodes, w, np * ms, sig);
  for (int g = 0; g < ng; g++) integral += dens[g] * dx * (g == 0 || g == ng - 1 ? 0.5 : 1.0);
  MCHECK(fabs(integral - 1) <= 1e-8, "SLQ density integrates to %.12g", integral);
  free(grid);
  free(dens);
  free(x);
  free(y);
  free(th);
  free(H);
  free(Hp);
  free(tmp);
  free(z);
  free(nodes);
  free(w);
  free(ev);
  model_destroy(&m);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ warm start and failures */

static PetscErrorCode test_solver_paths(void)
{
  Model m;
  char err[256];
  ModelConfig c = small_cfg(ACT_TANH, PARAM_NTK, 1, 2);
  HessianOperator *op;
  const int N = 12, nev = 2;

  PetscFunctionBeginUser;
  MCHECK(model_build(&m, &c, err, sizeof err) == 0, "build: %s", err);
  const size_t P = m.n_params;
  double *x = malloc((size_t)N * c.in_dim * sizeof *x), *y = malloc((size_t)N * c.out_dim * sizeof *y);
  double *th0 = malloc(P * sizeof *th0), *th1 = malloc(P * sizeof *th1), *H1 = malloc(P * P * sizeof *H1), *ev = malloc(P * sizeof *ev);
  double eig[2], resid[2], tr, se;
  rng_normal_fill(x, (size_t)N * c.in_dim, 41, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(y, (size_t)N * c.out_dim, 42, RNG_STREAM_TEACHER_X, 0);
  model_init(&m, th0, 43);
  rng_normal_fill(th1, P, 44, RNG_STREAM_PROBE, 0);
  for (size_t i = 0; i < P; i++) th1[i] = th0[i] + 1e-3 * th1[i];
  matrix_by_products(&m, th1, x, y, N, 0, H1);
  eigs_asc(H1, (int)P, ev);
  const double l1 = ev[P - 1], l2 = ev[P - 2];
  int first, nl, nconv, its_cold, its_warm;
  long mv_cold, mv_warm;
  tu_slice_of(N, rank, size, 1, &first, &nl);

  PetscCall(PetscOptionsSetValue(NULL, "-hess_eps_ncv", "6"));
  PetscCall(hessian_operator_create(&op, W, &m, x + (size_t)first * c.in_dim, y + (size_t)first * c.out_dim, nl, first, N));
  PetscCall(PetscOptionsClearValue(NULL, "-hess_eps_ncv"));
  PetscCall(hessian_set_params(op, th1));
  PetscCall(hessian_top_eigs(op, nev, eig, resid, &nconv));
  PetscCall(hessian_last_solve_stats(op, &its_cold, &mv_cold));
  MCHECK(nconv == nev && fabs(eig[0] - l1) <= 1e-8 * l1 && fabs(eig[1] - l2) <= 1e-8 * l1, "cold solve %.15g %.15g vs %.15g %.15g",
         eig[0], eig[1], l1, l2);
  PetscCall(hessian_reset_warm_start(op));
  PetscCall(hessian_set_params(op, th0));
  PetscCall(hessian_top_eigs(op, nev, eig, resid, &nconv));
  PetscCall(hessian_set_params(op, th1));
  PetscCall(hessian_top_eigs(op, nev, eig, resid, &nconv));
  PetscCall(hessian_last_solve_stats(op, &its_warm, &mv_warm));
  MCHECK(nconv == nev && fabs(eig[0] - l1) <= 1e-8 * l1 && fabs(eig[1] - l2) <= 1e-8 * l1, "warm solve %.15g %.15g vs %.15g %.15g",
         eig[0], eig[1], l1, l2);
  MCHECK(mv_warm < mv_cold, "warm start: %ld products (%d its) not fewer than cold %ld (%d its)", mv_warm, its_warm, mv_cold, its_cold);
  if (rank == 0)
    printf("warm start (P = %zu, ncv 6, nev %d): cold %ld products / %d restarts, warm %ld / %d\n", P, nev, mv_cold, its_cold,
           mv_warm, its_warm);

  /* A non-finite theta: NaN everywhere, nconv 0, no error; then a finite theta works again. */
  double *thn = malloc(P * sizeof *thn), nodes[8], w[8];
  memcpy(thn, th1, P * sizeof *thn);
  thn[P / 2] = NAN;
  PetscCall(hessian_set_params(op, thn));
  PetscErrorCode e1 = hessian_top_eigs(op, nev, eig, resid, &nconv);
  int nc2;
  double emin, rmin;
  PetscErrorCode e2 = hessian_min_eig(op, &emin, &rmin, &nc2);
  PetscErrorCode e3 = hessian_trace(op, 4, 1, &tr, &se);
  PetscErrorCode e4 = hessian_slq(op, 2, 4, 1, nodes, w);
  MCHECK(!e1 && !e2 && !e3 && !e4 && nconv == 0 && nc2 == 0 && isnan(eig[0]) && isnan(resid[1]) && isnan(emin) && isnan(tr) &&
             isnan(se) && isnan(nodes[0]) && isnan(w[7]),
         "NaN theta: errors %d %d %d %d, nconv %d %d, eig %g min %g trace %g", (int)e1, (int)e2, (int)e3, (int)e4, nconv, nc2, eig[0],
         emin, tr);
  PetscCall(hessian_set_params(op, th1));
  PetscCall(hessian_top_eigs(op, nev, eig, resid, &nconv));
  MCHECK(nconv == nev && fabs(eig[0] - l1) <= 1e-8 * l1, "after NaN: %.15g vs %.15g", eig[0], l1);
  PetscCall(hessian_operator_destroy(&op));

  /* An unconverged solve (one restart of a 4-vector basis): NaN for the missing ones, no error. */
  PetscCall(PetscOptionsSetValue(NULL, "-hess_eps_ncv", "4"));
  PetscCall(PetscOptionsSetValue(NULL, "-hess_eps_max_it", "1"));
  PetscCall(PetscOptionsSetValue(NULL, "-hess_min_eps_ncv", "4"));
  PetscCall(PetscOptionsSetValue(NULL, "-hess_min_eps_max_it", "1"));
  PetscCall(hessian_operator_create(&op, W, &m, x + (size_t)first * c.in_dim, y + (size_t)first * c.out_dim, nl, first, N));
  PetscCall(PetscOptionsClearValue(NULL, "-hess_eps_ncv"));
  PetscCall(PetscOptionsClearValue(NULL, "-hess_eps_max_it"));
  PetscCall(PetscOptionsClearValue(NULL, "-hess_min_eps_ncv"));
  PetscCall(PetscOptionsClearValue(NULL, "-hess_min_eps_max_it"));
  PetscCall(hessian_set_params(op, th1));
  e1 = hessian_top_eigs(op, nev, eig, resid, &nconv);
  int nan_tail = 1;
  for (int i = nconv; i < nev; i++) nan_tail &= isnan(eig[i]) && isnan(resid[i]);
  MCHECK(!e1 && nconv < nev && nan_tail, "unconverged top: ierr %d nconv %d eig %g %g", (int)e1, nconv, eig[0], eig[1]);
  e2 = hessian_min_eig(op, &emin, &rmin, &nc2);
  MCHECK(!e2 && nc2 == 0 && isnan(emin) && isnan(rmin), "unconverged min: ierr %d nconv %d eig %g", (int)e2, nc2, emin);
  PetscCall(hessian_operator_destroy(&op));

  /* Cost model: positive, linear in N plus the communication term. */
  const double c1 = hessian_cost_matvec(&m, 100), c2 = hessian_cost_matvec(&m, 200), c3 = hessian_cost_matvec(&m, 300);
  MCHECK(c1 > 0 && c2 > c1 && fabs((c3 - c2) - (c2 - c1)) <= 1e-9 * c3, "cost model %.3g %.3g %.3g", c1, c2, c3);

  free(thn);
  free(x);
  free(y);
  free(th0);
  free(th1);
  free(H1);
  free(ev);
  model_destroy(&m);
  PetscFunctionReturn(0);
}

/* Cold solves from the coarse levels (-hess_coarse_*) with the eigenvalue-error test
 * (-hess_conv value) against dsyev: the top eigenvalues to the tolerance, the coarse levels used
 * on a cold solve and not on a warm one; and the residual test from the same start. Run at 1 and 4
 * ranks, so the coarse subsample is checked to give the same answers on any rank count. */
static PetscErrorCode test_coarse_start(void)
{
  Model m;
  char err[256];
  ModelConfig c = small_cfg(ACT_RELU, PARAM_NTK, 1, 2);
  HessianOperator *op;
  const int N = 96, nev = 2;

  PetscFunctionBeginUser;
  MCHECK(model_build(&m, &c, err, sizeof err) == 0, "build: %s", err);
  const size_t P = m.n_params;
  double *x = malloc((size_t)N * c.in_dim * sizeof *x), *y = malloc((size_t)N * c.out_dim * sizeof *y);
  double *th = malloc(P * sizeof *th), *H = malloc(P * P * sizeof *H), *ev = malloc(P * sizeof *ev);
  rng_normal_fill(x, (size_t)N * c.in_dim, 51, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(y, (size_t)N * c.out_dim, 52, RNG_STREAM_TEACHER_X, 0);
  model_init(&m, th, 53);
  matrix_by_products(&m, th, x, y, N, 0, H);
  eigs_asc(H, (int)P, ev);
  const double l1 = ev[P - 1], l2 = ev[P - 2], scale = fmax(fabs(ev[0]), fabs(l1));
  int first, nl;
  tu_slice_of(N, rank, size, 1, &first, &nl);
  const char *convs[] = {"value", "residual"};
  const double tols[] = {1e-10, 1e-10};
  for (int t = 0; t < 2; t++) {
    double eig[2], resid[2];
    int nconv, its;
    long mv, cmv;
    double cwork;
    char tol[32];
    snprintf(tol, sizeof tol, "%g", tols[t]);
    PetscCall(PetscOptionsSetValue(NULL, "-hess_conv", convs[t]));
    PetscCall(PetscOptionsSetValue(NULL, "-hess_coarse_min", "4")); /* 96 -> 24 -> 6 samples */
    PetscCall(PetscOptionsSetValue(NULL, "-hess_eps_ncv", "4"));
    PetscCall(PetscOptionsSetValue(NULL, "-hess_eps_tol", tol));
    PetscCall(hessian_operator_create(&op, W, &m, x + (size_t)first * c.in_dim, y + (size_t)first * c.out_dim, nl, first, N));
    PetscCall(PetscOptionsClearValue(NULL, "-hess_conv"));
    PetscCall(PetscOptionsClearValue(NULL, "-hess_coarse_min"));
    PetscCall(PetscOptionsClearValue(NULL, "-hess_eps_ncv"));
    PetscCall(PetscOptionsSetValue(NULL, "-hess_eps_tol", "1e-12"));
    PetscCall(hessian_set_params(op, th));
    PetscCall(hessian_top_eigs(op, nev, eig, resid, &nconv));
    PetscCall(hessian_last_solve_stats(op, &its, &mv));
    PetscCall(hessian_last_solve_coarse(op, &cmv, &cwork));
    const double e0 = fabs(eig[0] - l1) / scale, e1 = fabs(eig[1] - l2) / scale;
    MCHECK(nconv == nev && e0 <= 10 * tols[t] && e1 <= 10 * tols[t] && cmv > 0 && cwork > 0 && cwork < cmv,
           "coarse start, %s test: %.15g %.15g vs dsyev %.15g %.15g (errors %.1e %.1e), coarse %ld products (%.2f full)", convs[t],
           eig[0], eig[1], l1, l2, e0, e1, cmv, cwork);
    MCHECK(t == 0 || (resid[0] <= 100 * tols[t] && resid[1] <= 100 * tols[t]), "residual test: residuals %.1e %.1e", resid[0],
           resid[1]);
    if (rank == 0)
      printf("coarse start, %s test (P = %zu, N = %d, tol %g): %ld products + %ld coarse (%.2f full), errors %.1e %.1e, resid %.1e\n",
             convs[t], P, N, tols[t], mv, cmv, cwork, e0, e1, resid[0]);
    PetscCall(hessian_top_eigs(op, nev, eig, resid, &nconv)); /* warm: no coarse work */
    PetscCall(hessian_last_solve_coarse(op, &cmv, &cwork));
    MCHECK(nconv == nev && cmv == 0 && cwork == 0 && fabs(eig[0] - l1) <= 10 * tols[t] * scale, "warm solve after coarse: %ld coarse products, %.15g",
           cmv, eig[0]);
    PetscCall(hessian_operator_destroy(&op));
  }
  free(x);
  free(y);
  free(th);
  free(H);
  free(ev);
  model_destroy(&m);
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscCall(SlepcInitialize(&argc, &argv, NULL, NULL));
  W = PETSC_COMM_WORLD;
  MPI_Comm_rank(W, &rank);
  tu_comm = W;
  tu_rank = rank;
  MPI_Comm_size(W, &size);
  /* Tight enough that the eigenvalues agree with dsyev to 1e-8 of the spectral scale. */
  PetscCall(PetscOptionsSetValue(NULL, "-hess_eps_tol", "1e-12"));
  PetscCall(PetscOptionsSetValue(NULL, "-hess_min_eps_tol", "1e-12"));
  PetscCall(PetscOptionsSetValue(NULL, "-hess_gn_eps_tol", "1e-12"));
  PetscCall(PetscOptionsSetValue(NULL, "-ntk_eps_tol", "1e-12"));
  /* The residual test, so that every recorded residual is bounded too (test_coarse_start covers
   * the eigenvalue-error test). */
  PetscCall(PetscOptionsSetValue(NULL, "-hess_conv", "residual"));

  test_kernels();
  const Parameterization params[] = {PARAM_NTK, PARAM_SP, PARAM_MUP};
  for (int p = 0; p < 3; p++)
    for (int b = 0; b <= 1; b++) test_closed_form(params[p], b);
  const Activation acts[] = {ACT_IDENTITY, ACT_RELU, ACT_TANH, ACT_ERF};
  const Parameterization all_params[] = {PARAM_NTK, PARAM_SP, PARAM_MUP, PARAM_ABC, PARAM_MF};
  int idx = 0;
  for (int a = 0; a < 4; a++)
    for (int p = 0; p < 5; p++)
      for (int b = 0; b <= 1; b++) PetscCall(test_config(idx++, acts[a], all_params[p], b));
  PetscCall(test_slq_full());
  PetscCall(test_solver_paths());
  PetscCall(PetscOptionsClearValue(NULL, "-hess_conv"));
  PetscCall(test_coarse_start());

  int fails = tu_failed;
  if (rank == 0) {
    printf("worst over all configurations:\n");
    for (int w = 0; w < W_COUNT; w++) printf("  %-58s %.2e\n", worst_name[w], worst[w]);
    tu_report("test_hessian");
  }
  PetscCall(SlepcFinalize());
  return fails ? 1 : 0;
}
