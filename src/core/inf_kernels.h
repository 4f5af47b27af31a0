/* Infinite-width kernels of a fully connected net in the ntk parameterization (docs/conventions.md
 * "The linearised model and the infinite-width limit"), as neural-tangents' stax computes them:
 *
 *   K_1(x, x') = sigma_w^2 x.x'/d + sigma_b^2,  Theta_1 = K_1,
 *   K_{l+1}    = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2,
 *   Theta_{l+1} = K_{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta_l,
 *
 * (u, v) ~ N(0, [[K_l(x,x), K_l(x,x')], [K_l(x,x'), K_l(x',x')]]), for L hidden layers; the NNGP
 * kernel is K_{L+1} and the NTK Theta_{L+1}. Without biases sigma_b = 0. The expectations are in
 * closed form for identity, relu (arc-cosine kernels of degree 1 and 0) and erf (arcsine kernels).
 * tanh is integrated numerically on a tensor grid over (z1, z2), u = sqrt(q1) z1,
 * v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2):
 *   - by default with the trapezoidal rule, spacing chosen from the variance (inf_kernels.c):
 *     relative error below 1e-10 at every variance, about 1e-12 typically (tests/test_inf_kernels.c
 *     checks 1e-10 against a fine midpoint rule for variances 0.01 to 20, correlations up to 0.9995);
 *   - with gh_points = n > 0 by n-point Gauss-Hermite, as neural-tangents does. Its measured
 *     relative error against the reference, for E[phi phi] / E[phi' phi']: variance 1: n = 32
 *     7e-7 / 5e-6, n = 64 5e-10 / 5e-9, n = 128 3e-13 / 7e-13; variance 10: n = 64 2e-4 / 2e-2,
 *     n = 128 1e-5 / 8e-4 (and up to 1e-9 at variances near 1.2). tanh's poles at +-i pi/2 slow Gauss-Hermite down as the variance grows,
 *     which is why it is not the default.
 * relu'(0) = 0, as in the network kernels, so a zero variance gives E[phi'(u) phi'(v)] = 0.
 *
 * Plain C over flat arrays: no PETSc, no MPI. The empirical Theta = J J^T / N of ntk.c has the same
 * per-output blocks divided by N: Theta_emp[(a,i),(b,j)] -> delta_ij Theta_{L+1}(x_a, x_b) / N as the
 * width grows. */
#ifndef NTK_INF_KERNELS_H
#define NTK_INF_KERNELS_H
#include <stdbool.h>
#include "layers.h"

typedef struct {
  int depth;              /* L >= 1 hidden layers */
  Activation act;
  double sigma_w, sigma_b;
  int gh_points;          /* tanh: 0 = trapezoidal rule (default), n > 0 = n-point Gauss-Hermite (n <= 160) */
  int zero;               /* always 0: the padding made explicit, so that the struct's bytes (the Gram
                             assembly's checkpoint key hashes them) are all defined */
} InfKernelSpec;
_Static_assert(sizeof(InfKernelSpec) == 2 * sizeof(double) + 4 * sizeof(int), "InfKernelSpec must have no padding bytes");

/* The activations with an analytic kernel here: identity, relu, erf, tanh. */
bool inf_kernel_activation_supported(Activation a);

/* E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]). */
void inf_gauss_expect(double *e_phi, double *e_dphi, double q1, double q2, double c, const InfKernelSpec *s);

/* K_{L+1} and Theta_{L+1} of one pair from the first layer's K_1(x,x) = k11, K_1(x',x') = k22 and
 * K_1(x,x') = k12 (the recursion carried through the diagonals as well). */
void inf_kernel_pair(double *K, double *Theta, double k11, double k22, double k12, const InfKernelSpec *s);

/* The n1 x n2 blocks K[i*n2 + j] = K_{L+1}(x1_i, x2_j), Theta likewise (either output may be NULL).
 * The per-sample diagonal recursions are computed once per sample and x1 x2^T by one GEMM; a sample
 * paired with itself takes its diagonal value exactly (the GEMM's x.x rounds differently). The same
 * array on both sides (x1 == x2, n1 == n2) is a symmetric block: x x^T by SYRK, the recursion on
 * the upper triangle, mirrored (exactly symmetric). relu runs all layers of a row in one vectorised
 * loop (arccos.h). */
void inf_kernel_block(double *K /* n1 x n2 */, double *Theta /* n1 x n2 */, const double *x1 /* n1 x d */, int n1,
                      const double *x2 /* n2 x d */, int n2, int d, const InfKernelSpec *s);
/* FLOPs of one entry (K and Theta of one pair) in inf_kernel_block, for the planner's cost model
 * (layout.c), counted from the code, not measured: the input product 2 d, and per layer about 50
 * for the closed forms (relu: the arc-cosine polynomial, a square root, the products), 50 n^2 for
 * tanh's n x n quadrature (n = gh_points, or the trapezoidal rule's 83 nodes at unit variance). */
double inf_kernel_pair_flops(int d, const InfKernelSpec *s);

/* The same, pair by pair with inf_kernel_pair: the reference for the one above. */
void inf_kernel_block_ref(double *K /* n1 x n2 */, double *Theta /* n1 x n2 */, const double *x1 /* n1 x d */, int n1,
                          const double *x2 /* n2 x d */, int n2, int d, const InfKernelSpec *s);

#endif
