/* Networks as op lists over numbered activation buffers, one flat parameter buffer (see model.h).
 *
 * The parameterization lives entirely in the parameter table (init_std, mult, lr_scale per tensor,
 * docs/conventions.md "Parameterizations"); the op loops below never look at cfg->param. Adding a
 * layer kind means a new OpKind case in the four switches (forward, VJP, JVP, R-backward) and a
 * builder.
 *
 * Fan-out. A buffer read by two ops (residual blocks) gets the SUM of their cotangents: the first
 * contribution of a reverse sweep is written in place, later ones go to t->scratch and are added
 * (tape_contribution / tape_commit). Batch norm reduces its per-channel sums through the caller's
 * Reducer and keeps mean, rstd and the R-forward sums on the tape. */
#include "model.h"
#include "errbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conv.h"
#include "rng.h"

/* ------------------------------------------------------------------ names */


/* memcpy / memset of n doubles that accept n == 0 with NULL pointers (a rank with an empty slice
 * of the batch passes B = 0 and may hold no buffers; memcpy(NULL, ..., 0) is undefined). */
static inline void copy_doubles(double *dst, const double *src, size_t n)
{
  if (n) memcpy(dst, src, n * sizeof *dst);
}

static inline void zero_doubles(double *dst, size_t n)
{
  if (n) memset(dst, 0, n * sizeof *dst);
}

static const char *const param_names[PARAM_COUNT] = {"ntk", "sp", "mup", "abc", "mf"};
static const char *const arch_names[ARCH_COUNT] = {"fc", "uv", "wrn", "cnn"};

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
  if (c->arch < 0 || c->arch >= ARCH_COUNT) return errbuf_set(err, errlen, "model: unknown architecture %d", (int)c->arch);
  if (c->in_dim <= 0) return errbuf_set(err, errlen, "model: in_dim must be positive, got %d", c->in_dim);
  if (c->out_dim <= 0) return errbuf_set(err, errlen, "model: out_dim must be positive, got %d", c->out_dim);
  if (c->width == MODEL_WIDTH_INF) {
    if (c->param != PARAM_MUP || c->arch != ARCH_FC || c->depth != 1 || c->act != ACT_IDENTITY || c->bias)
      return errbuf_set(err, errlen, "model: the exact infinite-width limit (width 0) exists for the one-hidden-layer linear muP net "
                        "only (mup, fc, depth 1, identity, no biases), not %s %s depth %d %s biases %d", param_name(c->param),
                        arch_name(c->arch), c->depth, act_name(c->act), (int)c->bias);
  } else if (c->width < 0) {
    return errbuf_set(err, errlen, "model: width must be positive, got %d", c->width);
  }
  if (c->arch != ARCH_WRN && c->depth < 1) return errbuf_set(err, errlen, "model: depth must be >= 1, got %d", c->depth);
  if (c->arch == ARCH_WRN && (c->wrn_depth < 10 || (c->wrn_depth - 4) % 6 != 0))
    return errbuf_set(err, errlen, "model: wrn_depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got %d", c->wrn_depth);
  if (c->arch == ARCH_WRN || c->arch == ARCH_CNN) {
    if (c->in_channels <= 0 || c->in_height <= 0 || c->in_width <= 0 ||
        (int64_t)c->in_channels * c->in_height * c->in_width != c->in_dim)
      return errbuf_set(err, errlen, "model: %s needs an image shape with channels x height x width = in_dim, got %d x %d x %d for %d",
                  arch_name(c->arch), c->in_channels, c->in_height, c->in_width, c->in_dim);
  }
  if (((c->arch == ARCH_WRN && c->batch_norm) || (c->arch == ARCH_FC && c->fc_batch_norm)) && !(isfinite(c->bn_eps) && c->bn_eps >= 0))
    return errbuf_set(err, errlen, "model: bn_eps must be finite and >= 0, got %g", c->bn_eps);
  if (c->loss < 0 || c->loss >= LOSS_COUNT) return errbuf_set(err, errlen, "model: unknown loss %d", (int)c->loss);
  if (c->loss == LOSS_XENT && (c->out_dim < 2 || c->out_dim > LOSS_XENT_MAX_K))
    return errbuf_set(err, errlen, "model: the xent loss needs 2 to %d outputs, got %d", LOSS_XENT_MAX_K, c->out_dim);
  if (c->act < 0 || c->act >= ACT_COUNT) return errbuf_set(err, errlen, "model: unknown activation %d", (int)c->act);
  if (c->param < 0 || c->param >= PARAM_COUNT)
    return errbuf_set(err, errlen, "model: unknown parameterization %d", (int)c->param);
  if (!isfinite(c->sigma_w) || c->sigma_w < 0)
    return errbuf_set(err, errlen, "model: sigma_w must be finite and >= 0, got %g", c->sigma_w);
  if (!isfinite(c->sigma_b) || c->sigma_b < 0)
    return errbuf_set(err, errlen, "model: sigma_b must be finite and >= 0, got %g", c->sigma_b);
  if (c->param != PARAM_NTK && c->param != PARAM_SP && c->base_width <= 0)
    return errbuf_set(err, errlen, "model: %s needs base_width > 0, got %d", param_name(c->param), c->base_width);
  if (c->param == PARAM_MF && (c->arch != ARCH_FC || c->depth != 1))
    return errbuf_set(err, errlen, "model: mf (mean field) is defined for a fully connected net with one hidden layer, not %s with depth %d",
                      arch_name(c->arch), c->arch == ARCH_FC ? c->depth : 0);
  if (c->param == PARAM_ABC)
    for (int k = 0; k < ABC_KINDS; k++)
      for (int e = 0; e < 3; e++)
        if (!isfinite(c->abc[k][e]) || fabs(c->abc[k][e]) > 64)
          return errbuf_set(err, errlen, "model: abc exponent %d of layer kind %d must be finite and within [-64, 64], got %g", e, k, c->abc[k][e]);
  return 0;
}

/* Width ratio r = n / n0 of the abc table (the widening factor k over base_width for the WRN);
 * 1 for ntk, whose table does not depend on n0. */
static double width_ratio(const ModelConfig *c) {
  return c->param == PARAM_NTK ? 1.0 : (double)c->width / (double)c->base_width;
}

/* r^e, exact for the integer exponents of the presets (-2..2): pow() is not guaranteed to round
 * 1/r or r*r as division and multiplication do, and sp and mup must come out bit for bit the
 * same whether named or written as abc exponents. */
static double rpow(double r, double e) {
  if (e == 0.0) return 1.0;
  if (e == 1.0) return r;
  if (e == -1.0) return 1.0 / r;
  if (e == 2.0) return r * r;
  if (e == -2.0) return 1.0 / (r * r);
  return pow(r, e);
}

/* The presets as abc exponents (docs/conventions.md): {input, hidden, output, bias} x (a, b, c). */
static const double abc_sp[ABC_KINDS][3] = {{0, 0, 0}, {0, 0.5, 0}, {0, 0.5, 0}, {0, 0, 0}};
static const double abc_mup[ABC_KINDS][3] = {{0, 0, -1}, {0, 0.5, 0}, {0, 1, 1}, {0, 0, -1}};
static const double abc_mf[ABC_KINDS][3] = {{0, 0, -1}, {0, 0.5, 0}, {1, 0, -1}, {0, 0, -1}};

void model_abc_exponents(const ModelConfig *c, AbcKind kind, double *out) {
  const double (*t)[3] = c->param == PARAM_MUP ? abc_mup : c->param == PARAM_MF ? abc_mf : c->param == PARAM_ABC ? c->abc : abc_sp;
  for (int e = 0; e < 3; e++) out[e] = t[kind][e];
}

/* A new op writing a new buffer of n_out features per sample; returns it with in2, w, b, bn = -1. */
static Op *new_op(Model *m, OpKind kind, int in, int n_in, int n_out) {
  Op *op = &m->ops[m->n_ops++];
  op->kind = kind;
  op->in = in;
  op->in2 = -1;
  op->out = m->n_bufs;
  op->w = op->b = op->bn = -1;
  op->n_in = n_in;
  op->n_out = n_out;
  op->act = ACT_IDENTITY;
  m->buf_size[m->n_bufs++] = (size_t)n_out;
  return op;
}

/* A new tensor of `size` doubles at the end of theta; returns its id. */
static int new_tensor(Model *m, const char *name, size_t size, int fan_in) {
  ParamTensor *p = &m->tensors[m->n_tensors];
  snprintf(p->name, sizeof p->name, "%s", name);
  p->offset = m->n_params;
  p->size = size;
  p->fan_in = fan_in;
  p->init_mean = 0.0;
  m->n_params += size;
  return m->n_tensors++;
}

/* The docs/conventions.md table row of a weight tensor with this fan-in (dense: n_in; conv:
 * C_in*kh*kw). kind_of_layer: 0 input, 1 hidden, 2 output (AbcKind).
 *
 * Every parameterization but ntk is an abc-parameterization in sp's constant placement:
 * h = r^-a W x, W ~ N(0, sigma_w^2 / fan_in(n0) * r^-2b), learning rate eta r^-c. fan_in(n0) is
 * the fan-in at the base width: d for the input layer, fan_in / r for the others, so the variance's
 * denominator is fan_in * r^2b (input) or fan_in * r^(2b - 1) -- sp's fan_in and muP's readout
 * fan_in * r exactly. */
static void weight_table(const ModelConfig *c, ParamTensor *W, int kind_of_layer) {
  const double fan_in = (double)W->fan_in;
  if (c->param == PARAM_NTK) {
    W->init_std = 1.0;
    W->mult = c->sigma_w / sqrt(fan_in);
    W->lr_scale = 1.0;
    return;
  }
  const double r = width_ratio(c);
  double e[3];
  model_abc_exponents(c, (AbcKind)kind_of_layer, e);
  const double base = fan_in * rpow(r, 2.0 * e[ABC_B] - (kind_of_layer == ABC_INPUT ? 0.0 : 1.0));
  W->mult = rpow(r, -e[ABC_A]);
  W->init_std = kind_of_layer == ABC_OUTPUT && c->mup_zero_readout && c->param != PARAM_SP ? 0.0 : c->sigma_w / sqrt(base);
  W->lr_scale = rpow(r, -e[ABC_C]);
}

/* Biases (and batch-norm shifts/scales below) follow the table's bias row: ~ N(0, sigma_b^2 r^-2b),
 * forward multiplier r^-a (not for batch norm), learning rate eta r^-c. */
static void bias_table(const ModelConfig *c, ParamTensor *b) {
  if (c->param == PARAM_NTK) {
    b->init_std = 1.0;
    b->mult = c->sigma_b;
    b->lr_scale = 1.0;
    return;
  }
  const double r = width_ratio(c);
  double e[3];
  model_abc_exponents(c, ABC_BIAS, e);
  b->init_std = c->sigma_b * rpow(r, -e[ABC_B]);
  b->mult = rpow(r, -e[ABC_A]);
  b->lr_scale = rpow(r, -e[ABC_C]);
}

/* Appends a dense op in -> new buffer, with its W (and b) tensors named prefix.W, prefix.b;
 * returns the new buffer id. kind_of_layer as weight_table. */
static int add_dense(Model *m, int in, int n_in, int n_out, const char *prefix, int kind_of_layer) {
  const ModelConfig *c = &m->cfg;
  char name[32];
  Op *op = new_op(m, OP_DENSE, in, n_in, n_out);
  snprintf(name, sizeof name, "%s.W", prefix);
  op->w = new_tensor(m, name, (size_t)n_out * (size_t)n_in, n_in);
  weight_table(c, &m->tensors[op->w], kind_of_layer);
  if (c->bias) {
    snprintf(name, sizeof name, "%s.b", prefix);
    op->b = new_tensor(m, name, (size_t)n_out, n_in); /* fan_in of the layer; unused for biases */
    bias_table(c, &m->tensors[op->b]);
  }
  return op->out;
}

static int add_act(Model *m, int in, int n, Activation a) {
  Op *op = new_op(m, OP_ACT, in, n, n);
  op->act = a;
  return op->out;
}

/* conv2d of in (C_in x H x W per sample) -> new buffer; weight fan_in = C_in*kh*kw. */
static int add_conv(Model *m, int in, int C_in, int H, int W, int C_out, int ksize, int stride, bool bias,
                    const char *prefix, int kind_of_layer) {
  const ModelConfig *c = &m->cfg;
  const ConvShape s = {C_in, H, W, C_out, ksize, ksize, stride, ksize / 2};
  char name[32];
  Op *op = new_op(m, OP_CONV, in, (int)conv_in_size(&s), (int)conv_out_size(&s));
  op->conv = s;
  snprintf(name, sizeof name, "%s.W", prefix);
  op->w = new_tensor(m, name, conv_w_size(&s), C_in * ksize * ksize);
  weight_table(c, &m->tensors[op->w], kind_of_layer);
  if (bias) {
    snprintf(name, sizeof name, "%s.b", prefix);
    op->b = new_tensor(m, name, (size_t)C_out, C_in * ksize * ksize);
    bias_table(c, &m->tensors[op->b]);
  }
  const size_t work = conv2d_workspace_size(&s, conv2d_good_chunk(&s)); /* GEMM speed (docs/layers.md) */
  if (work > m->conv_work) m->conv_work = work;
  return op->out;
}

/* Train-mode batch norm over C channels of HW positions: gamma (init 1), beta (init 0), used
 * plain (mult 1) in every parameterization, trained at the biases' learning rate (muP: eta r). */
static int add_bn(Model *m, int in, int C, int HW, const char *prefix) {
  const ModelConfig *c = &m->cfg;
  char name[32];
  Op *op = new_op(m, OP_BN, in, C * HW, C * HW);
  op->C = C;
  op->HW = HW;
  op->eps = c->bn_eps;
  op->bn = m->n_bn;
  m->bn_channels[m->n_bn++] = C;
  if (c->bn_no_affine) return op->out; /* no gamma, no beta: op->w = op->b = -1 */
  snprintf(name, sizeof name, "%s.gamma", prefix);
  op->w = new_tensor(m, name, (size_t)C, C);
  snprintf(name, sizeof name, "%s.beta", prefix);
  op->b = new_tensor(m, name, (size_t)C, C);
  for (int i = 0; i < 2; i++) {
    ParamTensor *p = &m->tensors[i ? op->b : op->w];
    p->init_std = 0.0;
    p->init_mean = i ? 0.0 : 1.0;
    p->mult = 1.0;
    double e[3] = {0, 0, 0};
    if (c->param != PARAM_NTK) model_abc_exponents(c, ABC_BIAS, e);
    p->lr_scale = rpow(width_ratio(c), -e[ABC_C]);
  }
  return op->out;
}

static int add_pool(Model *m, int in, int C, int HW) {
  Op *op = new_op(m, OP_POOL, in, C * HW, C);
  op->C = C;
  op->HW = HW;
  return op->out;
}

static int add_add(Model *m, int a, int b, int n) {
  Op *op = new_op(m, OP_ADD, a, n, n);
  op->in2 = b;
  return op->out;
}

/* BN (if enabled) then the activation: the pre-activation of a WRN block. */
static int add_bn_act(Model *m, int in, int C, int HW, const char *prefix) {
  if (m->cfg.batch_norm) in = add_bn(m, in, C, HW, prefix);
  return add_act(m, in, C * HW, m->cfg.act);
}

/* WRN-d-k, see model.h. Tensor names: conv0.*, block{g}.{b}.{bn1,conv1,bn2,conv2,shortcut}.*
 * (group g = 1..3, block b = 0..n-1), bn.*, fc.*. */
static int build_wrn(Model *m, char *err, size_t errlen) {
  const ModelConfig *c = &m->cfg;
  const int n = (c->wrn_depth - 4) / 6, k = c->width;
  int H = c->in_height, W = c->in_width;
  /* Widest activation: 16k channels at full resolution (or the input); keep int sizes safe. */
  const uint64_t widest = (uint64_t)16 * (uint64_t)k * (uint64_t)H * (uint64_t)W;
  if (n > 100000 || k > 100000 || widest > ((uint64_t)1 << 30) || (uint64_t)64 * k * 64 * k * 9 * 3 * (uint64_t)n > ((uint64_t)1 << 40))
    return errbuf_set(err, errlen, "model: network too large (wrn_depth %d, width %d, input %d x %d x %d)", c->wrn_depth, k,
                c->in_channels, H, W);
  const size_t max_ops = 24 * (size_t)n + 8, max_tensors = 27 * (size_t)n + 8;
  m->ops = xcalloc(max_ops, sizeof *m->ops, "ops");
  m->buf_size = xcalloc(max_ops + 1, sizeof *m->buf_size, "buffer sizes");
  m->tensors = xcalloc(max_tensors, sizeof *m->tensors, "tensors");
  m->bn_channels = xcalloc(6 * (size_t)n + 2, sizeof *m->bn_channels, "batch-norm channels");
  m->buf_size[m->n_bufs++] = (size_t)c->in_dim; /* buffer 0: the input */
  int x = add_conv(m, 0, c->in_channels, H, W, 16, 3, 1, c->bias, "conv0", 0);
  int C = 16;
  char pre[20], name[40]; /* "block3.12.shortcut" and the like; tensor names stay under 32 */
  for (int g = 1; g <= 3; g++) {
    const int Cg = 16 * k << (g - 1);
    for (int b = 0; b < n; b++) {
      const int stride = b == 0 && g > 1 ? 2 : 1;
      snprintf(pre, sizeof pre, "block%d.%d", g, b);
      snprintf(name, sizeof name, "%s.bn1", pre);
      const int h = add_bn_act(m, x, C, H * W, name); /* act(bn(x)) */
      snprintf(name, sizeof name, "%s.conv1", pre);
      int y = add_conv(m, h, C, H, W, Cg, 3, stride, c->bias, name, 1);
      const ConvShape *s1 = &m->ops[m->n_ops - 1].conv;
      const int H1 = conv_out_h(s1), W1 = conv_out_w(s1);
      snprintf(name, sizeof name, "%s.bn2", pre);
      y = add_bn_act(m, y, Cg, H1 * W1, name);
      snprintf(name, sizeof name, "%s.conv2", pre);
      y = add_conv(m, y, Cg, H1, W1, Cg, 3, 1, c->bias, name, 1);
      int sc = x;
      if (!c->wrn_plain && (Cg != C || stride != 1)) { /* projection of the block's act(bn(x)), no bias */
        snprintf(name, sizeof name, "%s.shortcut", pre);
        sc = add_conv(m, h, C, H, W, Cg, 1, stride, false, name, 1);
      }
      x = c->wrn_plain ? y : add_add(m, y, sc, Cg * H1 * W1); /* wrn_plain: the block without its shortcut */
      C = Cg, H = H1, W = W1;
    }
  }
  x = add_bn_act(m, x, C, H * W, "bn");
  x = add_pool(m, x, C, H * W);
  m->out_buf = add_dense(m, x, C, c->out_dim, "fc", 2);
  return 0;
}

/* The plain CNN, see model.h: conv{l}.* (l = 0..depth-1), fc.*. conv0 is the input layer of the
 * abc table, the other convs hidden layers, fc the output layer; in the ntk parameterization every
 * weight's multiplier is sigma_w / sqrt(fan_in) (9 C_in for a conv) and every bias's sigma_b, the
 * normalisation of cntk.h. */
static int build_cnn(Model *m, char *err, size_t errlen) {
  const ModelConfig *c = &m->cfg;
  const int L = c->depth, n = c->width, H = c->in_height, W = c->in_width;
  if (L > 100000 || (uint64_t)n * H * W > ((uint64_t)1 << 30) || (uint64_t)n * n * 9 * (uint64_t)L > ((uint64_t)1 << 40))
    return errbuf_set(err, errlen, "model: network too large (cnn depth %d, width %d, input %d x %d x %d)", L, n, c->in_channels, H, W);
  m->ops = xcalloc(2 * (size_t)L + 2, sizeof *m->ops, "ops");
  m->buf_size = xcalloc(2 * (size_t)L + 3, sizeof *m->buf_size, "buffer sizes");
  m->tensors = xcalloc(2 * (size_t)L + 2, sizeof *m->tensors, "tensors");
  m->buf_size[m->n_bufs++] = (size_t)c->in_dim; /* buffer 0: the input */
  int x = 0, C = c->in_channels;
  char name[32];
  for (int l = 0; l < L; l++) {
    snprintf(name, sizeof name, "conv%d", l);
    x = add_conv(m, x, C, H, W, n, 3, 1, c->bias, name, l == 0 ? 0 : 1);
    x = add_act(m, x, n * H * W, c->act);
    C = n;
  }
  x = add_pool(m, x, n, H * W);
  m->out_buf = add_dense(m, x, n, c->out_dim, "fc", 2);
  return 0;
}

int model_build(Model *m, const ModelConfig *cfg, char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  if (check_config(cfg, err, errlen)) return -1;
  m->cfg = *cfg;
  if (cfg->width == MODEL_WIDTH_INF) {
    /* The muP limit as its equivalent finite net: d + k neurons (model_init). */
    if ((int64_t)cfg->in_dim + cfg->out_dim > INT32_MAX / 2) return errbuf_set(err, errlen, "model: in_dim %d too large", cfg->in_dim);
    m->cfg.width = cfg->in_dim + cfg->out_dim;
    m->cfg.mup_limit = true;
    cfg = &m->cfg;
  }
  if (cfg->arch == ARCH_UV) {
    if (cfg->in_dim != 1 || cfg->out_dim != 1)
      return errbuf_set(err, errlen, "model: the uv model has one input and one output, not %d and %d (use -dataset uv)", cfg->in_dim, cfg->out_dim);
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
  if (cfg->arch != ARCH_WRN && cfg->arch != ARCH_CNN && (L > (1 << 20) || (uint64_t)n * maxdim * ((uint64_t)L + 1) > (uint64_t)1 << 40))
    return errbuf_set(err, errlen, "model: network too large (in_dim %d, width %d, depth %d, out_dim %d)",
                d, n, L, k);

  switch (cfg->arch) {
    case ARCH_UV:
    case ARCH_FC: {
      /* dense, act, (L-1) x [dense, act], dense: 2L+1 ops, 2L+2 buffers, (L+1)(1+bias) tensors;
       * with fc_batch_norm a BN op (bn{l}.gamma, bn{l}.beta) before each of the L activations. */
      const bool bn = cfg->arch == ARCH_FC && cfg->fc_batch_norm;
      m->ops = xcalloc((size_t)(3 * L + 1), sizeof *m->ops, "ops");
      m->buf_size = xcalloc((size_t)(3 * L + 2), sizeof *m->buf_size, "buffer sizes");
      m->tensors = xcalloc((size_t)(L + 1) * (cfg->bias ? 2 : 1) + 2 * (size_t)L, sizeof *m->tensors, "tensors");
      if (bn) m->bn_channels = xcalloc((size_t)L, sizeof *m->bn_channels, "batch-norm channels");
      m->buf_size[m->n_bufs++] = (size_t)d; /* buffer 0: the input */
      char name[32];
      int buf = add_dense(m, 0, d, n, "dense0", 0);
      if (bn) buf = add_bn(m, buf, n, 1, "bn0");
      buf = add_act(m, buf, n, cfg->act);
      for (int l = 1; l < L; l++) {
        snprintf(name, sizeof name, "dense%d", l);
        buf = add_dense(m, buf, n, n, name, 1);
        if (bn) {
          snprintf(name, sizeof name, "bn%d", l);
          buf = add_bn(m, buf, n, 1, name);
        }
        buf = add_act(m, buf, n, cfg->act);
      }
      snprintf(name, sizeof name, "dense%d", L);
      m->out_buf = add_dense(m, buf, n, k, name, 2);
      break;
    }
    case ARCH_WRN:
    case ARCH_CNN:
      if ((cfg->arch == ARCH_WRN ? build_wrn : build_cnn)(m, err, errlen)) {
        model_destroy(m);
        return -1;
      }
      break;
    default: return errbuf_set(err, errlen, "model: unknown architecture %d", (int)cfg->arch);
  }
  m->n_readers = xcalloc((size_t)m->n_bufs, sizeof *m->n_readers, "reader counts");
  for (int i = 0; i < m->n_ops; i++) {
    m->n_readers[m->ops[i].in]++;
    if (m->ops[i].in2 >= 0) m->n_readers[m->ops[i].in2]++;
  }
  return 0;
}

void model_destroy(Model *m) {
  free(m->ops);
  free(m->tensors);
  free(m->buf_size);
  free(m->n_readers);
  free(m->bn_channels);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ parameters */

/* The exact infinite-width limit of the one-hidden-layer linear muP net as a finite net
 * (docs/mup_limit.md). In the scaled variables u_i (row i of U) and w_i = n v_i (column i of V, times
 * the width) the muP update of every neuron is the same linear map, whatever the width, and
 * f = (1/n) sum_i w_i u_i^T x. The infinite net is the law of (u, w): at init u ~ N(0, sigma_w^2/d I_d)
 * independent of w ~ N(0, sigma_w^2 n0 I_k) (0 with a zero readout), and its trajectory depends only
 * on the second moments (1/n) sum_i z_i z_i^T of z = (u, w). m = d + k neurons whose second moment is
 * exactly that covariance therefore follow the limit exactly: u_i = sqrt(m) sigma_w/sqrt(d) e_i
 * (i < d, w_i = 0) and w_{d+j} = sqrt(m) sigma_w sqrt(n0) e_j (u = 0). f_0 = 0. No random numbers. */
static void init_mup_limit(const Model *m, double *theta /* P */) {
  const ModelConfig *c = &m->cfg;
  const int d = c->in_dim, k = c->out_dim, n = c->width; /* n = d + k */
  const ParamTensor *U = &m->tensors[0], *V = &m->tensors[1]; /* dense0.W (n x d), dense1.W (k x n) */
  memset(theta, 0, m->n_params * sizeof *theta);
  const double u = sqrt((double)n) * c->sigma_w / sqrt((double)d);
  const double w = c->mup_zero_readout ? 0.0 : sqrt((double)n) * c->sigma_w * sqrt((double)c->base_width);
  for (int i = 0; i < d; i++) theta[U->offset + (size_t)i * d + i] = u;
  for (int j = 0; j < k; j++) theta[V->offset + (size_t)j * n + d + j] = w / n;
}

void model_init(const Model *m, double *theta /* P */, uint64_t seed) {
  if (m->cfg.mup_limit) {
    init_mup_limit(m, theta);
    return;
  }
  for (int t = 0; t < m->n_tensors; t++) {
    const ParamTensor *p = &m->tensors[t];
    double *w = theta + p->offset; /* p->size */
    if (p->init_std == 0.0) { /* constant init: exact values, no -0.0 from 0 * negative */
      memset(w, 0, p->size * sizeof *w);
      if (p->init_mean != 0.0)
        for (size_t i = 0; i < p->size; i++) w[i] = p->init_mean;
      continue;
    }
    rng_normal_fill(w, p->size, seed, (uint64_t)RNG_STREAM_PARAM_BASE + (uint64_t)t, 0);
    for (size_t i = 0; i < p->size; i++) w[i] *= p->init_std;
  }
}

int model_freeze(Model *m, const char *list, char *err, size_t errlen) {
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ',');
    const size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == 0 || len >= sizeof m->tensors[0].name)
      return errbuf_set(err, errlen, "option -freeze: empty or too long entry in \"%s\"", list);
    int hits = 0;
    for (int t = 0; t < m->n_tensors; t++) {
      ParamTensor *pt = &m->tensors[t];
      if (strncmp(pt->name, p, len) == 0 && (pt->name[len] == 0 || pt->name[len] == '.')) {
        pt->frozen = true;
        pt->lr_scale = 0.0;
        hits++;
      }
    }
    if (!hits) return errbuf_set(err, errlen, "option -freeze: no tensor named \"%.*s\" in this model (e.g. %s)", (int)len, p, m->tensors[0].name);
    p = end ? end + 1 : p + len;
  }
  return 0;
}

bool model_lr_weighted(const Model *m) {
  for (int t = 0; t < m->n_tensors; t++)
    if (m->tensors[t].lr_scale != 1.0) return true;
  return false;
}

void model_lr_scales(const Model *m, double *lr /* P */) {
  for (int t = 0; t < m->n_tensors; t++) {
    const ParamTensor *p = &m->tensors[t];
    for (size_t i = 0; i < p->size; i++) lr[p->offset + i] = p->lr_scale;
  }
}

/* Multiply-adds of the dense and conv layers only: bias adds, activations, batch norm, pooling
 * and residual adds are O(size) per layer against O(size * fan_in) and would only blur the cost
 * model. */
static double op_flops(const Op *op) {
  switch (op->kind) {
    case OP_DENSE: return 2.0 * (double)op->n_in * (double)op->n_out;
    case OP_CONV: return conv_flops(&op->conv);
    default: return 0.0;
  }
}

double model_flops_per_sample(const Model *m) {
  double flops = 0.0;
  for (int i = 0; i < m->n_ops; i++) flops += op_flops(&m->ops[i]);
  return flops;
}

double model_first_layer_flops(const Model *m) {
  for (int i = 0; i < m->n_ops; i++)
    if (m->ops[i].in == 0) return op_flops(&m->ops[i]);
  return 0.0;
}

bool model_has_batch_norm(const Model *m) { return m->n_bn > 0; }

/* ------------------------------------------------------------------ tape */

/* Training tapes: op i may write its output over its input (Tape.train) if it is a relu (its
 * derivative is read from the sign of its output, relu(x) > 0 iff x > 0) or a residual add (its
 * VJP reads no values), the input is a computed buffer read by op i alone, and the input's
 * producer does not itself need that buffer's value (it is not an in-place relu). Every other
 * op's VJP and JVP read only their inputs, which this keeps intact. */
static bool op_in_place(const Model *m, int i, const bool *done) {
  const Op *op = &m->ops[i];
  if (!(op->kind == OP_ACT && op->act == ACT_RELU) && op->kind != OP_ADD) return false;
  if (op->in == 0 || op->in == op->in2 || m->n_readers[op->in] != 1 || m->buf_size[op->in] != m->buf_size[op->out]) return false;
  for (int p = 0; p < i; p++)
    if (m->ops[p].out == op->in) return !(done[p] && m->ops[p].kind == OP_ACT);
  return false;
}

/* in_place[i] of every op for a training tape (n_ops entries). */
static void tape_in_place(const Model *m, bool *in_place) {
  for (int i = 0; i < m->n_ops; i++) in_place[i] = op_in_place(m, i, in_place);
}

double tape_train_doubles_per_sample(const Model *m, int live) {
  bool *in_place = xcalloc((size_t)m->n_ops + 1, sizeof *in_place, "tape plan");
  tape_in_place(m, in_place);
  double n = (double)m->buf_size[0];
  size_t max_buf = 0;
  for (int i = 0; i < m->n_ops; i++) {
    if (!in_place[i]) n += (double)m->buf_size[m->ops[i].out];
    if (m->buf_size[m->ops[i].out] > max_buf) max_buf = m->buf_size[m->ops[i].out];
  }
  free(in_place);
  return n + (double)(live + 1) * (double)max_buf; /* the cotangent blocks and the fan-out scratch */
}

static int tape_init(Tape *t, const Model *m, int capacity, bool train) {
  memset(t, 0, sizeof *t);
  if (capacity <= 0 || m->n_bufs <= 0) return -1;
  t->capacity = capacity;
  t->n_bufs = m->n_bufs;
  t->train = train;
  t->act = calloc((size_t)m->n_bufs, sizeof *t->act);
  t->grad = calloc((size_t)m->n_bufs, sizeof *t->grad);
  t->tan = calloc((size_t)m->n_bufs, sizeof *t->tan);
  t->rgrad = calloc((size_t)m->n_bufs, sizeof *t->rgrad);
  t->seen = calloc((size_t)m->n_bufs, sizeof *t->seen);
  t->act_shared = calloc((size_t)m->n_bufs, sizeof *t->act_shared);
  if (!t->act || !t->grad || !t->tan || !t->rgrad || !t->seen || !t->act_shared) goto oom;
  size_t max_buf = 0;
  bool fan_out = false;
  for (int i = 0; i < m->n_bufs; i++) {
    if (m->buf_size[i] > SIZE_MAX / sizeof **t->act / (size_t)capacity) goto oom;
    if (m->buf_size[i] > max_buf) max_buf = m->buf_size[i];
    if (m->n_readers && m->n_readers[i] > 1) fan_out = true;
  }
  if (train) {
    bool *in_place = calloc((size_t)m->n_ops + 1, sizeof *in_place);
    if (!in_place) goto oom;
    tape_in_place(m, in_place);
    for (int i = 0; i < m->n_ops; i++) t->act_shared[m->ops[i].out] = in_place[i];
    free(in_place);
    t->pool = calloc((size_t)m->n_bufs, sizeof *t->pool);
    t->pool_free = calloc((size_t)m->n_bufs, sizeof *t->pool_free);
    if (!t->pool || !t->pool_free) goto oom;
    t->pool_len = max_buf;
  }
  for (int i = 0; i < m->n_bufs; i++) {
    if (t->act_shared[i]) continue; /* set below from its producer's input */
    t->act[i] = malloc((size_t)capacity * m->buf_size[i] * sizeof **t->act);
    if (!t->act[i]) goto oom;
  }
  for (int i = 0; i < m->n_ops; i++) /* in op order: a chain of in-place ops shares one buffer */
    if (t->act_shared[m->ops[i].out]) t->act[m->ops[i].out] = t->act[m->ops[i].in];
  if (fan_out && !(t->scratch = malloc((size_t)capacity * max_buf * sizeof *t->scratch))) goto oom;
  if (m->conv_work) {
    t->work_len = m->conv_work;
    if (!(t->work = malloc(t->work_len * sizeof *t->work))) goto oom;
  }
  if (m->n_bn) {
    int maxC = 0;
    t->n_bn = m->n_bn;
    if (!(t->bn = calloc((size_t)m->n_bn, sizeof *t->bn))) goto oom;
    for (int j = 0; j < m->n_bn; j++) {
      const int C = m->bn_channels[j];
      if (C > maxC) maxC = C;
      if (!(t->bn[j] = calloc(4 * (size_t)C + 1, sizeof **t->bn))) goto oom;
    }
    if (!(t->red = malloc((5 * (size_t)maxC + 1) * sizeof *t->red))) goto oom;
  }
  return 0;
oom:
  tape_destroy(t);
  return -1;
}

int tape_create(Tape *t, const Model *m, int capacity) { return tape_init(t, m, capacity, false); }
int tape_create_train(Tape *t, const Model *m, int capacity) { return tape_init(t, m, capacity, true); }

void tape_destroy(Tape *t) {
  for (int i = 0; i < t->n_pool; i++) free(t->pool[i]);
  for (int i = 0; i < t->n_bufs; i++) {
    if (t->act && !(t->act_shared && t->act_shared[i])) free(t->act[i]);
    if (t->grad && !t->train) free(t->grad[i]); /* a training tape's are pool blocks */
    if (t->tan) free(t->tan[i]);
    if (t->rgrad) free(t->rgrad[i]);
  }
  for (int j = 0; t->bn && j < t->n_bn; j++) free(t->bn[j]);
  free(t->act);
  free(t->grad);
  free(t->tan);
  free(t->rgrad);
  free(t->seen);
  free(t->scratch);
  free(t->work);
  free(t->bn);
  free(t->red);
  free(t->act_shared);
  free(t->pool);
  free(t->pool_free);
  memset(t, 0, sizeof *t);
}

static void check_batch(const Tape *t, int B, const char *who) {
  if (B < 0 || B > t->capacity) { /* a caller bug: writing past the tape would corrupt memory */
    fprintf(stderr, "%s: batch %d exceeds tape capacity %d\n", who, B, t->capacity);
    abort();
  }
}

/* Second-order products read the first-order cotangents, which a training tape does not keep. */
static void check_keeps_cotangents(const Tape *t, const char *who) {
  if (t->train) {
    fprintf(stderr, "%s: a training tape keeps no cotangents (use tape_create)\n", who);
    abort();
  }
}

/* Lazily allocated per-buffer workspace (cotangents or tangents). A training tape's cotangents
 * are blocks of its pool, taken here and given back by cot_release. */
static double *lazy_buf(double **slot, const Model *m, Tape *t, int i) {
  if (slot[i]) return slot[i];
  if (t->train && slot == t->grad) {
    if (!t->n_free) {
      t->pool[t->n_pool] = xcalloc((size_t)t->capacity * t->pool_len, sizeof **slot, "tape cotangent block");
      t->pool_free[t->n_free++] = t->n_pool++;
    }
    return slot[i] = t->pool[t->pool_free[--t->n_free]];
  }
  slot[i] = xcalloc((size_t)t->capacity * m->buf_size[i], sizeof **slot, "tape buffer");
  return slot[i];
}

/* A training tape: op reading buffer `in` and writing `out` elementwise hands out's cotangent
 * block on to `in` when that is in's first contribution (the kernel then works in place); returns
 * the block, or NULL (then tape_contribution). */
static double *cot_take(const Model *m, Tape *t, int in, int out) {
  if (!t->train || in == 0 || t->seen[in] || !t->grad[out] || m->buf_size[in] != m->buf_size[out]) return NULL;
  t->seen[in] = 1;
  t->grad[in] = t->grad[out];
  t->grad[out] = NULL;
  return t->grad[in];
}

/* Wall-clock seconds (C11), for the optional per-op profile of a tape. */
static double wall_s(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A training tape: buffer i's cotangent is dead (its producer's VJP is done); its block is free. */
static void cot_release(Tape *t, int i) {
  if (!t->train || !t->grad[i]) return;
  for (int j = 0; j < t->n_pool; j++)
    if (t->pool[j] == t->grad[i]) {
      t->pool_free[t->n_free++] = j;
      break;
    }
  t->grad[i] = NULL;
}

/* Where a reader writes its contribution to buffer i's (R-)cotangent in slot during a reverse
 * sweep: slot[i] itself for the first contribution (overwrite), t->scratch for later ones, which
 * tape_commit then adds. NULL for the data buffer (no cotangent needed). */
static double *tape_contribution(double **slot, const Model *m, Tape *t, int i) {
  if (i == 0) return NULL;
  if (!t->seen[i]) {
    t->seen[i] = 1;
    return lazy_buf(slot, m, t, i);
  }
  return t->scratch;
}

static void tape_commit(double **slot, const Model *m, const Tape *t, int i, const double *dst, int B) {
  if (dst && dst == t->scratch) add_inplace(slot[i], t->scratch, (size_t)B * m->buf_size[i]);
}

static void reduce(const Reducer *red, double *buf, int n) {
  if (red && red->sum) red->sum(buf, n, red->ctx);
}

/* A conv kernel's -1 means a workspace or shape the builder should have made impossible. */
static void conv_ok(int rc, const char *who) {
  if (rc) {
    fprintf(stderr, "%s: conv kernel rejected its workspace or shape\n", who);
    abort();
  }
}

/* The statistics a BN op keeps on the tape: mean (C) | rstd (C) | JVP sums (2C) | count. */
typedef struct {
  double *mean, *rstd, *jpart, *count;
} BnState;

static BnState bn_state(const Tape *t, const Op *op) {
  double *s = t->bn[op->bn];
  return (BnState){s, s + op->C, s + 2 * op->C, s + 4 * op->C};
}

/* ------------------------------------------------------------------ forward, VJP, JVP */

const double *model_forward(const Model *m, const double *theta /* P */, const double *x /* B x d */,
                            int B, Tape *t, const Reducer *red) {
  return model_forward_from(m, theta, 0, x, B, t, red);
}

const double *model_forward_from(const Model *m, const double *theta /* P */, int first,
                                 const double *in /* B x buf_size[ops[first].in] */, int B, Tape *t,
                                 const Reducer *red) {
  check_batch(t, B, "model_forward");
  /* Copied, not aliased: the VJP/JVP must not depend on the caller keeping x alive. */
  const int in0 = first < m->n_ops ? m->ops[first].in : m->out_buf;
  if (in != t->act[in0]) copy_doubles(t->act[in0], in, (size_t)B * m->buf_size[in0]);
  for (int i = first; i < m->n_ops; i++) {
    const double t0 = t->prof ? wall_s() : 0.0;
    const Op *op = &m->ops[i];
    const double *in = t->act[op->in]; /* B x n_in */
    double *out = t->act[op->out];     /* B x n_out */
    const ParamTensor *W = op->w >= 0 ? &m->tensors[op->w] : NULL;
    const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
    switch (op->kind) {
      case OP_DENSE:
        dense_forward(out, in, theta + W->offset, b ? theta + b->offset : NULL, B, op->n_in,
                      op->n_out, W->mult, b ? b->mult : 0.0);
        break;
      case OP_ACT:
        act_forward(out, in, (size_t)B * (size_t)op->n_in, op->act);
        break;
      case OP_CONV:
        conv_ok(conv2d_forward(out, in, theta + W->offset, b ? theta + b->offset : NULL, B, &op->conv, W->mult,
                               b ? b->mult : 0.0, t->work, t->work_len), "model_forward");
        break;
      case OP_BN: { /* local sums -> Reducer -> global mean, rstd */
        const BnState st = bn_state(t, op);
        bn_stats(t->red, in, B, op->C, op->HW);
        reduce(red, t->red, (int)BN_STATS_LEN(op->C));
        bn_finalize(st.mean, st.rstd, NULL, t->red, op->C, op->eps);
        *st.count = t->red[2 * op->C];
        bn_forward(out, in, st.mean, st.rstd, W ? theta + W->offset : NULL, b ? theta + b->offset : NULL, B, op->C, op->HW);
        break;
      }
      case OP_POOL:
        global_avgpool_forward(out, in, B, op->C, op->HW);
        break;
      case OP_ADD:
        residual_add_forward(out, in, t->act[op->in2], (size_t)B * (size_t)op->n_out);
        break;
    }
    if (t->prof) t->prof[i] += wall_s() - t0;
  }
  return t->act[m->out_buf];
}

/* Cotangents are OVERWRITTEN per buffer by its first reader in the reverse sweep; a second reader
 * (residual fan-out) adds its part (tape_contribution / tape_commit). On a training tape an op's
 * output cotangent is dead once the op is done: elementwise ops hand its block on to their input
 * (cot_take), the others give it back to the pool (cot_release). */
void model_vjp(const Model *m, const double *theta /* P */, const double *dout /* B x k */, int B,
               Tape *t, double *grad /* P */, const Reducer *red) {
  check_batch(t, B, "model_vjp");
  memset(t->seen, 0, (size_t)m->n_bufs);
  double *gout = lazy_buf(t->grad, m, t, m->out_buf); /* B x k */
  if (gout != dout) copy_doubles(gout, dout, (size_t)B * m->buf_size[m->out_buf]); /* hvp_prepare writes it in place */
  for (int i = m->n_ops - 1; i >= 0; i--) {
    const double t0 = t->prof ? wall_s() : 0.0;
    const Op *op = &m->ops[i];
    const double *g = t->grad[op->out]; /* B x n_out, complete: every reader of op->out came later */
    /* Buffer 0 is data: no cotangent needed (saves the B x d x n GEMM of the first layer). The
     * elementwise ops may work in place on a training tape. */
    double *gin = op->kind == OP_ACT || op->kind == OP_BN || op->kind == OP_ADD ? cot_take(m, t, op->in, op->out) : NULL;
    if (!gin) gin = tape_contribution(t->grad, m, t, op->in); /* B x n_in or NULL */
    const ParamTensor *W = op->w >= 0 ? &m->tensors[op->w] : NULL;
    const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
    /* grad == NULL: only the activation cotangents are wanted (NTK Gram matrix, HVP prepare). */
    double *gW = W && grad ? grad + W->offset : NULL, *gb = b && grad ? grad + b->offset : NULL;
    switch (op->kind) {
      case OP_DENSE:
        dense_vjp(gin, gW, gb, g, t->act[op->in], theta + W->offset, B, op->n_in, op->n_out, W->mult,
                  b ? b->mult : 0.0);
        break;
      case OP_ACT:
        if (gin) act_vjp(gin, g, t->act[op->in], (size_t)B * (size_t)op->n_in, op->act);
        break;
      case OP_CONV:
        conv_ok(conv2d_vjp(gin, gW, gb, g, t->act[op->in], theta + W->offset, B, &op->conv, W->mult,
                           b ? b->mult : 0.0, t->work, t->work_len), "model_vjp");
        break;
      case OP_BN: { /* the Reducer is called on every rank, input cotangent wanted or not */
        const BnState st = bn_state(t, op);
        bn_vjp_stats(t->red, gW, gb, g, t->act[op->in], st.mean, st.rstd, B, op->C, op->HW);
        reduce(red, t->red, (int)BN_VJP_STATS_LEN(op->C));
        if (gin) bn_vjp(gin, g, t->act[op->in], st.mean, st.rstd, W ? theta + W->offset : NULL, t->red, *st.count, B, op->C, op->HW);
        break;
      }
      case OP_POOL:
        if (gin) global_avgpool_vjp(gin, g, B, op->C, op->HW);
        break;
      case OP_ADD: { /* both inputs get g; gin may be g itself (cot_take) */
        if (gin && gin != g) copy_doubles(gin, g, (size_t)B * (size_t)op->n_out);
        tape_commit(t->grad, m, t, op->in, gin, B);
        gin = tape_contribution(t->grad, m, t, op->in2);
        if (gin) copy_doubles(gin, g, (size_t)B * (size_t)op->n_out);
        tape_commit(t->grad, m, t, op->in2, gin, B);
        gin = NULL; /* both committed */
        break;
      }
    }
    tape_commit(t->grad, m, t, op->in, gin, B);
    cot_release(t, op->out);
    if (t->prof) t->prof[m->n_ops + i] += wall_s() - t0;
    if (grad && (W || b) && t->hook.ready) t->hook.ready(i, t->hook.ctx);
  }
}

void model_jvp(const Model *m, const double *theta /* P */, const double *dtheta /* P */, int B,
               Tape *t, double *tout /* B x k */, const Reducer *red) {
  check_batch(t, B, "model_jvp");
  for (int i = 0; i < m->n_ops; i++) {
    const Op *op = &m->ops[i];
    /* NULL = zero tangent: buffer 0 is data, independent of theta. */
    const double *tin = op->in == 0 ? NULL : t->tan[op->in]; /* B x n_in */
    double *to = lazy_buf(t->tan, m, t, op->out);            /* B x n_out */
    const ParamTensor *W = op->w >= 0 ? &m->tensors[op->w] : NULL;
    const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
    switch (op->kind) {
      case OP_DENSE:
        dense_jvp(to, tin, t->act[op->in], theta + W->offset, dtheta + W->offset,
                  b ? dtheta + b->offset : NULL, B, op->n_in, op->n_out, W->mult,
                  b ? b->mult : 0.0);
        break;
      case OP_ACT:
        if (tin)
          act_jvp(to, tin, t->act[op->in], (size_t)B * (size_t)op->n_in, op->act);
        else
          zero_doubles(to, (size_t)B * (size_t)op->n_out);
        break;
      case OP_CONV:
        conv_ok(conv2d_jvp(to, tin, t->act[op->in], theta + W->offset, dtheta + W->offset, b ? dtheta + b->offset : NULL, B,
                           &op->conv, W->mult, b ? b->mult : 0.0, t->work, t->work_len), "model_jvp");
        break;
      case OP_BN: { /* the reduced sums are kept for the R-backward sweep */
        const BnState st = bn_state(t, op);
        if (tin) bn_jvp_stats(st.jpart, tin, t->act[op->in], st.mean, st.rstd, B, op->C, op->HW);
        else memset(st.jpart, 0, BN_VJP_STATS_LEN(op->C) * sizeof *st.jpart);
        reduce(red, st.jpart, (int)BN_VJP_STATS_LEN(op->C));
        bn_jvp(to, tin, t->act[op->in], st.mean, st.rstd, W ? theta + W->offset : NULL, W ? dtheta + W->offset : NULL,
               b ? dtheta + b->offset : NULL, st.jpart, *st.count, B, op->C, op->HW);
        break;
      }
      case OP_POOL:
        if (tin) global_avgpool_jvp(to, tin, B, op->C, op->HW);
        else zero_doubles(to, (size_t)B * (size_t)op->n_out);
        break;
      case OP_ADD:
        residual_add_jvp(to, tin, op->in2 == 0 ? NULL : t->tan[op->in2], (size_t)B * (size_t)op->n_out);
        break;
    }
  }
  if (tout) copy_doubles(tout, t->tan[m->out_buf], (size_t)B * m->buf_size[m->out_buf]);
}

/* ------------------------------------------------------------------ Hessian products */

double model_hvp_prepare(const Model *m, const double *theta /* P */, const double *x /* B x d */,
                         const double *y /* B x k */, int B, double n_global, Tape *t,
                         const Reducer *red) {
  check_batch(t, B, "model_hvp_prepare");
  check_keeps_cotangents(t, "model_hvp_prepare");
  const double *f = model_forward(m, theta, x, B, t, red); /* B x k */
  /* The loss cotangent goes straight into the output buffer's cotangent slot: no allocation. */
  double *dout = lazy_buf(t->grad, m, t, m->out_buf); /* B x k */
  const double half_sq = model_loss(m, dout, f, y, B, 1.0 / n_global);
  model_vjp(m, theta, dout, B, t, NULL, red); /* cotangents only: no parameter gradient needed */
  return half_sq;
}

double model_loss(const Model *m, double *dout /* B x k or NULL */, const double *f /* B x k */,
                  const double *y /* B x k */, int B, double scale) {
  return loss_eval(m->cfg.loss, dout, f, y, B, (int)m->buf_size[m->out_buf], scale);
}

/* R-forward (JVP of v), then the reverse sweep of the R-operator. The R-cotangent of a buffer with
 * one reader is written over its tangent in t->tan (the reader is the only op that needs that
 * tangent); a buffer with two readers keeps its tangent for both and collects the sum of their
 * R-cotangents in t->rgrad. residual = false drops the first-order cotangents: the Gauss-Newton
 * product. */
static double *rcot(const Model *m, const Tape *t, int i) {
  return m->n_readers[i] > 1 ? t->rgrad[i] : t->tan[i];
}

static void r_backward(const Model *m, const double *theta /* P */, const double *v /* P */, int B,
                       double n_global, Tape *t, double *hv /* P */, bool residual,
                       const Reducer *red, const char *who) {
  check_batch(t, B, who);
  check_keeps_cotangents(t, who);
  const size_t nk = (size_t)B * m->buf_size[m->out_buf];
  model_jvp(m, theta, v, B, t, NULL, red); /* J v stays in t->tan[out_buf] */
  memset(t->seen, 0, (size_t)m->n_bufs);
  /* MSE: dL/df = (f - y)/N, so R{dL/df} = R{f}/N = (J v)/N. xent: R{dL/df} = H_loss (J v)/N. */
  double *rg = t->tan[m->out_buf]; /* B x k */
  for (size_t i = 0; i < nk; i++) rg[i] /= n_global;
  loss_hess_apply(m->cfg.loss, rg, t->act[m->out_buf], B, (int)m->buf_size[m->out_buf]);
  for (int i = m->n_ops - 1; i >= 0; i--) {
    const Op *op = &m->ops[i];
    const double *rdout = rcot(m, t, op->out); /* B x n_out: R-cotangent, complete */
    const double *dout = NULL;                 /* B x n_out: first-order cotangent */
    if (residual) {
      dout = t->grad[op->out];
      if (!dout) {
        fprintf(stderr, "%s: tape has no cotangents (call model_hvp_prepare first)\n", who);
        abort();
      }
    }
    /* rin: tangent of op->in (NULL for the data buffer). rdin: where op->in's R-cotangent goes --
     * over rin for a single reader (in place), else into t->rgrad (first reader) or scratch. */
    double *rin = op->in == 0 ? NULL : t->tan[op->in]; /* B x n_in */
    double *rdin = m->n_readers[op->in] > 1 ? tape_contribution(t->rgrad, m, t, op->in) : rin;
    const ParamTensor *W = op->w >= 0 ? &m->tensors[op->w] : NULL;
    const ParamTensor *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
    switch (op->kind) {
      case OP_DENSE:
        dense_rvjp(rdin, hv + W->offset, b ? hv + b->offset : NULL, rdout, dout, t->act[op->in], rin,
                   theta + W->offset, v + W->offset, B, op->n_in, op->n_out, W->mult,
                   b ? b->mult : 0.0);
        break;
      case OP_ACT:
        if (rdin) act_rvjp(rdin, rdout, dout, t->act[op->in], rin, (size_t)B * (size_t)op->n_in, op->act);
        break;
      case OP_CONV:
        conv_ok(conv2d_rvjp(rdin, hv + W->offset, b ? hv + b->offset : NULL, rdout, dout, t->act[op->in], rin,
                            theta + W->offset, v + W->offset, B, &op->conv, W->mult, b ? b->mult : 0.0, t->work,
                            t->work_len), who);
        break;
      case OP_BN: { /* VJP sums of dout (2C) and R-VJP sums (3C): one reduction */
        const BnState st = bn_state(t, op);
        const int C = op->C;
        double *vpart = t->red, *rpart = t->red + 2 * C;
        if (dout) bn_vjp_stats(vpart, NULL, NULL, dout, t->act[op->in], st.mean, st.rstd, B, C, op->HW);
        else memset(vpart, 0, 2 * (size_t)C * sizeof *vpart);
        bn_rvjp_stats(rpart, W ? hv + W->offset : NULL, b ? hv + b->offset : NULL, rdout, dout, rin, t->act[op->in], st.mean,
                      st.rstd, st.jpart, *st.count, B, C, op->HW);
        reduce(red, t->red, 5 * C);
        if (rdin)
          bn_rvjp(rdin, rdout, dout, rin, t->act[op->in], st.mean, st.rstd, W ? theta + W->offset : NULL, W ? v + W->offset : NULL,
                  st.jpart, dout ? vpart : NULL, rpart, *st.count, B, C, op->HW);
        break;
      }
      case OP_POOL: /* linear: the VJP of rdout */
        if (rdin) global_avgpool_vjp(rdin, rdout, B, op->C, op->HW);
        break;
      case OP_ADD: { /* linear: rdout to both inputs */
        const size_t n = (size_t)B * (size_t)op->n_out;
        if (rdin) copy_doubles(rdin, rdout, n);
        if (rdin && m->n_readers[op->in] > 1) tape_commit(t->rgrad, m, t, op->in, rdin, B);
        double *rin2 = op->in2 == 0 ? NULL : t->tan[op->in2];
        double *rdin2 = m->n_readers[op->in2] > 1 ? tape_contribution(t->rgrad, m, t, op->in2) : rin2;
        if (rdin2) copy_doubles(rdin2, rdout, n);
        if (rdin2 && m->n_readers[op->in2] > 1) tape_commit(t->rgrad, m, t, op->in2, rdin2, B);
        continue;
      }
    }
    if (rdin && m->n_readers[op->in] > 1) tape_commit(t->rgrad, m, t, op->in, rdin, B);
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
