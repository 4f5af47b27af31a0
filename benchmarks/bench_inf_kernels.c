/* Analytic kernel throughput (bench_inf_kernels.py): the 3-hidden-layer relu NTK block
 * (inf_kernel_block) and the CNTK block (cntk_block) on random inputs, reps timed calls after one
 * warm-up; prints "entries E seconds S" with S the fastest call.
 *   bench_inf_kernels fc N D REPS [cross]     N x N block of D-dimensional inputs: X against X
 *                                             (symmetric), or with cross X against another X2
 *   bench_inf_kernels gemm N D REPS [cross]   only the block's first layer: the SYRK X X^T (the
 *                                             GEMM X X2^T with cross) inf_kernel_block starts with
 *   bench_inf_kernels cntk N C H W DEPTH REPS   N x N block of C x H x W images */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "cntk.h"
#include "inf_kernels.h"

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv)
{
  if (argc < 5) return fprintf(stderr, "usage: fc N D REPS | cntk N C H W DEPTH REPS\n"), 2;
  const int gemm = strcmp(argv[1], "gemm") == 0, fc = gemm || strcmp(argv[1], "fc") == 0, N = atoi(argv[2]);
  const int d = fc ? atoi(argv[3]) : atoi(argv[3]) * atoi(argv[4]) * atoi(argv[5]);
  const int reps = atoi(argv[fc ? 4 : 7]);
  const int cross = fc && argc > 5 && strcmp(argv[5], "cross") == 0;
  double *x = malloc((size_t)N * d * sizeof *x), *out = malloc((size_t)N * N * sizeof *out), *x2 = x;
  srand(1);
  for (size_t i = 0; i < (size_t)N * d; i++) x[i] = 2.0 * rand() / RAND_MAX - 1.0;
  if (cross) { /* the next N d numbers of the same stream */
    x2 = malloc((size_t)N * d * sizeof *x2);
    for (size_t i = 0; i < (size_t)N * d; i++) x2[i] = 2.0 * rand() / RAND_MAX - 1.0;
  }
  const InfKernelSpec fs = {3, ACT_RELU, sqrt(2.0), 0.1, 0};
  const CntkSpec cs = {fc ? 1 : atoi(argv[6]), fc ? 1 : atoi(argv[3]), fc ? 1 : atoi(argv[4]), fc ? 1 : atoi(argv[5]), sqrt(2.0), 0.1};
  double best = INFINITY;
  for (int r = 0; r <= reps; r++) {
    const double t0 = now();
    if (gemm && cross) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, d, 2.0 / d, x, d, x2, d, 0.0, out, N);
    else if (gemm) cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, d, 2.0 / d, x, d, 0.0, out, N);
    else if (fc) inf_kernel_block(NULL, out, x, N, x2, N, d, &fs);
    else cntk_block(NULL, out, x, N, x, N, &cs);
    const double t = now() - t0;
    if (r > 0 && t < best) best = t; /* the first call warms up */
  }
  double sum = 0;
  for (size_t i = 0; i < (size_t)N * N; i++) sum += gemm && !cross && i % N < i / N ? 0 : out[i]; /* SYRK: the upper triangle */
  printf("entries %lld seconds %.6g checksum %.17g\n", (long long)N * N, best, sum);
  if (x2 != x) free(x2);
  free(x), free(out);
  return 0;
}
