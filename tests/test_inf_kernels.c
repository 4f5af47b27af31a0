/* inf_kernels.c against independent references:
 *   - inf_kernel_block (diagonals once, GEMM) against inf_kernel_block_ref (pair by pair), on a cross
 *     block and on a symmetric one (SYRK, one triangle mirrored, a repeated sample), K and Theta
 *     alone as together;
 *   - relu's closed forms against 1-D integrals of the conditional Gaussian (v | u is Gaussian, so
 *     E[relu(v) | u] and P(v > 0 | u) are closed and one Simpson integral over u remains);
 *   - erf's and identity's closed forms, and tanh's Gauss-Hermite quadrature, against a fine 2-D
 *     midpoint rule; tanh's quadrature converged: 64 points against 200 within 1e-12 relative for
 *     variances up to 10 (the accuracy inf_kernels.h states);
 *   - the kernels against wide random nets: the empirical NTK J J^T (per output, no 1/N) and the
 *     readout kernel sigma_w^2 phi(h_L).phi(h_L')/n + sigma_b^2 of ntk-parameterized nets of width
 *     1024, averaged over 16 seeds, within 4 standard errors plus the O(1/n) bias. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "inf_kernels.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"

static const Activation acts[] = {ACT_IDENTITY, ACT_RELU, ACT_TANH, ACT_ERF};

static double normal_pdf(double z) { return exp(-0.5 * z * z) / sqrt(2 * M_PI); }
static double normal_cdf(double z) { return 0.5 * erfc(-z / M_SQRT2); }

/* E[relu(u) relu(v)] and P(u > 0, v > 0) by Simpson's rule over u = sqrt(q1) z, z in [0, 12]. */
static void relu_by_integral(double *e, double *ed, double q1, double q2, double c)
{
  const int n = 20000;
  const double h = 12.0 / n, s1 = sqrt(q1), b = c / q1, sv = sqrt(fmax(q2 - c * c / q1, 0));
  double se = 0, sd = 0;
  for (int i = 0; i <= n; i++) {
    const double z = i * h, u = s1 * z, m = b * u, w = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2);
    const double er = sv > 0 ? m * normal_cdf(m / sv) + sv * normal_pdf(m / sv) : fmax(m, 0);
    const double pr = sv > 0 ? normal_cdf(m / sv) : (b > 0); /* v = b u: positive with u when b > 0 */
    se += w * normal_pdf(z) * u * er;
    sd += w * normal_pdf(z) * pr;
  }
  *e = se * h / 3, *ed = sd * h / 3;
}

/* E[phi(u) phi(v)], E[phi'(u) phi'(v)] by a fine 2-D midpoint rule over z1, z2 in [-9, 9], with
 * u = sqrt(q1) z1, v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2): the reference for the others. */
static void midpoint_expect(double *e, double *ed, Activation a, double q1, double q2, double c)
{
  const double rho = c / sqrt(q1 * q2), r2 = sqrt(fmax(1 - rho * rho, 0));
  const int m = 1601;
  const double L = 9.0, h = 2 * L / (m - 1);
  double sp = 0, sd = 0;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < m; j++) {
      const double z1 = -L + i * h, z2 = -L + j * h, w = normal_pdf(z1) * normal_pdf(z2) * h * h;
      const double u = sqrt(q1) * z1, v = sqrt(q2) * (rho * z1 + r2 * z2);
      sp += w * act_value(u, a) * act_value(v, a);
      sd += w * act_deriv(u, a) * act_deriv(v, a);
    }
  *e = sp, *ed = sd;
}

static void test_expectations(void)
{
  const double cases[][3] = {{1, 1, 0.3},   {2.5, 0.7, -0.9},  {0.4, 3, 1.0},       {1.3, 1.3, 1.3},      {5, 2, 2.9},
                             {0.2, 8, -0.05}, {20, 20, 5},     {20, 20, 19.99},     {0.01, 0.02, 0.001}, {1.2, 0.9, 0.2}};
  double worst[5] = {0};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    const double q1 = cases[k][0], q2 = cases[k][1], c = cases[k][2];
    double e, ed, r, rd;
    InfKernelSpec s = {.depth = 1, .act = ACT_RELU, .sigma_w = 1, .sigma_b = 0, .gh_points = 0};
    inf_gauss_expect(&e, &ed, q1, q2, c, &s);
    relu_by_integral(&r, &rd, q1, q2, c);
    worst[0] = fmax(worst[0], fmax(fabs(e - r) / fabs(r), fabs(ed - rd) / fabs(rd)));
    /* erf and identity: the closed forms against the tensor Gauss-Hermite rule of the tanh path */
    for (int a = 0; a < 2; a++) {
      s.act = a ? ACT_ERF : ACT_IDENTITY;
      inf_gauss_expect(&e, &ed, q1, q2, c, &s);
      double gp, gd;
      midpoint_expect(&gp, &gd, a ? ACT_ERF : ACT_IDENTITY, q1, q2, c);
      worst[1 + a] = fmax(worst[1 + a], fmax(fabs(e - gp) / fmax(fabs(gp), 1e-3), fabs(ed - gd) / fabs(gd)));
    }
    /* tanh: the default trapezoidal rule against a fine 2-D midpoint rule, and 128-point
     * Gauss-Hermite where it is accurate (variances about 1) */
    double t0, d0;
    s = (InfKernelSpec){.depth = 1, .act = ACT_TANH, .sigma_w = 1, .sigma_b = 0, .gh_points = 0};
    inf_gauss_expect(&t0, &d0, q1, q2, c, &s);
    double gp, gd;
    midpoint_expect(&gp, &gd, ACT_TANH, q1, q2, c);
    worst[3] = fmax(worst[3], fmax(fabs(t0 - gp) / fabs(gp), fabs(d0 - gd) / fabs(gd)));
    if (q1 <= 1.5 && q2 <= 1.5) {
      double tg, dg;
      s.gh_points = 128;
      inf_gauss_expect(&tg, &dg, q1, q2, c, &s);
      worst[4] = fmax(worst[4], fmax(fabs(tg - gp) / fabs(gp), fabs(dg - gd) / fabs(gd)));
    }
  }
  printf("expectations: relu vs 1-D integrals %.1e, identity and erf vs 2-D rule %.1e %.1e, tanh (trapezoid) vs 2-D rule %.1e, "
         "tanh (128-point Gauss-Hermite, variance <= 1.5) %.1e\n", worst[0], worst[1], worst[2], worst[3], worst[4]);
  CHECK(worst[0] < 1e-9, "relu closed form vs integrals: %.2e", worst[0]);
  CHECK(worst[1] < 1e-9 && worst[2] < 1e-9, "identity / erf closed forms vs 2-D rule: %.2e %.2e", worst[1], worst[2]);
  CHECK(worst[3] < 1e-10 && worst[4] < 1e-8, "tanh quadratures vs 2-D rule: trapezoid %.2e, Gauss-Hermite %.2e", worst[3], worst[4]);
}

static void test_block_vs_ref(void)
{
  const int n1 = 5, n2 = 7, d = 6;
  double x1[5 * 6], x2[7 * 6], K[35], T[35], Kr[35], Tr[35];
  rng_normal_fill(x1, (size_t)n1 * d, 3, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(x2, (size_t)n2 * d, 4, RNG_STREAM_TEACHER_X, 0);
  memset(x1, 0, (size_t)d * sizeof *x1); /* a zero input: zero variance without biases */
  for (int a = 0; a < 4; a++)
    for (int L = 1; L <= 3; L++)
      for (int b = 0; b <= 1; b++) {
        const InfKernelSpec s = {.depth = L, .act = acts[a], .sigma_w = 1.3, .sigma_b = b ? 0.4 : 0.0, .gh_points = 0};
        inf_kernel_block(K, T, x1, n1, x2, n2, d, &s);
        inf_kernel_block_ref(Kr, Tr, x1, n1, x2, n2, d, &s);
        int fin = 1;
        for (int i = 0; i < 35; i++) fin &= isfinite(K[i]) && isfinite(T[i]);
        CHECK(fin && tu_rel_err(K, Kr, 35) < 1e-14 && tu_rel_err(T, Tr, 35) < 1e-14, "%s depth %d bias %d: block vs ref %.2e %.2e",
              act_name(acts[a]), L, b, tu_rel_err(K, Kr, 35), tu_rel_err(T, Tr, 35));
        /* one output at a time (the first layer's product then lives in that output) */
        double K1[35], T1[35];
        inf_kernel_block(K1, NULL, x1, n1, x2, n2, d, &s);
        inf_kernel_block(NULL, T1, x1, n1, x2, n2, d, &s);
        CHECK(memcmp(K1, K, sizeof K) == 0 && memcmp(T1, T, sizeof T) == 0, "%s depth %d bias %d: K alone and Theta alone as together",
              act_name(acts[a]), L, b);
      }
  /* the symmetric block (x against itself: SYRK, one triangle, mirrored), with a zero sample and a
   * sample repeated (rows 1 and 4: its off-diagonal self-pair also takes the diagonal value) */
  enum { n = 6 };
  double x[n * 6], Ks[n * n], Ts[n * n], Ksr[n * n], Tsr[n * n];
  rng_normal_fill(x, (size_t)n * d, 5, RNG_STREAM_TEACHER_X, 0);
  memset(x + 2 * d, 0, (size_t)d * sizeof *x);
  memcpy(x + 4 * d, x + 1 * d, (size_t)d * sizeof *x);
  for (int a = 0; a < 4; a++)
    for (int L = 1; L <= 3; L++)
      for (int b = 0; b <= 1; b++) {
        const InfKernelSpec s = {.depth = L, .act = acts[a], .sigma_w = 1.3, .sigma_b = b ? 0.4 : 0.0, .gh_points = 0};
        inf_kernel_block(Ks, Ts, x, n, x, n, d, &s);
        inf_kernel_block_ref(Ksr, Tsr, x, n, x, n, d, &s);
        /* against the reference on the upper triangle (which the block computes; tanh's quadrature
         * in the reference is not exactly symmetric in the pair, to ~1e-14), and exactly symmetric */
        int fin = 1, symm = 1, m = 0;
        double ku[n * n], tu[n * n], kur[n * n], tur[n * n];
        for (int i = 0; i < n * n; i++) fin &= isfinite(Ks[i]) && isfinite(Ts[i]);
        for (int i = 0; i < n; i++)
          for (int j = 0; j < n; j++) {
            symm &= Ks[i * n + j] == Ks[j * n + i] && Ts[i * n + j] == Ts[j * n + i];
            if (j >= i) ku[m] = Ks[i * n + j], tu[m] = Ts[i * n + j], kur[m] = Ksr[i * n + j], tur[m] = Tsr[i * n + j], m++;
          }
        CHECK(fin && symm && tu_rel_err(ku, kur, m) < 1e-14 && tu_rel_err(tu, tur, m) < 1e-14,
              "%s depth %d bias %d: symmetric block vs ref %.2e %.2e (symmetric %d)", act_name(acts[a]), L, b, tu_rel_err(ku, kur, m),
              tu_rel_err(tu, tur, m), symm);
        CHECK(Ts[1 * n + 4] == Ts[1 * n + 1] && Ks[4 * n + 1] == Ks[4 * n + 4], "%s depth %d bias %d: a repeated sample's pair takes the diagonal value",
              act_name(acts[a]), L, b);
      }
}

/* Wide ntk-parameterized nets: the empirical NTK (J J^T, one output) and readout kernel of N
 * samples, mean and standard error over seeds, against the analytic kernels. */
static void test_wide_nets(void)
{
  const int N = 3, d = 5, n = 1024, S = 16;
  double x[3 * 5];
  rng_normal_fill(x, (size_t)N * d, 9, RNG_STREAM_TEACHER_X, 0);
  for (int a = 0; a < 4; a++) {
    const int L = 2;
    ModelConfig c = {0};
    c.arch = ARCH_FC, c.in_dim = d, c.out_dim = 1, c.depth = L, c.width = n, c.act = acts[a], c.bias = true;
    c.sigma_w = 1.4, c.sigma_b = 0.3, c.param = PARAM_NTK, c.base_width = 1;
    Model m;
    char err[256];
    if (model_build(&m, &c, err, sizeof err)) {
      CHECK(0, "build: %s", err);
      continue;
    }
    const InfKernelSpec s = {.depth = L, .act = acts[a], .sigma_w = c.sigma_w, .sigma_b = c.sigma_b, .gh_points = 0};
    double K[9], T[9], sumT[9] = {0}, sqT[9] = {0}, sumK[9] = {0}, sqK[9] = {0};
    inf_kernel_block(K, T, x, N, x, N, d, &s);
    double *theta = malloc(m.n_params * sizeof *theta), *J = malloc((size_t)N * m.n_params * sizeof *J);
    Tape t;
    tape_create(&t, &m, N);
    const int hidden = m.ops[m.n_ops - 1].in; /* the readout's input: phi(h_L) */
    for (int seed = 0; seed < S; seed++) {
      model_init(&m, theta, 1000 + (uint64_t)seed);
      model_forward(&m, theta, x, N, &t, NULL);
      memset(J, 0, (size_t)N * m.n_params * sizeof *J);
      for (int i = 0; i < N; i++) { /* J row i = VJP of the unit cotangent on sample i */
        double dout[3] = {0, 0, 0};
        dout[i] = 1;
        model_vjp(&m, theta, dout, N, &t, J + (size_t)i * m.n_params, NULL);
      }
      for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
          double tij = 0, kij = 0;
          for (size_t p = 0; p < m.n_params; p++) tij += J[(size_t)i * m.n_params + p] * J[(size_t)j * m.n_params + p];
          const double *hi = t.act[hidden] + (size_t)i * n, *hj = t.act[hidden] + (size_t)j * n;
          for (int u = 0; u < n; u++) kij += hi[u] * hj[u];
          kij = c.sigma_w * c.sigma_w * kij / n + c.sigma_b * c.sigma_b;
          sumT[i * N + j] += tij, sqT[i * N + j] += tij * tij;
          sumK[i * N + j] += kij, sqK[i * N + j] += kij * kij;
        }
    }
    double zT = 0, zK = 0;
    for (int q = 0; q < N * N; q++) {
      const double mT = sumT[q] / S, seT = sqrt(fmax(sqT[q] / S - mT * mT, 0) / (S - 1)) + 2.0 / n * fabs(T[q]);
      const double mK = sumK[q] / S, seK = sqrt(fmax(sqK[q] / S - mK * mK, 0) / (S - 1)) + 2.0 / n * fabs(K[q]);
      zT = fmax(zT, fabs(mT - T[q]) / seT), zK = fmax(zK, fabs(mK - K[q]) / seK);
    }
    printf("width %d, %s: empirical NTK and readout kernel within %.2f and %.2f standard errors of the analytic ones (Theta_11 %.6g)\n",
           n, act_name(acts[a]), zT, zK, T[0]);
    CHECK(zT < 4 && zK < 4, "%s: empirical vs analytic: %.2f / %.2f standard errors", act_name(acts[a]), zT, zK);
    tape_destroy(&t);
    free(theta), free(J);
    model_destroy(&m);
  }
}

int main(void)
{
  test_expectations();
  test_block_vs_ref();
  test_wide_nets();
  return tu_report("test_inf_kernels");
}
