/* Writes FC networks, their parameters, a batch, the loss and the full gradient to a text file for
 * torch_fc_check.py, which recomputes loss and gradient with PyTorch autograd.
 * Usage: test_torch_fc OUTPUT_FILE
 *
 * Format (one record per line, whitespace separated, doubles as %.17g so they round-trip):
 *   cases N
 *   case act param bias d n depth k B sigma_w sigma_b base_width
 *   tensor name offset size fan_in mult          (n_tensors lines, as in the C parameter table)
 *   theta P v...   x B*d v...   y B*k v...   f B*k v...   loss 1 v   grad P v...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"
#include "rng.h"

static void write_array(FILE *fp, const char *name, const double *v, size_t n) {
  fprintf(fp, "%s %zu", name, n);
  for (size_t i = 0; i < n; i++) fprintf(fp, " %.17g", v[i]);
  fputc('\n', fp);
}

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
  const int d = 20, n = 64, depth = 3, k = 10, B = 8, base_width = 16; /* mup r = 4 */
  const double sigma_w = 1.3, sigma_b = 0.4;
  /* The named presets: abc and mf differ from them only in the parameter table's numbers, which
   * test_model checks against the conventions' formulas. */
  const int n_presets = PARAM_MUP + 1;
  fprintf(fp, "cases %d\n", ACT_COUNT * n_presets * 2);
  int cases = 0;
  for (int a = 0; a < ACT_COUNT; a++)
    for (int p = 0; p < n_presets; p++)
      for (int bias = 1; bias >= 0; bias--) {
        ModelConfig c = {0};
        c.arch = ARCH_FC, c.in_dim = d, c.out_dim = k, c.depth = depth, c.width = n;
        c.act = (Activation)a, c.bias = bias, c.sigma_w = sigma_w, c.sigma_b = sigma_b;
        c.param = (Parameterization)p, c.base_width = base_width;
        Model m;
        Tape t;
        char err[256];
        if (model_build(&m, &c, err, sizeof err) || tape_create(&t, &m, B)) {
          fprintf(stderr, "build failed: %s\n", err);
          return 1;
        }
        size_t P = m.n_params;
        double *theta = malloc(P * sizeof *theta), *grad = calloc(P, sizeof *grad);
        double *x = malloc((size_t)B * d * sizeof *x), *y = malloc((size_t)B * k * sizeof *y);
        double *dout = malloc((size_t)B * k * sizeof *dout);
        uint64_t seed = 77 + (uint64_t)cases;
        model_init(&m, theta, seed);
        rng_normal_fill(x, (size_t)B * d, seed, RNG_STREAM_TEACHER_X, 0);
        rng_normal_fill(y, (size_t)B * k, seed, RNG_STREAM_TEACHER_X, 1u << 20);
        fprintf(fp, "case %s %s %d %d %d %d %d %d %.17g %.17g %d\n", act_name(c.act), param_name(c.param),
                bias, d, n, depth, k, B, sigma_w, sigma_b, base_width);
        fprintf(fp, "tensors %d\n", m.n_tensors);
        for (int i = 0; i < m.n_tensors; i++)
          fprintf(fp, "tensor %s %zu %zu %d %.17g\n", m.tensors[i].name, m.tensors[i].offset,
                  m.tensors[i].size, m.tensors[i].fan_in, m.tensors[i].mult);
        write_array(fp, "theta", theta, P);
        write_array(fp, "x", x, (size_t)B * d);
        write_array(fp, "y", y, (size_t)B * k);
        const double *f = model_forward(&m, theta, x, B, &t, NULL);
        double loss = mse_loss(dout, f, y, B, k, 1.0 / B) / B;
        write_array(fp, "f", f, (size_t)B * k);
        model_vjp(&m, theta, dout, B, &t, grad, NULL);
        write_array(fp, "loss", &loss, 1);
        write_array(fp, "grad", grad, P);
        cases++;
        free(theta), free(grad), free(x), free(y), free(dout);
        tape_destroy(&t);
        model_destroy(&m);
      }
  if (fclose(fp)) {
    perror(argv[1]);
    return 2;
  }
  printf("wrote %d cases to %s\n", cases, argv[1]);
  return 0;
}
