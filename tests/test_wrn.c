/* Wide ResNets in the model graph (src/model.c: OP_CONV, OP_BN, OP_POOL, OP_ADD): structure and
 * parameter table, then every derivative of a whole tiny WRN against independent references, with
 * and without batch norm, in all three parameterizations:
 *   - gradient vs central differences of the loss, along a random direction inside EVERY tensor;
 *   - JVP vs central differences of the outputs, and the JVP-built Jacobian vs the VJP-built one
 *     (on a random q-dimensional parameter subspace U: J U from q JVPs, (J^T e_r) . U from Bk VJPs);
 *   - HVP vs central differences of the gradient, and U^T H U from HVPs vs the explicitly formed
 *     Hessian of the loss restricted to U (second central differences of the loss: forward passes
 *     only), plus symmetry; Gauss-Newton product vs J^T (J v) / N.
 * Tiny WRN: WRN-10-1 (one block per group: identity shortcut in group 1, projections in 2 and 3)
 * on 2 x 8 x 8 inputs, 5 samples, 3 outputs. tanh for the second-order checks (smooth), relu for
 * the first-order ones (the WRN's activation). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"
#include "testutil.h"

enum { C_IN = 2, HH = 8, WW = 8, K_OUT = 3, NB = 5, Q = 8 };

static ModelConfig wrn_cfg(Activation act, Parameterization p, bool bn, int k) {
  ModelConfig c = {0};
  c.arch = ARCH_WRN;
  c.in_channels = C_IN, c.in_height = HH, c.in_width = WW, c.in_dim = C_IN * HH * WW;
  c.out_dim = K_OUT, c.width = k, c.wrn_depth = 10, c.depth = 1;
  c.act = act, c.bias = true, c.sigma_w = 1.4, c.sigma_b = 0.3, c.param = p, c.base_width = 1;
  c.batch_norm = bn, c.bn_eps = 1e-5;
  return c;
}

typedef struct {
  Model m;
  Tape t;
  size_t P;
  double *x, *y, *dout, *f;
} Net;

static void net_open(Net *n, const ModelConfig *c, uint64_t seed) {
  char err[256];
  if (model_build(&n->m, c, err, sizeof err) || tape_create(&n->t, &n->m, NB)) {
    fprintf(stderr, "build failed: %s\n", err);
    exit(1);
  }
  n->P = n->m.n_params;
  n->x = malloc(NB * c->in_dim * sizeof(double));
  n->y = malloc(NB * K_OUT * sizeof(double));
  n->dout = malloc(NB * K_OUT * sizeof(double));
  n->f = malloc(NB * K_OUT * sizeof(double));
  rng_normal_fill(n->x, (size_t)NB * c->in_dim, seed, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(n->y, (size_t)NB * K_OUT, seed, RNG_STREAM_TEACHER_X, 1u << 20);
}

static void net_close(Net *n) {
  free(n->x), free(n->y), free(n->dout), free(n->f);
  tape_destroy(&n->t);
  model_destroy(&n->m);
}

/* L = 1/(2N) sum ||f - y||^2 at theta; with grad, grad = dL/dtheta. */
static double loss_at(Net *n, const double *theta, double *grad) {
  const double *f = model_forward(&n->m, theta, n->x, NB, &n->t, NULL);
  memcpy(n->f, f, NB * K_OUT * sizeof(double));
  double half = mse_loss(n->dout, f, n->y, NB, K_OUT, 1.0 / NB);
  if (grad) {
    memset(grad, 0, n->P * sizeof *grad);
    model_vjp(&n->m, theta, n->dout, NB, &n->t, grad, NULL);
  }
  return half / NB;
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* theta + h v */
static void axpy_to(double *out, const double *theta, double h, const double *v, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = theta[i] + h * v[i];
}

/* A random direction scaled per tensor to the tensor's typical entry (its init std; 0.3 for the
 * constant-initialised BN parameters), so that steps are relative in every parameterization. */
static void random_dir(const Net *n, double *v, uint64_t seed, int only_tensor) {
  rng_normal_fill(v, n->P, seed, RNG_STREAM_PROBE, 0);
  for (int i = 0; i < n->m.n_tensors; i++) {
    const ParamTensor *p = &n->m.tensors[i];
    const double typ = p->init_std > 0 ? p->init_std : 0.3;
    const double s = only_tensor < 0 || only_tensor == i ? typ : 0.0;
    for (size_t j = 0; j < p->size; j++) v[p->offset + j] *= s;
  }
}

/* ------------------------------------------------------------------ structure */

static void test_structure(void) {
  for (int bn = 0; bn <= 1; bn++) {
    ModelConfig c = wrn_cfg(ACT_RELU, PARAM_NTK, bn, 2);
    c.wrn_depth = 16; /* n = 2 blocks per group */
    Model m;
    char err[256];
    CHECK(model_build(&m, &c, err, sizeof err) == 0, "build wrn-16-2: %s", err);
    /* Parameters by hand: conv0, per group first block (+ projection) and second block, fc. */
    const size_t k = 2, b = 1;
    size_t P = 16 * C_IN * 9 + 16 * b;
    size_t Cin = 16, nbn = 0;
    for (int g = 0; g < 3; g++) {
      const size_t Cg = 16 * k << g;
      P += (Cg * Cin * 9 + Cg * b) + (Cg * Cg * 9 + Cg * b) + Cg * Cin; /* block 0 with projection */
      P += 2 * (Cg * Cg * 9 + Cg * b);                                  /* block 1 */
      if (bn) P += 2 * (Cin + Cg) + 2 * (Cg + Cg);
      nbn += 4;
      Cin = Cg;
    }
    if (bn) P += 2 * Cin, nbn++;
    P += K_OUT * Cin + K_OUT;
    CHECK(m.n_params == P, "bn %d: P %zu, by hand %zu", bn, m.n_params, P);
    CHECK(m.n_bn == (bn ? (int)nbn : 0), "bn ops %d", m.n_bn);
    CHECK(m.buf_size[m.out_buf] == K_OUT && m.buf_size[0] == (size_t)C_IN * HH * WW, "buffer sizes");
    int found = 0, adds = 0, two = 0;
    for (int i = 0; i < m.n_tensors; i++) {
      const ParamTensor *p = &m.tensors[i];
      if (!strcmp(p->name, "conv0.W")) {
        found |= 1;
        CHECK(p->fan_in == C_IN * 9, "conv0 fan_in %d", p->fan_in);
      }
      if (!strcmp(p->name, "block2.0.shortcut.W")) {
        found |= 2;
        CHECK(p->fan_in == 16 * 2 && p->size == 64 * 32, "shortcut");
      }
      if (!strcmp(p->name, "block1.1.bn1.gamma")) found |= 4;
      if (!strcmp(p->name, "fc.W")) found |= 8;
      if (!strcmp(p->name, "block3.1.conv2.W")) {
        found |= 16;
        CHECK(fabs(p->mult - 1.4 / sqrt(128.0 * 9)) < 1e-15, "ntk mult of a hidden conv %g", p->mult);
      }
    }
    CHECK(found == (bn ? 31 : 27), "tensor names found %d", found);
    for (int i = 0; i < m.n_ops; i++) adds += m.ops[i].kind == OP_ADD;
    for (int i = 0; i < m.n_bufs; i++) two += m.n_readers[i] == 2;
    CHECK(adds == 6 && two == 6, "residual adds %d, buffers with two readers %d (3 identity + 3 projections)", adds, two);
    /* Flops: the convs and the readout. */
    double fl = 2.0 * 16 * C_IN * 9 * 64;
    fl += 2.0 * (32 * 16 * 9 * 64 + 32 * 32 * 9 * 64 + 32 * 16 * 64) + 2 * 2.0 * 32 * 32 * 9 * 64;
    fl += 2.0 * (64 * 32 * 9 * 16 + 64 * 64 * 9 * 16 + 64 * 32 * 16) + 2 * 2.0 * 64 * 64 * 9 * 16;
    fl += 2.0 * (128 * 64 * 9 * 4 + 128 * 128 * 9 * 4 + 128 * 64 * 4) + 2 * 2.0 * 128 * 128 * 9 * 4;
    fl += 2.0 * 128 * K_OUT;
    CHECK(fabs(model_flops_per_sample(&m) - fl) <= 1e-12 * fl, "flops %g, by hand %g", model_flops_per_sample(&m), fl);
    CHECK(model_first_layer_flops(&m) == 2.0 * 16 * C_IN * 9 * 64, "first layer flops");
    CHECK(model_has_batch_norm(&m) == (bool)bn, "has batch norm");
    /* Init: gamma 1, beta 0 exactly. */
    double *theta = malloc(m.n_params * sizeof *theta);
    model_init(&m, theta, 5);
    for (int i = 0; i < m.n_tensors; i++) {
      const ParamTensor *p = &m.tensors[i];
      const size_t L = strlen(p->name);
      if (L > 6 && !strcmp(p->name + L - 6, ".gamma"))
        for (size_t j = 0; j < p->size; j++) CHECK(theta[p->offset + j] == 1.0, "gamma init");
      if (L > 5 && !strcmp(p->name + L - 5, ".beta"))
        for (size_t j = 0; j < p->size; j++) CHECK(theta[p->offset + j] == 0.0, "beta init");
    }
    free(theta);
    model_destroy(&m);
  }
  /* Bad shapes are rejected with a reason. */
  const int bad_depth[] = {4, 9, 12, 0};
  for (int i = 0; i < 4; i++) {
    ModelConfig c = wrn_cfg(ACT_RELU, PARAM_NTK, true, 1);
    c.wrn_depth = bad_depth[i];
    Model m;
    char err[256] = "";
    CHECK(model_build(&m, &c, err, sizeof err) == -1 && strstr(err, "wrn_depth"), "wrn_depth %d accepted", bad_depth[i]);
  }
  ModelConfig c = wrn_cfg(ACT_RELU, PARAM_NTK, true, 1);
  c.in_height = 7;
  Model m;
  char err[256] = "";
  CHECK(model_build(&m, &c, err, sizeof err) == -1 && strstr(err, "image shape"), "bad image shape accepted: %s", err);
  c = wrn_cfg(ACT_RELU, PARAM_NTK, true, 1);
  c.bn_eps = -1e-5; /* eps = 0 is allowed: the exactly scale-invariant nets of docs/li_arora.md */
  CHECK(model_build(&m, &c, err, sizeof err) == -1 && strstr(err, "bn_eps"), "bn_eps -1e-5 accepted");
  /* muP at k = base_width equals sp bitwise (init and outputs); lr scales r, 1, 1/r at k = 4. */
  for (int bn = 0; bn <= 1; bn++) {
    ModelConfig cs = wrn_cfg(ACT_RELU, PARAM_SP, bn, 2), cm = wrn_cfg(ACT_RELU, PARAM_MUP, bn, 2);
    cm.base_width = 2;
    Net s, u;
    net_open(&s, &cs, 3);
    net_open(&u, &cm, 3);
    double *ts = malloc(s.P * sizeof(double)), *tm = malloc(u.P * sizeof(double));
    model_init(&s.m, ts, 9);
    model_init(&u.m, tm, 9);
    CHECK(s.P == u.P && memcmp(ts, tm, s.P * sizeof(double)) == 0, "mup at r = 1: init differs from sp");
    loss_at(&s, ts, NULL);
    loss_at(&u, tm, NULL);
    CHECK(memcmp(s.f, u.f, NB * K_OUT * sizeof(double)) == 0, "mup at r = 1: outputs differ from sp");
    free(ts), free(tm);
    net_close(&s), net_close(&u);
    cm.width = 8; /* r = 4 */
    Model mm;
    model_build(&mm, &cm, err, sizeof err);
    for (int i = 0; i < mm.n_tensors; i++) {
      const ParamTensor *p = &mm.tensors[i];
      double want = 1.0;
      if (!strcmp(p->name, "conv0.W") || strstr(p->name, ".b") || strstr(p->name, "gamma")) want = 4.0;
      if (!strcmp(p->name, "fc.W")) want = 0.25;
      CHECK(p->lr_scale == want, "mup lr_scale of %s: %g, want %g", p->name, p->lr_scale, want);
    }
    model_destroy(&mm);
  }
}

/* ------------------------------------------------------------------ derivatives */

static void test_derivatives(Activation act, Parameterization par, bool bn) {
  ModelConfig c = wrn_cfg(act, par, bn, 1);
  Net n;
  net_open(&n, &c, 11 + 3 * par + bn);
  const size_t P = n.P;
  double *theta = malloc(P * sizeof(double)), *g = malloc(P * sizeof(double)), *v = malloc(P * sizeof(double));
  double *tp = malloc(P * sizeof(double)), *gp = malloc(P * sizeof(double)), *gm = malloc(P * sizeof(double));
  double *hv = malloc(P * sizeof(double)), *w = malloc(P * sizeof(double));
  model_init(&n.m, theta, 100 + par);
  /* Biases and BN affine parameters away from their init so every term is exercised. */
  for (int i = 0; i < n.m.n_tensors; i++) {
    const ParamTensor *p = &n.m.tensors[i];
    if (p->init_std == 0.0 || strstr(p->name, ".b"))
      for (size_t j = 0; j < p->size; j++) theta[p->offset + j] += 0.3 * sin(1.0 + (double)(p->offset + j));
  }
  const char *tag = bn ? "bn" : "no-bn";
  const char *an = act_name(act), *pn = param_name(par);

  /* Gradient vs central differences of L, along a random direction in every tensor. */
  double L0 = loss_at(&n, theta, g);
  CHECK(isfinite(L0) && L0 > 0, "loss %g", L0);
  double worst = 0;
  for (int i = 0; i < n.m.n_tensors; i++) {
    random_dir(&n, v, 1000 + i, i);
    const double h = 1e-6;
    axpy_to(tp, theta, h, v, P);
    const double Lp = loss_at(&n, tp, NULL);
    axpy_to(tp, theta, -h, v, P);
    const double Lm = loss_at(&n, tp, NULL);
    const double fd = (Lp - Lm) / (2 * h), an_ = dot(g, v, P);
    /* Floor: the FD's rounding, ~1e-16 L / h (conv biases before a BN have exactly zero gradient). */
    const double e = fabs(fd - an_) / fmax(fabs(an_), 1e-3 * L0);
    if (e > worst) worst = e;
    CHECK(e < 1e-5, "%s %s %s: grad of %s: FD %.10g vs %.10g (rel %.2e)", an, pn, tag, n.m.tensors[i].name, fd, an_, e);
  }
  printf("%s %s %-5s: grad vs FD, worst over %d tensors %.2e\n", an, pn, tag, n.m.n_tensors, worst);

  /* JVP vs central differences of f. */
  double *jv = malloc(NB * K_OUT * sizeof(double)), *fp = malloc(NB * K_OUT * sizeof(double)), *fd = malloc(NB * K_OUT * sizeof(double));
  random_dir(&n, v, 77, -1);
  loss_at(&n, theta, NULL);
  model_jvp(&n.m, theta, v, NB, &n.t, jv, NULL);
  const double h = 1e-6;
  axpy_to(tp, theta, h, v, P);
  loss_at(&n, tp, NULL);
  memcpy(fp, n.f, sizeof(double) * NB * K_OUT);
  axpy_to(tp, theta, -h, v, P);
  loss_at(&n, tp, NULL);
  for (int r = 0; r < NB * K_OUT; r++) fd[r] = (fp[r] - n.f[r]) / (2 * h);
  const double e_fd = tu_rel_err(jv, fd, NB * K_OUT);
  CHECK(e_fd < 1e-6, "%s %s %s: JVP vs FD rel %.2e", an, pn, tag, e_fd);

  /* Jacobian on a q-dim subspace U: from q JVPs and from Bk VJPs. */
  double *U = malloc((size_t)Q * P * sizeof(double)), *JU = malloc((size_t)NB * K_OUT * Q * sizeof(double));
  double *JU2 = malloc((size_t)NB * K_OUT * Q * sizeof(double)), *e_r = calloc(NB * K_OUT, sizeof(double));
  for (int q = 0; q < Q; q++) random_dir(&n, U + (size_t)q * P, 500 + q, -1);
  loss_at(&n, theta, NULL);
  for (int q = 0; q < Q; q++) {
    model_jvp(&n.m, theta, U + (size_t)q * P, NB, &n.t, jv, NULL);
    for (int r = 0; r < NB * K_OUT; r++) JU[r * Q + q] = jv[r];
  }
  for (int r = 0; r < NB * K_OUT; r++) {
    memset(e_r, 0, NB * K_OUT * sizeof(double));
    e_r[r] = 1.0;
    memset(w, 0, P * sizeof(double));
    model_vjp(&n.m, theta, e_r, NB, &n.t, w, NULL);
    for (int q = 0; q < Q; q++) JU2[r * Q + q] = dot(w, U + (size_t)q * P, P);
  }
  double e = tu_rel_err(JU, JU2, (size_t)NB * K_OUT * Q);
  CHECK(e < 1e-12, "%s %s %s: JVP-built vs VJP-built Jacobian rel %.2e", an, pn, tag, e);
  printf("%s %s %-5s: JVP vs FD %.2e, J U by JVPs vs VJPs %.2e\n", an, pn, tag, e_fd, e);

  /* Gauss-Newton product vs J^T (J v) / N. */
  random_dir(&n, v, 901, -1);
  memset(hv, 0, P * sizeof(double));
  model_gnvp(&n.m, theta, v, n.x, NB, NB, &n.t, hv, NULL);
  model_jvp(&n.m, theta, v, NB, &n.t, jv, NULL);
  for (int r = 0; r < NB * K_OUT; r++) jv[r] /= NB;
  memset(w, 0, P * sizeof(double));
  model_vjp(&n.m, theta, jv, NB, &n.t, w, NULL);
  e = tu_rel_err(hv, w, P);
  CHECK(e < 1e-12, "%s %s %s: GN product vs J^T J v / N rel %.2e", an, pn, tag, e);

  if (act != ACT_RELU) {
    /* HVP vs central differences of the gradient. */
    random_dir(&n, v, 4242, -1);
    memset(hv, 0, P * sizeof(double));
    model_hvp(&n.m, theta, v, n.x, n.y, NB, NB, &n.t, hv, NULL);
    const double hh = 1e-5;
    axpy_to(tp, theta, hh, v, P);
    loss_at(&n, tp, gp);
    axpy_to(tp, theta, -hh, v, P);
    loss_at(&n, tp, gm);
    for (size_t p = 0; p < P; p++) w[p] = (gp[p] - gm[p]) / (2 * hh);
    const double eh = tu_rel_err(hv, w, P);
    CHECK(eh < 1e-6, "%s %s %s: HVP vs FD of gradients rel %.2e", an, pn, tag, eh);
    /* Explicit Hessian on U by second differences of L (forward passes only) vs U^T H U. */
    double Hx[Q][Q], Hu[Q][Q];
    model_hvp_prepare(&n.m, theta, n.x, n.y, NB, NB, &n.t, NULL);
    for (int a = 0; a < Q; a++) {
      memset(hv, 0, P * sizeof(double));
      model_hvp_apply(&n.m, theta, U + (size_t)a * P, NB, NB, &n.t, hv, NULL);
      for (int b = 0; b < Q; b++) Hu[a][b] = dot(hv, U + (size_t)b * P, P);
    }
    const double s = 1e-4;
    for (int a = 0; a < Q; a++)
      for (int b = a; b < Q; b++) {
        double L4[4];
        for (int j = 0; j < 4; j++) {
          const double sa = j < 2 ? s : -s, sb = j % 2 ? -s : s;
          for (size_t p = 0; p < P; p++) tp[p] = theta[p] + sa * U[(size_t)a * P + p] + sb * U[(size_t)b * P + p];
          L4[j] = loss_at(&n, tp, NULL);
        }
        Hx[a][b] = Hx[b][a] = (L4[0] - L4[1] - L4[2] + L4[3]) / (4 * s * s);
      }
    double d2 = 0, n2 = 0, asym = 0;
    for (int a = 0; a < Q; a++)
      for (int b = 0; b < Q; b++) {
        d2 += (Hx[a][b] - Hu[a][b]) * (Hx[a][b] - Hu[a][b]);
        n2 += Hx[a][b] * Hx[a][b];
        asym = fmax(asym, fabs(Hu[a][b] - Hu[b][a]));
      }
    const double ex = sqrt(d2 / n2);
    CHECK(ex < 1e-5, "%s %s %s: U^T H U vs explicit Hessian (second differences of L) rel %.2e", an, pn, tag, ex);
    CHECK(asym < 1e-10 * sqrt(n2), "%s %s %s: U^T H U asymmetric by %.2e", an, pn, tag, asym);
    printf("%s %s %-5s: HVP vs FD of gradients %.2e, U^T H U vs explicit %.2e, asymmetry %.1e\n", an, pn, tag, eh, ex,
           asym / sqrt(n2));
  }
  /* A second VJP on the same tape gives the same gradient (fan-out bookkeeping resets). */
  memset(w, 0, P * sizeof(double));
  loss_at(&n, theta, g);
  loss_at(&n, theta, w);
  CHECK(memcmp(g, w, P * sizeof(double)) == 0, "%s %s %s: repeated VJP differs", an, pn, tag);
  /* Nothing non-finite anywhere. */
  int fin = 1;
  for (size_t p = 0; p < P; p++) fin &= isfinite(g[p]) != 0;
  CHECK(fin, "%s %s %s: non-finite gradient", an, pn, tag);

  free(jv), free(fp), free(fd), free(U), free(JU), free(JU2), free(e_r);
  free(theta), free(g), free(v), free(tp), free(gp), free(gm), free(hv), free(w);
  net_close(&n);
}

/* Batch norm couples the samples: f of sample 0 changes when another sample of the batch does,
 * and does not without batch norm. A batch of 0 samples is a valid (empty) call. */
static void test_batch_coupling(void) {
  for (int bn = 0; bn <= 1; bn++) {
    ModelConfig c = wrn_cfg(ACT_RELU, PARAM_NTK, bn, 1);
    Net n;
    net_open(&n, &c, 5);
    double *theta = malloc(n.P * sizeof(double));
    model_init(&n.m, theta, 1);
    loss_at(&n, theta, NULL);
    double f0[K_OUT];
    memcpy(f0, n.f, sizeof f0);
    n.x[(NB - 1) * c.in_dim] += 1.0;
    loss_at(&n, theta, NULL);
    const int same = memcmp(f0, n.f, sizeof f0) == 0;
    CHECK(bn ? !same : same, "bn %d: sample 0's output %s when sample %d changes", bn, same ? "unchanged" : "changed", NB - 1);
    model_forward(&n.m, theta, n.x, 0, &n.t, NULL); /* empty batch: no crash */
    free(theta);
    net_close(&n);
  }
}

/* Training tapes (tape_create_train: pooled cotangents, in-place relu and residual add) give the
 * gradient and JVP of an ordinary tape, step after step (the pool's blocks reused), for the WRN
 * with and without batch norm, plain, with tanh (no in-place op), and fc nets with and without
 * batch norm; the WRN keeps fewer buffers, and its backward needs at most 3 cotangent blocks. */
static void test_train_tape(void) {
  for (int c = 0; c < 7; c++) {
    ModelConfig cfg = wrn_cfg(c == 3 ? ACT_TANH : ACT_RELU, PARAM_NTK, c != 1, 2);
    if (c == 2) cfg.wrn_plain = true;
    if (c >= 4) { /* fc 3x12 (c = 5: batch norm; c = 6: tanh) */
      cfg.arch = ARCH_FC, cfg.depth = 3, cfg.width = 12, cfg.batch_norm = false, cfg.fc_batch_norm = c == 5;
      cfg.act = c == 6 ? ACT_TANH : ACT_RELU;
    }
    Net n;
    net_open(&n, &cfg, 50 + (uint64_t)c);
    Tape tr;
    CHECK(tape_create_train(&tr, &n.m, NB) == 0, "train tape %d", c);
    double *theta = malloc(n.P * sizeof *theta), *v = malloc(n.P * sizeof *v);
    double *g0 = calloc(n.P, sizeof *g0), *g1 = calloc(n.P, sizeof *g1), *j0 = malloc(NB * K_OUT * sizeof *j0),
           *j1 = malloc(NB * K_OUT * sizeof *j1);
    model_init(&n.m, theta, 7);
    rng_normal_fill(v, n.P, 8, RNG_STREAM_PROBE, 0);
    int shared = 0;
    for (int i = 0; i < n.m.n_bufs; i++) shared += tr.act_shared[i];
    for (int step = 0; step < 3; step++) {
      const double *f = model_forward(&n.m, theta, n.x, NB, &n.t, NULL);
      mse_loss(n.dout, f, n.y, NB, K_OUT, 1.0 / NB);
      memset(g0, 0, n.P * sizeof *g0);
      model_vjp(&n.m, theta, n.dout, NB, &n.t, g0, NULL);
      model_jvp(&n.m, theta, v, NB, &n.t, j0, NULL);
      const double *f1 = model_forward(&n.m, theta, n.x, NB, &tr, NULL);
      CHECK(tu_rel_err(f1, f, NB * K_OUT) < 1e-14, "train tape %d forward", c);
      model_jvp(&n.m, theta, v, NB, &tr, j1, NULL); /* JVP before the VJP (linearised training) */
      memset(g1, 0, n.P * sizeof *g1);
      model_vjp(&n.m, theta, n.dout, NB, &tr, g1, NULL);
      CHECK(tu_rel_err(g1, g0, n.P) < 1e-13, "train tape %d step %d gradient: %.2e", c, step, tu_rel_err(g1, g0, n.P));
      CHECK(tu_rel_err(j1, j0, NB * K_OUT) < 1e-13, "train tape %d JVP: %.2e", c, tu_rel_err(j1, j0, NB * K_OUT));
      for (size_t q = 0; q < n.P; q++) theta[q] -= 0.05 * g0[q];
    }
    for (int i = 0; i < n.m.n_bufs; i++) CHECK(tr.grad[i] == NULL, "train tape %d: cotangent of buffer %d kept", c, i);
    if (c == 0 || c == 2) {
      CHECK(shared > 0 && tr.n_pool <= 3, "WRN train tape %d: %d shared buffers, %d cotangent blocks", c, shared, tr.n_pool);
      double keep = 0;
      for (int i = 0; i < n.m.n_bufs; i++) keep += 2.0 * (double)n.m.buf_size[i];
      CHECK(tape_train_doubles_per_sample(&n.m, 3) < 0.6 * keep, "WRN train tape %d: %g doubles per sample vs %g", c,
            tape_train_doubles_per_sample(&n.m, 3), keep);
    }
    if (c == 3 || c == 6) { /* tanh is never in place (its derivative needs its input); adds may be */
      int act_shared = 0;
      for (int i = 0; i < n.m.n_ops; i++) act_shared += n.m.ops[i].kind == OP_ACT && tr.act_shared[n.m.ops[i].out];
      CHECK(act_shared == 0 && (c == 3 || shared == 0), "tanh: %d in-place activations", act_shared);
    }
    free(theta), free(v), free(g0), free(g1), free(j0), free(j1);
    tape_destroy(&tr);
    net_close(&n);
  }
}

int main(void) {
  test_train_tape();
  test_structure();
  test_batch_coupling();
  for (int bn = 0; bn <= 1; bn++)
    for (int p = 0; p < PARAM_COUNT; p++) {
      if (p == PARAM_MF) continue; /* one hidden layer of a fully connected net only */
      test_derivatives(ACT_RELU, (Parameterization)p, bn);
      test_derivatives(ACT_TANH, (Parameterization)p, bn);
    }
  return tu_report("test_wrn");
}
