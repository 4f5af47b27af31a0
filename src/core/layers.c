/* Layer kernels (see layers.h for the conventions). The dense kernels are single OpenBLAS calls;
 * the *_ref twins are the obvious loops that the tests compare against.
 * Outputs must not alias the inputs of a GEMM (out vs in/W, din vs dout/W, tout vs tin/in). */
#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ------------------------------------------------------------------ activations */

static const char *const act_names[ACT_COUNT] = {"identity", "relu", "tanh", "erf", "swish", "gelu", "mish"};

/* 2/sqrt(pi) = erf'(0). */
static const double two_over_sqrt_pi = 1.1283791670955125738961589031215;
static const double inv_sqrt2 = 0.70710678118654752440084436210485;
static const double inv_sqrt_2pi = 0.39894228040143267793994605993438;

/* The smooth activations swish, gelu and mish: value, first and second derivative at one point,
 * computed together (they share their exponentials). Numerically stable for any finite x. */
static inline double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}

/* softplus(x) = log(1 + e^x) without overflow. */
static inline double softplus(double x) { return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

typedef struct {
  double v, d1, d2;
} ActPoint;

static inline ActPoint smooth_point(double x, Activation a) {
  ActPoint p;
  switch (a) {
    case ACT_SWISH: { /* s = sigmoid: (x s)' = s + x s (1-s), '' = s (1-s) (2 + x (1 - 2s)) */
      const double s = sigmoid(x), ds = s * (1.0 - s);
      p.v = x * s;
      p.d1 = s + x * ds;
      p.d2 = ds * (2.0 + x * (1.0 - 2.0 * s));
      break;
    }
    case ACT_GELU: { /* (x Phi)' = Phi + x phi, '' = phi (2 - x^2) */
      const double Phi = 0.5 * (1.0 + erf(x * inv_sqrt2)), phi = inv_sqrt_2pi * exp(-0.5 * x * x);
      p.v = x * Phi;
      p.d1 = Phi + x * phi;
      p.d2 = phi * (2.0 - x * x);
      break;
    }
    case ACT_MISH: { /* t = tanh(softplus x), t' = (1 - t^2) s:
                      * (x t)' = t + x (1-t^2) s, '' = (1-t^2) s (2 + x (1 - s - 2 t s)) */
      const double t = tanh(softplus(x)), s = sigmoid(x), u = (1.0 - t * t) * s;
      p.v = x * t;
      p.d1 = t + x * u;
      p.d2 = u * (2.0 + x * (1.0 - s - 2.0 * t * s));
      break;
    }
    default: p.v = p.d1 = p.d2 = NAN;
  }
  return p;
}

const char *act_name(Activation a) {
  return (a >= 0 && a < ACT_COUNT) ? act_names[a] : "unknown";
}

int act_from_name(const char *name) {
  if (!name) return -1;
  for (int a = 0; a < ACT_COUNT; a++)
    if (strcmp(name, act_names[a]) == 0) return a;
  return -1;
}

double act_value(double x, Activation a) {
  switch (a) {
    case ACT_IDENTITY: return x;
    case ACT_RELU: return x > 0.0 ? x : 0.0;
    case ACT_TANH: return tanh(x);
    case ACT_ERF: return erf(x);
    case ACT_SWISH:
    case ACT_GELU:
    case ACT_MISH: return smooth_point(x, a).v;
    default: return NAN;
  }
}

double act_deriv(double x, Activation a) {
  switch (a) {
    case ACT_IDENTITY: return 1.0;
    case ACT_RELU: return x > 0.0 ? 1.0 : 0.0; /* relu'(0) = 0 by convention */
    case ACT_TANH: {
      double t = tanh(x);
      return 1.0 - t * t;
    }
    case ACT_ERF: return two_over_sqrt_pi * exp(-x * x);
    case ACT_SWISH:
    case ACT_GELU:
    case ACT_MISH: return smooth_point(x, a).d1;
    default: return NAN;
  }
}

double act_deriv2(double x, Activation a) {
  switch (a) {
    case ACT_IDENTITY:
    case ACT_RELU: return 0.0;
    case ACT_TANH: {
      double t = tanh(x);
      return -2.0 * t * (1.0 - t * t);
    }
    case ACT_ERF: return -2.0 * x * two_over_sqrt_pi * exp(-x * x);
    case ACT_SWISH:
    case ACT_GELU:
    case ACT_MISH: return smooth_point(x, a).d2;
    default: return NAN;
  }
}

/* Switch outside the loops so each loop body is branch-free (relu aside) and vectorisable. */
void act_forward(double *out /* n */, const double *in /* n */, size_t n, Activation a) {
  switch (a) {
    case ACT_IDENTITY:
      if (out != in) memmove(out, in, n * sizeof *out);
      break;
    case ACT_RELU: /* in place (training tapes) as a one-pointer loop: vectorised without an alias test */
      if (out == in)
        for (size_t i = 0; i < n; i++) out[i] = out[i] > 0.0 ? out[i] : 0.0;
      else
        for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0 ? in[i] : 0.0;
      break;
    case ACT_TANH:
      for (size_t i = 0; i < n; i++) out[i] = tanh(in[i]);
      break;
    case ACT_ERF:
      for (size_t i = 0; i < n; i++) out[i] = erf(in[i]);
      break;
    case ACT_SWISH:
      for (size_t i = 0; i < n; i++) out[i] = in[i] * sigmoid(in[i]);
      break;
    case ACT_GELU:
      for (size_t i = 0; i < n; i++) out[i] = 0.5 * in[i] * (1.0 + erf(in[i] * inv_sqrt2));
      break;
    case ACT_MISH:
      for (size_t i = 0; i < n; i++) out[i] = in[i] * tanh(softplus(in[i]));
      break;
    default:
      for (size_t i = 0; i < n; i++) out[i] = NAN;
  }
}

/* VJP and JVP of an elementwise map are the same product phi'(in) * v. */
static void act_scale_by_deriv(double *vout /* n */, const double *v /* n */,
                               const double *in /* n */, size_t n, Activation a) {
  switch (a) {
    case ACT_IDENTITY:
      if (vout != v) memmove(vout, v, n * sizeof *vout);
      break;
    case ACT_RELU: /* vout == v (in place): one written pointer, so the loop vectorises */
      if (vout == v)
        for (size_t i = 0; i < n; i++) vout[i] = in[i] > 0.0 ? vout[i] : 0.0;
      else
        for (size_t i = 0; i < n; i++) {
          const double vi = v[i]; /* loaded unconditionally: no control flow, so it vectorises */
          vout[i] = in[i] > 0.0 ? vi : 0.0;
        }
      break;
    case ACT_TANH:
      for (size_t i = 0; i < n; i++) {
        double t = tanh(in[i]);
        vout[i] = v[i] * (1.0 - t * t);
      }
      break;
    case ACT_ERF:
      for (size_t i = 0; i < n; i++) vout[i] = v[i] * two_over_sqrt_pi * exp(-in[i] * in[i]);
      break;
    case ACT_SWISH:
    case ACT_GELU:
    case ACT_MISH:
      for (size_t i = 0; i < n; i++) vout[i] = v[i] * smooth_point(in[i], a).d1;
      break;
    default:
      for (size_t i = 0; i < n; i++) vout[i] = NAN;
  }
}

void act_vjp(double *din /* n */, const double *dout /* n */, const double *in /* n */, size_t n,
             Activation a) {
  act_scale_by_deriv(din, dout, in, n, a);
}

void act_jvp(double *tout /* n */, const double *tin /* n */, const double *in /* n */, size_t n,
             Activation a) {
  act_scale_by_deriv(tout, tin, in, n, a);
}

/* ------------------------------------------------------------------ dense layer */

/* rows x cols array <- every row equal to mult * v, or zeros if v is NULL. */
static void fill_rows(double *out /* rows x cols */, const double *v /* cols or NULL */, double mult,
                      int rows, int cols) {
  if (!v) {
    memset(out, 0, (size_t)rows * (size_t)cols * sizeof *out);
    return;
  }
  for (int j = 0; j < cols; j++) out[j] = mult * v[j];
  for (int a = 1; a < rows; a++) memcpy(out + (size_t)a * cols, out, (size_t)cols * sizeof *out);
}

void dense_forward(double *out /* B x n_out */, const double *in /* B x n_in */,
                   const double *W /* n_out x n_in */, const double *b /* n_out or NULL */,
                   int B, int n_in, int n_out, double w_mult, double b_mult) {
  if (B <= 0 || n_out <= 0) return;
  /* Bias first, then one GEMM accumulating onto it: no second pass over out. */
  if (b) fill_rows(out, b, b_mult, B, n_out);
  if (n_in <= 0) {
    if (!b) fill_rows(out, NULL, 0.0, B, n_out);
    return;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in, w_mult, in, n_in, W, n_in,
              b ? 1.0 : 0.0, out, n_out);
}

void dense_forward_ref(double *out /* B x n_out */, const double *in /* B x n_in */,
                       const double *W /* n_out x n_in */, const double *b /* n_out or NULL */,
                       int B, int n_in, int n_out, double w_mult, double b_mult) {
  for (int a = 0; a < B; a++)
    for (int j = 0; j < n_out; j++) {
      double s = 0.0;
      for (int i = 0; i < n_in; i++) s += in[(size_t)a * n_in + i] * W[(size_t)j * n_in + i];
      out[(size_t)a * n_out + j] = w_mult * s + (b ? b_mult * b[j] : 0.0);
    }
}

void dense_vjp(double *din /* B x n_in or NULL */, double *dW /* n_out x n_in or NULL */,
               double *db /* n_out or NULL */, const double *dout /* B x n_out */,
               const double *in /* B x n_in */, const double *W /* n_out x n_in */,
               int B, int n_in, int n_out, double w_mult, double b_mult) {
  if (dW && B > 0 && n_in > 0 && n_out > 0) /* dW += w_mult dout^T in */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, w_mult, dout, n_out, in,
                n_in, 1.0, dW, n_in);
  if (db) /* row sums: B*n_out adds, negligible next to the GEMMs */
    for (int a = 0; a < B; a++) {
      const double *row = dout + (size_t)a * n_out;
      for (int j = 0; j < n_out; j++) db[j] += b_mult * row[j];
    }
  if (din && B > 0 && n_in > 0) { /* din = w_mult dout W (overwritten) */
    if (n_out > 0)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, w_mult, dout, n_out, W,
                  n_in, 0.0, din, n_in);
    else
      memset(din, 0, (size_t)B * (size_t)n_in * sizeof *din);
  }
}

void dense_vjp_ref(double *din /* B x n_in or NULL */, double *dW /* n_out x n_in or NULL */,
                   double *db /* n_out or NULL */, const double *dout /* B x n_out */,
                   const double *in /* B x n_in */, const double *W /* n_out x n_in */,
                   int B, int n_in, int n_out, double w_mult, double b_mult) {
  if (dW)
    for (int j = 0; j < n_out; j++)
      for (int i = 0; i < n_in; i++) {
        double s = 0.0;
        for (int a = 0; a < B; a++) s += dout[(size_t)a * n_out + j] * in[(size_t)a * n_in + i];
        dW[(size_t)j * n_in + i] += w_mult * s;
      }
  if (db)
    for (int j = 0; j < n_out; j++) {
      double s = 0.0;
      for (int a = 0; a < B; a++) s += dout[(size_t)a * n_out + j];
      db[j] += b_mult * s;
    }
  if (din)
    for (int a = 0; a < B; a++)
      for (int i = 0; i < n_in; i++) {
        double s = 0.0;
        for (int j = 0; j < n_out; j++) s += dout[(size_t)a * n_out + j] * W[(size_t)j * n_in + i];
        din[(size_t)a * n_in + i] = w_mult * s;
      }
}

void dense_jvp(double *tout /* B x n_out */, const double *tin /* B x n_in or NULL */,
               const double *in /* B x n_in */, const double *W /* n_out x n_in */,
               const double *tW /* n_out x n_in or NULL */, const double *tb /* n_out or NULL */,
               int B, int n_in, int n_out, double w_mult, double b_mult) {
  if (B <= 0 || n_out <= 0) return;
  /* beta = 0 for whichever term writes tout first; later terms accumulate. */
  double beta = 0.0;
  if (tb) {
    fill_rows(tout, tb, b_mult, B, n_out);
    beta = 1.0;
  }
  if (n_in > 0 && tin) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in, w_mult, tin, n_in, W, n_in,
                beta, tout, n_out);
    beta = 1.0;
  }
  if (n_in > 0 && tW) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in, w_mult, in, n_in, tW, n_in,
                beta, tout, n_out);
    beta = 1.0;
  }
  if (beta == 0.0) fill_rows(tout, NULL, 0.0, B, n_out); /* all tangents zero */
}

void dense_jvp_ref(double *tout /* B x n_out */, const double *tin /* B x n_in or NULL */,
                   const double *in /* B x n_in */, const double *W /* n_out x n_in */,
                   const double *tW /* n_out x n_in or NULL */, const double *tb /* n_out or NULL */,
                   int B, int n_in, int n_out, double w_mult, double b_mult) {
  for (int a = 0; a < B; a++)
    for (int j = 0; j < n_out; j++) {
      double s = 0.0;
      for (int i = 0; i < n_in; i++) {
        if (tin) s += tin[(size_t)a * n_in + i] * W[(size_t)j * n_in + i];
        if (tW) s += in[(size_t)a * n_in + i] * tW[(size_t)j * n_in + i];
      }
      tout[(size_t)a * n_out + j] = w_mult * s + (tb ? b_mult * tb[j] : 0.0);
    }
}

/* ------------------------------------------------------------------ R-operator (second order) */

void act_rvjp(double *rdin /* n */, const double *rdout /* n */, const double *dout /* n or NULL */,
              const double *in /* n */, const double *rin /* n */, size_t n, Activation a) {
  /* Without a first-order cotangent, or with phi'' = 0 (identity, relu), only R{dout} phi'. */
  if (!dout || a == ACT_IDENTITY || a == ACT_RELU) {
    act_scale_by_deriv(rdin, rdout, in, n, a);
    return;
  }
  switch (a) {
    case ACT_TANH:
      for (size_t i = 0; i < n; i++) {
        double t = tanh(in[i]), d1 = 1.0 - t * t;
        rdin[i] = rdout[i] * d1 - 2.0 * t * d1 * dout[i] * rin[i];
      }
      break;
    case ACT_ERF:
      for (size_t i = 0; i < n; i++) {
        double d1 = two_over_sqrt_pi * exp(-in[i] * in[i]);
        rdin[i] = rdout[i] * d1 - 2.0 * in[i] * d1 * dout[i] * rin[i];
      }
      break;
    case ACT_SWISH:
    case ACT_GELU:
    case ACT_MISH:
      for (size_t i = 0; i < n; i++) { /* one evaluation of the exponentials for phi' and phi'' */
        const ActPoint p = smooth_point(in[i], a);
        rdin[i] = rdout[i] * p.d1 + dout[i] * p.d2 * rin[i];
      }
      break;
    default:
      for (size_t i = 0; i < n; i++) rdin[i] = NAN;
  }
}

void act_rvjp_ref(double *rdin /* n */, const double *rdout /* n */, const double *dout /* n or NULL */,
                  const double *in /* n */, const double *rin /* n */, size_t n, Activation a) {
  for (size_t i = 0; i < n; i++) {
    double r = rdout[i] * act_deriv(in[i], a);
    if (dout) r += dout[i] * act_deriv2(in[i], a) * rin[i];
    rdin[i] = r;
  }
}

void dense_rvjp(double *rdin /* B x n_in or NULL */, double *rdW /* n_out x n_in or NULL */,
                double *rdb /* n_out or NULL */, const double *rdout /* B x n_out */,
                const double *dout /* B x n_out or NULL */, const double *in /* B x n_in */,
                const double *rin /* B x n_in or NULL */, const double *W /* n_out x n_in */,
                const double *vW /* n_out x n_in or NULL */, int B, int n_in, int n_out,
                double w_mult, double b_mult) {
  /* rdW first: it is the only reader of rin, which rdin may overwrite. */
  if (rdW && B > 0 && n_in > 0 && n_out > 0) {
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, w_mult, rdout, n_out, in,
                n_in, 1.0, rdW, n_in);
    if (dout && rin)
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, w_mult, dout, n_out, rin,
                  n_in, 1.0, rdW, n_in);
  }
  if (rdb)
    for (int a = 0; a < B; a++) {
      const double *row = rdout + (size_t)a * n_out;
      for (int j = 0; j < n_out; j++) rdb[j] += b_mult * row[j];
    }
  if (rdin && B > 0 && n_in > 0) {
    if (n_out > 0) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, w_mult, rdout, n_out, W,
                  n_in, 0.0, rdin, n_in);
      if (dout && vW)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, w_mult, dout, n_out,
                    vW, n_in, 1.0, rdin, n_in);
    } else {
      memset(rdin, 0, (size_t)B * (size_t)n_in * sizeof *rdin);
    }
  }
}

void dense_rvjp_ref(double *rdin /* B x n_in or NULL */, double *rdW /* n_out x n_in or NULL */,
                    double *rdb /* n_out or NULL */, const double *rdout /* B x n_out */,
                    const double *dout /* B x n_out or NULL */, const double *in /* B x n_in */,
                    const double *rin /* B x n_in or NULL */, const double *W /* n_out x n_in */,
                    const double *vW /* n_out x n_in or NULL */, int B, int n_in, int n_out,
                    double w_mult, double b_mult) {
  if (rdW)
    for (int j = 0; j < n_out; j++)
      for (int i = 0; i < n_in; i++) {
        double s = 0.0;
        for (int a = 0; a < B; a++) {
          s += rdout[(size_t)a * n_out + j] * in[(size_t)a * n_in + i];
          if (dout && rin) s += dout[(size_t)a * n_out + j] * rin[(size_t)a * n_in + i];
        }
        rdW[(size_t)j * n_in + i] += w_mult * s;
      }
  if (rdb)
    for (int j = 0; j < n_out; j++) {
      double s = 0.0;
      for (int a = 0; a < B; a++) s += rdout[(size_t)a * n_out + j];
      rdb[j] += b_mult * s;
    }
  if (rdin)
    for (int a = 0; a < B; a++)
      for (int i = 0; i < n_in; i++) {
        double s = 0.0;
        for (int j = 0; j < n_out; j++) {
          s += rdout[(size_t)a * n_out + j] * W[(size_t)j * n_in + i];
          if (dout && vW) s += dout[(size_t)a * n_out + j] * vW[(size_t)j * n_in + i];
        }
        rdin[(size_t)a * n_in + i] = w_mult * s;
      }
}

/* ------------------------------------------------------------------ loss */

double mse_loss(double *dout /* B x k or NULL */, const double *f /* B x k */,
                const double *y /* B x k */, int B, int k, double scale) {
  size_t n = (size_t)(B > 0 ? B : 0) * (size_t)(k > 0 ? k : 0);
  double sum_sq = 0.0;
  for (size_t i = 0; i < n; i++) {
    double r = f[i] - y[i];
    sum_sq += r * r;
    if (dout) dout[i] = scale * r; /* after reading f[i], so dout may alias f */
  }
  return 0.5 * sum_sq;
}

static const char *const loss_names[LOSS_COUNT] = {"mse", "xent"};

const char *loss_name(LossKind l) { return (l >= 0 && l < LOSS_COUNT) ? loss_names[l] : "unknown"; }

int loss_from_name(const char *name) {
  if (!name) return -1;
  for (int l = 0; l < LOSS_COUNT; l++)
    if (strcmp(name, loss_names[l]) == 0) return l;
  return -1;
}

/* Row-wise log-sum-exp with the maximum subtracted: p = softmax(row) into p, returns log sum exp. */
static double softmax_row(double *p /* k */, const double *row /* k */, int k) {
  double mx = row[0];
  for (int i = 1; i < k; i++)
    if (row[i] > mx) mx = row[i];
  double z = 0.0;
  for (int i = 0; i < k; i++) z += (p[i] = exp(row[i] - mx));
  for (int i = 0; i < k; i++) p[i] /= z;
  return mx + log(z);
}

double xent_loss(double *dout /* B x k or NULL */, const double *f /* B x k */, const double *y /* B x k */,
                 int B, int k, double scale) {
  double sum = 0.0;
  for (int a = 0; a < B; a++) {
    const double *fa = f + (size_t)a * k, *ya = y + (size_t)a * k;
    double p[LOSS_XENT_MAX_K];
    const double lse = softmax_row(p, fa, k);
    for (int i = 0; i < k; i++) sum -= ya[i] * (fa[i] - lse);
    if (dout)
      for (int i = 0; i < k; i++) dout[(size_t)a * k + i] = scale * (p[i] - ya[i]); /* may alias f: fa read above */
  }
  return sum;
}

double xent_loss_ref(double *dout /* B x k or NULL */, const double *f /* B x k */, const double *y /* B x k */,
                     int B, int k, double scale) {
  double sum = 0.0;
  for (int a = 0; a < B; a++) {
    double z = 0.0;
    for (int i = 0; i < k; i++) z += exp(f[(size_t)a * k + i]);
    for (int i = 0; i < k; i++) sum -= y[(size_t)a * k + i] * log(exp(f[(size_t)a * k + i]) / z);
    if (dout)
      for (int i = 0; i < k; i++) dout[(size_t)a * k + i] = scale * (exp(f[(size_t)a * k + i]) / z - y[(size_t)a * k + i]);
  }
  return sum;
}

void xent_hess_apply(double *r /* B x k, in place */, const double *f /* B x k */, int B, int k) {
  for (int a = 0; a < B; a++) {
    double p[LOSS_XENT_MAX_K], *ra = r + (size_t)a * k;
    softmax_row(p, f + (size_t)a * k, k);
    double pr = 0.0;
    for (int i = 0; i < k; i++) pr += p[i] * ra[i];
    for (int i = 0; i < k; i++) ra[i] = p[i] * (ra[i] - pr);
  }
}

void xent_hess_apply_ref(double *r /* B x k, in place */, const double *f /* B x k */, int B, int k) {
  for (int a = 0; a < B; a++) {
    double p[LOSS_XENT_MAX_K], out[LOSS_XENT_MAX_K], z = 0.0;
    for (int i = 0; i < k; i++) z += exp(f[(size_t)a * k + i]);
    for (int i = 0; i < k; i++) p[i] = exp(f[(size_t)a * k + i]) / z;
    for (int i = 0; i < k; i++) {
      out[i] = 0.0;
      for (int j = 0; j < k; j++) out[i] += ((i == j ? p[i] : 0.0) - p[i] * p[j]) * r[(size_t)a * k + j];
    }
    for (int i = 0; i < k; i++) r[(size_t)a * k + i] = out[i];
  }
}

double loss_eval(LossKind l, double *dout /* B x k or NULL */, const double *f /* B x k */,
                 const double *y /* B x k */, int B, int k, double scale) {
  return l == LOSS_XENT ? xent_loss(dout, f, y, B, k, scale) : mse_loss(dout, f, y, B, k, scale);
}

void loss_hess_apply(LossKind l, double *r /* B x k, in place */, const double *f /* B x k */, int B, int k) {
  if (l == LOSS_XENT) xent_hess_apply(r, f, B, k); /* mse: the identity */
}

int count_correct(const double *f /* B x k */, const int *label /* B */, int B, int k) {
  int correct = 0;
  for (int a = 0; a < B; a++) {
    if (label[a] < 0 || k <= 0) continue;
    const double *row = f + (size_t)a * k;
    int best = 0; /* first maximum wins ties */
    for (int i = 1; i < k; i++)
      if (row[i] > row[best]) best = i;
    correct += (best == label[a]);
  }
  return correct;
}
