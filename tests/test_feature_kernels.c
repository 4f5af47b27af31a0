/* Feature-learning kernels (src/core/feature_kernels.c): the Lanczos spectral norm against the
 * plain power iteration (_ref) and a matrix with a known spectrum; the centred alignment against
 * its definition on a small case (scale invariance, alignment of a kernel with itself = 1,
 * centring removes constant shifts); the Gram rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "feature_kernels.h"
#include "rng.h"
#include "testutil.h"

static void spectral_cases(void)
{
  const int shapes[][2] = {{1, 1}, {7, 3}, {3, 7}, {40, 25}, {64, 64}, {100, 30}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    const int r = shapes[s][0], c = shapes[s][1];
    double *A1 = malloc(sizeof(double) * r * c), *A0 = malloc(sizeof(double) * r * c), *v = malloc(sizeof(double) * c),
           *v2 = malloc(sizeof(double) * c), *work = malloc(sizeof(double) * feat_spectral_work(r, c)), *wr = malloc(sizeof(double) * r);
    rng_normal_fill(A1, (size_t)r * c, 7, 1, 0);
    rng_normal_fill(A0, (size_t)r * c, 7, 2, 0);
    rng_normal_fill(v, (size_t)c, 7, 3, 0);
    for (int j = 0; j < c; j++) v2[j] = v[j];
    int its = 0, its_ref = 0;
    const double s1 = feat_spectral_norm(A1, A0, 0.3, r, c, v, work, 1000, 1e-15, &its);
    const double s2 = feat_spectral_norm_ref(A1, A0, 0.3, r, c, v2, wr, 100000, 1e-16, &its_ref);
    CHECK(tu_close(s1, s2, 1e-10), "%dx%d: Lanczos %.17g vs power iteration %.17g", r, c, s1, s2);
    CHECK(its <= 200, "%dx%d: %d products", r, c, its);
    /* warm start at the answer: converges at once, same value */
    int its2 = 0;
    const double s3 = feat_spectral_norm(A1, A0, 0.3, r, c, v, work, 1000, 1e-15, &its2);
    CHECK(tu_close(s1, s3, 1e-12) && its2 <= 3, "%dx%d: warm restart %.17g (%d products)", r, c, s3, its2);
    /* D = 0: sigma 0, v unchanged */
    CHECK(feat_spectral_norm(A1, A1, 1.0, r, c, v, work, 1000, 1e-15, NULL) == 0.0, "%dx%d: zero matrix", r, c);
    free(A1), free(A0), free(v), free(v2), free(work), free(wr);
  }
  /* diag(5, 3, 3, 1) embedded in a 6 x 4 matrix: sigma = 5 */
  double A1[24] = {0}, A0[24] = {0}, v[4] = {1, 1, 1, 1}, work[1024];
  A1[0] = 5, A1[5] = 3, A1[10] = 3, A1[15] = 1;
  CHECK(feat_spectral_work(6, 4) <= 1024, "work size");
  const double s = feat_spectral_norm(A1, A0, -1.0, 6, 4, v, work, 100, 1e-15, NULL);
  CHECK(tu_close(s, 5.0, 1e-14), "diag: %.17g", s);
  CHECK(fabs(fabs(v[0]) - 1) < 1e-7, "diag: top vector e_1 (%g)", v[0]);
}

static void alignment_cases(void)
{
  enum { N = 9, n = 5 };
  double H[N * n], Z[N * n], K[N * N], L[N * N], K2[N * N], work[2 * N * N + N];
  rng_normal_fill(H, N * n, 3, 1, 0);
  rng_normal_fill(Z, N * n, 3, 2, 0);
  feat_gram_rows(H, N, H, N, n, 1.0, K);
  feat_gram_rows(Z, N, Z, N, n, 0.5, L);
  double maxerr = 0;
  for (int a = 0; a < N; a++)
    for (int b = 0; b < N; b++) {
      double s = 0;
      for (int j = 0; j < n; j++) s += H[a * n + j] * H[b * n + j];
      maxerr = fmax(maxerr, fabs(s - K[a * N + b]));
    }
  CHECK(maxerr < 1e-13, "gram rows: %g", maxerr);
  CHECK(tu_close(feat_centered_alignment(K, K, N, work), 1.0, 1e-14), "A(K, K) = 1");
  const double A = feat_centered_alignment(K, L, N, work);
  for (int i = 0; i < N * N; i++) K2[i] = 3.0 * K[i] + 7.0; /* scale and constant: centring removes it */
  CHECK(tu_close(feat_centered_alignment(K2, L, N, work), A, 1e-12), "scale and shift invariance");
  CHECK(A > -1 && A < 1, "alignment in (-1, 1): %g", A);
  /* the definition, with C = I - 1 1^T / N as a matrix */
  double C[N * N], CK[N * N], KC[N * N], CL[N * N], LC[N * N];
  for (int a = 0; a < N; a++)
    for (int b = 0; b < N; b++) C[a * N + b] = (a == b) - 1.0 / N;
  double kl = 0, kk = 0, ll = 0;
  for (int pass = 0; pass < 2; pass++) {
    const double *M = pass ? L : K;
    double *CM = pass ? CL : CK, *MC = pass ? LC : KC;
    for (int a = 0; a < N; a++)
      for (int b = 0; b < N; b++) {
        double s = 0;
        for (int i = 0; i < N; i++) s += C[a * N + i] * M[i * N + b];
        CM[a * N + b] = s;
      }
    for (int a = 0; a < N; a++)
      for (int b = 0; b < N; b++) {
        double s = 0;
        for (int i = 0; i < N; i++) s += CM[a * N + i] * C[i * N + b];
        MC[a * N + b] = s;
      }
  }
  for (int i = 0; i < N * N; i++) kl += KC[i] * LC[i], kk += KC[i] * KC[i], ll += LC[i] * LC[i];
  CHECK(tu_close(A, kl / sqrt(kk * ll), 1e-13), "definition: %.17g vs %.17g", A, kl / sqrt(kk * ll));
}

int main(void)
{
  spectral_cases();
  alignment_cases();
  return tu_report("test_feature_kernels");
}
