/* Kernels for Wide ResNets: 2-d convolution, batch norm (train mode, split statistics), global
 * average pooling and the residual add. Same conventions as layers.h:
 *   - outputs first, then inputs, then sizes and scalars (workspace last);
 *   - activations are per-sample NCHW: a B x (C*H*W) row-major array holds sample a at a*C*H*W,
 *     channel-major within a sample (torch's contiguous NCHW);
 *   - parameter gradients are ACCUMULATED (+=), activation gradients OVERWRITTEN;
 *   - no PETSc, no MPI, no malloc: batch-norm statistics that span data-parallel ranks are returned
 *     to the caller as per-channel partial sums, which it reduces (model.h Reducer) and passes back.
 * Each optimised kernel has a *_ref twin written as the obvious loops.
 *
 * For each op there is: forward, VJP (reverse mode), JVP (forward mode), and what a Hessian-vector
 * product (Pearlmutter's R-operator applied to the backward pass) needs, the "R-VJP": given the
 * R-forward tangents of the op's input (rin = R{in}), the parameter direction (vW, ...) and R{dout}
 * (rdout), it returns R{din}, R{dW}, ... (rdin, rdW, ...), with the argument names and NULL rules of
 * layers.h dense_rvjp. The mathematics is written out in docs/layers.md.
 */
#ifndef NTK_CONV_H
#define NTK_CONV_H
#include <stddef.h>

/* ================================================================ conv2d
 * out[a, co, oy, ox] = w_mult * sum_{ci, i, j} W[co, ci, i, j] * in[a, ci, oy*s - p + i, ox*s - p + j]
 *                      + b_mult * b[co]
 * with zero padding (in = 0 outside 0 <= y < H, 0 <= x < W), s = stride, p = pad, like
 * torch.nn.functional.conv2d(in, w_mult*W, b_mult*b, stride=s, padding=p).
 * ntk parameterization: w_mult = sigma_w/sqrt(C_in*kh*kw), b_mult = sigma_b
 * (docs/conventions.md). */
typedef struct {
  int C_in, H, W;  /* input channels, height, width */
  int C_out;       /* output channels */
  int kh, kw;      /* kernel height, width */
  int stride, pad; /* the same along both axes */
} ConvShape;

/* 0 if the shape is usable (sizes >= 1, stride >= 1, 0 <= pad, output at least 1 x 1), else -1. */
int conv_shape_check(const ConvShape *s);
int conv_out_h(const ConvShape *s); /* (H + 2 pad - kh) / stride + 1 */
int conv_out_w(const ConvShape *s); /* (W + 2 pad - kw) / stride + 1 */
size_t conv_in_size(const ConvShape *s);  /* C_in * H * W, per sample */
size_t conv_out_size(const ConvShape *s); /* C_out * Ho * Wo, per sample */
size_t conv_w_size(const ConvShape *s);   /* C_out * C_in * kh * kw; fan_in = C_in * kh * kw */
double conv_flops(const ConvShape *s);    /* forward FLOPs per sample: 2 * C_out * fan_in * Ho * Wo */

/* Doubles of scratch the kernels need to process `chunk` samples per GEMM:
 * chunk * (C_in*kh*kw + C_out) * Ho*Wo. Every kernel below accepts any work_len >=
 * conv2d_workspace_size(s, 1) and uses the largest chunk that fits (results do not depend on it
 * beyond rounding); chunks of 4-16 samples reach GEMM speed. The kernels return 0, or -1 (nothing
 * written) if work_len is too small or the shape invalid. */
size_t conv2d_workspace_size(const ConvShape *s, int chunk);
/* 3x3 convs of stride 1 and pad 1 run conv2d_forward and conv2d_vjp as Winograd F(2x2, 3x3)
 * (2.25x fewer multiply-adds; the input gradient is the correlation of dout with the flipped,
 * transposed kernel, no col2im), whose workspace is 16 C_out C_in + chunk * 16 (C_in + C_out) *
 * ceil(H/2) ceil(W/2); conv2d_workspace_size is the larger of the two needs. The chunk for which
 * a shape's GEMMs reach their speed: 4, or for Winograd shapes enough samples for 256 tiles. */
int conv2d_good_chunk(const ConvShape *s);

int conv2d_forward(double *out /* B x C_out x Ho x Wo */, const double *in /* B x C_in x H x W */,
                   const double *W /* C_out x C_in x kh x kw */, const double *b /* C_out or NULL */,
                   int B, const ConvShape *s, double w_mult, double b_mult,
                   double *work /* work_len */, size_t work_len);
void conv2d_forward_ref(double *out /* B x C_out x Ho x Wo */, const double *in /* B x C_in x H x W */,
                        const double *W /* C_out x C_in x kh x kw */,
                        const double *b /* C_out or NULL */, int B, const ConvShape *s,
                        double w_mult, double b_mult);

/* VJP given dout = dL/dout:
 *   dW += w_mult * sum_a dout_a (*) in_a        (correlation of dout with the input patches)
 *   db += b_mult * sum_{a, oy, ox} dout[a, :, oy, ox]
 *   din = w_mult * conv_transpose(dout, W)       (OVERWRITTEN; col2im of W^T dout, except for 3x3
 *                                                 stride-1 pad-1 (Winograd, below) and 1x1 stride-1
 *                                                 convs (one GEMM per sample), which need no col2im)
 * Any of din, dW, db may be NULL to skip that product (din is NULL for the first layer). */
int conv2d_vjp(double *din /* B x C_in x H x W or NULL */, double *dW /* C_out x C_in x kh x kw or NULL */,
               double *db /* C_out or NULL */, const double *dout /* B x C_out x Ho x Wo */,
               const double *in /* B x C_in x H x W */, const double *W /* C_out x C_in x kh x kw */,
               int B, const ConvShape *s, double w_mult, double b_mult,
               double *work /* work_len */, size_t work_len);
void conv2d_vjp_ref(double *din /* B x C_in x H x W or NULL */,
                    double *dW /* C_out x C_in x kh x kw or NULL */, double *db /* C_out or NULL */,
                    const double *dout /* B x C_out x Ho x Wo */, const double *in /* B x C_in x H x W */,
                    const double *W /* C_out x C_in x kh x kw */, int B, const ConvShape *s,
                    double w_mult, double b_mult);

/* JVP: tout = w_mult * (conv(tin, W) + conv(in, tW)) + b_mult * tb (OVERWRITTEN).
 * tin, tW, tb may each be NULL (zero tangent). */
int conv2d_jvp(double *tout /* B x C_out x Ho x Wo */, const double *tin /* B x C_in x H x W or NULL */,
               const double *in /* B x C_in x H x W */, const double *W /* C_out x C_in x kh x kw */,
               const double *tW /* C_out x C_in x kh x kw or NULL */, const double *tb /* C_out or NULL */,
               int B, const ConvShape *s, double w_mult, double b_mult,
               double *work /* work_len */, size_t work_len);
void conv2d_jvp_ref(double *tout /* B x C_out x Ho x Wo */,
                    const double *tin /* B x C_in x H x W or NULL */, const double *in /* B x C_in x H x W */,
                    const double *W /* C_out x C_in x kh x kw */,
                    const double *tW /* C_out x C_in x kh x kw or NULL */,
                    const double *tb /* C_out or NULL */, int B, const ConvShape *s, double w_mult,
                    double b_mult);

/* R-VJP (HVP backward), with the names and NULL rules of layers.h dense_rvjp. The VJP is bilinear
 * in (dout, in/W), so with R{in} = rin, the parameter direction vW and R{dout} = rdout:
 *   rdW += w_mult * (rdout (*) in + dout (*) rin)     rdb += b_mult * sum rdout
 *   rdin = w_mult * (conv_transpose(rdout, W) + conv_transpose(dout, vW))   (OVERWRITTEN)
 * NULL: dout (zero first-order cotangent: the Gauss-Newton product, the VJP of rdout), rin (input
 * independent of theta), vW (zero direction), rdin / rdW / rdb (product not wanted).
 * rdin may alias rin (the parameter products, which read rin, run first). */
int conv2d_rvjp(double *rdin /* B x C_in x H x W or NULL */,
                double *rdW /* C_out x C_in x kh x kw or NULL */, double *rdb /* C_out or NULL */,
                const double *rdout /* B x C_out x Ho x Wo */,
                const double *dout /* B x C_out x Ho x Wo or NULL */,
                const double *in /* B x C_in x H x W */, const double *rin /* B x C_in x H x W or NULL */,
                const double *W /* C_out x C_in x kh x kw */,
                const double *vW /* C_out x C_in x kh x kw or NULL */, int B, const ConvShape *s,
                double w_mult, double b_mult, double *work /* work_len */, size_t work_len);
void conv2d_rvjp_ref(double *rdin /* B x C_in x H x W or NULL */,
                     double *rdW /* C_out x C_in x kh x kw or NULL */, double *rdb /* C_out or NULL */,
                     const double *rdout /* B x C_out x Ho x Wo */,
                     const double *dout /* B x C_out x Ho x Wo or NULL */,
                     const double *in /* B x C_in x H x W */, const double *rin /* B x C_in x H x W or NULL */,
                     const double *W /* C_out x C_in x kh x kw */,
                     const double *vW /* C_out x C_in x kh x kw or NULL */, int B, const ConvShape *s,
                     double w_mult, double b_mult);

/* ================================================================ batch norm, train mode
 * Per channel c, over the n = (global batch) * HW positions of that channel on all ranks:
 *   mu = (1/n) sum x,  var = (1/n) sum x^2 - mu^2 (biased),  rstd = 1/sqrt(var + eps),
 *   xhat = (x - mu) * rstd,  y = gamma * xhat + beta   (gamma = 1, beta = 0 without affine).
 * Every kernel is split in two: a *_stats kernel that returns LOCAL per-channel partial sums, which
 * the caller sums over ranks (Reducer) and passes to the second kernel. One rank: no reduction.
 * mean and rstd are kept by the caller between forward and backward (2C doubles per layer);
 * count is the GLOBAL n (the reduced part[2C]). gamma == NULL means no affine (then tgamma, dgamma,
 * beta, ... are ignored / must be NULL). HW = H*W; x is B x C x HW. */
#define BN_EPS_DEFAULT 1e-5 /* torch's default */
#define BN_STATS_LEN(C) (2 * (size_t)(C) + 1)   /* forward partial sums */
#define BN_VJP_STATS_LEN(C) (2 * (size_t)(C))   /* VJP / JVP partial sums */
#define BN_RVJP_STATS_LEN(C) (3 * (size_t)(C))  /* R-VJP partial sums */

/* part = [sum x (C) | sum x^2 (C) | count (1)] over the local B*HW positions (OVERWRITTEN). */
void bn_stats(double *part /* 2C+1 */, const double *x /* B x C x HW */, int B, int C, int HW);
/* From the reduced part: mean, rstd = 1/sqrt(var + eps), and var if non-NULL. */
void bn_finalize(double *mean /* C */, double *rstd /* C */, double *var /* C or NULL */,
                 const double *part /* 2C+1, reduced */, int C, double eps);
/* y = gamma * (x - mean) * rstd + beta; y may alias x. */
void bn_forward(double *y /* B x C x HW */, const double *x /* B x C x HW */,
                const double *mean /* C */, const double *rstd /* C */,
                const double *gamma /* C or NULL */, const double *beta /* C or NULL */,
                int B, int C, int HW);

/* VJP. Stats: part = [sum dy | sum dy*xhat] (local, OVERWRITTEN), and the parameter gradients
 * dbeta += sum dy, dgamma += sum dy*xhat from the LOCAL sums (data-parallel ranks sum gradients
 * later anyway). Then, with the reduced part and global count n:
 *   dx = gamma * rstd * (dy - part[0]/n - xhat * part[1]/n)   (OVERWRITTEN; dx may alias dy). */
void bn_vjp_stats(double *part /* 2C */, double *dgamma /* C or NULL */, double *dbeta /* C or NULL */,
                  const double *dy /* B x C x HW */, const double *x /* B x C x HW */,
                  const double *mean /* C */, const double *rstd /* C */, int B, int C, int HW);
void bn_vjp(double *dx /* B x C x HW */, const double *dy /* B x C x HW */,
            const double *x /* B x C x HW */, const double *mean /* C */, const double *rstd /* C */,
            const double *gamma /* C or NULL */, const double *part /* 2C, reduced */, double count,
            int B, int C, int HW);

/* JVP. Stats: part = [sum tx | sum tx*xhat] (local). Then with the reduced part:
 *   txhat = rstd * (tx - part[0]/n - xhat * part[1]/n)
 *   ty = gamma * txhat + tgamma * xhat + tbeta                 (OVERWRITTEN; ty may alias tx).
 * tx == NULL (input independent of the parameters): txhat = 0 and part is not read. */
void bn_jvp_stats(double *part /* 2C */, const double *tx /* B x C x HW */,
                  const double *x /* B x C x HW */, const double *mean /* C */,
                  const double *rstd /* C */, int B, int C, int HW);
void bn_jvp(double *ty /* B x C x HW */, const double *tx /* B x C x HW or NULL */,
            const double *x /* B x C x HW */, const double *mean /* C */, const double *rstd /* C */,
            const double *gamma /* C or NULL */, const double *tgamma /* C or NULL */,
            const double *tbeta /* C or NULL */, const double *jpart /* 2C reduced, or NULL */,
            double count, int B, int C, int HW);

/* R-VJP (HVP backward): the tangent of (dx, dgamma, dbeta) along (rx = R{x}, vgamma, rdy = R{dy})
 * at (x, gamma, dy). Needs jpart = the reduced bn_jvp_stats of rx (from the R-forward pass) and
 * vpart = the reduced bn_vjp_stats of dy. Stats: part = [sum rdy | sum rdy*xhat | sum dy*rxhat]
 * (local, OVERWRITTEN), rdbeta += sum rdy, rdgamma += sum (rdy*xhat + dy*rxhat) (local sums).
 * vpart and this part depend only on local data and jpart, so the caller can reduce them in ONE
 * call (a 5C buffer). Then (docs/layers.md)
 *   rdx = R{rstd} * (dxhat - mean dxhat - xhat mean(dxhat xhat))
 *         + rstd * (R{dxhat} - mean R{dxhat} - rxhat mean(dxhat xhat) - xhat R{mean(dxhat xhat)}).
 * NULL: dy (zero first-order cotangent, Gauss-Newton: rx, vgamma, jpart and vpart are then not
 * read), rx (input independent of theta), vgamma (zero direction), rdgamma / rdbeta.
 * rdx may alias rx or rdy (elementwise, each element read before it is written); call
 * bn_rvjp_stats before bn_rvjp overwrites rx. */
void bn_rvjp_stats(double *part /* 3C */, double *rdgamma /* C or NULL */, double *rdbeta /* C or NULL */,
                   const double *rdy /* B x C x HW */, const double *dy /* B x C x HW or NULL */,
                   const double *rx /* B x C x HW or NULL */, const double *x /* B x C x HW */,
                   const double *mean /* C */, const double *rstd /* C */,
                   const double *jpart /* 2C reduced, or NULL */, double count, int B, int C, int HW);
void bn_rvjp(double *rdx /* B x C x HW */, const double *rdy /* B x C x HW */,
             const double *dy /* B x C x HW or NULL */, const double *rx /* B x C x HW or NULL */,
             const double *x /* B x C x HW */, const double *mean /* C */, const double *rstd /* C */,
             const double *gamma /* C or NULL */, const double *vgamma /* C or NULL */,
             const double *jpart /* 2C reduced, or NULL */, const double *vpart /* 2C reduced, or NULL */,
             const double *rpart /* 3C reduced */, double count, int B, int C, int HW);

/* Whole-batch textbook twins (one rank, two-pass mean/variance, no split): same outputs as
 * stats -> finalize -> kernel, including the += of the parameter gradients. */
void bn_forward_ref(double *y /* B x C x HW */, const double *x /* B x C x HW */,
                    const double *gamma /* C or NULL */, const double *beta /* C or NULL */,
                    int B, int C, int HW, double eps);
void bn_vjp_ref(double *dx /* B x C x HW */, double *dgamma /* C or NULL */, double *dbeta /* C or NULL */,
                const double *dy /* B x C x HW */, const double *x /* B x C x HW */,
                const double *gamma /* C or NULL */, int B, int C, int HW, double eps);
void bn_jvp_ref(double *ty /* B x C x HW */, const double *tx /* B x C x HW or NULL */,
                const double *x /* B x C x HW */, const double *gamma /* C or NULL */,
                const double *tgamma /* C or NULL */, const double *tbeta /* C or NULL */,
                int B, int C, int HW, double eps);
void bn_rvjp_ref(double *rdx /* B x C x HW */, double *rdgamma /* C or NULL */,
                 double *rdbeta /* C or NULL */, const double *rdy /* B x C x HW */,
                 const double *dy /* B x C x HW or NULL */, const double *rx /* B x C x HW or NULL */,
                 const double *x /* B x C x HW */, const double *gamma /* C or NULL */,
                 const double *vgamma /* C or NULL */, int B, int C, int HW, double eps);

/* ================================================================ global average pooling
 * out[a, c] = (1/HW) sum_p in[a, c, p]. Linear, no parameters: the JVP is the forward applied to
 * tin, and the R-VJP is the VJP applied to rdout (no dout term). */
void global_avgpool_forward(double *out /* B x C */, const double *in /* B x C x HW */, int B, int C,
                            int HW);
/* din[a, c, p] = dout[a, c] / HW (OVERWRITTEN). */
void global_avgpool_vjp(double *din /* B x C x HW */, const double *dout /* B x C */, int B, int C,
                        int HW);
void global_avgpool_jvp(double *tout /* B x C */, const double *tin /* B x C x HW */, int B, int C,
                        int HW);

/* ================================================================ residual add
 * out = a + b over n = B * per-sample elements. Linear: JVP tout = ta + tb, VJP da = db = dout, and
 * the R-VJP is the VJP of rdout. A buffer read by two ops (the input of a block feeds both the
 * branch and the shortcut) gets the SUM of the two cotangents: overwrite with the first, then
 * add_inplace the second. */
void residual_add_forward(double *out /* n */, const double *a /* n */, const double *b /* n */,
                          size_t n);
/* da = dout, db = dout (either may be NULL, either may alias dout). */
void residual_add_vjp(double *da /* n or NULL */, double *db /* n or NULL */, const double *dout /* n */,
                      size_t n);
/* tout = ta + tb; NULL is a zero tangent. */
void residual_add_jvp(double *tout /* n */, const double *ta /* n or NULL */,
                      const double *tb /* n or NULL */, size_t n);
/* dst += src: cotangent fan-in for a buffer with two consumers. */
void add_inplace(double *dst /* n */, const double *src /* n */, size_t n);

#endif
