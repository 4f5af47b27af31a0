/* Writes small Wide ResNets (src/model.c ARCH_WRN), their parameters, a batch, the loss, the full
 * gradient and one JVP to a text file for torch_wrn_check.py, which rebuilds each net in PyTorch
 * float64 from its own description of the architecture and recomputes them with autograd.
 * Usage: test_torch_wrn OUTPUT_FILE
 *
 * Format (one record per line, whitespace separated, doubles as %.17g so they round-trip):
 *   cases N
 *   case act param bias batch_norm bn_eps wrn_depth k C H W k_out B sigma_w sigma_b base_width
 *   tensors T, then T lines: tensor name offset size fan_in mult lr_scale
 *   theta P v...   x B*C*H*W v...   y B*k_out v...   f   loss 1 v   grad P v...   v P v...   jv B*k_out v...
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"

static void write_array(FILE *fp, const char *name, const double *v, size_t n) {
  fprintf(fp, "%s %zu", name, n);
  for (size_t i = 0; i < n; i++) fprintf(fp, " %.17g", v[i]);
  fputc('\n', fp);
}

typedef struct {
  int depth, k, bn, param, bias, C, H, W;
} Case;

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTPUT_FILE\n", argv[0]);
    return 2;
  }
  FILE *fp = fopen(argv[1], "w");
  if (!fp) {
    perror(argv[1]);
    return 2;
  }
  /* WRN-10-1 on 2 x 8 x 8 in every parameterization with and without batch norm; WRN-16-2 (two
   * blocks per group, identity shortcuts after the first) on 3 x 6 x 6 (odd sizes after stride 2). */
  const Case cases[] = {{10, 1, 0, PARAM_NTK, 1, 2, 8, 8}, {10, 1, 0, PARAM_SP, 1, 2, 8, 8}, {10, 1, 0, PARAM_MUP, 1, 2, 8, 8},
                        {10, 1, 1, PARAM_NTK, 1, 2, 8, 8}, {10, 1, 1, PARAM_SP, 1, 2, 8, 8}, {10, 1, 1, PARAM_MUP, 0, 2, 8, 8},
                        {16, 2, 1, PARAM_MUP, 1, 3, 6, 6}, {16, 2, 0, PARAM_NTK, 0, 3, 6, 6}};
  const int n_cases = (int)(sizeof cases / sizeof cases[0]), k_out = 3, B = 4, base_width = 2;
  const double sigma_w = 1.4, sigma_b = 0.3, bn_eps = 1e-5;
  fprintf(fp, "cases %d\n", n_cases);
  for (int ci = 0; ci < n_cases; ci++) {
    const Case *cs = &cases[ci];
    ModelConfig c = {0};
    c.arch = ARCH_WRN, c.in_channels = cs->C, c.in_height = cs->H, c.in_width = cs->W;
    c.in_dim = cs->C * cs->H * cs->W, c.out_dim = k_out, c.width = cs->k, c.wrn_depth = cs->depth, c.depth = 1;
    c.act = ACT_RELU, c.bias = cs->bias, c.sigma_w = sigma_w, c.sigma_b = sigma_b;
    c.param = (Parameterization)cs->param, c.base_width = base_width, c.batch_norm = cs->bn, c.bn_eps = bn_eps;
    Model m;
    Tape t;
    char err[256];
    /* Odd cases on a training tape (pooled cotangents, in-place relu and residual add), whose VJP
     * runs twice (the second on reused blocks) and whose JVP reads relu's sign from its output. */
    const int train = ci % 2;
    if (model_build(&m, &c, err, sizeof err) || (train ? tape_create_train(&t, &m, B) : tape_create(&t, &m, B))) {
      fprintf(stderr, "build failed: %s\n", err);
      return 1;
    }
    const size_t P = m.n_params, nx = (size_t)B * c.in_dim, nf = (size_t)B * k_out;
    double *theta = malloc(P * sizeof *theta), *grad = calloc(P, sizeof *grad), *v = malloc(P * sizeof *v);
    double *x = malloc(nx * sizeof *x), *y = malloc(nf * sizeof *y), *dout = malloc(nf * sizeof *dout);
    double *jv = malloc(nf * sizeof *jv);
    const uint64_t seed = 31 + (uint64_t)ci;
    model_init(&m, theta, seed);
    /* BN affine parameters off their init (1, 0) so that their products are exercised. */
    for (int i = 0; i < m.n_tensors; i++)
      if (m.tensors[i].init_std == 0.0)
        for (size_t j = 0; j < m.tensors[i].size; j++) theta[m.tensors[i].offset + j] += 0.2 * sin(0.7 * (double)j + i);
    rng_normal_fill(x, nx, seed, RNG_STREAM_TEACHER_X, 0);
    rng_normal_fill(y, nf, seed, RNG_STREAM_TEACHER_X, 1u << 20);
    rng_normal_fill(v, P, seed, RNG_STREAM_PROBE, 0);
    fprintf(fp, "case relu %s %d %d %.17g %d %d %d %d %d %d %d %.17g %.17g %d\n", param_name(c.param), cs->bias, cs->bn, bn_eps,
            cs->depth, cs->k, cs->C, cs->H, cs->W, k_out, B, sigma_w, sigma_b, base_width);
    fprintf(fp, "tensors %d\n", m.n_tensors);
    for (int i = 0; i < m.n_tensors; i++)
      fprintf(fp, "tensor %s %zu %zu %d %.17g %.17g\n", m.tensors[i].name, m.tensors[i].offset, m.tensors[i].size,
              m.tensors[i].fan_in, m.tensors[i].mult, m.tensors[i].lr_scale);
    write_array(fp, "theta", theta, P);
    write_array(fp, "x", x, nx);
    write_array(fp, "y", y, nf);
    const double *f = model_forward(&m, theta, x, B, &t, NULL);
    const double loss = mse_loss(dout, f, y, B, k_out, 1.0 / B) / B;
    write_array(fp, "f", f, nf);
    model_vjp(&m, theta, dout, B, &t, grad, NULL);
    if (train) {
      memset(grad, 0, P * sizeof *grad);
      model_vjp(&m, theta, dout, B, &t, grad, NULL);
    }
    model_jvp(&m, theta, v, B, &t, jv, NULL);
    write_array(fp, "loss", &loss, 1);
    write_array(fp, "grad", grad, P);
    write_array(fp, "v", v, P);
    write_array(fp, "jv", jv, nf);
    free(theta), free(grad), free(v), free(x), free(y), free(dout), free(jv);
    tape_destroy(&t);
    model_destroy(&m);
  }
  if (fclose(fp)) {
    perror(argv[1]);
    return 2;
  }
  printf("wrote %d cases to %s\n", n_cases, argv[1]);
  return 0;
}
