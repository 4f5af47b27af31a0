/* model.c: structure and parameter table, whole-network VJP/JVP against finite differences and
 * against each other, the parameterization table's variance propagation at init, muP == SP at
 * n = n0, and the purity of model_init. */
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "rng.h"
#include "testutil.h"

static const Parameterization all_params[] = {PARAM_NTK, PARAM_SP, PARAM_MUP};

static ModelConfig small_cfg(Activation act, Parameterization p, int bias, int depth) {
  ModelConfig c = {0};
  c.arch = ARCH_FC;
  c.in_dim = 5;
  c.out_dim = 3;
  c.depth = depth;
  c.width = 7;
  c.act = act;
  c.bias = bias;
  c.sigma_w = 1.4;
  c.sigma_b = 0.6;
  c.param = p;
  c.base_width = 3; /* r = 7/3 for mup: width != base_width so every lr/std branch differs */
  return c;
}

/* Deterministic data from a stream the model does not use. */
static void fill_data(double *x, size_t n, uint64_t seed, uint64_t idx0) {
  rng_normal_fill(x, n, seed, RNG_STREAM_TEACHER_X, idx0);
}

static double loss_at(const Model *m, const double *theta, const double *x, const double *y, int B,
                      Tape *t) {
  const double *f = model_forward(m, theta, x, B, t, NULL);
  return mse_loss(NULL, f, y, B, m->cfg.out_dim, 0.0) / B;
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* ------------------------------------------------------------------ structure */

static void test_structure(void) {
  for (int bias = 0; bias <= 1; bias++) {
    ModelConfig c = small_cfg(ACT_TANH, PARAM_NTK, bias, 3);
    Model m;
    char err[256];
    CHECK(model_build(&m, &c, err, sizeof err) == 0, "build failed: %s", err);
    const int L = 3, d = 5, n = 7, k = 3;
    CHECK(m.n_ops == 2 * L + 1 && m.n_bufs == 2 * L + 2 && m.out_buf == 2 * L + 1,
          "ops %d bufs %d out %d", m.n_ops, m.n_bufs, m.out_buf);
    CHECK(m.n_tensors == (L + 1) * (bias ? 2 : 1), "n_tensors %d", m.n_tensors);
    size_t P = (size_t)(d * n + (L - 1) * n * n + n * k) + (bias ? (size_t)(L * n + k) : 0);
    CHECK(m.n_params == P, "P %zu want %zu", m.n_params, P);
    /* Offsets contiguous, names as documented, every buffer written by exactly one op. */
    size_t off = 0;
    int ok_names = 1, ok_off = 1;
    for (int t = 0; t < m.n_tensors; t++) {
      char want[32];
      int layer = bias ? t / 2 : t;
      snprintf(want, sizeof want, "dense%d.%s", layer, (bias && t % 2) ? "b" : "W");
      ok_names &= strcmp(want, m.tensors[t].name) == 0;
      ok_off &= m.tensors[t].offset == off;
      off += m.tensors[t].size;
    }
    CHECK(ok_names, "tensor names");
    CHECK(ok_off && off == P, "tensor offsets");
    int ok_ops = 1;
    for (int i = 0; i < m.n_ops; i++) {
      const Op *op = &m.ops[i];
      ok_ops &= op->out == i + 1 && op->in == i;
      ok_ops &= op->kind == (i % 2 ? OP_ACT : OP_DENSE);
      ok_ops &= m.buf_size[op->in] == (size_t)op->n_in && m.buf_size[op->out] == (size_t)op->n_out;
      if (op->kind == OP_DENSE) ok_ops &= (op->b >= 0) == bias && m.tensors[op->w].fan_in == op->n_in;
      else ok_ops &= op->act == ACT_TANH && op->w < 0 && op->b < 0;
    }
    CHECK(ok_ops, "op list");
    double fl = 2.0 * (d * n + (L - 1) * n * n + n * k);
    CHECK(model_flops_per_sample(&m) == fl, "flops %g want %g", model_flops_per_sample(&m), fl);
    model_destroy(&m);
  }

  /* Invalid configurations: -1 and a one-line message naming the problem. */
  struct {
    const char *field;
    ModelConfig c;
  } bad[8];
  for (int i = 0; i < 8; i++) bad[i].c = small_cfg(ACT_RELU, PARAM_MUP, 1, 2);
  bad[0].field = "in_dim", bad[0].c.in_dim = 0;
  bad[1].field = "out_dim", bad[1].c.out_dim = -1;
  bad[2].field = "width", bad[2].c.width = 0;
  bad[3].field = "depth", bad[3].c.depth = 0;
  bad[4].field = "base_width", bad[4].c.base_width = 0;
  bad[5].field = "sigma_w", bad[5].c.sigma_w = NAN;
  bad[6].field = "sigma_b", bad[6].c.sigma_b = INFINITY;
  bad[7].field = "activation", bad[7].c.act = (Activation)17;
  for (int i = 0; i < 8; i++) {
    Model m;
    char err[256] = "";
    int rc = model_build(&m, &bad[i].c, err, sizeof err);
    CHECK(rc == -1 && strstr(err, bad[i].field) && !strchr(err, '\n'), "bad %s: rc %d err '%s'",
          bad[i].field, rc, err);
    model_destroy(&m); /* must be safe after a failed build */
  }
  ModelConfig ok_ntk = small_cfg(ACT_RELU, PARAM_NTK, 1, 2);
  ok_ntk.base_width = 0; /* base_width only matters for mup */
  Model m;
  char err[256];
  CHECK(model_build(&m, &ok_ntk, err, sizeof err) == 0, "ntk with base_width 0 rejected: %s", err);
  model_destroy(&m);

  CHECK(param_from_name("mup") == PARAM_MUP && param_from_name("ntk") == PARAM_NTK &&
            param_from_name("sp") == PARAM_SP && param_from_name("abc") == PARAM_ABC && param_from_name("mf") == PARAM_MF &&
            param_from_name("mean_field") == -1 &&
            strcmp(param_name(PARAM_SP), "sp") == 0 && arch_from_name("fc") == ARCH_FC &&
            arch_from_name("wrn") == ARCH_WRN && arch_from_name("resnet") == -1 && strcmp(arch_name(ARCH_FC), "fc") == 0,
        "name tables");
}

/* ------------------------------------------------------------------ parameterization table */

static void test_param_table(void) {
  const int L = 3, d = 5, n = 7, k = 3;
  const double r = 7.0 / 3.0, sw = 1.4, sb = 0.6;
  for (int pi = 0; pi < 3; pi++) {
    Parameterization p = all_params[pi];
    ModelConfig c = small_cfg(ACT_RELU, p, 1, L);
    Model m;
    char err[256];
    model_build(&m, &c, err, sizeof err);
    int ok = 1;
    for (int l = 0; l <= L; l++) {
      const ParamTensor *W = &m.tensors[2 * l], *b = &m.tensors[2 * l + 1];
      int fan = l == 0 ? d : n;
      int kind = l == 0 ? 0 : (l == L ? 2 : 1);
      double w_std, w_mult, w_lr, b_std, b_mult, b_lr;
      if (p == PARAM_NTK) {
        w_std = 1, w_mult = sw / sqrt(fan), w_lr = 1, b_std = 1, b_mult = sb, b_lr = 1;
      } else if (p == PARAM_SP) {
        w_std = sw / sqrt(fan), w_mult = 1, w_lr = 1, b_std = sb, b_mult = 1, b_lr = 1;
      } else {
        w_std = kind == 2 ? sw / sqrt(n * r) : sw / sqrt(fan);
        w_mult = 1, w_lr = kind == 0 ? r : (kind == 1 ? 1 : 1 / r);
        b_std = sb, b_mult = 1, b_lr = r;
      }
      ok &= W->fan_in == fan && W->size == (size_t)fan * (size_t)(l == L ? k : n);
      ok &= tu_close(W->init_std, w_std, 1e-15) && tu_close(W->mult, w_mult, 1e-15) &&
            tu_close(W->lr_scale, w_lr, 1e-15);
      ok &= tu_close(b->init_std, b_std, 1e-15) && tu_close(b->mult, b_mult, 1e-15) &&
            tu_close(b->lr_scale, b_lr, 1e-15);
      if (!ok) {
        fprintf(stderr, "%s layer %d: W std %g mult %g lr %g, b std %g mult %g lr %g\n",
                param_name(p), l, W->init_std, W->mult, W->lr_scale, b->init_std, b->mult, b->lr_scale);
        break;
      }
    }
    CHECK(ok, "%s: parameter table differs from docs/conventions.md", param_name(p));

    /* model_lr_scales expands lr_scale per element. */
    double *lr = malloc(m.n_params * sizeof *lr);
    model_lr_scales(&m, lr);
    int ok_lr = 1;
    for (int t = 0; t < m.n_tensors; t++)
      for (size_t i = 0; i < m.tensors[t].size; i++)
        ok_lr &= lr[m.tensors[t].offset + i] == m.tensors[t].lr_scale;
    CHECK(ok_lr, "%s: model_lr_scales", param_name(p));
    if (p == PARAM_MUP) { /* explicit: r, 1, 1/r, biases r */
      double r_exact = (double)c.width / c.base_width;
      CHECK(lr[m.tensors[0].offset] == r_exact && lr[m.tensors[2].offset] == 1.0 &&
                lr[m.tensors[2 * L].offset] == 1.0 / r_exact && lr[m.tensors[1].offset] == r_exact &&
                lr[m.tensors[2 * L + 1].offset] == r_exact,
            "mup lr scales r, 1, 1/r");
    }
    free(lr);
    model_destroy(&m);
  }

  /* muP zero readout: output W exactly zero, everything else as usual. */
  ModelConfig c = small_cfg(ACT_RELU, PARAM_MUP, 1, 2);
  c.mup_zero_readout = true;
  Model m;
  char err[256];
  model_build(&m, &c, err, sizeof err);
  double *th = malloc(m.n_params * sizeof *th);
  model_init(&m, th, 5);
  const ParamTensor *Wo = &m.tensors[4], *W0 = &m.tensors[0];
  int zeros = 1, nonzero = 0;
  for (size_t i = 0; i < Wo->size; i++) zeros &= th[Wo->offset + i] == 0.0 && !signbit(th[Wo->offset + i]);
  for (size_t i = 0; i < W0->size; i++) nonzero += th[W0->offset + i] != 0.0;
  CHECK(Wo->init_std == 0.0 && zeros, "mup_zero_readout: output W not +0");
  CHECK(nonzero == (int)W0->size, "mup_zero_readout touched the input layer");
  free(th);
  model_destroy(&m);
}

/* muP with n = n0 is SP bit for bit: same theta, same theta*mult, same outputs. */
static void test_mup_equals_sp(void) {
  for (int a = 0; a < ACT_COUNT; a++) {
    ModelConfig cs = small_cfg((Activation)a, PARAM_SP, 1, 3);
    ModelConfig cm = cs;
    cm.param = PARAM_MUP;
    cm.base_width = cm.width;
    Model ms, mm;
    char err[256];
    model_build(&ms, &cs, err, sizeof err);
    model_build(&mm, &cm, err, sizeof err);
    size_t P = ms.n_params;
    double *ts = malloc(P * sizeof *ts), *tm = malloc(P * sizeof *tm);
    model_init(&ms, ts, 11);
    model_init(&mm, tm, 11);
    int same_prod = mm.n_params == P && ms.n_tensors == mm.n_tensors;
    for (int t = 0; same_prod && t < ms.n_tensors; t++) {
      const ParamTensor *a1 = &ms.tensors[t], *a2 = &mm.tensors[t];
      same_prod &= a1->init_std == a2->init_std && a1->mult == a2->mult && a1->lr_scale == a2->lr_scale;
      for (size_t i = 0; i < a1->size; i++) {
        double p1 = ts[a1->offset + i] * a1->mult, p2 = tm[a2->offset + i] * a2->mult;
        same_prod &= memcmp(&p1, &p2, sizeof p1) == 0;
      }
    }
    CHECK(same_prod, "%s: mup(n=n0) theta*mult / table differs from sp", act_name((Activation)a));
    const int B = 4;
    double x[4 * 5];
    fill_data(x, 20, 3, 0);
    Tape t1, t2;
    tape_create(&t1, &ms, B);
    tape_create(&t2, &mm, B);
    const double *f1 = model_forward(&ms, ts, x, B, &t1, NULL);
    const double *f2 = model_forward(&mm, tm, x, B, &t2, NULL);
    CHECK(memcmp(f1, f2, sizeof(double) * B * 3) == 0, "%s: mup(n=n0) output differs from sp",
          act_name((Activation)a));
    tape_destroy(&t1);
    tape_destroy(&t2);
    free(ts);
    free(tm);
    model_destroy(&ms);
    model_destroy(&mm);
  }
}

/* ------------------------------------------------------------------ model_init */

static void test_init_purity(void) {
  ModelConfig c = small_cfg(ACT_TANH, PARAM_SP, 1, 3);
  Model m;
  char err[256];
  model_build(&m, &c, err, sizeof err);
  size_t P = m.n_params;
  double *a = malloc(P * sizeof *a), *b = malloc(P * sizeof *b), *e = malloc(P * sizeof *e);
  model_init(&m, a, 42);
  memset(b, 0x5a, P * sizeof *b); /* garbage: init must overwrite every entry */
  model_init(&m, b, 42);
  CHECK(memcmp(a, b, P * sizeof *a) == 0, "same seed gives different theta");
  model_init(&m, e, 43);
  size_t equal = 0;
  for (size_t i = 0; i < P; i++) equal += a[i] == e[i];
  CHECK(equal == 0, "seeds 42 and 43 share %zu of %zu entries", equal, P);

  /* Tensor t is exactly init_std * N(0,1) from stream PARAM_BASE + t, index = element. */
  int ok = 1;
  for (int t = 0; t < m.n_tensors; t++)
    for (size_t i = 0; i < m.tensors[t].size; i++)
      ok &= a[m.tensors[t].offset + i] ==
            m.tensors[t].init_std * rng_normal(42, RNG_STREAM_PARAM_BASE + (uint64_t)t, i);
  CHECK(ok, "tensor values are not init_std * rng_normal(seed, PARAM_BASE + t, i)");
  /* Distinct tensors of equal size draw different numbers (own streams, not shared ones). */
  const ParamTensor *W1 = &m.tensors[2], *W2 = &m.tensors[4]; /* both 7 x 7 */
  equal = 0;
  for (size_t i = 0; i < W1->size; i++) equal += a[W1->offset + i] == a[W2->offset + i];
  CHECK(W1->size == W2->size && equal == 0, "dense1.W and dense2.W share %zu entries", equal);

  /* Own streams: a deeper net with the same leading shapes has identical leading tensors. */
  ModelConfig c4 = c;
  c4.depth = 4;
  Model m4;
  model_build(&m4, &c4, err, sizeof err);
  double *a4 = malloc(m4.n_params * sizeof *a4);
  model_init(&m4, a4, 42);
  size_t lead = m.tensors[5].offset; /* dense0..dense2 W,b minus the readout bias */
  CHECK(memcmp(a, a4, lead * sizeof *a) == 0, "leading tensors depend on the depth");
  free(a4);
  model_destroy(&m4);
  free(a);
  free(b);
  free(e);
  model_destroy(&m);
}

/* ------------------------------------------------------------------ derivatives */

/* Whole-network gradient against central differences of the loss. */
static void test_gradient_fd(void) {
  const int B = 4, d = 5, k = 3;
  for (int depth = 2; depth <= 3; depth++)
    for (int a = 0; a < ACT_COUNT; a++)
      for (int pi = 0; pi < 3; pi++)
        for (int bias = 0; bias <= 1; bias++) {
          ModelConfig c = small_cfg((Activation)a, all_params[pi], bias, depth);
          Model m;
          char err[256];
          model_build(&m, &c, err, sizeof err);
          size_t P = m.n_params;
          double *th = malloc(P * sizeof *th), *g = calloc(P, sizeof *g), *gfd = malloc(P * sizeof *gfd);
          model_init(&m, th, 100 + (uint64_t)depth);
          double x[4 * 5], y[4 * 3], dout[4 * 3];
          fill_data(x, (size_t)B * d, 7, 0);
          fill_data(y, (size_t)B * k, 7, 1000);
          Tape t;
          tape_create(&t, &m, B);
          const double *f = model_forward(&m, th, x, B, &t, NULL);
          mse_loss(dout, f, y, B, k, 1.0 / B);
          model_vjp(&m, th, dout, B, &t, g, NULL);
          const double h = 1e-6;
          for (size_t p = 0; p < P; p++) {
            double s = th[p];
            th[p] = s + h;
            double lp = loss_at(&m, th, x, y, B, &t);
            th[p] = s - h;
            double lm = loss_at(&m, th, x, y, B, &t);
            th[p] = s;
            gfd[p] = (lp - lm) / (2 * h);
          }
          double rel = tu_rel_err(g, gfd, P);
          CHECK(rel < 1e-6, "grad vs FD: %s %s bias=%d depth=%d rel err %.3g",
                act_name((Activation)a), param_name(all_params[pi]), bias, depth, rel);
          tape_destroy(&t);
          free(th);
          free(g);
          free(gfd);
          model_destroy(&m);
        }
}

/* JVP against central differences of the forward map; adjoint identity; VJP accumulates. */
static void test_jvp(void) {
  const int B = 4, d = 5, k = 3;
  double worst_fd = 0, worst_adj = 0;
  int ok_fd = 1, ok_adj = 1, ok_acc = 1, ok_rep = 1, ok_null = 1;
  for (int a = 0; a < ACT_COUNT; a++)
    for (int pi = 0; pi < 3; pi++)
      for (int bias = 0; bias <= 1; bias++) {
        ModelConfig c = small_cfg((Activation)a, all_params[pi], bias, 3);
        Model m;
        char err[256];
        model_build(&m, &c, err, sizeof err);
        size_t P = m.n_params;
        double *th = malloc(P * sizeof *th), *v = malloc(P * sizeof *v), *th2 = malloc(P * sizeof *th2);
        double *jtu = calloc(P, sizeof *jtu), *jtu2 = calloc(P, sizeof *jtu2);
        model_init(&m, th, 200);
        rng_normal_fill(v, P, 9, RNG_STREAM_PROBE, 0);
        double x[4 * 5], u[4 * 3], jv[4 * 3], jv2[4 * 3], fp[4 * 3], fd[4 * 3];
        fill_data(x, (size_t)B * d, 8, 0);
        fill_data(u, (size_t)B * k, 8, 500);
        Tape t;
        tape_create(&t, &m, B);
        const double h = 1e-6;
        for (size_t p = 0; p < P; p++) th2[p] = th[p] + h * v[p];
        memcpy(fp, model_forward(&m, th2, x, B, &t, NULL), sizeof fp);
        for (size_t p = 0; p < P; p++) th2[p] = th[p] - h * v[p];
        const double *fm = model_forward(&m, th2, x, B, &t, NULL);
        for (int i = 0; i < B * k; i++) fd[i] = (fp[i] - fm[i]) / (2 * h);

        model_forward(&m, th, x, B, &t, NULL);
        model_jvp(&m, th, v, B, &t, jv, NULL);
        double rel = tu_rel_err(jv, fd, (size_t)B * k);
        worst_fd = fmax(worst_fd, rel);
        if (!(rel < 1e-6)) {
          ok_fd = 0;
          fprintf(stderr, "jvp vs FD %s %s bias=%d: %.3g\n", act_name((Activation)a),
                  param_name(all_params[pi]), bias, rel);
        }
        model_vjp(&m, th, u, B, &t, jtu, NULL);
        double lhs = dot(jv, u, (size_t)B * k), rhs = dot(v, jtu, P);
        double adj = fabs(lhs - rhs) / fmax(fabs(lhs), fabs(rhs));
        worst_adj = fmax(worst_adj, adj);
        if (!(adj < 1e-12)) {
          ok_adj = 0;
          fprintf(stderr, "adjoint %s %s bias=%d: %.17g vs %.17g\n", act_name((Activation)a),
                  param_name(all_params[pi]), bias, lhs, rhs);
        }
        /* grad += J^T u: a second call doubles it; a repeated JVP is unchanged (tangent buffers
         * are reused, not accumulated). */
        model_vjp(&m, th, u, B, &t, jtu, NULL);
        model_vjp(&m, th, u, B, &t, jtu2, NULL);
        for (size_t p = 0; p < P; p++) ok_acc &= fabs(jtu[p] - 2 * jtu2[p]) <= 1e-14 * (1 + fabs(jtu[p]));
        model_jvp(&m, th, v, B, &t, jv2, NULL);
        ok_rep &= memcmp(jv, jv2, sizeof jv) == 0;
        /* grad == NULL (model.h): same activation cotangents, parameter products skipped. */
        size_t n1 = (size_t)B * m.buf_size[1];
        double *g1 = malloc(n1 * sizeof *g1);
        memcpy(g1, t.grad[1], n1 * sizeof *g1);
        memset(t.grad[1], 0, n1 * sizeof *g1);
        model_vjp(&m, th, u, B, &t, NULL, NULL);
        ok_null &= memcmp(g1, t.grad[1], n1 * sizeof *g1) == 0;
        free(g1);
        tape_destroy(&t);
        free(th);
        free(v);
        free(th2);
        free(jtu);
        free(jtu2);
        model_destroy(&m);
      }
  CHECK(ok_fd, "JVP vs FD, worst rel err %.3g", worst_fd);
  CHECK(ok_adj, "adjoint <Jv,u> = <v,J^T u>, worst rel err %.3g", worst_adj);
  CHECK(ok_acc, "model_vjp does not accumulate into grad");
  CHECK(ok_rep, "repeated model_jvp differs");
  CHECK(ok_null, "model_vjp with grad == NULL gives different activation cotangents");
  printf("jvp: worst FD rel err %.2e, worst adjoint rel err %.2e\n", worst_fd, worst_adj);
}

/* Dense Jacobian from P JVPs (columns) equals the one from B*k VJPs (rows). */
static void test_dense_jacobian(void) {
  const int B = 4, d = 5, k = 3, Nk = B * k;
  for (int a = 0; a < ACT_COUNT; a++)
    for (int pi = 0; pi < 3; pi++) {
      ModelConfig c = small_cfg((Activation)a, all_params[pi], 1, 2);
      Model m;
      char err[256];
      model_build(&m, &c, err, sizeof err);
      size_t P = m.n_params;
      double *th = malloc(P * sizeof *th), *e = calloc(P, sizeof *e);
      double *Jc = malloc((size_t)Nk * P * sizeof *Jc), *Jr = calloc((size_t)Nk * P, sizeof *Jr);
      model_init(&m, th, 300);
      double x[4 * 5], col[4 * 3], u[4 * 3];
      fill_data(x, (size_t)B * d, 10, 0);
      Tape t;
      tape_create(&t, &m, B);
      model_forward(&m, th, x, B, &t, NULL);
      for (size_t p = 0; p < P; p++) {
        e[p] = 1;
        model_jvp(&m, th, e, B, &t, col, NULL);
        e[p] = 0;
        for (int i = 0; i < Nk; i++) Jc[(size_t)i * P + p] = col[i];
      }
      for (int i = 0; i < Nk; i++) {
        memset(u, 0, sizeof u);
        u[i] = 1;
        model_vjp(&m, th, u, B, &t, Jr + (size_t)i * P, NULL);
      }
      double maxabs = 0, maxdiff = 0;
      for (size_t i = 0; i < (size_t)Nk * P; i++) {
        maxabs = fmax(maxabs, fabs(Jc[i]));
        maxdiff = fmax(maxdiff, fabs(Jc[i] - Jr[i]));
      }
      CHECK(maxabs > 0 && maxdiff <= 1e-12 * maxabs, "%s %s: |J_jvp - J_vjp| = %.3g of %.3g",
            act_name((Activation)a), param_name(all_params[pi]), maxdiff, maxabs);
      tape_destroy(&t);
      free(th);
      free(e);
      free(Jc);
      free(Jr);
      model_destroy(&m);
    }
}

/* ------------------------------------------------------------------ variance propagation */

/* E[phi(h)^2], h ~ N(0, q). Closed forms for identity and relu; composite Simpson in z = h/sqrt(q)
 * on [-12, 12] for tanh and erf (integrand smooth, tails below 1e-30). */
static double mean_phi2(double q, Activation a) {
  if (a == ACT_IDENTITY) return q;
  if (a == ACT_RELU) return q / 2;
  const int n = 4000;
  const double lo = -12, hi = 12, dz = (hi - lo) / n;
  double s = 0;
  for (int i = 0; i <= n; i++) {
    double z = lo + i * dz, v = act_value(sqrt(q) * z, a);
    double w = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2);
    s += w * v * v * exp(-0.5 * z * z);
  }
  return s * dz / 3 / sqrt(2 * 3.14159265358979323846);
}

static void test_variance(void) {
  /* Guard for the quadrature itself: E[erf(h)^2] = (2/pi) asin(2q / (1 + 2q)). */
  for (double q = 0.1; q < 10; q *= 3) {
    double exact = 2 / 3.14159265358979323846 * asin(2 * q / (1 + 2 * q));
    CHECK(tu_close(mean_phi2(q, ACT_ERF), exact, 1e-10), "quadrature E[erf^2] q=%g: %.15g vs %.15g",
          q, mean_phi2(q, ACT_ERF), exact);
  }

  const int d = 64, n = 2000, k = 2000, L = 3, B = 32, n_seeds = 2;
  const double sw = 1.3, sb = 0.3, base = 500; /* mup r = 4 */
  double *x = malloc((size_t)B * d * sizeof *x);
  fill_data(x, (size_t)B * d, 21, 0);
  /* Zero-mean, nearly orthogonal samples keep the rows' estimates weakly correlated across the
   * batch, so B samples are worth almost B draws; mean(x^2) != 1 so the sw^2 mean(x^2) term shows. */
  for (size_t i = 0; i < (size_t)B * d; i++) x[i] *= 1.5;
  double mx2 = dot(x, x, (size_t)B * d) / (B * d);
  double worst_c = 0, worst_q = 0, worst_z = 0, max_se = 0;
  for (int pi = 0; pi < 3; pi++)
    for (int a = 0; a < ACT_COUNT; a++) {
      Parameterization p = all_params[pi];
      ModelConfig c = {0};
      c.arch = ARCH_FC, c.in_dim = d, c.out_dim = k, c.depth = L, c.width = n, c.act = (Activation)a;
      c.bias = true, c.sigma_w = sw, c.sigma_b = sb, c.param = p, c.base_width = (int)base;
      Model m;
      char err[256];
      model_build(&m, &c, err, sizeof err);
      double *th = malloc(m.n_params * sizeof *th);
      Tape t;
      tape_create(&t, &m, B);
      /* Two theories per layer l:
       *  - layer map: given layer l-1's pre-activations of sample a (empirical q_a = mean_j h^2),
       *    E[h_l^2] = sw^2 E_{h~N(0,q_a)}[phi(h)^2] / r + sb^2, averaged over a; layer 0 uses
       *    sw^2 mean(x_a^2) + sb^2. Only layer l's own draw fluctuates: its rows j are i.i.d.
       *    given layer l-1, so the standard error SE of the estimate follows from the spread of
       *    Z_j = mean_a h_aj^2. Tolerance max(3%, 4 SE): samples are correlated (relu features
       *    share a mean direction), which makes SE of the readout ~1.5% even with 4000 rows.
       *  - full recursion from the inputs, q_{l+1} = sw^2 E[phi(h_l)^2] / r + sb^2: fluctuations
       *    of all earlier layers add up (finite width, correlated samples), looser tolerance.
       * r = n/n0 only for the muP readout (weights N(0, sw^2/(n r))). */
      double emp[8] = {0}, cond[8] = {0}, var_emp[8] = {0};
      for (int s = 0; s < n_seeds; s++) {
        model_init(&m, th, 1000 + (uint64_t)s);
        model_forward(&m, th, x, B, &t, NULL);
        for (int l = 0; l <= L; l++) { /* pre-activation of dense layer l is buffer 2l+1 */
          const double *h = t.act[2 * l + 1]; /* B x buf_size */
          size_t cnt = (size_t)B * m.buf_size[2 * l + 1];
          emp[l] += dot(h, h, cnt) / cnt / n_seeds;
          int rows = (int)m.buf_size[2 * l + 1];
          double sz = 0, sz2 = 0;
          for (int j = 0; j < rows; j++) {
            double z = 0;
            for (int smp = 0; smp < B; smp++) z += h[(size_t)smp * rows + j] * h[(size_t)smp * rows + j] / B;
            sz += z, sz2 += z * z;
          }
          /* variance of this seed's mean over rows, divided by n_seeds^2 for the seed average */
          var_emp[l] += (sz2 / rows - (sz / rows) * (sz / rows)) / (rows - 1) / n_seeds / n_seeds;
          double r = (p == PARAM_MUP && l == L) ? n / base : 1;
          for (int smp = 0; smp < B; smp++) {
            double qa;
            if (l == 0) {
              qa = dot(x + (size_t)smp * d, x + (size_t)smp * d, d) / d;
            } else {
              const double *hp = t.act[2 * l - 1] + (size_t)smp * n; /* layer l-1, n wide */
              qa = mean_phi2(dot(hp, hp, n) / n, (Activation)a) / r;
            }
            cond[l] += (sw * sw * qa + sb * sb) / B / n_seeds;
          }
        }
      }
      double q = sw * sw * mx2 + sb * sb;
      for (int l = 0; l <= L; l++) {
        double rel_c = fabs(emp[l] / cond[l] - 1), rel_q = fabs(emp[l] / q - 1);
        double se = sqrt(var_emp[l]) / emp[l];
        worst_c = fmax(worst_c, rel_c);
        worst_q = fmax(worst_q, rel_q);
        worst_z = fmax(worst_z, rel_c / se);
        max_se = fmax(max_se, se);
        CHECK(rel_c < fmax(0.03, 4 * se), "%s %s layer %d: E[h^2] %.5g, layer map %.5g (rel %.3f, SE %.3f)",
              param_name(p), act_name((Activation)a), l, emp[l], cond[l], rel_c, se);
        CHECK(rel_q < 0.08, "%s %s layer %d: E[h^2] %.5g, recursion %.5g (rel %.3f)", param_name(p),
              act_name((Activation)a), l, emp[l], q, rel_q);
        double r = (p == PARAM_MUP && l + 1 == L) ? n / base : 1;
        q = sw * sw * mean_phi2(q, (Activation)a) / r + sb * sb;
      }
      tape_destroy(&t);
      free(th);
      model_destroy(&m);
    }
  printf("variance: layer map worst rel dev %.4f (%.2f SE; largest SE %.4f), recursion worst %.4f (tol 0.08)\n",
         worst_c, worst_z, max_se, worst_q);
  free(x);
}

/* ------------------------------------------------------------------ abc and mean field */

/* Two models' parameter tables, initial parameters and outputs are the same bit for bit. */
static int same_bits(const ModelConfig *ca, const ModelConfig *cb, const char *what) {
  Model a, b;
  char err[256];
  if (model_build(&a, ca, err, sizeof err) || model_build(&b, cb, err, sizeof err)) {
    fprintf(stderr, "%s: build: %s\n", what, err);
    return 0;
  }
  int ok = a.n_tensors == b.n_tensors && a.n_params == b.n_params;
  for (int t = 0; ok && t < a.n_tensors; t++) {
    const ParamTensor *x = &a.tensors[t], *y = &b.tensors[t];
    ok &= memcmp(&x->init_std, &y->init_std, sizeof(double)) == 0 && memcmp(&x->mult, &y->mult, sizeof(double)) == 0 &&
          memcmp(&x->lr_scale, &y->lr_scale, sizeof(double)) == 0;
    if (!ok) fprintf(stderr, "%s: tensor %s: std %.17g/%.17g mult %.17g/%.17g lr %.17g/%.17g\n", what, x->name, x->init_std,
                     y->init_std, x->mult, y->mult, x->lr_scale, y->lr_scale);
  }
  if (ok) {
    const int B = 4;
    double *ta = malloc(a.n_params * sizeof *ta), *tb = malloc(b.n_params * sizeof *tb), *x = malloc((size_t)B * ca->in_dim * sizeof *x);
    model_init(&a, ta, 5);
    model_init(&b, tb, 5);
    fill_data(x, (size_t)B * ca->in_dim, 6, 0);
    Tape tpa, tpb;
    tape_create(&tpa, &a, B);
    tape_create(&tpb, &b, B);
    ok &= memcmp(ta, tb, a.n_params * sizeof *ta) == 0;
    ok &= memcmp(model_forward(&a, ta, x, B, &tpa, NULL), model_forward(&b, tb, x, B, &tpb, NULL), (size_t)B * ca->out_dim * sizeof(double)) == 0;
    tape_destroy(&tpa);
    tape_destroy(&tpb);
    free(ta), free(tb), free(x);
  }
  model_destroy(&a);
  model_destroy(&b);
  return ok;
}

/* abc with sp's and muP's exponents is sp and muP bit for bit (widths that n0 does not divide, r
 * below and above 1, zero readout); the general table follows the conventions' formulas; mean
 * field is its exponent table and needs one hidden layer. */
static void test_abc(void) {
  static const double sp[ABC_KINDS][3] = {{0, 0, 0}, {0, 0.5, 0}, {0, 0.5, 0}, {0, 0, 0}};
  static const double mup[ABC_KINDS][3] = {{0, 0, -1}, {0, 0.5, 0}, {0, 1, 1}, {0, 0, -1}};
  const int widths[] = {7, 12, 64, 1000}, bases[] = {3, 7, 48, 64};
  for (int wi = 0; wi < 4; wi++)
    for (int bi = 0; bi < 4; bi++)
      for (int zero = 0; zero <= 1; zero++)
        for (int bias = 0; bias <= 1; bias++) {
          ModelConfig named = small_cfg(ACT_TANH, PARAM_SP, bias, 3), abc;
          named.width = widths[wi], named.base_width = bases[bi], named.mup_zero_readout = zero;
          char what[96];
          for (int q = 0; q < 2; q++) {
            named.param = q ? PARAM_MUP : PARAM_SP;
            if (named.param == PARAM_SP && zero) continue; /* sp has no zero readout */
            abc = named;
            abc.param = PARAM_ABC;
            memcpy(abc.abc, q ? mup : sp, sizeof sp);
            snprintf(what, sizeof what, "abc as %s (n %d, n0 %d, zero readout %d, bias %d)", param_name(named.param), widths[wi],
                     bases[bi], zero, bias);
            CHECK(same_bits(&named, &abc, what), "%s differs", what);
          }
        }

  /* The general table against the formulas, with fractional exponents. */
  ModelConfig c = small_cfg(ACT_RELU, PARAM_ABC, 1, 3);
  const double e[ABC_KINDS][3] = {{0.5, -0.25, -1.5}, {0.25, 0.25, -0.5}, {1, 0.5, 0.75}, {0.5, 0.5, -1}};
  memcpy(c.abc, e, sizeof e);
  Model m;
  char err[256];
  CHECK(model_build(&m, &c, err, sizeof err) == 0, "abc build: %s", err);
  const double r = (double)c.width / c.base_width, n0 = c.base_width;
  int ok = 1;
  for (int l = 0; l <= c.depth; l++) {
    const ParamTensor *W = &m.tensors[2 * l], *b = &m.tensors[2 * l + 1];
    const int kind = l == 0 ? ABC_INPUT : l == c.depth ? ABC_OUTPUT : ABC_HIDDEN;
    const double fan_n0 = l == 0 ? c.in_dim : n0;
    ok &= tu_close(W->mult, pow(r, -e[kind][0]), 1e-14) && tu_close(W->init_std, c.sigma_w / sqrt(fan_n0) * pow(r, -e[kind][1]), 1e-14) &&
          tu_close(W->lr_scale, pow(r, -e[kind][2]), 1e-14);
    ok &= tu_close(b->mult, pow(r, -e[ABC_BIAS][0]), 1e-14) && tu_close(b->init_std, c.sigma_b * pow(r, -e[ABC_BIAS][1]), 1e-14) &&
          tu_close(b->lr_scale, pow(r, -e[ABC_BIAS][2]), 1e-14);
  }
  CHECK(ok, "abc parameter table differs from h = r^-a W x, W ~ N(0, sigma_w^2/fan_in(n0) r^-2b), lr eta r^-c");
  CHECK(model_lr_weighted(&m), "abc: lr-weighted");
  model_destroy(&m);

  /* Mean field: input (0, 0, -1), output (1, 0, -1), biases (0, 0, -1); f = (n0/n) sum_i v_i phi(.). */
  c = small_cfg(ACT_RELU, PARAM_MF, 1, 1);
  CHECK(model_build(&m, &c, err, sizeof err) == 0, "mf build: %s", err);
  const ParamTensor *U = &m.tensors[0], *bu = &m.tensors[1], *V = &m.tensors[2], *bv = &m.tensors[3];
  CHECK(U->mult == 1 && tu_close(U->init_std, c.sigma_w / sqrt(c.in_dim), 1e-15) && U->lr_scale == r && V->mult == 1 / r &&
            tu_close(V->init_std, c.sigma_w / sqrt(n0), 1e-15) && V->lr_scale == r && bu->lr_scale == r && bv->lr_scale == r &&
            bv->mult == 1 && bu->init_std == c.sigma_b,
        "mf table: U mult %g std %g lr %g, V mult %g std %g lr %g", U->mult, U->init_std, U->lr_scale, V->mult, V->init_std,
        V->lr_scale);
  model_destroy(&m);
  c.depth = 2;
  CHECK(model_build(&m, &c, err, sizeof err) != 0 && strstr(err, "one hidden layer"), "mf with depth 2 accepted (%s)", err);
  CHECK(model_lr_weighted(&m) == false, "a failed build holds no tensors");
  ModelConfig cs = small_cfg(ACT_RELU, PARAM_SP, 1, 2), cn = small_cfg(ACT_RELU, PARAM_NTK, 1, 2);
  Model ms, mn;
  model_build(&ms, &cs, err, sizeof err);
  model_build(&mn, &cn, err, sizeof err);
  CHECK(!model_lr_weighted(&ms) && !model_lr_weighted(&mn), "sp and ntk are not lr-weighted (D = I)");
  model_destroy(&ms);
  model_destroy(&mn);
}

int main(void) {
  test_structure();
  test_param_table();
  test_abc();
  test_mup_equals_sp();
  test_init_purity();
  test_gradient_fd();
  test_jvp();
  test_dense_jacobian();
  test_variance();
  return tu_report("test_model");
}
