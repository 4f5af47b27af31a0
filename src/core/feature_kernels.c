/* Feature-learning kernels (feature_kernels.h). Plain loops: they run once per recorded step on a probe
 * batch of ~100 samples, far from the cost of a training step. */
#include "feature_kernels.h"

#include <math.h>

double feat_spectral_norm(const double *A1, const double *A0, double mult, int rows, int cols, double *v, double *work, int max_iter,
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
