/* Times one SGD step of a Wide ResNet (forward, MSE loss, VJP, parameter update) with the model
 * code used for training, and reports the peak memory it took. Driven by bench_wrn_step.py, which
 * times the same step in PyTorch; see README.md.
 *
 *   bench_wrn_step step DATA_FILE B C H W K DEPTH WIDEN BN WARMUP REPS
 *       DATA_FILE: raw little-endian float64, B x (C*H*W) inputs (NCHW) then B x K targets.
 *       WRN-DEPTH-WIDEN (pre-activation, model.h ARCH_WRN), relu, ntk parameterization,
 *       sigma_w = sqrt(2), no conv biases, batch norm (train mode, eps 1e-5) if BN = 1; eta = 0.01.
 *       Prints "step ms=MEDIAN ms_min=MIN flops=F gflops=RATE loss0=L P=P maxrss_mb=M
 *       rss_setup_mb=S cot_blocks=N" where F = 3 x forward FLOPs (model_flops_per_sample), N the
 *       cotangent blocks of a training tape's pool, M the peak resident
 *       set of the process (getrusage) and S the resident set before the first step; before it one
 *       "ops KIND ..." line per op kind (print_profile) from the tape's per-op profile.
 *       The tape is a training tape (tape_create_train); a last argument "keep" uses tape_create
 *       (every cotangent and activation kept, as the Hessian and NTK operators' tapes).
 * Threads: OpenBLAS reads OPENBLAS_NUM_THREADS at start-up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "model.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double maxrss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) {
    fprintf(stderr, "bench_wrn_step: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

/* Per op kind (conv split by kernel size and stride), forward and backward seconds per step from
 * the tape's profile, and the conv GEMM rate of each: "ops KIND fwd_ms=F bwd_ms=G gflops=R". */
static void print_profile(const Model *m, const double *prof, int reps, int B) {
  const char *names[] = {"dense", "act", "conv3x3", "bn", "pool", "add", "conv3x3s2", "conv1x1"};
  double fwd[8] = {0}, bwd[8] = {0}, fl[8] = {0}, tot = 0;
  for (int i = 0; i < m->n_ops; i++) {
    const Op *op = &m->ops[i];
    int kk = (int)op->kind;
    if (op->kind == OP_CONV) kk = op->conv.kh == 1 ? 7 : op->conv.stride > 1 ? 6 : 2;
    fwd[kk] += prof[i] / reps, bwd[kk] += prof[m->n_ops + i] / reps;
    if (op->kind == OP_CONV) fl[kk] += 3.0 * B * conv_flops(&op->conv) - (op->in == 0 ? B * conv_flops(&op->conv) : 0);
    if (op->kind == OP_DENSE) fl[kk] += 6.0 * B * op->n_in * op->n_out;
    tot += (prof[i] + prof[m->n_ops + i]) / reps;
  }
  for (int kk = 0; kk < 8; kk++)
    if (fwd[kk] + bwd[kk] > 0)
      printf("ops %s fwd_ms=%.1f bwd_ms=%.1f share=%.3f gflops=%.2f\n", names[kk], fwd[kk] * 1e3, bwd[kk] * 1e3,
             (fwd[kk] + bwd[kk]) / tot, fl[kk] ? fl[kk] / (fwd[kk] + bwd[kk]) * 1e-9 : 0.0);
}

static int bench_step(const char *path, int B, int C, int H, int W, int k, int depth, int widen, int bn,
                      int warmup, int reps, int keep) {
  const int d = C * H * W;
  double *x = xmalloc((size_t)B * d * sizeof *x), *y = xmalloc((size_t)B * k * sizeof *y);
  FILE *fp = fopen(path, "rb");
  if (!fp || fread(x, sizeof *x, (size_t)B * d, fp) != (size_t)B * d ||
      fread(y, sizeof *y, (size_t)B * k, fp) != (size_t)B * k) {
    fprintf(stderr, "bench_wrn_step: cannot read %d x %d inputs and %d x %d targets from %s\n", B, d, B, k, path);
    return 1;
  }
  fclose(fp);

  ModelConfig c = {0};
  c.arch = ARCH_WRN, c.in_dim = d, c.in_channels = C, c.in_height = H, c.in_width = W, c.out_dim = k;
  c.depth = 1, c.width = widen, c.wrn_depth = depth, c.act = ACT_RELU, c.bias = false;
  c.sigma_w = 1.4142135623730951, c.sigma_b = 0.0, c.param = PARAM_NTK, c.base_width = widen;
  c.batch_norm = bn != 0, c.bn_eps = 1e-5;
  Model m;
  Tape tape;
  char err[256] = "";
  if (model_build(&m, &c, err, sizeof err) || (keep ? tape_create(&tape, &m, B) : tape_create_train(&tape, &m, B))) {
    fprintf(stderr, "bench_wrn_step: %s\n", err[0] ? err : "cannot allocate the tape");
    return 1;
  }
  const size_t P = m.n_params;
  double *theta = xmalloc(P * sizeof *theta);
  double *grad = calloc(P, sizeof *grad), *dout = xmalloc((size_t)B * k * sizeof *dout);
  if (!grad) return 1;
  model_init(&m, theta, 1);
  const double eta = 0.01, flops = 3.0 * B * model_flops_per_sample(&m);
  const double rss_setup = maxrss_mb();

  double *t = xmalloc((size_t)(reps > 0 ? reps : 1) * sizeof *t), loss0 = 0;
  double *prof = calloc(2 * (size_t)m.n_ops, sizeof *prof); /* per-op seconds of the timed steps */
  for (int r = -warmup; r < reps; r++) {
    tape.prof = r >= 0 ? prof : NULL;
    double t0 = now_ms();
    const double *f = model_forward(&m, theta, x, B, &tape, NULL);
    double loss = mse_loss(dout, f, y, B, k, 1.0 / B) / B;
    model_vjp(&m, theta, dout, B, &tape, grad, NULL);
    /* SGD update fused with clearing grad for the next (accumulating) VJP, as bench_fc_step. */
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
  tape.prof = NULL;
  print_profile(&m, prof, reps, B);
  free(prof);
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  double ms = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
  printf("step ms=%.3f ms_min=%.3f flops=%.6e gflops=%.3f loss0=%.10g P=%zu maxrss_mb=%.1f rss_setup_mb=%.1f "
         "cot_blocks=%d\n", ms, t[0], flops, flops / ms * 1e-6, loss0, P, maxrss_mb(), rss_setup, tape.n_pool);
  free(x), free(y), free(theta), free(grad), free(dout), free(t);
  tape_destroy(&tape);
  model_destroy(&m);
  return 0;
}

int main(int argc, char **argv) {
  if ((argc == 13 || (argc == 14 && (!strcmp(argv[13], "keep") || !strcmp(argv[13], "train")))) &&
      strcmp(argv[1], "step") == 0 && atoi(argv[12]) >= 1)
    return bench_step(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]),
                      atoi(argv[8]), atoi(argv[9]), atoi(argv[10]), atoi(argv[11]), atoi(argv[12]),
                      argc == 14 && !strcmp(argv[13], "keep"));
  fprintf(stderr, "usage: %s step DATA_FILE B C H W K DEPTH WIDEN BN WARMUP REPS [train|keep] (REPS >= 1)\n", argv[0]);
  return 2;
}
