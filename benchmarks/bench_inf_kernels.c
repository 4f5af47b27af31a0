/* Analytic kernel throughput (bench_inf_kernels.py): the 3-hidden-layer relu NTK block
 * (inf_kernel_block) and the CNTK block (cntk_block) on random inputs, reps timed calls after one
 * warm-up; prints "entries E seconds S checksum C product_seconds G" with S the fastest call and,
 * for fc, G the fastest of the first-layer products alone (the SYRK X X^T, or the GEMM X X2^T of a
 * cross block, that inf_kernel_block starts with), timed in turn with the block.
 *   bench_inf_kernels fc N D REPS [cross]     N x N block of D-dimensional inputs: X against X
 *                                             (symmetric), or with cross X against another X2
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
  const int fc = strcmp(argv[1], "fc") == 0, N = atoi(argv[2]);
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
  const InfKernelSpec fs = {.depth = 3, .act = ACT_RELU, .sigma_w = sqrt(2.0), .sigma_b = 0.1, .gh_points = 0};
  const CntkSpec cs = {fc ? 1 : atoi(argv[6]), fc ? 1 : atoi(argv[3]), fc ? 1 : atoi(argv[4]), fc ? 1 : atoi(argv[5]), sqrt(2.0), 0.1};
  double best = INFINITY, best_product = INFINITY, *scratch = fc ? malloc((size_t)N * N * sizeof *scratch) : NULL;
  for (int r = 0; r <= reps; r++) {
    double t0 = now();
    if (fc) inf_kernel_block(NULL, out, x, N, x2, N, d, &fs);
    else cntk_block(NULL, out, x, N, x, N, &cs);
    const double t = now() - t0;
    if (r > 0 && t < best) best = t; /* the first call warms up */
    if (!fc) continue;
    t0 = now(); /* the block's first-layer product alone, in turn with the block (the same load) */
    if (cross) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, d, 2.0 / d, x, d, x2, d, 0.0, scratch, N);
    else cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, d, 2.0 / d, x, d, 0.0, scratch, N);
    const double tp = now() - t0;
    if (r > 0 && tp < best_product) best_product = tp;
  }
  double sum = 0;
  for (size_t i = 0; i < (size_t)N * N; i++) sum += out[i];
  printf("entries %lld seconds %.6g checksum %.17g product_seconds %.6g\n", (long long)N * N, best, sum, fc ? best_product : 0.0);
  free(scratch);
  if (x2 != x) free(x2);
  free(x), free(out);
  return 0;
}
