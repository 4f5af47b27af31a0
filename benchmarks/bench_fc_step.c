/* Times one SGD step of an FC network (forward, MSE loss, VJP, parameter update) with the model
 * code used for training, and the machine's DGEMM rate as the yardstick. Driven by
 * bench_sgd_step.py, which also times the same step in PyTorch; see README.md.
 *
 *   bench_fc_step dgemm N REPS
 *       C = A B with N x N doubles; prints "dgemm n=N ms=MEDIAN ms_min=MIN gflops=RATE
 *       gflops_best=RATE_AT_MIN". The best rate is the yardstick: other load only slows a run.
 *   bench_fc_step step DATA_FILE B D K WIDTH DEPTH WARMUP REPS
 *       DATA_FILE: raw little-endian float64, B x D inputs then B x K targets (row-major).
 *       ntk parameterization, relu, biases, sigma_w = sqrt(2), sigma_b = 0.1, eta = 0.1.
 *       Prints "step ms=MEDIAN ms_min=MIN gemm_flops=F gflops=RATE loss0=L P=P".
 * Threads: OpenBLAS reads OPENBLAS_NUM_THREADS at start-up.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "rng.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) {
    fprintf(stderr, "bench_fc_step: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

static int bench_dgemm(int n, int reps) {
  size_t nn = (size_t)n * n;
  double *A = xmalloc(nn * sizeof *A), *Bm = xmalloc(nn * sizeof *Bm), *C = xmalloc(nn * sizeof *C);
  rng_normal_fill(A, nn, 1, RNG_STREAM_PROBE, 0);
  rng_normal_fill(Bm, nn, 2, RNG_STREAM_PROBE, 0);
  double *t = xmalloc((size_t)(reps + 1) * sizeof *t);
  for (int r = -1; r < reps; r++) { /* r = -1: warm-up (thread start, page faults) */
    double t0 = now_ms();
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A, n, Bm, n, 0.0, C, n);
    if (r >= 0) t[r] = now_ms() - t0;
  }
  double ms = median(t, reps), flops = 2.0 * n * (double)n * n; /* t is sorted now */
  printf("dgemm n=%d ms=%.3f ms_min=%.3f gflops=%.3f gflops_best=%.3f\n", n, ms, t[0], flops / ms * 1e-6,
         flops / t[0] * 1e-6);
  free(A), free(Bm), free(C), free(t);
  return 0;
}

static int bench_step(const char *path, int B, int d, int k, int width, int depth, int warmup, int reps) {
  double *x = xmalloc((size_t)B * d * sizeof *x), *y = xmalloc((size_t)B * k * sizeof *y);
  FILE *fp = fopen(path, "rb");
  if (!fp || fread(x, sizeof *x, (size_t)B * d, fp) != (size_t)B * d ||
      fread(y, sizeof *y, (size_t)B * k, fp) != (size_t)B * k) {
    fprintf(stderr, "bench_fc_step: cannot read %d x %d inputs and %d x %d targets from %s\n", B, d, B, k, path);
    return 1;
  }
  fclose(fp);

  ModelConfig c = {0};
  c.arch = ARCH_FC, c.in_dim = d, c.out_dim = k, c.depth = depth, c.width = width, c.act = ACT_RELU;
  c.bias = true, c.sigma_w = 1.4142135623730951, c.sigma_b = 0.1, c.param = PARAM_NTK, c.base_width = width;
  Model m;
  Tape tape;
  char err[256];
  if (model_build(&m, &c, err, sizeof err) || tape_create(&tape, &m, B)) {
    fprintf(stderr, "bench_fc_step: %s\n", err);
    return 1;
  }
  size_t P = m.n_params;
  double *theta = xmalloc(P * sizeof *theta);
  double *grad = calloc(P, sizeof *grad), *dout = xmalloc((size_t)B * k * sizeof *dout);
  if (!grad) return 1;
  model_init(&m, theta, 1);
  const double eta = 0.1;

  /* GEMM flops of one step: forward 2 B n_in n_out per dense layer; backward dW the same, din the
   * same except for the first layer (no input gradient). Bias, relu, loss and update are O(P + B n)
   * and not counted. */
  double fwd = B * model_flops_per_sample(&m);
  double step_flops = 3 * fwd - 2.0 * B * d * width;

  double *t = xmalloc((size_t)reps * sizeof *t), loss0 = 0;
  for (int r = -warmup; r < reps; r++) {
    double t0 = now_ms();
    const double *f = model_forward(&m, theta, x, B, &tape, NULL);
    double loss = mse_loss(dout, f, y, B, k, 1.0 / B) / B;
    model_vjp(&m, theta, dout, B, &tape, grad, NULL);
    /* SGD update fused with clearing grad for the next (accumulating) VJP: one pass over P,
     * with the learning-rate scale per tensor (a constant) rather than an expanded P array. */
    for (int i = 0; i < m.n_tensors; i++) {
      const ParamTensor *pt = &m.tensors[i];
      const double step = eta * pt->lr_scale;
      double *th = theta + pt->offset, *g = grad + pt->offset; /* pt->size */
      for (size_t j = 0; j < pt->size; j++) {
        th[j] -= step * g[j];
        g[j] = 0.0;
      }
    }
    double ms = now_ms() - t0;
    if (r == -warmup) loss0 = loss;
    if (r >= 0) t[r] = ms;
  }
  double ms_min = t[0];
  for (int r = 1; r < reps; r++) ms_min = ms_min < t[r] ? ms_min : t[r];
  double ms = median(t, reps);
  printf("step ms=%.3f ms_min=%.3f gemm_flops=%.6e gflops=%.3f loss0=%.10g P=%zu\n", ms, ms_min,
         step_flops, step_flops / ms * 1e-6, loss0, P);
  free(x), free(y), free(theta), free(grad), free(dout), free(t);
  tape_destroy(&tape);
  model_destroy(&m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "dgemm") == 0) return bench_dgemm(atoi(argv[2]), atoi(argv[3]));
  if (argc == 10 && strcmp(argv[1], "step") == 0)
    return bench_step(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]),
                      atoi(argv[7]), atoi(argv[8]), atoi(argv[9]));
  fprintf(stderr,
          "usage: %s dgemm N REPS\n"
          "       %s step DATA_FILE B D K WIDTH DEPTH WARMUP REPS\n",
          argv[0], argv[0]);
  return 2;
}
