/* Infinite-width NNGP and NTK kernels of fully connected nets (inf_kernels.h). */
#include "inf_kernels.h"
#include "arccos.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GH_MAX 160

/* Gauss-Hermite nodes and weights for the weight exp(-t^2) (n points, symmetric): Newton's method
 * on the orthonormal Hermite recurrence from the usual asymptotic starting guesses. Computed once
 * per n; a table of the last n is enough (the callers use one n per job). */
static int gh_n = 0;
static double gh_t[GH_MAX], gh_w[GH_MAX];

static void gauss_hermite(int n)
{
  if (n == gh_n) return;
  const double pim4 = 0.7511255444649425; /* pi^-1/4 */
  const int m = (n + 1) / 2;
  double z = 0, pp = 0;
  for (int i = 0; i < m; i++) {
    if (i == 0) z = sqrt(2.0 * n + 1) - 1.85575 * pow(2.0 * n + 1, -0.16667);
    else if (i == 1) z -= 1.14 * pow((double)n, 0.426) / z;
    else if (i == 2) z = 1.86 * z - 0.86 * gh_t[0];
    else if (i == 3) z = 1.91 * z - 0.91 * gh_t[1];
    else z = 2.0 * z - gh_t[i - 2];
    for (int it = 0; it < 100; it++) {
      double p1 = pim4, p2 = 0.0;
      for (int j = 1; j <= n; j++) {
        const double p3 = p2;
        p2 = p1;
        p1 = z * sqrt(2.0 / j) * p2 - sqrt((double)(j - 1) / j) * p3;
      }
      pp = sqrt(2.0 * n) * p2;
      const double z1 = z;
      z = z1 - p1 / pp;
      if (fabs(z - z1) <= 1e-15 * fabs(z)) break;
    }
    gh_t[i] = z, gh_t[n - 1 - i] = -z;
    gh_w[i] = gh_w[n - 1 - i] = 2.0 / (pp * pp);
  }
  gh_n = n;
}

/* The trapezoidal rule on t in [-T, T] for the weight exp(-t^2), spacing h: for an integrand
 * analytic in a strip |Im t| < a it converges like exp(-2 pi a / h) (and the Gaussian tail beyond
 * T = 6.1 is below 1e-16). tanh(sqrt(2 q) t) has its poles at a = pi / (2 sqrt(2 q)), so
 * h = min(0.15, 0.2 / sqrt(q)) keeps exp(-2 pi a / h) near 1e-15 at every variance: Gauss-Hermite
 * converges much more slowly there (inf_kernels.h). Nodes of the last (q-dependent) n kept. */
#define TR_MAX 4097
static int tr_n = 0;
static double tr_h = 0, tr_t[TR_MAX], tr_e[TR_MAX];

static void trapezoid(double q, int *n, double *h)
{
  const double T = 6.1;
  double hh = 0.2 / sqrt(q > 1e-300 ? q : 1e-300);
  if (hh > 0.15) hh = 0.15;
  int half = (int)ceil(T / hh);
  if (2 * half + 1 > TR_MAX) half = (TR_MAX - 1) / 2; /* variances beyond ~1e4: tanh is a sign there */
  hh = T / half;
  if (2 * half + 1 != tr_n || hh != tr_h) {
    tr_n = 2 * half + 1, tr_h = hh;
    for (int i = 0; i < tr_n; i++) tr_t[i] = (i - half) * hh, tr_e[i] = exp(-tr_t[i] * tr_t[i]);
  }
  *n = tr_n, *h = tr_h;
}

void inf_gauss_expect(double *e_phi, double *e_dphi, double q1, double q2, double c, const InfKernelSpec *s)
{
  switch (s->act) {
    case ACT_IDENTITY:
      *e_phi = c, *e_dphi = 1.0;
      return;
    case ACT_RELU: {
      const double s12 = sqrt(q1 * q2);
      if (!(s12 > 0)) { /* a zero variance: phi(u) = 0 and relu'(0) = 0 */
        *e_phi = 0.0, *e_dphi = 0.0;
        return;
      }
      /* th = arccos(c / s12) by atan2: exact on the diagonal (c = q1 = q2), where acos of a ratio
       * rounded to 1 - 1 ulp would be off by 1.5e-8 */
      const double det = q1 * q2 - c * c, th = atan2(sqrt(det > 0 ? det : 0.0), c);
      *e_phi = (s12 * sin(th) + (M_PI - th) * c) / (2 * M_PI);
      *e_dphi = (M_PI - th) / (2 * M_PI);
      return;
    }
    case ACT_ERF: {
      const double a = 1 + 2 * q1, b = 1 + 2 * q2;
      *e_phi = 2 / M_PI * asin(2 * c / sqrt(a * b));
      *e_dphi = 4 / M_PI / sqrt(a * b - 4 * c * c);
      return;
    }
    default: { /* tanh: u = sqrt(q1) z1, v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2), z1, z2 ~ N(0, 1) */
      const double s1 = sqrt(q1), s2 = sqrt(q2);
      double rho = s1 > 0 && s2 > 0 ? c / (s1 * s2) : 0.0;
      rho = rho > 1 ? 1 : rho < -1 ? -1 : rho;
      const double r2 = sqrt(1 - rho * rho);
      /* nodes z = sqrt(2) t and weights (summing to sqrt(pi) per dimension) of the chosen rule */
      int n;
      const double *t, *w;
      double hw = 0;
      if (s->gh_points > 0) {
        n = s->gh_points < GH_MAX ? s->gh_points : GH_MAX;
        gauss_hermite(n);
        t = gh_t, w = gh_w;
      } else {
        trapezoid(q1 > q2 ? q1 : q2, &n, &hw);
        t = tr_t, w = NULL;
      }
      double ep = 0, ed = 0;
      for (int i = 0; i < n; i++) {
        const double z1 = M_SQRT2 * t[i], u = s1 * z1, wi = w ? w[i] : hw * exp(-t[i] * t[i]);
        const double pu = act_value(u, s->act), du = act_deriv(u, s->act);
        double sp = 0, sd = 0;
        for (int j = 0; j < n; j++) {
          const double v = s2 * (rho * z1 + r2 * M_SQRT2 * t[j]), wj = w ? w[j] : hw * tr_e[j];
          sp += wj * act_value(v, s->act);
          sd += wj * act_deriv(v, s->act);
        }
        ep += wi * pu * sp;
        ed += wi * du * sd;
      }
      *e_phi = ep / M_PI, *e_dphi = ed / M_PI;
      return;
    }
  }
}

/* One layer of the diagonal: q <- sigma_w^2 E[phi(u)^2] + sigma_b^2, u ~ N(0, q). */
static double next_var(double q, const InfKernelSpec *s)
{
  double e, ed;
  inf_gauss_expect(&e, &ed, q, q, q, s);
  return s->sigma_w * s->sigma_w * e + s->sigma_b * s->sigma_b;
}

/* The off-diagonal recursion of a pair whose diagonals at every layer are q1[l], q2[l]. */
static void pair_from_diag(double *K, double *T, double k12, const double *q1, const double *q2, const InfKernelSpec *s)
{
  const double sw2 = s->sigma_w * s->sigma_w, sb2 = s->sigma_b * s->sigma_b;
  double k = k12, t = k12;
  for (int l = 0; l < s->depth; l++) {
    double e, ed;
    inf_gauss_expect(&e, &ed, q1[l], q2[l], k, s);
    k = sw2 * e + sb2;
    t = k + sw2 * ed * t;
  }
  if (K) *K = k;
  if (T) *T = t;
}

void inf_kernel_pair(double *K, double *Theta, double k11, double k22, double k12, const InfKernelSpec *s)
{
  double *q = malloc(2 * (size_t)s->depth * sizeof *q);
  q[0] = k11, q[s->depth] = k22;
  for (int l = 1; l < s->depth; l++) q[l] = next_var(q[l - 1], s), q[s->depth + l] = next_var(q[s->depth + l - 1], s);
  pair_from_diag(K, Theta, k12, q, q + s->depth, s);
  free(q);
}

static double first_layer(const double *a, const double *b, int d, const InfKernelSpec *s)
{
  double dot = 0;
  for (int i = 0; i < d; i++) dot += a[i] * b[i];
  return s->sigma_w * s->sigma_w * dot / d + s->sigma_b * s->sigma_b;
}

void inf_kernel_block_ref(double *K, double *Theta, const double *x1, int n1, const double *x2, int n2, int d, const InfKernelSpec *s)
{
  for (int i = 0; i < n1; i++)
    for (int j = 0; j < n2; j++) {
      const double *a = x1 + (size_t)i * d, *b = x2 + (size_t)j * d;
      inf_kernel_pair(K ? &K[(size_t)i * n2 + j] : NULL, Theta ? &Theta[(size_t)i * n2 + j] : NULL, first_layer(a, a, d, s),
                      first_layer(b, b, d, s), first_layer(a, b, d, s), s);
    }
}

/* Diagonal variances of every sample at layers 1..L: q[i*L + l]. */
static void diag_vars(double *q, const double *x, int n, int d, const InfKernelSpec *s)
{
  for (int i = 0; i < n; i++) {
    double *qi = q + (size_t)i * s->depth, acc[8] = {0}, dot = 0;
    const double *xi = x + (size_t)i * d;
    int j = 0;
    for (; j + 8 <= d; j += 8) /* x.x in 8 partial sums: vectorised, not bound by the add latency */
      for (int u = 0; u < 8; u++) acc[u] += xi[j + u] * xi[j + u];
    for (; j < d; j++) acc[0] += xi[j] * xi[j];
    for (int u = 0; u < 8; u++) dot += acc[u];
    qi[0] = s->sigma_w * s->sigma_w * dot / d + s->sigma_b * s->sigma_b;
    for (int l = 1; l < s->depth; l++) qi[l] = next_var(qi[l - 1], s);
  }
}

/* The relu recursion of one row: k (n) = K_1 on entry, K_{L+1} on exit; t (n) = Theta likewise;
 * sqi, iqi (L) sqrt and 1 / sqrt of the row sample's variances, sqt, iqt (L x n, row stride ld)
 * the column samples'. Layer by layer over the whole row (k and t stay in L1), the expectations and
 * the update in one loop, so it vectorises as wide as the machine allows (arccos.h). */
NTK_VECTOR_CLONES static void relu_rows(double *restrict k, double *restrict t, const double *restrict sqi, const double *restrict iqi,
                                        const double *restrict sqt, const double *restrict iqt, size_t ld, int L, int n, double sw2, double sb2)
{
  const double c = sw2 * (1 / (2 * M_PI));
  for (int l = 0; l < L; l++) {
    const double sa = sqi[l] * c, ia = iqi[l], *sb = sqt + l * ld, *ib = iqt + l * ld;
    for (int j = 0; j < n; j++) {
      double f, pt;
      relu_arccos_raw(&f, &pt, k[j] * (ia * ib[j]));
      /* sw2 E = (c sqrt(qa) sqrt(qb)) f, 0 at a zero variance (f is finite there: r = 0);
       * sw2 Ed = c pt, 0 at a zero variance (relu'(0) = 0) */
      k[j] = fma(sa * sb[j], f, sb2);
      t[j] = fma(sb[j] > 0 && sa > 0 ? c * pt : 0.0, t[j], k[j]);
    }
  }
}

/* How many of g (n) lie within tol of c (written as a count so that it vectorises). */
NTK_VECTOR_CLONES static int count_near(const double *restrict g, int n, double c, double tol)
{
  int m = 0;
  for (int j = 0; j < n; j++) m += fabs(g[j] - c) <= tol;
  return m;
}

void inf_kernel_block(double *K, double *Theta, const double *x1, int n1, const double *x2, int n2, int d, const InfKernelSpec *s)
{
  if (n1 <= 0 || n2 <= 0 || (!K && !Theta)) return;
  const int L = s->depth;
  /* the same samples on both sides: the upper triangle only (K_1 by SYRK, the recursion for j >= i),
   * then mirrored */
  const int sym = x1 == x2 && n1 == n2;
  double *q1 = malloc((size_t)n1 * L * sizeof *q1), *q2 = sym ? q1 : malloc((size_t)n2 * L * sizeof *q2);
  diag_vars(q1, x1, n1, d, s);
  if (!sym) diag_vars(q2, x2, n2, d, s);
  /* K_1 off the diagonal, sigma_w^2 / d * x1 x2^T (+ sigma_b^2 below), into an output array: each
   * row is read before the recursion writes it */
  double *g = K ? K : Theta;
  if (sym) cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n1, d, s->sigma_w * s->sigma_w / d, x1, d, 0.0, g, n2);
  else cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n1, n2, d, s->sigma_w * s->sigma_w / d, x1, d, x2, d, 0.0, g, n2);
  const double sb2 = s->sigma_b * s->sigma_b;
  /* A sample paired with itself takes its diagonal value, bit for bit: the GEMM's rounding of x.x
   * leaves c a few ulps off q, and arccos near 1 turns that into 1e-8. Such pairs are found from K_1
   * first (a vectorised test per row, then the row's candidates; symmetric: the upper triangle) and
   * set after the recursion. */
  int nself = 0, cap = 0, *self = NULL;
  for (int i = 0; i < n1; i++) {
    const int j0 = sym ? i : 0;
    const double qi = q1[(size_t)i * L], *gi = g + (size_t)i * n2;
    if (!count_near(gi + j0, n2 - j0, qi - sb2, 1e-12 * qi)) continue;
    for (int j = j0; j < n2; j++) {
      const double *a = x1 + (size_t)i * d, *b = x2 + (size_t)j * d;
      if (fabs(gi[j] + sb2 - qi) <= 1e-12 * qi && (a == b || memcmp(a, b, (size_t)d * sizeof *a) == 0)) {
        if (nself == cap) self = realloc(self, 2 * (size_t)(cap = 2 * cap + 16) * sizeof *self);
        self[2 * nself] = i, self[2 * nself + 1] = j, nself++;
      }
    }
  }
  if (s->act == ACT_RELU) { /* row by row, every layer over the whole row: the loops vectorise (arccos.h) */
    const double sw2 = s->sigma_w * s->sigma_w;
    /* sqrt and 1 / sqrt of the variances: columns layer-major (L x n2), rows per sample (n1 x L) */
    double *qt = malloc((size_t)L * n2 * sizeof *qt), *sqt = malloc(2 * (size_t)L * n2 * sizeof *sqt), *iqt = sqt + (size_t)L * n2;
    double *sq1 = malloc(2 * (size_t)L * n1 * sizeof *sq1), *iq1 = sq1 + (size_t)L * n1;
    for (int j = 0; j < n2; j++)
      for (int l = 0; l < L; l++) qt[(size_t)l * n2 + j] = q2[(size_t)j * L + l];
    sqrt_and_inverse(sqt, iqt, qt, L * n2);
    sqrt_and_inverse(sq1, iq1, q1, L * n1);
    double *k = malloc((size_t)n2 * 2 * sizeof *k), *t = k + n2;
    for (int i = 0; i < n1; i++) {
      const int j0 = sym ? i : 0, m = n2 - j0;
      const double *gi = g + (size_t)i * n2 + j0;
      for (int j = 0; j < m; j++) k[j] = t[j] = gi[j] + sb2;
      relu_rows(k, t, sq1 + (size_t)i * L, iq1 + (size_t)i * L, sqt + j0, iqt + j0, (size_t)n2, L, m, sw2, sb2);
      if (K) memcpy(K + (size_t)i * n2 + j0, k, (size_t)m * sizeof *k);
      if (Theta) memcpy(Theta + (size_t)i * n2 + j0, t, (size_t)m * sizeof *t);
    }
    free(qt), free(sqt), free(sq1), free(k);
  } else
    for (int i = 0; i < n1; i++)
      for (int j = sym ? i : 0; j < n2; j++) {
        const size_t ij = (size_t)i * n2 + j;
        pair_from_diag(K ? &K[ij] : NULL, Theta ? &Theta[ij] : NULL, g[ij] + sb2, q1 + (size_t)i * L, q2 + (size_t)j * L, s);
      }
  for (int u = 0; u < nself; u++) {
    const int i = self[2 * u], j = self[2 * u + 1];
    const size_t ij = (size_t)i * n2 + j;
    pair_from_diag(K ? &K[ij] : NULL, Theta ? &Theta[ij] : NULL, q1[(size_t)i * L], q1 + (size_t)i * L, q2 + (size_t)j * L, s);
  }
  if (sym) { /* the lower triangle by symmetry, in cache-sized blocks */
    const int B = 32;
    for (int bi = 0; bi < n1; bi += B)
      for (int bj = 0; bj <= bi; bj += B)
        for (int i = bi; i < bi + B && i < n1; i++)
          for (int j = bj; j < bj + B && j < i; j++) {
            const size_t ij = (size_t)i * n2 + j, ji = (size_t)j * n2 + i;
            if (K) K[ij] = K[ji];
            if (Theta) Theta[ij] = Theta[ji];
          }
  }
  free(q1), free(self);
  if (!sym) free(q2);
}

bool inf_kernel_activation_supported(Activation a) { return a == ACT_IDENTITY || a == ACT_RELU || a == ACT_ERF || a == ACT_TANH; }

double inf_kernel_pair_flops(int d, const InfKernelSpec *s)
{
  const double n = s->gh_points > 0 ? (s->gh_points < GH_MAX ? s->gh_points : GH_MAX) : 83.0;
  const double per_layer = s->act == ACT_TANH ? 50.0 * n * n : 50.0;
  return 2.0 * d + per_layer * s->depth;
}
