/* The analytic convolutional NTK (CNTK, Arora et al. 2019) and NNGP of a plain convolutional net in
 * the ntk parameterization (docs/infinite_width.md), with neural-tangents' stax normalisation:
 *
 *   input x: C channels of H x W pixels (channel-major, as the data readers store images);
 *   L >= 1 layers: 3x3 convolution, stride 1, zero "same" padding, weights sigma_w / sqrt(9 C_in)
 *   (C_in the fan-in channels), bias sigma_b, then relu; global average pooling over the H W
 *   pixels; a dense readout sigma_w / sqrt(n) with bias sigma_b.
 *
 * For an image pair (x, x') the recursion runs over pixel pairs (p, p'), P = H W of each:
 *
 *   Sigma_0(p, p')  = x(p) . x'(p') / C
 *   K_1(p, p')      = sigma_w^2 / 9 sum_{o in 3x3} Sigma_0(p + o, p' + o) + sigma_b^2,    Theta_1 = K_1
 *   K_{l+1}(p, p')  = sigma_w^2 / 9 sum_o E_l(p + o, p' + o) + sigma_b^2
 *   Theta_{l+1}     = K_{l+1} + sigma_w^2 / 9 sum_o (Ed_l Theta_l)(p + o, p' + o)
 *   NNGP K          = sigma_w^2 mean_{p, p'} E_L(p, p') + sigma_b^2
 *   NTK Theta       = K + sigma_w^2 mean_{p, p'} (Ed_L Theta_L)(p, p')
 *
 * with E_l = E[relu(u) relu(v)], Ed_l = E[relu'(u) relu'(v)], (u, v) ~ N(0, [[q_l(x, p), K_l(p, p')],
 * [K_l(p, p'), q_l(x', p')]]) (arc-cosine kernels), q_l(x, p) = K_l(x, x)(p, p) the per-pixel
 * variances of one image (only they are needed of the image with itself), and terms outside the
 * image zero (the padding). A pixel of an image paired with itself has correlation exactly 1.
 *
 * Plain C over flat arrays: no PETSc, no MPI. */
#ifndef NTK_CNTK_H
#define NTK_CNTK_H
#include <stddef.h>

typedef struct {
  int depth;              /* L >= 1 convolution + relu layers */
  int C, H, W;            /* image shape */
  double sigma_w, sigma_b;
} CntkSpec;
_Static_assert(sizeof(CntkSpec) == 2 * sizeof(double) + 4 * sizeof(int), "CntkSpec must have no padding bytes (a checkpoint key)");

/* Per-pixel variances q_l(x, p), l = 1..L, of one image: q[(l - 1) * P + p]. */
void cntk_variances(double *q /* L x P */, const double *x /* C x H x W */, const CntkSpec *s);

/* Doubles of workspace cntk_pair needs: 2 P^2 + 8 W P + 7 P. */
size_t cntk_work_size(const CntkSpec *s);

/* NNGP *K and NTK *Theta (either may be NULL) of one image pair, from the images and their
 * variances; same: x1 and x2 are the same image. Each layer is streamed one image row of first
 * pixels at a time (a plane of W P pixel pairs): Sigma_0 by a small GEMM per plane, or E and
 * Ed Theta by the vectorised arc-cosine rows (arccos.h), go straight into the separable patch sums
 * (column offsets, then row offsets, over a ring of 3 planes), and K, Theta are updated in place;
 * the last layer is only summed. */
void cntk_pair(double *K, double *Theta, const double *x1 /* C x H x W */, const double *q1 /* L x P */, const double *x2 /* C x H x W */,
               const double *q2 /* L x P */, int same, const CntkSpec *s, double *work /* cntk_work_size */);

/* FLOPs of one image pair (K and Theta) in cntk_pair, for the planner's cost model (layout.c),
 * counted from the loops, not measured: per layer and pixel pair the two separable patch sums (12),
 * the relu expectations (about 45: the arc-cosine polynomial, a square root, their products) and
 * the Theta update (3); the input correlations 2 C and the pooling sums 2 per pixel pair. */
double cntk_pair_flops(const CntkSpec *s);

/* The same, by the definition pixel pair by pixel pair (variances computed inside): the reference. */
void cntk_pair_ref(double *K, double *Theta, const double *x1 /* C x H x W */, const double *x2 /* C x H x W */, int same, const CntkSpec *s);

/* The n1 x n2 blocks K[i * n2 + j], Theta[i * n2 + j] (either may be NULL); d = C H W. Images that
 * are the same array element (x1 == x2 and i == j) are treated as the same image. The same array on
 * both sides (x1 == x2, n1 == n2) is a symmetric block: the pairs j >= i, mirrored. */
void cntk_block(double *K /* n1 x n2 */, double *Theta /* n1 x n2 */, const double *x1 /* n1 x d */, int n1, const double *x2 /* n2 x d */,
                int n2, const CntkSpec *s);

#endif
