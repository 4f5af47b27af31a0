/* Feature-learning kernels (feature_kernels.h). Plain loops: they run once per recorded step on a probe
 * batch of ~100 samples, far from the cost of a training step. */
#include "feature_kernels.h"

#include <math.h>
#include <string.h>
#include <cblas.h>

double feat_spectral_norm_ref(const double *A1, const double *A0, double mult, int rows, int cols, double *v, double *work, int max_iter,
                          double tol, int *iters)
{
  double s2 = 0.0, prev = -1.0;
  int it = 0;
  for (; it < max_iter; it++) {
    /* u = D v (work), s2 = |u|^2 = v^T D^T D v with |v| = 1: the Rayleigh quotient */
    s2 = 0.0;
    for (int i = 0; i < rows; i++) {
      const double *a = A1 + (size_t)i * cols, *b = A0 + (size_t)i * cols;
      double u = 0.0;
      for (int j = 0; j < cols; j++) u += (a[j] - b[j]) * v[j];
      work[i] = mult * u;
      s2 += work[i] * work[i];
    }
    if (!(s2 > 0.0) || fabs(s2 - prev) <= tol * s2) break; /* zero, non-finite or converged */
    prev = s2;
    /* v <- D^T u / |D^T u| */
    double nrm = 0.0;
    for (int j = 0; j < cols; j++) v[j] = 0.0;
    for (int i = 0; i < rows; i++) {
      const double *a = A1 + (size_t)i * cols, *b = A0 + (size_t)i * cols;
      const double ui = mult * work[i];
      for (int j = 0; j < cols; j++) v[j] += (a[j] - b[j]) * ui;
    }
    for (int j = 0; j < cols; j++) nrm += v[j] * v[j];
    nrm = sqrt(nrm);
    for (int j = 0; j < cols; j++) v[j] /= nrm;
  }
  if (iters) *iters = it;
  return sqrt(s2);
}

/* out = C K C for a symmetric K: K_ab - m_a - m_b + m with m_a the row means, m the grand mean. */
static void center(const double *K, int N, double *out, double *m /* N */)
{
  double grand = 0.0;
  for (int a = 0; a < N; a++) {
    double s = 0.0;
    for (int b = 0; b < N; b++) s += K[(size_t)a * N + b];
    m[a] = s / N;
    grand += s;
  }
  grand /= (double)N * N;
  for (int a = 0; a < N; a++)
    for (int b = 0; b < N; b++) out[(size_t)a * N + b] = K[(size_t)a * N + b] - m[a] - m[b] + grand;
}

double feat_centered_alignment(const double *K, const double *L, int N, double *work)
{
  double *Kc = work, *Lc = work + (size_t)N * N, *m = work + 2 * (size_t)N * N;
  center(K, N, Kc, m);
  center(L, N, Lc, m);
  double kl = 0.0, kk = 0.0, ll = 0.0;
  for (size_t i = 0; i < (size_t)N * N; i++) kl += Kc[i] * Lc[i], kk += Kc[i] * Kc[i], ll += Lc[i] * Lc[i];
  if (!(kk > 0.0) || !(ll > 0.0)) return NAN;
  return kl / (sqrt(kk) * sqrt(ll));
}

void feat_gram_rows(const double *H_rows, int rows, const double *H_all, int N, int n, double scale, double *out)
{
  for (int a = 0; a < rows; a++)
    for (int b = 0; b < N; b++) {
      const double *x = H_rows + (size_t)a * n, *y = H_all + (size_t)b * n;
      double s = 0.0;
      for (int j = 0; j < n; j++) s += x[j] * y[j];
      out[(size_t)a * N + b] = scale * s;
    }
}

/* Largest eigenvalue of the symmetric tridiagonal T (diagonal a, off-diagonal b, m x m) by
 * bisection on Sturm counts: to the last bit, with no LAPACK in core. */
static double tridiag_top(const double *a, const double *b, int m)
{
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < m; i++) { /* Gershgorin */
    const double r = (i > 0 ? fabs(b[i - 1]) : 0) + (i < m - 1 ? fabs(b[i]) : 0);
    lo = fmin(lo, a[i] - r), hi = fmax(hi, a[i] + r);
  }
  for (int it = 0; it < 200 && hi - lo > 0; it++) {
    const double x = 0.5 * (lo + hi);
    if (x <= lo || x >= hi) break;
    int above = 0; /* eigenvalues > x: negative pivots of T - x I, negated */
    double d = 1.0;
    for (int i = 0; i < m; i++) {
      d = a[i] - x - (i > 0 ? b[i - 1] * b[i - 1] / d : 0.0);
      if (d == 0.0) d = -1e-300;
      above += d > 0;
    }
    if (above > 0) lo = x; else hi = x;
  }
  return hi;
}

/* The eigenvector y of T for its top eigenvalue theta: inverse iteration with the shift just above
 * theta, where T - shift I is negative definite and elimination without pivoting is stable. */
static void tridiag_vec(const double *a, const double *b, int m, double theta, double *y, double *c /* m */)
{
  const double shift = theta + 1e-12 * fabs(theta) + 1e-300;
  for (int i = 0; i < m; i++) y[i] = 1.0;
  for (int sweep = 0; sweep < 3; sweep++) {
    double d = a[0] - shift; /* forward elimination, c holds the pivots */
    c[0] = d;
    for (int i = 1; i < m; i++) {
      const double l = b[i - 1] / c[i - 1];
      c[i] = a[i] - shift - l * b[i - 1];
      y[i] -= l * y[i - 1];
    }
    y[m - 1] /= c[m - 1];
    for (int i = m - 2; i >= 0; i--) y[i] = (y[i] - b[i] * y[i + 1]) / c[i];
    double n = 0;
    for (int i = 0; i < m; i++) n += y[i] * y[i];
    n = sqrt(n);
    for (int i = 0; i < m; i++) y[i] /= n;
  }
}

size_t feat_spectral_work(int rows, int cols) { return (size_t)rows * cols + rows + (size_t)(FEAT_LANCZOS + 1) * cols + 4 * FEAT_LANCZOS; }

double feat_spectral_norm(const double *A1, const double *A0, double mult, int rows, int cols, double *v, double *work, int max_iter, double tol,
                          int *iters)
{
  const size_t rc = (size_t)rows * cols;
  double *D = work, *u = D + rc, *Q = u + rows, *a = Q + (size_t)(FEAT_LANCZOS + 1) * cols, *b = a + FEAT_LANCZOS, *y = b + FEAT_LANCZOS,
         *c = y + FEAT_LANCZOS;
  for (size_t i = 0; i < rc; i++) D[i] = mult * (A1[i] - A0[i]);
  const int mmax = cols < FEAT_LANCZOS ? cols : FEAT_LANCZOS;
  double theta = 0.0;
  int products = 0;
  while (products < max_iter) { /* Lanczos cycles on D^T D, each restarted from the last Ritz vector */
    double n = cblas_dnrm2(cols, v, 1);
    if (!(n > 0.0) || !isfinite(n)) break;
    for (int j = 0; j < cols; j++) Q[j] = v[j] / n;
    int m = 0; /* Lanczos vectors of this cycle */
    bool invariant = false;
    double prev = -1.0;
    while (m < mmax && products < max_iter) {
      double *q = Q + (size_t)m * cols, *w = q + cols;
      cblas_dgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0, D, cols, q, 1, 0.0, u, 1);
      cblas_dgemv(CblasRowMajor, CblasTrans, rows, cols, 1.0, D, cols, u, 1, 0.0, w, 1);
      products++;
      a[m] = cblas_ddot(cols, q, 1, w, 1);
      for (int pass = 0; pass < 2; pass++) /* full reorthogonalisation, twice is enough */
        for (int i = 0; i <= m; i++) cblas_daxpy(cols, -cblas_ddot(cols, Q + (size_t)i * cols, 1, w, 1), Q + (size_t)i * cols, 1, w, 1);
      b[m] = cblas_dnrm2(cols, w, 1);
      theta = tridiag_top(a, b, ++m);
      if (!isfinite(theta)) return NAN;
      invariant = !(b[m - 1] > 1e-14 * theta);
      if (invariant || fabs(theta - prev) <= tol * theta) break;
      prev = theta;
      cblas_dscal(cols, 1.0 / b[m - 1], w, 1);
    }
    if (theta == 0.0) break; /* D = 0: v stays the warm start */
    /* v = Q y, the Ritz vector: the next cycle's start and the next record's warm start */
    tridiag_vec(a, b, m, theta, y, c);
    cblas_dgemv(CblasRowMajor, CblasTrans, m, cols, 1.0, Q, cols, y, 1, 0.0, v, 1);
    cblas_dscal(cols, 1.0 / cblas_dnrm2(cols, v, 1), v, 1);
    if (invariant || fabs(b[m - 1] * y[m - 1]) <= sqrt(tol) * theta) break;
  }
  if (iters) *iters = products;
  return sqrt(theta);
}
