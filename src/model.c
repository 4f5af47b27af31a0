/* Networks as op lists over numbered activation buffers, one flat parameter buffer (see model.h).
 *
 * The parameterization lives entirely in the parameter table (init_std, mult, lr_scale per tensor,
 * CONVENTIONS.md "Parameterizations"); the op loops below never look at cfg->param. Adding a layer
 * kind means a new OpKind case in the three switches (forward, VJP, JVP) and in model_build. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* ------------------------------------------------------------------ names */

static const char *const param_names[PARAM_COUNT] = {"ntk", "sp", "mup"};
static const char *const arch_names[ARCH_COUNT] = {"fc", "uv"};

const char *param_name(Parameterization p) {
  return (p >= 0 && p < PARAM_COUNT) ? param_names[p] : "unknown";
}

int param_from_name(const char *name) {
  if (!name) return -1;
  for (int p = 0; p < PARAM_COUNT; p++)
    if (strcmp(name, param_names[p]) == 0) return p;
  return -1;
}

const char *arch_name(Architecture a) {
  return (a >= 0 && a < ARCH_COUNT) ? arch_names[a] : "unknown";
}

int arch_from_name(const char *name) {
  if (!name) return -1;
  for (int a = 0; a < ARCH_COUNT; a++)
    if (strcmp(name, arch_names[a]) == 0) return a;
  return -1;
}

/* ------------------------------------------------------------------ build */

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* Out-of-memory has no recovery path in the kernels' callers; say where and stop. */
static void *xcalloc(size_t n, size_t size, const char *what) {
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fprintf(stderr, "model: out of memory allocating %s (%zu x %zu bytes)\n", what, n, size);
    abort();
  }
  return p;
}

static int check_config(const ModelConfig *c, char *err, size_t errlen) {
  if (c->arch < 0 || c->arch >= ARCH_COUNT) return fail(err, errlen, "model: unknown architecture %d", (int)c->arch);
  if (c->in_dim <= 0) return fail(err, errlen, "model: in_dim must be positive, got %d", c->in_dim);
  if (c->out_dim <= 0) return fail(err, errlen, "model: out_dim must be positive, got %d", c->out_dim);
  if (c->width <= 0) return fail(err, errlen, "model: width must be positive, got %d", c->width);
  if (c->depth < 1) return fail(err, errlen, "model: depth must be >= 1, got %d", c->depth);
  if (c->act < 0 || c->act >= ACT_COUNT) return fail(err, errlen, "model: unknown activation %d", (int)c->act);
  if (c->param < 0 || c->param >= PARAM_COUNT)
    return fail(err, errlen, "model: unknown parameterization %d", (int)c->param);
  if (!isfinite(c->sigma_w) || c->sigma_w < 0)
    return fail(err, errlen, "model: sigma_w must be finite and >= 0, got %g", c->sigma_w);
  if (!isfinite(c->sigma_b) || c->sigma_b < 0)
    return fail(err, errlen, "model: sigma_b must be finite and >= 0, got %g", c->sigma_b);
  if (c->param == PARAM_MUP && c->base_width <= 0)
    return fail(err, errlen, "model: mup needs base_width > 0, got %d", c->base_width);
  return 0;
}

/* Appends a dense op in -> new buffer, with its W (and b) tensors; returns the new buffer id.
 * kind_of_layer: 0 input, 1 hidden, 2 output (selects the parameterization's row of the table). */
static int add_dense(Model *m, int in, int n_in, int n_out, int layer, int kind_of_layer) {
  const ModelConfig *c = &m->cfg;
  const double fan_in = (double)n_in;
  const double r = c->param == PARAM_MUP ? (double)c->width / (double)c->base_width : 1.0;
  Op *op = &m->ops[m->n_ops++];
  op->kind = OP_DENSE;
  op->in = in;
  op->out = m->n_bufs;
  op->n_in = n_in;
  op->n_out = n_out;
  op->act = ACT_IDENTITY;
  m->buf_size[m->n_bufs++] = (size_t)n_out;

  ParamTensor *W = &m->tensors[m->n_tensors];
  op->w = m->n_tensors++;
  snprintf(W->name, sizeof W->name, "dense%d.W", layer);
  W->offset = m->n_params;
  W->size = (size_t)n_out * (size_t)n_in;
  W->fan_in = n_in;
  m->n_params += W->size;
  switch (c->param) {
    case PARAM_NTK:
      W->init_std = 1.0;
      W->mult = c->sigma_w / sqrt(fan_in);
      W->lr_scale = 1.0;
      break;
    case PARAM_SP:
      W->init_std = c->sigma_w / sqrt(fan_in);
      W->mult = 1.0;
      W->lr_scale = 1.0;
      break;
    case PARAM_MUP:
      W->mult = 1.0;
      if (kind_of_layer == 2) {
        /* fan_in = n here; at r = 1, n * r == n exactly, so this equals the sp value bitwise. */
        W->init_std = c->mup_zero_readout ? 0.0 : c->sigma_w / sqrt(fan_in * r);
        W->lr_scale = 1.0 / r;
      } else {
        W->init_std = c->sigma_w / sqrt(fan_in);
        W->lr_scale = kind_of_layer == 0 ? r : 1.0;
      }
      break;
    default: break; /* rejected by check_config */
  }

  op->b = -1;
  if (c->bias) {
    ParamTensor *b = &m->tensors[m->n_tensors];
    op->b = m->n_tensors++;
    snprintf(b->name, sizeof b->name, "dense%d.b", layer);
    b->offset = m->n_params;
    b->size = (size_t)n_out;
    b->fan_in = n_in; /* of the layer; unused by the table for biases */
    m->n_params += b->size;
    b->init_std = c->param == PARAM_NTK ? 1.0 : c->sigma_b;
    b->mult = c->param == PARAM_NTK ? c->sigma_b : 1.0;
    b->lr_scale = c->param == PARAM_MUP ? r : 1.0;
  }
  return op->out;
}

static int add_act(Model *m, int in, int n, Activation a) {
  Op *op = &m->ops[m->n_ops++];
  op->kind = OP_ACT;
  op->in = in;
  op->out = m->n_bufs;
  op->w = op->b = -1;
  op->n_in = op->n_out = n;
  op->act = a;
  m->buf_size[m->n_bufs++] = (size_t)n;
  return op->out;
}

int model_build(Model *m, const ModelConfig *cfg, char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  if (check_config(cfg, err, errlen)) return -1;
  m->cfg = *cfg;
  if (cfg->arch == ARCH_UV) {
    if (cfg->in_dim != 1 || cfg->out_dim != 1)
      return fail(err, errlen, "model: the uv model has one input and one output, not %d and %d (use -dataset uv)", cfg->in_dim, cfg->out_dim);
    /* f = v^T u x / sqrt(n): the fc recipe below with these settings. */
    m->cfg.depth = 1;
    m->cfg.act = ACT_IDENTITY;
    m->cfg.bias = false;
    m->cfg.param = PARAM_NTK;
    m->cfg.sigma_w = 1.0;
    cfg = &m->cfg;
  }
  const int L = cfg->depth, d = cfg->in_dim, n = cfg->width, k = cfg->out_dim;
  /* Keep P and every tape buffer far from size_t/int overflow (kernels index with int sizes). */
  const uint64_t maxdim = (uint64_t)(d > n ? (d > k ? d : k) : (n > k ? n : k));
  if (L > (1 << 20) || (uint64_t)n * maxdim * ((uint64_t)L + 1) > (uint64_t)1 << 40)
    return fail(err, errlen, "model: network too large (in_dim %d, width %d, depth %d, out_dim %d)",
                d, n, L, k);

  switch (cfg->arch) {
    case ARCH_UV:
    case ARCH_FC: {
      /* dense, act, (L-1) x [dense, act], dense: 2L+1 ops, 2L+2 buffers, (L+1)(1+bias) tensors. */
      m->ops = xcalloc((size_t)(2 * L + 1), sizeof *m->ops, "ops");
      m->buf_size = xcalloc((size_t)(2 * L + 2), sizeof *m->buf_size, "buffer sizes");
      m->tensors = xcalloc((size_t)(L + 1) * (cfg->bias ? 2 : 1), sizeof *m->tensors, "tensors");
      m->buf_size[m->n_bufs++] = (size_t)d; /* buffer 0: the input */
      int buf = add_dense(m, 0, d, n, 0, 0);
      buf = add_act(m, buf, n, cfg->act);
      for (int l = 1; l < L; l++) {
        buf = add_dense(m, buf, n, n, l, 1);
        buf = add_act(m, buf, n, cfg->act);
      }
      m->out_buf = add_dense(m, buf, n, k, L, 2);
      break;
    }
    default: return fail(err, errlen, "model: unknown architecture %d", (int)cfg->arch);
  }
  return 0;
}

void model_destroy(Model *m) {
  free(m->ops);
  free(m->tensors);
  free(m->buf_size);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ parameters */

void model_init(const Model *m, double *theta /* P */, uint64_t seed) {
  for (int t = 0; t < m->n_tensors; t++) {
    const ParamTensor *p = &m->tensors[t];
    double *w = theta + p->offset; /* p->size */
    if (p->init_std == 0.0) { /* zero init: exact zeros, no -0.0 from 0 * negative */
      memset(w, 0, p->size * sizeof *w);
      continue;
    }
    rng_normal_fill(w, p->size, seed, (uint64_t)RNG_STREAM_PARAM_BASE + (uint64_t)t, 0);
    for (size_t i = 0; i < p->size; i++) w[i] *= p->init_std;
  }
}

void model_lr_scales(const Model *m, double *lr /* P */) {
  for (int t = 0; t < m->n_tensors; t++) {
    const ParamTensor *p = &m->tensors[t];
    for (size_t i = 0; i < p->size; i++) lr[p->offset + i] = p->lr_scale;
  }
}

/* Multiply-adds of the dense layers only: bias adds and activations are O(n) per layer against
 * O(n^2) and would only blur the cost model. */
double model_flops_per_sample(const Model *m) {
  double flops = 0.0;
  for (int i = 0; i < m->n_ops; i++) {
    const Op *op = &m->ops[i];
    switch (op->kind) {
      case OP_DENSE: flops += 2.0 * (double)op->n_in * (double)op->n_out; break;
      case OP_ACT: break;
    }
  }
  return flops;
}

/* ------------------------------------------------------------------ tape */

int tape_create(Tape *t, const Model *m, int capacity) {
  memset(t, 0, sizeof *t);
  if (capacity <= 0 || m->n_bufs <= 0) return -1;
  t->capacity = capacity;
  t->n_bufs = m->n_bufs;
  t->act = calloc((size_t)m->n_bufs, sizeof *t->act);
  t->grad = calloc((size_t)m->n_bufs, sizeof *t->grad);
  t->tan = calloc((size_t)m->n_bufs, sizeof *t->tan);
  if (!t->act || !t->grad || !t->tan) goto oom;
  for (int i = 0; i < m->n_bufs; i++) {
    if (m->buf_size[i] > SIZE_MAX / sizeof **t->act / (size_t)capacity) goto oom;
    t->act[i] = malloc((size_t)capacity * m->buf_size[i] * sizeof **t->act);
    if (!t->act[i]) goto oom;
  }
  return 0;
oom:
  tape_destroy(t);
  return -1;
}

void tape_destroy(Tape *t) {
  for (int i = 0; i < t->n_bufs; i++) {
    if (t->act) free(t->act[i]);
    if (t->grad) free(t->grad[i]);
    if (t->tan) free(t->tan[i]);
  }
  free(t->act);
  free(t->grad);
  free(t->tan);
  memset(t, 0, sizeof *t);
}

static void check_batch(const Tape *t, int B, const char *who) {
  if (B < 0 || B > t->capacity) { /* a caller bug: writing past the tape would corrupt memory */
    fprintf(stderr, "%s: batch %d exceeds tape capacity %d\n", who, B, t->capacity);
    abort();
  }
}

/* Lazily allocated per-buffer workspace (cotangents or tangents). */
static double *lazy_buf(double **slot, const Model *m, const Tape *t, int i) {
  if (!slot[i]) slot[i] = xcalloc((size_t)t->capacity * m->buf_size[i], sizeof **slot, "tape buffer");
  return slot[i];
}

/* ------------------------------------------------------------------ forward, VJP, JVP */

const double *model_forward(const Model *m, const double *theta /* P */, const double *x /* B x d */,
                            int B, Tape *t, const Reducer *red) {
  (void)red; /* dense and act ops need no cross-rank statistics */
  check_batch(t, B, "model_forward");
  /* Copied, not aliased: the VJP/JVP must not depend on the caller keeping x alive. */
  memcpy(t->act[0], x, (size_t)B * m->buf_size[0] * sizeof *x);
  for (int i = 0; i < m->n_ops; i++) {
    const Op *op = &m->ops[i];
    const double *in = t->act[op->in]; /* B x n_in */
    double *out = t->act[op->out];     /* B x n_out */
    switch (op->kind) {
      case OP_DENSE: {
        const ParamTensor *W = &m->tensors[op->w];
        const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
        dense_forward(out, in, theta + W->offset, b ? theta + b->offset : NULL, B, op->n_in,
                      op->n_out, W->mult, b ? b->mult : 0.0);
        break;
      }
      case OP_ACT:
        act_forward(out, in, (size_t)B * (size_t)op->n_in, op->act);
        break;
    }
  }
  return t->act[m->out_buf];
}

/* Cotangents are OVERWRITTEN per buffer: valid because every FC buffer is read by exactly one op.
 * A residual add (a buffer with two readers) will need to accumulate into grad[in] instead. */
void model_vjp(const Model *m, const double *theta /* P */, const double *dout /* B x k */, int B,
               Tape *t, double *grad /* P */, const Reducer *red) {
  (void)red;
  check_batch(t, B, "model_vjp");
  double *gout = lazy_buf(t->grad, m, t, m->out_buf); /* B x k */
  memcpy(gout, dout, (size_t)B * m->buf_size[m->out_buf] * sizeof *dout);
  for (int i = m->n_ops - 1; i >= 0; i--) {
    const Op *op = &m->ops[i];
    const double *g = t->grad[op->out]; /* B x n_out, written by the op that reads op->out */
    /* Buffer 0 is data: no cotangent needed (saves the B x d x n GEMM of the first layer). */
    double *gin = op->in == 0 ? NULL : lazy_buf(t->grad, m, t, op->in); /* B x n_in */
    switch (op->kind) {
      case OP_DENSE: {
        const ParamTensor *W = &m->tensors[op->w];
        const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
        /* grad == NULL: only the activation cotangents are wanted (NTK Gram matrix). */
        dense_vjp(gin, grad ? grad + W->offset : NULL, b && grad ? grad + b->offset : NULL, g, t->act[op->in],
                  theta + W->offset, B, op->n_in, op->n_out, W->mult, b ? b->mult : 0.0);
        break;
      }
      case OP_ACT:
        if (gin) act_vjp(gin, g, t->act[op->in], (size_t)B * (size_t)op->n_in, op->act);
        break;
    }
  }
}

void model_jvp(const Model *m, const double *theta /* P */, const double *dtheta /* P */, int B,
               Tape *t, double *tout /* B x k */, const Reducer *red) {
  (void)red;
  check_batch(t, B, "model_jvp");
  for (int i = 0; i < m->n_ops; i++) {
    const Op *op = &m->ops[i];
    /* NULL = zero tangent: buffer 0 is data, independent of theta. */
    const double *tin = op->in == 0 ? NULL : t->tan[op->in]; /* B x n_in */
    double *to = lazy_buf(t->tan, m, t, op->out);            /* B x n_out */
    switch (op->kind) {
      case OP_DENSE: {
        const ParamTensor *W = &m->tensors[op->w];
        const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
        dense_jvp(to, tin, t->act[op->in], theta + W->offset, dtheta + W->offset,
                  b ? dtheta + b->offset : NULL, B, op->n_in, op->n_out, W->mult,
                  b ? b->mult : 0.0);
        break;
      }
      case OP_ACT:
        if (tin)
          act_jvp(to, tin, t->act[op->in], (size_t)B * (size_t)op->n_in, op->act);
        else
          memset(to, 0, (size_t)B * (size_t)op->n_out * sizeof *to);
        break;
    }
  }
  memcpy(tout, t->tan[m->out_buf], (size_t)B * m->buf_size[m->out_buf] * sizeof *tout);
}

/* ------------------------------------------------------------------ Hessian products */

double model_hvp_prepare(const Model *m, const double *theta /* P */, const double *x /* B x d */,
                         const double *y /* B x k */, int B, double n_global, Tape *t,
                         const Reducer *red) {
  check_batch(t, B, "model_hvp_prepare");
  const size_t nk = (size_t)B * m->buf_size[m->out_buf];
  const double *f = model_forward(m, theta, x, B, t, red); /* B x k */
  double *dout = xcalloc(nk, sizeof *dout, "loss cotangent"); /* B x k */
  const double half_sq = mse_loss(dout, f, y, B, (int)m->buf_size[m->out_buf], 1.0 / n_global);
  model_vjp(m, theta, dout, B, t, NULL, red); /* cotangents only: no parameter gradient needed */
  free(dout);
  return half_sq;
}

/* R-forward (JVP of v), then the reverse sweep of the R-operator with the R-cotangents written
 * over t->tan. residual = false drops the first-order cotangents: the Gauss-Newton product. */
static void r_backward(const Model *m, const double *theta /* P */, const double *v /* P */, int B,
                       double n_global, Tape *t, double *hv /* P */, bool residual,
                       const Reducer *red, const char *who) {
  check_batch(t, B, who);
  const size_t nk = (size_t)B * m->buf_size[m->out_buf];
  double *jv = xcalloc(nk, sizeof *jv, "J v"); /* B x k */
  model_jvp(m, theta, v, B, t, jv, red);
  free(jv);
  /* dL/df = (f - y)/N, so R{dL/df} = R{f}/N = (J v)/N. */
  double *rg = t->tan[m->out_buf]; /* B x k */
  for (size_t i = 0; i < nk; i++) rg[i] /= n_global;
  for (int i = m->n_ops - 1; i >= 0; i--) {
    const Op *op = &m->ops[i];
    const double *rdout = t->tan[op->out]; /* B x n_out: R-cotangent, written by op->out's reader */
    const double *dout = NULL;             /* B x n_out: first-order cotangent */
    if (residual) {
      dout = t->grad[op->out];
      if (!dout) {
        fprintf(stderr, "%s: tape has no cotangents (call model_hvp_prepare first)\n", who);
        abort();
      }
    }
    /* In place: rin (tangent of op->in) becomes op->in's R-cotangent. NULL for the data buffer. */
    double *rin = op->in == 0 ? NULL : t->tan[op->in]; /* B x n_in */
    switch (op->kind) {
      case OP_DENSE: {
        const ParamTensor *W = &m->tensors[op->w];
        const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
        dense_rvjp(rin, hv + W->offset, b ? hv + b->offset : NULL, rdout, dout, t->act[op->in], rin,
                   theta + W->offset, v + W->offset, B, op->n_in, op->n_out, W->mult,
                   b ? b->mult : 0.0);
        break;
      }
      case OP_ACT:
        if (rin) act_rvjp(rin, rdout, dout, t->act[op->in], rin, (size_t)B * (size_t)op->n_in, op->act);
        break;
    }
  }
}

void model_hvp_apply(const Model *m, const double *theta /* P */, const double *v /* P */, int B,
                     double n_global, Tape *t, double *hv /* P */, const Reducer *red) {
  r_backward(m, theta, v, B, n_global, t, hv, true, red, "model_hvp_apply");
}

void model_gnvp_apply(const Model *m, const double *theta /* P */, const double *v /* P */, int B,
                      double n_global, Tape *t, double *gv /* P */, const Reducer *red) {
  r_backward(m, theta, v, B, n_global, t, gv, false, red, "model_gnvp_apply");
}

void model_hvp(const Model *m, const double *theta /* P */, const double *v /* P */,
               const double *x /* B x d */, const double *y /* B x k */, int B, double n_global,
               Tape *t, double *hv /* P */, const Reducer *red) {
  model_hvp_prepare(m, theta, x, y, B, n_global, t, red);
  model_hvp_apply(m, theta, v, B, n_global, t, hv, red);
}

void model_gnvp(const Model *m, const double *theta /* P */, const double *v /* P */,
                const double *x /* B x d */, int B, double n_global, Tape *t,
                double *gv /* P */, const Reducer *red) {
  model_forward(m, theta, x, B, t, red);
  model_gnvp_apply(m, theta, v, B, n_global, t, gv, red);
}
