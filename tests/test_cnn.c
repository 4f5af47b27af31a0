/* The plain CNN (src/core/model.c ARCH_CNN), the finite net of the analytic CNTK (src/core/cntk.h).
 *
 * Usage: test_cnn            self-checks, last line "N passed, M failed":
 *          - structure and parameter table (ntk multipliers sigma_w / sqrt(9 C_in), sigma_b);
 *          - gradient and J v against central finite differences of the loss and of f, H v against
 *            finite differences of the gradient, in ntk, sp and mup, relu and tanh, with and without
 *            biases; a training tape's VJP equal to the plain tape's;
 *          - the empirical NTK J J^T and the NNGP of the readout's features of wide CNNs on three
 *            2 x 6 x 6 images against cntk_block's Theta and K: relative Frobenius error below
 *            4 / sqrt(width) at widths 128 and 1024, and smaller at 1024 (two seeds each; the
 *            environment's CNN_NTK_WIDTHS=n1,n2 and CNN_NTK_SEEDS=s change them);
 *          - a wrong image shape refused with one line.
 *        test_cnn FILE  writes CNNs, their parameters, a batch, outputs, loss, gradient and one JVP
 *          for tests/torch_cnn_check.py (the format of tests/test_torch_wrn.c, "case" line:
 *          case act param bias depth width C H W k_out B sigma_w sigma_b base_width). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cntk.h"
#include "model.h"
#include "rng.h"

static int passed, failed;
#define CHECK(cond, ...)                  \
  do {                                    \
    if (cond) passed++;                   \
    else {                                \
      failed++;                           \
      printf("FAIL: " __VA_ARGS__);       \
      printf("\n");                       \
    }                                     \
  } while (0)

typedef struct {
  Activation act;
  Parameterization param;
  int bias, depth, width, C, H, W;
} Case;

static ModelConfig config(const Case *cs, int k_out) {
  ModelConfig c = {0};
  c.arch = ARCH_CNN, c.in_channels = cs->C, c.in_height = cs->H, c.in_width = cs->W, c.in_dim = cs->C * cs->H * cs->W;
  c.out_dim = k_out, c.depth = cs->depth, c.width = cs->width, c.act = cs->act, c.bias = cs->bias;
  c.sigma_w = 1.4, c.sigma_b = 0.3, c.param = cs->param, c.base_width = 2, c.loss = LOSS_MSE;
  return c;
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* The loss sum_a L_a / B at theta; its gradient added to grad; f copied to fout. */
static double loss_grad_at(const Model *m, const double *theta, const double *x, const double *y, int B, Tape *t, double *grad, double *fout) {
  const double *f = model_forward(m, theta, x, B, t, NULL);
  const size_t nf = (size_t)B * m->cfg.out_dim;
  double *dout = malloc(nf * sizeof *dout);
  memcpy(fout, f, nf * sizeof *fout);
  const double l = model_loss(m, dout, f, y, B, 1.0 / B) / B;
  model_vjp(m, theta, dout, B, t, grad, NULL);
  free(dout);
  return l;
}

static void write_array(FILE *fp, const char *name, const double *v, size_t n) {
  fprintf(fp, "%s %zu", name, n);
  for (size_t i = 0; i < n; i++) fprintf(fp, " %.17g", v[i]);
  fputc('\n', fp);
}

static const Case cases[] = {{ACT_RELU, PARAM_NTK, 1, 2, 5, 2, 6, 6}, {ACT_TANH, PARAM_NTK, 0, 3, 4, 3, 5, 4},
                             {ACT_TANH, PARAM_SP, 1, 1, 6, 1, 4, 5}, {ACT_RELU, PARAM_MUP, 1, 2, 4, 2, 6, 6},
                             {ACT_GELU, PARAM_ABC, 0, 2, 3, 1, 3, 3}};
enum { N_CASES = sizeof cases / sizeof cases[0], K_OUT = 3, B = 4 };

/* Gradient, J v and H v of one case against finite differences; the torch file if fp. */
static void small_case(const Case *cs, int ci, FILE *fp) {
  ModelConfig c = config(cs, K_OUT);
  if (cs->param == PARAM_ABC) /* some exponents off the presets */
    for (int k = 0; k < ABC_KINDS; k++) c.abc[k][0] = 0.5 * (k == ABC_OUTPUT), c.abc[k][1] = 0.25 * k, c.abc[k][2] = -0.5;
  Model m;
  Tape t, tt;
  char err[256];
  if (model_build(&m, &c, err, sizeof err) || tape_create(&t, &m, B) || tape_create_train(&tt, &m, B)) {
    CHECK(0, "case %d: build failed: %s", ci, err);
    return;
  }
  const size_t P = m.n_params, nx = (size_t)B * c.in_dim, nf = (size_t)B * K_OUT;
  double *theta = malloc(P * sizeof *theta), *grad = calloc(P, sizeof *grad), *grad2 = calloc(P, sizeof *grad2), *v = malloc(P * sizeof *v);
  double *hv = calloc(P, sizeof *hv), *tp = malloc(P * sizeof *tp), *gp = calloc(P, sizeof *gp), *gm = calloc(P, sizeof *gm);
  double *x = malloc(nx * sizeof *x), *y = malloc(nf * sizeof *y), *dout = malloc(nf * sizeof *dout), *jv = malloc(nf * sizeof *jv);
  double *fp_ = malloc(nf * sizeof *fp_), *fm = malloc(nf * sizeof *fm);
  const uint64_t seed = 41 + (uint64_t)ci;
  model_init(&m, theta, seed);
  rng_normal_fill(x, nx, seed, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(y, nf, seed, RNG_STREAM_TEACHER_X, 1u << 20);
  rng_normal_fill(v, P, seed, RNG_STREAM_PROBE, 0);

  const double *f = model_forward(&m, theta, x, B, &t, NULL);
  double f0[B * K_OUT];
  memcpy(f0, f, sizeof f0);
  const double loss = model_loss(&m, dout, f, y, B, 1.0 / B) / B;
  model_vjp(&m, theta, dout, B, &t, grad, NULL);
  model_jvp(&m, theta, v, B, &t, jv, NULL);
  model_hvp(&m, theta, v, x, y, B, (double)B, &t, hv, NULL);
  /* the training tape (in-place relu, pooled cotangents), VJP twice */
  model_forward(&m, theta, x, B, &tt, NULL);
  model_vjp(&m, theta, dout, B, &tt, grad2, NULL);
  memset(grad2, 0, P * sizeof *grad2);
  model_vjp(&m, theta, dout, B, &tt, grad2, NULL);
  CHECK(memcmp(grad, grad2, P * sizeof *grad) == 0, "case %d: training tape's gradient differs", ci);

  /* central differences along v, step h, against the exact directional derivatives */
  const double h = 1e-5;
  for (size_t i = 0; i < P; i++) tp[i] = theta[i] + h * v[i];
  const double lp = loss_grad_at(&m, tp, x, y, B, &t, gp, fp_);
  for (size_t i = 0; i < P; i++) tp[i] = theta[i] - h * v[i];
  const double lm = loss_grad_at(&m, tp, x, y, B, &t, gm, fm);
  const double gv = dot(grad, v, P), fd = (lp - lm) / (2 * h);
  double ej = 0, nj = 0, eh = 0, nh = 0;
  for (size_t i = 0; i < nf; i++) {
    const double d = (fp_[i] - fm[i]) / (2 * h) - jv[i];
    ej += d * d, nj += jv[i] * jv[i];
  }
  for (size_t i = 0; i < P; i++) {
    const double d = (gp[i] - gm[i]) / (2 * h) - hv[i];
    eh += d * d, nh += hv[i] * hv[i];
  }
  const double e_g = fabs(fd - gv) / fabs(gv), e_j = sqrt(ej / nj), e_h = sqrt(eh / nh);
  printf("case %d %-4s %-3s bias %d depth %d width %d: P %zu loss %.6f  FD rel err grad.v %.1e  J v %.1e  H v %.1e\n", ci,
         act_name(cs->act), param_name(cs->param), cs->bias, cs->depth, cs->width, P, loss, e_g, e_j, e_h);
  CHECK(isfinite(loss) && e_g < 1e-7, "case %d: gradient . v vs finite differences: rel err %.3g", ci, e_g);
  CHECK(e_j < 1e-7, "case %d: J v vs finite differences: rel err %.3g", ci, e_j);
  CHECK(e_h < 1e-6, "case %d: H v vs finite differences of the gradient: rel err %.3g", ci, e_h);

  if (fp) {
    fprintf(fp, "case %s %s %d %d %d %d %d %d %d %d %.17g %.17g %d\n", act_name(cs->act), param_name(cs->param), cs->bias, cs->depth,
            cs->width, cs->C, cs->H, cs->W, K_OUT, B, c.sigma_w, c.sigma_b, c.base_width);
    fprintf(fp, "abc");
    for (int k = 0; k < ABC_KINDS; k++) {
      double e[3];
      model_abc_exponents(&c, (AbcKind)k, e);
      fprintf(fp, " %.17g %.17g %.17g", e[0], e[1], e[2]);
    }
    fprintf(fp, "\ntensors %d\n", m.n_tensors);
    for (int i = 0; i < m.n_tensors; i++)
      fprintf(fp, "tensor %s %zu %zu %d %.17g %.17g\n", m.tensors[i].name, m.tensors[i].offset, m.tensors[i].size, m.tensors[i].fan_in,
              m.tensors[i].mult, m.tensors[i].lr_scale);
    write_array(fp, "theta", theta, P);
    write_array(fp, "x", x, nx);
    write_array(fp, "y", y, nf);
    write_array(fp, "f", f0, nf);
    write_array(fp, "loss", &loss, 1);
    write_array(fp, "grad", grad, P);
    write_array(fp, "v", v, P);
    write_array(fp, "jv", jv, nf);
  }
  free(theta), free(grad), free(grad2), free(v), free(hv), free(tp), free(gp), free(gm);
  free(x), free(y), free(dout), free(jv), free(fp_), free(fm);
  tape_destroy(&t), tape_destroy(&tt);
  model_destroy(&m);
}

/* Relative Frobenius errors of the empirical NTK J J^T and of the readout-feature NNGP
 * mult_fc^2 g(x).g(x') + mult_b^2 (g: pooled last-layer features) of one CNN of this width, on NI
 * images, against the CNTK's Theta and K. */
enum { NI = 3 };
static void ntk_errors(double *e_theta, double *e_k, int width, uint64_t seed, const double *x, const CntkSpec *s) {
  const Case cs = {ACT_RELU, PARAM_NTK, 1, s->depth, width, s->C, s->H, s->W};
  ModelConfig c = config(&cs, 1);
  c.sigma_w = s->sigma_w, c.sigma_b = s->sigma_b;
  Model m;
  Tape t;
  char err[256];
  if (model_build(&m, &c, err, sizeof err) || tape_create(&t, &m, NI)) {
    CHECK(0, "ntk width %d: build failed: %s", width, err);
    return;
  }
  const size_t P = m.n_params;
  double *theta = malloc(P * sizeof *theta), *J = calloc((size_t)NI * P, sizeof *J);
  model_init(&m, theta, seed);
  model_forward(&m, theta, x, NI, &t, NULL);
  const Op *fc = &m.ops[m.n_ops - 1];
  const double *g = t.act[fc->in]; /* NI x width: pooled features */
  const double mw = m.tensors[fc->w].mult, mb = m.tensors[fc->b].mult;
  double Kemp[NI * NI];
  for (int a = 0; a < NI; a++)
    for (int b = 0; b < NI; b++) Kemp[a * NI + b] = mw * mw * dot(g + (size_t)a * width, g + (size_t)b * width, (size_t)width) + mb * mb;
  for (int a = 0; a < NI; a++) { /* row a of the Jacobian: the VJP of e_a on one sample */
    model_forward(&m, theta, x + (size_t)a * c.in_dim, 1, &t, NULL);
    const double one = 1.0;
    model_vjp(&m, theta, &one, 1, &t, J + (size_t)a * P, NULL);
  }
  double K[NI * NI], Th[NI * NI], et = 0, nt = 0, ek = 0, nk = 0;
  cntk_block(K, Th, x, NI, x, NI, s);
  for (int a = 0; a < NI; a++)
    for (int b = 0; b < NI; b++) {
      const double te = dot(J + (size_t)a * P, J + (size_t)b * P, P) - Th[a * NI + b], ke = Kemp[a * NI + b] - K[a * NI + b];
      et += te * te, nt += Th[a * NI + b] * Th[a * NI + b], ek += ke * ke, nk += K[a * NI + b] * K[a * NI + b];
    }
  *e_theta = sqrt(et / nt), *e_k = sqrt(ek / nk);
  free(theta), free(J);
  tape_destroy(&t);
  model_destroy(&m);
}

static void ntk_vs_cntk(void) {
  const CntkSpec s = {2, 2, 6, 6, 1.4142135623730951, 0.2};
  /* the CI form; the longer one of docs/infinite_width.md: CNN_NTK_WIDTHS=256,2048 CNN_NTK_SEEDS=6 */
  int widths[2] = {128, 1024}, seeds = 2;
  const int d = s.C * s.H * s.W;
  const char *ew = getenv("CNN_NTK_WIDTHS"), *es = getenv("CNN_NTK_SEEDS");
  if (ew && (sscanf(ew, "%d,%d", &widths[0], &widths[1]) != 2 || widths[0] < 1 || widths[1] <= widths[0] || widths[1] > 4096)) {
    CHECK(0, "CNN_NTK_WIDTHS=%s: want two widths n1,n2 with 0 < n1 < n2 <= 4096", ew);
    return;
  }
  if (es && (seeds = atoi(es)) < 1) {
    CHECK(0, "CNN_NTK_SEEDS=%s: want a positive count", es);
    return;
  }
  double x[NI * 72];
  rng_normal_fill(x, (size_t)NI * d, 7, RNG_STREAM_TEACHER_X, 0);
  for (int i = 0; i < d; i++) x[2 * d + i] = 0.6 * x[i] + 0.8 * x[2 * d + i]; /* a correlated pair */
  double mean[2][2] = {{0}};
  for (int w = 0; w < 2; w++) {
    for (int sd = 0; sd < seeds; sd++) {
      double et = NAN, ek = NAN;
      ntk_errors(&et, &ek, widths[w], 100 + (uint64_t)sd, x, &s);
      printf("width %5d seed %d: |Theta_n - Theta_cntk|_F / |Theta_cntk|_F = %.4f, NNGP %.4f (4/sqrt(n) = %.4f)\n", widths[w], sd, et, ek,
             4 / sqrt(widths[w]));
      CHECK(isfinite(et) && et < 4 / sqrt(widths[w]), "width %d seed %d: NTK error %.3g above 4/sqrt(n)", widths[w], sd, et);
      CHECK(isfinite(ek) && ek < 4 / sqrt(widths[w]), "width %d seed %d: NNGP error %.3g above 4/sqrt(n)", widths[w], sd, ek);
      mean[w][0] += et / seeds, mean[w][1] += ek / seeds;
    }
  }
  printf("mean errors: NTK %.4f -> %.4f, NNGP %.4f -> %.4f (widths %d -> %d)\n", mean[0][0], mean[1][0], mean[0][1], mean[1][1], widths[0],
         widths[1]);
  CHECK(mean[1][0] < mean[0][0] && mean[1][1] < mean[0][1], "errors do not fall with the width");
}

static void structure(void) {
  const Case cs = {ACT_RELU, PARAM_NTK, 1, 3, 7, 2, 5, 4};
  ModelConfig c = config(&cs, 3);
  Model m;
  char err[256];
  CHECK(model_build(&m, &c, err, sizeof err) == 0, "build: %s", err);
  CHECK(m.n_ops == 2 * 3 + 2 && m.n_tensors == 8 && strcmp(m.tensors[0].name, "conv0.W") == 0 && strcmp(m.tensors[7].name, "fc.b") == 0,
        "cnn ops and tensors: %d ops, %d tensors", m.n_ops, m.n_tensors);
  CHECK(m.n_params == (size_t)(7 * 2 * 9 + 7 + 2 * (7 * 7 * 9 + 7) + 3 * 7 + 3), "parameter count %zu", m.n_params);
  CHECK(fabs(m.tensors[0].mult - 1.4 / sqrt(18.0)) < 1e-16 && fabs(m.tensors[2].mult - 1.4 / sqrt(63.0)) < 1e-16 &&
            fabs(m.tensors[6].mult - 1.4 / sqrt(7.0)) < 1e-16 && m.tensors[1].mult == 0.3 && m.tensors[7].mult == 0.3,
        "ntk multipliers sigma_w / sqrt(9 C_in), sigma_w / sqrt(n), sigma_b");
  CHECK(strcmp(arch_name(ARCH_CNN), "cnn") == 0 && arch_from_name("cnn") == ARCH_CNN, "arch name cnn");
  model_destroy(&m);
  c.in_dim = 41;
  CHECK(model_build(&m, &c, err, sizeof err) == -1 && strstr(err, "cnn needs an image shape") && !strchr(err, '\n'), "bad shape: %s", err);
}

int main(int argc, char **argv) {
  FILE *fp = NULL;
  if (argc == 2 && !(fp = fopen(argv[1], "w"))) {
    perror(argv[1]);
    return 2;
  }
  if (fp) fprintf(fp, "cases %d\n", (int)N_CASES);
  for (int ci = 0; ci < (int)N_CASES; ci++) small_case(&cases[ci], ci, fp);
  if (fp) {
    if (fclose(fp)) {
      perror(argv[1]);
      return 2;
    }
  } else {
    structure();
    ntk_vs_cntk();
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
