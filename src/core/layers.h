/* Layer kernels: plain C over flat arrays, in the style of llm.c.
 *
 * Conventions for every kernel:
 *   - outputs come first in the argument list, then inputs, then sizes and scalars;
 *   - activations are row-major, one sample per row: a B x n array holds sample a at a*n;
 *   - parameter tensors are pointers into the model's one flat parameter buffer;
 *   - gradients with respect to parameters are ACCUMULATED (+=) so that chunks of a batch, or
 *     several uses of one tensor, can add into the same buffer; gradients with respect to
 *     activations are OVERWRITTEN;
 *   - no PETSc, no MPI: a kernel sees only memory.
 * Each optimised kernel has a *_ref twin written as the obvious loops; tests compare the two.
 */
#ifndef NTK_LAYERS_H
#define NTK_LAYERS_H
#include <stddef.h>

/* swish(x) = x sigmoid(x) (SiLU); gelu(x) = x Phi(x), the exact erf form (Phi the standard normal
 * CDF, torch's approximate='none'); mish(x) = x tanh(softplus(x)). */
typedef enum { ACT_IDENTITY = 0, ACT_RELU, ACT_TANH, ACT_ERF, ACT_SWISH, ACT_GELU, ACT_MISH, ACT_COUNT } Activation;

/* Name <-> enum ("identity", "relu", "tanh", "erf", "swish", "gelu", "mish"). act_from_name returns
 * -1 if unknown. */
const char *act_name(Activation a);
int act_from_name(const char *name);

/* ---- activations (elementwise, n = total elements) ---- */
/* out = phi(in); out may alias in only if the caller no longer needs in (backward needs it). */
void act_forward(double *out /* n */, const double *in /* n */, size_t n, Activation a);
/* din = dout * phi'(in); din may alias dout. */
void act_vjp(double *din /* n */, const double *dout /* n */, const double *in /* n */, size_t n,
             Activation a);
/* tout = phi'(in) * tin; tout may alias tin. */
void act_jvp(double *tout /* n */, const double *tin /* n */, const double *in /* n */, size_t n,
             Activation a);
/* Pointwise derivatives, for tests and second-order code. relu'(0) = 0, relu''= 0. */
double act_value(double x, Activation a);
double act_deriv(double x, Activation a);
double act_deriv2(double x, Activation a);

/* ---- dense (fully connected) layer ----
 * out = w_mult * in W^T + b_mult * b, with W stored n_out x n_in (row-major, like torch Linear).
 * b may be NULL (no bias). w_mult/b_mult carry the parameterization (ntk: sigma_w/sqrt(fan_in),
 * sigma_b; sp and mup: 1, 1). */
void dense_forward(double *out /* B x n_out */, const double *in /* B x n_in */,
                   const double *W /* n_out x n_in */, const double *b /* n_out or NULL */,
                   int B, int n_in, int n_out, double w_mult, double b_mult);
void dense_forward_ref(double *out /* B x n_out */, const double *in /* B x n_in */,
                       const double *W /* n_out x n_in */, const double *b /* n_out or NULL */,
                       int B, int n_in, int n_out, double w_mult, double b_mult);

/* Backward (VJP) given dout = dL/dout:
 *   dW += w_mult * dout^T in,  db += b_mult * sum_a dout[a,:],  din = w_mult * dout W.
 * Any of din, dW, db may be NULL to skip that product (din is NULL for the first layer). */
void dense_vjp(double *din /* B x n_in or NULL */, double *dW /* n_out x n_in or NULL */,
               double *db /* n_out or NULL */, const double *dout /* B x n_out */,
               const double *in /* B x n_in */, const double *W /* n_out x n_in */,
               int B, int n_in, int n_out, double w_mult, double b_mult);
void dense_vjp_ref(double *din /* B x n_in or NULL */, double *dW /* n_out x n_in or NULL */,
                   double *db /* n_out or NULL */, const double *dout /* B x n_out */,
                   const double *in /* B x n_in */, const double *W /* n_out x n_in */,
                   int B, int n_in, int n_out, double w_mult, double b_mult);

/* Forward mode (JVP): tout = w_mult * (tin W^T + in tW^T) + b_mult * tb.
 * tin may be NULL (input does not depend on the parameters), tW/tb may be NULL (zero tangent). */
void dense_jvp(double *tout /* B x n_out */, const double *tin /* B x n_in or NULL */,
               const double *in /* B x n_in */, const double *W /* n_out x n_in */,
               const double *tW /* n_out x n_in or NULL */, const double *tb /* n_out or NULL */,
               int B, int n_in, int n_out, double w_mult, double b_mult);
void dense_jvp_ref(double *tout /* B x n_out */, const double *tin /* B x n_in or NULL */,
                   const double *in /* B x n_in */, const double *W /* n_out x n_in */,
                   const double *tW /* n_out x n_in or NULL */, const double *tb /* n_out or NULL */,
                   int B, int n_in, int n_out, double w_mult, double b_mult);

/* ---- second order: Pearlmutter's R-operator for forward-over-reverse Hessian products ----
 * R{.} is the directional derivative along a parameter direction v. Given the forward values,
 * the first-order cotangents (dout) and the tangents (R{in}) of the R-forward pass (the JVP), the
 * R-backward pass differentiates the VJP once more. dout == NULL means a zero first-order
 * cotangent: the kernel then reduces to the VJP of R{dout}, which is the Gauss-Newton product. */

/* Activation: R{din} = R{dout} * phi'(in) + dout * phi''(in) * R{in}.
 * rdin may alias rin (elementwise: each element is read before it is written) or rdout.
 * relu'' is taken as 0 (the kink at 0 has measure zero). */
void act_rvjp(double *rdin /* n */, const double *rdout /* n */, const double *dout /* n or NULL */,
              const double *in /* n */, const double *rin /* n */, size_t n, Activation a);
void act_rvjp_ref(double *rdin /* n */, const double *rdout /* n */, const double *dout /* n or NULL */,
                  const double *in /* n */, const double *rin /* n */, size_t n, Activation a);

/* Dense layer, out = w_mult in W^T + b_mult b, VJP dW = w_mult dout^T in, db = b_mult sum dout,
 * din = w_mult dout W. Its R-operator (vW = R{W}, rin = R{in}, rdout = R{dout}):
 *   rdW += w_mult (rdout^T in + dout^T rin),  rdb += b_mult sum_a rdout[a,:],
 *   rdin = w_mult (rdout W + dout vW)         (overwritten).
 * NULL: dout (zero cotangent, Gauss-Newton), rin (input independent of theta: first layer),
 * vW (zero direction), rdW / rdb / rdin (product not wanted). rdin may alias rin: rdW reads rin
 * before rdin is written. No other aliasing. */
void dense_rvjp(double *rdin /* B x n_in or NULL */, double *rdW /* n_out x n_in or NULL */,
                double *rdb /* n_out or NULL */, const double *rdout /* B x n_out */,
                const double *dout /* B x n_out or NULL */, const double *in /* B x n_in */,
                const double *rin /* B x n_in or NULL */, const double *W /* n_out x n_in */,
                const double *vW /* n_out x n_in or NULL */, int B, int n_in, int n_out,
                double w_mult, double b_mult);
void dense_rvjp_ref(double *rdin /* B x n_in or NULL */, double *rdW /* n_out x n_in or NULL */,
                    double *rdb /* n_out or NULL */, const double *rdout /* B x n_out */,
                    const double *dout /* B x n_out or NULL */, const double *in /* B x n_in */,
                    const double *rin /* B x n_in or NULL */, const double *W /* n_out x n_in */,
                    const double *vW /* n_out x n_in or NULL */, int B, int n_in, int n_out,
                    double w_mult, double b_mult);

/* ---- loss (docs/conventions.md: L = 1/(2N) sum_a ||f_a - y_a||^2) ----
 * Returns sum_a ||f_a - y_a||^2 / 2 over these B samples (the caller divides by the global N, so
 * data-parallel ranks can sum their parts), and writes dout = scale * (f - y) if dout != NULL
 * (scale = 1/N gives dL/df). */
double mse_loss(double *dout /* B x k or NULL */, const double *f /* B x k */,
                const double *y /* B x k */, int B, int k, double scale);

/* ---- the loss of a run (-loss): mse (above) or softmax cross-entropy ----
 * xent: L = (1/N) sum_a CE_a, CE_a = -sum_i y_ai log softmax(f_a)_i, for targets y_a that are
 * probability vectors (one-hot labels). dL/df_a = (softmax(f_a) - y_a)/N and the loss's own
 * second derivative per sample is H_a = diag(p_a) - p_a p_a^T (p_a = softmax(f_a)), which does
 * not involve y. The phase theory of docs/conventions.md covers MSE only. */
typedef enum { LOSS_MSE = 0, LOSS_XENT, LOSS_COUNT } LossKind;
#define LOSS_XENT_MAX_K 4096 /* outputs per sample the softmax kernels accept (stack rows) */
const char *loss_name(LossKind l);     /* "mse", "xent" */
int loss_from_name(const char *name);  /* -1 if unknown */
/* Returns sum_a CE_a over these B samples; dout = scale * (softmax(f) - y) if dout != NULL
 * (may alias f). Row maxima are subtracted before exp. */
double xent_loss(double *dout /* B x k or NULL */, const double *f /* B x k */, const double *y /* B x k */,
                 int B, int k, double scale);
double xent_loss_ref(double *dout /* B x k or NULL */, const double *f /* B x k */, const double *y /* B x k */,
                     int B, int k, double scale);
/* r_a <- (diag(p_a) - p_a p_a^T) r_a for every sample: the loss's Hessian in output space. */
void xent_hess_apply(double *r /* B x k, in place */, const double *f /* B x k */, int B, int k);
void xent_hess_apply_ref(double *r /* B x k, in place */, const double *f /* B x k */, int B, int k);
/* The loss of kind l: mse_loss (sum of half squares) or xent_loss (sum of CE), same conventions. */
double loss_eval(LossKind l, double *dout /* B x k or NULL */, const double *f /* B x k */,
                 const double *y /* B x k */, int B, int k, double scale);
/* r <- H_loss r per sample (mse: unchanged; xent: xent_hess_apply). */
void loss_hess_apply(LossKind l, double *r /* B x k, in place */, const double *f /* B x k */, int B, int k);

/* Number of samples whose argmax_i f[a,i] equals label[a]; labels < 0 are skipped. */
int count_correct(const double *f /* B x k */, const int *label /* B */, int B, int k);

#endif
