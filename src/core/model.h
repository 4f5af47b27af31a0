/* A network as a list of ops over numbered activation buffers, with every trained tensor in one
 * flat parameter buffer theta[P] (per-tensor offsets, llm.c style).
 *
 * Buffer 0 holds the input, buffer model->out_buf the output f (B x out_dim). Each op reads one or
 * two buffers and writes one; ops run in order for the forward pass and in reverse for the VJP.
 * New layer kinds (conv2d, residual add, batch norm, pooling) are new OpKind values with their own
 * kernels: the graph, the tape and the parameter table stay as they are.
 *
 * Free of PETSc and MPI. Reductions across data-parallel ranks that a layer may need (batch norm
 * statistics) go through the Reducer callback supplied by the caller.
 */
#ifndef NTK_MODEL_H
#define NTK_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "conv.h"
#include "layers.h"

/* PARAM_ABC: the general abc-parameterization (Yang & Hu, Tensor Programs IV) in sp's constant
 * placement, exponents per layer kind from ModelConfig.abc; PARAM_MF: mean field, one hidden layer,
 * the abc exponents input (0, 0, -1), output (1, 0, -1), biases (0, 0, -1). sp and mup are abc
 * presets too: every parameterization but ntk goes through the same exponent table
 * (docs/conventions.md "Parameterizations"). */
typedef enum { PARAM_NTK = 0, PARAM_SP, PARAM_MUP, PARAM_ABC, PARAM_MF, PARAM_COUNT } Parameterization;
/* Layer kinds of the abc exponents, and the exponents' order within a kind. */
typedef enum { ABC_INPUT = 0, ABC_HIDDEN, ABC_OUTPUT, ABC_BIAS, ABC_KINDS } AbcKind;
enum { ABC_A = 0, ABC_B, ABC_C };
/* ARCH_UV: the paper's exactly solvable model f(x) = v^T u x / sqrt(n) (docs/conventions.md): one
 * input, one output, u, v ~ N(0,1) -- a depth-1 linear fc net in the ntk parameterization with
 * sigma_w = 1 and no biases, whatever the deck says for those.
 * ARCH_WRN: pre-activation Wide ResNet WRN-d-k (Zagoruyko & Komodakis), d = wrn_depth = 6n+4,
 * k = width (the widening factor): conv3x3(C_in -> 16); 3 groups of n blocks
 * [BN-act-conv3x3(stride s)-BN-act-conv3x3] + shortcut, with 16k, 32k, 64k channels and s = 1, 2, 2
 * in each group's first block (1x1 projection conv of the block's act(BN(x)) when channels or
 * resolution change, identity otherwise); final BN-act; global average pool; dense(64k -> k_out).
 * Without batch_norm the BN ops are absent. act is cfg->act (relu for the WRN). docs/layers.md.
 * ARCH_CNN: the plain convolutional net of the analytic CNTK (cntk.h): depth x [conv3x3 (stride 1,
 * zero "same" padding, width channels, biases if bias) - act]; global average pool; dense(width ->
 * k_out). In the ntk parameterization with relu its NTK and NNGP tend to cntk.c's as width -> inf. */
typedef enum { ARCH_FC = 0, ARCH_UV, ARCH_WRN, ARCH_CNN, ARCH_COUNT } Architecture;

const char *param_name(Parameterization p);   /* "ntk", "sp", "mup", "abc", "mf" */
int param_from_name(const char *name);        /* -1 if unknown */
const char *arch_name(Architecture a);        /* "fc", "uv", "wrn", "cnn" */
int arch_from_name(const char *name);         /* -1 if unknown */

/* ModelConfig.width of the exact infinite-width limit of the one-hidden-layer linear muP net: built
 * as its equivalent net of in_dim + out_dim neurons with a deterministic init (model_init;
 * docs/mup_limit.md). The output records such a run's width as 0, "inf". */
#define MODEL_WIDTH_INF 0

typedef struct {
  Architecture arch;
  int in_dim;           /* d: features per input sample */
  int in_channels, in_height, in_width; /* image shape of an input sample (ARCH_WRN, ARCH_CNN: product = in_dim) */
  int out_dim;          /* k: outputs */
  int depth;            /* number of hidden layers L (>= 1; fc, and the conv layers of ARCH_CNN) */
  int width;            /* hidden width n (ARCH_WRN: widening factor k; ARCH_CNN: channels) */
  Activation act;
  bool bias;            /* biases on every dense layer */
  double sigma_w, sigma_b;
  Parameterization param;
  int base_width;       /* muP base width n0 (r = n / n0) */
  bool mup_zero_readout;/* mup, abc, mf: zero-initialise the output layer's weights */
  double abc[ABC_KINDS][3]; /* PARAM_ABC: (a, b, c) of the input, hidden and output layers and biases */
  bool mup_limit;       /* set by model_build for width MODEL_WIDTH_INF (width is then in_dim + out_dim) */
  int wrn_depth;        /* ARCH_WRN: d = 6n+4, n >= 1 blocks per group */
  bool batch_norm;      /* ARCH_WRN: train-mode batch norm before every activation */
  bool wrn_plain;       /* ARCH_WRN: no residual connections (no shortcut adds, no projection convs) */
  double bn_eps;        /* batch norm epsilon (>= 0; 0 only for exactly scale-invariant tests) */
  LossKind loss;        /* the training loss (layers.h): mse (the phase theory's) or xent */
  bool fc_batch_norm;   /* ARCH_FC: train-mode batch norm between every hidden dense layer and its
                           activation (dense -> BN -> act), statistics of the whole batch */
  bool bn_no_affine;    /* batch norm without its affine parameters gamma and beta */
} ModelConfig;

/* OP_CONV: conv2d (conv.h) with op->conv; OP_BN: train-mode batch norm over op->C channels of
 * op->HW positions, statistics of the whole batch (Reducer); OP_POOL: global average pool;
 * OP_ADD: out = in + in2 (residual). */
typedef enum { OP_DENSE = 0, OP_ACT, OP_CONV, OP_BN, OP_POOL, OP_ADD } OpKind;

/* One trained tensor: theta[offset .. offset+size). */
typedef struct {
  char name[32];        /* "dense0.W", "dense0.b", ... */
  size_t offset, size;  /* in doubles */
  int fan_in;
  double init_std;      /* initialised as init_mean + N(0, init_std^2); init_std 0 gives init_mean */
  double init_mean;     /* 0, except batch-norm gamma (1) */
  double mult;          /* forward multiplier (ntk: sigma_w/sqrt(fan_in) or sigma_b; else 1) */
  double lr_scale;      /* per-tensor learning-rate multiplier (muP; else 1; 0 when frozen) */
  bool frozen;          /* kept at its initial value (model_freeze) */
} ParamTensor;

typedef struct {
  OpKind kind;
  int in, out;          /* activation buffer ids */
  int in2;              /* OP_ADD: second input buffer; -1 otherwise */
  int w, b;             /* parameter tensor ids, -1 if none (OP_BN: gamma, beta) */
  int n_in, n_out;      /* per-sample features of in and out */
  Activation act;       /* OP_ACT only */
  ConvShape conv;       /* OP_CONV only */
  int C, HW;            /* OP_BN, OP_POOL: channels and positions per channel */
  double eps;           /* OP_BN only */
  int bn;               /* OP_BN: index of its statistics on the tape; -1 otherwise */
} Op;

typedef struct {
  ModelConfig cfg;
  int n_ops;
  Op *ops;              /* [n_ops] */
  int n_tensors;
  ParamTensor *tensors; /* [n_tensors] */
  int n_bufs;
  size_t *buf_size;     /* [n_bufs] per-sample features of each activation buffer */
  int *n_readers;       /* [n_bufs] ops reading each buffer (2: residual fan-out, cotangents add) */
  int out_buf;
  size_t n_params;      /* P */
  int n_bn;             /* batch-norm ops */
  int *bn_channels;     /* [n_bn] channels of each (tape statistics) */
  size_t conv_work;     /* doubles of conv scratch a tape holds (0 without convs) */
} Model;

/* Cross-rank sum used by layers whose statistics span the batch (batch norm). NULL = local. */
typedef struct {
  void (*sum)(double *buf /* n, in place */, int n, void *ctx);
  void *ctx;
} Reducer;

/* Told by model_vjp (parameter gradient wanted) as soon as op `op`'s parameter gradients are
 * complete, while the ops below it are still to come: a data-parallel caller starts reducing them
 * then (train/grad_reduce.c). Not called for ops without parameters. ready == NULL: none. */
typedef struct {
  void (*ready)(int op, void *ctx);
  void *ctx;
} GradHook;

/* Per-batch workspace: activations, cotangents and tangents of every buffer for up to B samples.
 * With batch norm the B samples of one call are (the local part of) ONE batch: their statistics
 * couple them, so a batch must not be split over several calls (docs/layers.md). */
typedef struct {
  int capacity;         /* max samples */
  int n_bufs;
  double **act;         /* [n_bufs] each capacity x buf_size[i] */
  double **grad;        /* [n_bufs] cotangents, allocated lazily by model_vjp (training tape:
                           pool blocks, NULL outside a backward pass) */
  double **tan;         /* [n_bufs] tangents, allocated lazily by model_jvp */
  double **rgrad;       /* [n_bufs] R-cotangents of buffers with two readers (HVP), lazily */
  double *scratch;      /* capacity x max buf_size: a second reader's contribution before it is added */
  unsigned char *seen;  /* [n_bufs] reverse sweeps: buffer already has a cotangent contribution */
  double *work;         /* [work_len] conv im2col scratch */
  size_t work_len;
  int n_bn;
  double **bn;          /* [n_bn] per BN op: mean (C) | rstd (C) | JVP sums (2C) | count (1) */
  double *red;          /* 5 max C + 1: partial sums handed to the Reducer */
  GradHook hook;        /* set by the caller around a model_vjp; zero = none */
  /* Training tapes (tape_create_train; false for tape_create): forward, JVP and VJP only.
   * Cotangents come from a pool of blocks (capacity x max buf_size each) and go back to it once
   * their producer op's backward is done, so t->grad holds no cotangents after model_vjp; and a
   * relu or residual add whose input has no other use writes its output over that input (act[]
   * entries then share memory, act_shared[i] = 1): a BN-relu pair keeps one buffer, the relu's
   * output, whose sign is relu's derivative. Second-order products need the kept cotangents and
   * refuse a training tape. */
  bool train;
  unsigned char *act_shared; /* [n_bufs] act[i] aliases its producer's input buffer */
  double **pool;        /* [n_bufs] cotangent blocks allocated so far (n_pool), capacity x pool_len */
  int n_pool, n_free;
  int *pool_free;       /* [n_bufs] indices of free blocks (n_free of them) */
  size_t pool_len;      /* per-sample doubles of a block: max buf_size */
  /* Optional profile (NULL: off): seconds spent in op i, forward in prof[i], VJP in
   * prof[n_ops + i], accumulated over calls (benchmarks; the caller allocates and zeroes it). */
  double *prof;         /* [2 n_ops] or NULL */
} Tape;

/* Builds the op list and parameter table of cfg. Returns 0, or -1 with a one-line reason in err. */
int model_build(Model *m, const ModelConfig *cfg, char *err, size_t errlen);
void model_destroy(Model *m);

/* theta <- initial parameters: tensor t drawn from stream RNG_STREAM_PARAM_BASE + t, index = element
 * within the tensor, scaled by init_std. A pure function of (model, seed). The muP limit's
 * equivalent net (cfg.mup_limit) has a deterministic init instead. */
void model_init(const Model *m, double *theta /* P */, uint64_t seed);

/* Freezes the tensors named in `list` (comma-separated; an entry is a tensor name, "dense2.W", or a
 * layer prefix, "dense2", "fc", "bn0", matching every tensor "<prefix>.*"): frozen = true and
 * lr_scale = 0, so the update and the lr-weighted NTK/Hessian leave them out. Returns 0, or -1 with
 * "option -freeze: ..." in err for an entry that matches no tensor. NULL or "" freezes nothing. */
int model_freeze(Model *m, const char *list, char *err, size_t errlen);

/* Per-parameter learning-rate multipliers, expanded: lr[p] = lr_scale of p's tensor. */
void model_lr_scales(const Model *m, double *lr /* P */);
/* True if some tensor has lr_scale != 1: the lr-weighted NTK J D J^T / N then differs from the
 * plain J J^T / N (mup, abc, mf; never ntk or sp). */
bool model_lr_weighted(const Model *m);
/* The (a, b, c) exponents of layer kind `kind` under cfg's parameterization (not ntk, which is not
 * in sp's constant placement); abc_out[3]. */
void model_abc_exponents(const ModelConfig *cfg, AbcKind kind, double *abc_out /* 3 */);

/* Forward FLOPs per sample (multiply-adds count 2) of dense and conv layers; cost model and
 * benchmarks use it. model_first_layer_flops: those of the layer reading the data (its input needs
 * no tangent or cotangent). */
double model_flops_per_sample(const Model *m);
double model_first_layer_flops(const Model *m);
/* True if the model has batch norm: a batch must then be processed in one call, and ranks sharing
 * a batch pass a Reducer that sums over them. */
bool model_has_batch_norm(const Model *m);

int tape_create(Tape *t, const Model *m, int capacity);
/* A training tape (Tape.train): same calls, cotangent blocks reused along the backward pass and
 * in-place relu / residual add; model_hvp_* and model_gnvp_* abort on it. */
int tape_create_train(Tape *t, const Model *m, int capacity);
/* Doubles of the activation and cotangent buffers tape_create_train allocates per sample, with
 * `live` cotangent blocks (the pool's high-water mark; 4 covers the WRN and fc nets). */
double tape_train_doubles_per_sample(const Model *m, int live);
void tape_destroy(Tape *t);

/* f = network(x) on B <= capacity samples; returns a pointer into the tape (B x out_dim). */
const double *model_forward(const Model *m, const double *theta /* P */, const double *x /* B x d */,
                            int B, Tape *t, const Reducer *red);
/* The forward pass from op `first` on: `in` is the input buffer of that op (B x its per-sample
 * size), for example the first layer's output computed another way (the loss landscape's affine
 * first layer, landscape/landscape_eval.c). The ops from `first` on must read only that buffer or
 * buffers they write; model_forward is model_forward_from(m, theta, 0, x, ...). Ops before
 * `first` leave their tape buffers as they were (a VJP or JVP after this call is not defined).
 * `in` may be that buffer of the tape itself (t->act[ops[first].in]): then nothing is copied. */
const double *model_forward_from(const Model *m, const double *theta /* P */, int first,
                                 const double *in /* B x buf_size[ops[first].in] */, int B, Tape *t,
                                 const Reducer *red);
/* grad += J^T dout: the VJP of the last model_forward on this tape. With grad == NULL only the
 * cotangents of the activation buffers (t->grad) are computed, skipping the parameter products
 * (left in t->grad on a tape_create tape; a training tape reuses them along the sweep). */
void model_vjp(const Model *m, const double *theta /* P */, const double *dout /* B x k */, int B,
               Tape *t, double *grad /* P */, const Reducer *red);
/* tout = J dtheta: the JVP at the point of the last model_forward on this tape (tout == NULL:
 * leave it in t->tan[out_buf] only). */
void model_jvp(const Model *m, const double *theta /* P */, const double *dtheta /* P */, int B,
               Tape *t, double *tout /* B x k */, const Reducer *red);


/* The model's loss (cfg.loss) of B outputs f against targets y: the sum over the samples (the
 * caller divides by the global N), dout = scale * dL_a/df_a if dout != NULL (layers.h loss_eval). */
double model_loss(const Model *m, double *dout /* B x k or NULL */, const double *f /* B x k */,
                  const double *y /* B x k */, int B, double scale);

/* ---- loss Hessian products (docs/conventions.md "Hessian": H = G + R, G = J^T J / N) ----
 * For -loss xent, L = (1/n_global) sum_a CE_a: G becomes J^T H_loss J / N with H_loss the softmax
 * cross-entropy's own second derivative (layers.h), and R uses dL/df = (softmax(f) - y) / N. The
 * text below is written for MSE.
 * The loss of these B samples is L = 1/(2 n_global) sum_a ||f(x_a) - y_a||^2, normalised by the
 * whole batch's n_global so that chunks and data-parallel ranks add their parts. Products are
 * ACCUMULATED (+=) into hv / gv, like model_vjp's grad.
 *
 * Forward over reverse (Pearlmutter's R-operator): model_hvp_prepare runs the forward pass and the
 * first-order cotangents (t->act, t->grad), which do not depend on the direction; each product is
 * then one JVP (R-forward, into t->tan) and one R-backward sweep that OVERWRITES t->tan in place
 * with the R-cotangents of buffers with one reader; a buffer read twice (residual fan-out) keeps
 * its tangent until both readers are done and sums their R-cotangents in t->rgrad. New op kinds
 * add their R-operator case to the switch in model.c's r_backward. After a product t->tan holds
 * no tangents; t->act and t->grad are untouched, so any number of products can follow a prepare.
 */
/* Forward + cotangents of L on a tape; returns sum_a ||f_a - y_a||^2 / 2 (divide by n_global). */
double model_hvp_prepare(const Model *m, const double *theta /* P */, const double *x /* B x d */,
                         const double *y /* B x k */, int B, double n_global, Tape *t,
                         const Reducer *red);
/* hv += H v on a tape prepared at theta (exact Hessian of L, residual term R included). */
void model_hvp_apply(const Model *m, const double *theta /* P */, const double *v /* P */, int B,
                     double n_global, Tape *t, double *hv /* P, accumulated */, const Reducer *red);
/* gv += G v = J^T J v / n_global on a tape after model_forward (or model_hvp_prepare) at theta. */
void model_gnvp_apply(const Model *m, const double *theta /* P */, const double *v /* P */, int B,
                      double n_global, Tape *t, double *gv /* P, accumulated */, const Reducer *red);
/* One-call forms: forward (+ cotangents) and the product. */
void model_hvp(const Model *m, const double *theta /* P */, const double *v /* P */,
               const double *x /* B x d */, const double *y /* B x k */, int B, double n_global,
               Tape *t, double *hv /* P, accumulated */, const Reducer *red);
void model_gnvp(const Model *m, const double *theta /* P */, const double *v /* P */,
                const double *x /* B x d */, int B, double n_global, Tape *t,
                double *gv /* P, accumulated */, const Reducer *red);

#endif
