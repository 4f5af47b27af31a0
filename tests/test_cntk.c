/* The analytic CNTK (src/core/cntk.c): the optimised pair (separable patch sums, one GEMM) against
 * the pixel-pair-by-pixel-pair reference for depths 1 to 3, with and without bias, square and
 * non-square images, 1 and 3 channels; the block against the pairs, symmetric (one triangle,
 * mirrored) and cross; symmetry; finite values.
 * With an argument FILE it also writes the tiny case of tests/cntk_check.py (two 4x4 images of 2
 * channels, two conv layers, sigma_w^2 = 2, sigma_b = 0.1): n, C, H, W, depth, sigma_w, sigma_b, the
 * images, then the 2 x 2 NNGP and NTK. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "cntk.h"
#include "testutil.h"

static void images(double *x, int n, int d, double phase)
{
  for (int i = 0; i < n * d; i++) x[i] = sin(0.37 * i * i + phase) + 0.3 * cos(1.3 * i);
}

int main(int argc, char **argv)
{
  const int shapes[][3] = {{1, 4, 4}, {2, 5, 4}, {3, 3, 6}};
  double worst = 0;
  for (int si = 0; si < 3; si++)
    for (int depth = 1; depth <= 3; depth++)
      for (int bias = 0; bias <= 1; bias++) {
        const CntkSpec s = {depth, shapes[si][0], shapes[si][1], shapes[si][2], sqrt(2.0), bias ? 0.2 : 0.0};
        const int d = s.C * s.H * s.W, n = 3;
        double *x = malloc((size_t)n * d * sizeof *x), K[9], T[9], Kr, Tr;
        images(x, n, d, 0.1 * si + depth);
        cntk_block(K, T, x, n, x, n, &s);
        for (int i = 0; i < n; i++)
          for (int j = 0; j < n; j++) {
            cntk_pair_ref(&Kr, &Tr, x + i * d, x + j * d, i == j, &s);
            const double ek = fabs(K[i * n + j] - Kr) / fabs(Kr), et = fabs(T[i * n + j] - Tr) / fabs(Tr);
            if (ek > worst) worst = ek;
            if (et > worst) worst = et;
            CHECK(isfinite(Kr) && isfinite(Tr) && Tr > 0, "finite values (C%d %dx%d depth %d bias %d)", s.C, s.H, s.W, depth, bias);
            CHECK(ek < 1e-12 && et < 1e-12, "optimised = reference (C%d %dx%d depth %d bias %d pair %d,%d: %.2e %.2e)", s.C, s.H, s.W, depth, bias, i,
                  j, ek, et);
            CHECK(fabs(T[i * n + j] - T[j * n + i]) <= 1e-13 * fabs(T[i * n + j]), "symmetric");
          }
        /* Theta >= K (the NTK adds the positive Ed Theta terms) */
        CHECK(T[0] > K[0], "Theta > K on the diagonal");
        /* a cross block (the 3 images against 2 others: every pair computed, no pixel pinned to
         * correlation 1) against the reference */
        double Kc[6], Tc[6], *x2 = malloc(2 * (size_t)d * sizeof *x2);
        images(x2, n - 1, d, 0.1 * si + depth + 0.7);
        cntk_block(Kc, Tc, x, n, x2, n - 1, &s);
        for (int i = 0; i < n; i++)
          for (int j = 0; j < n - 1; j++) {
            cntk_pair_ref(&Kr, &Tr, x + i * d, x2 + j * d, 0, &s);
            const double ek = fabs(Kc[i * (n - 1) + j] - Kr) / fabs(Kr), et = fabs(Tc[i * (n - 1) + j] - Tr) / fabs(Tr);
            if (ek > worst) worst = ek;
            if (et > worst) worst = et;
            CHECK(ek < 1e-12 && et < 1e-12, "cross block = reference (C%d %dx%d depth %d bias %d pair %d,%d: %.2e %.2e)", s.C, s.H, s.W, depth, bias,
                  i, j, ek, et);
          }
        free(x), free(x2);
      }
  printf("worst relative difference optimised vs reference: %.2e\n", worst);
  if (argc > 1) {
    const CntkSpec s = {2, 2, 4, 4, sqrt(2.0), 0.1};
    const int d = 32;
    double x[64], K[4], T[4];
    images(x, 2, d, 0.5);
    cntk_block(K, T, x, 2, x, 2, &s);
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "2 %d %d %d %d %.17g %.17g\n", s.C, s.H, s.W, s.depth, s.sigma_w, s.sigma_b);
    for (int i = 0; i < 64; i++) fprintf(f, "%.17g\n", x[i]);
    for (int i = 0; i < 4; i++) fprintf(f, "%.17g %.17g\n", K[i], T[i]);
    fclose(f);
  }
  return tu_report("test_cntk");
}
