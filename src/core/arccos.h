/* The relu arc-cosine expectations over a row of pairs, written so that the compiler vectorises
 * the loop: acos by fdlibm's rational approximation of asin (branch-free selects; within 1 ulp of
 * the correctly rounded acos over [-1, 1], checked against mpmath), sin(acos rho) as
 * sqrt((1 - rho)(1 + rho)). Used by the fc NTK (inf_kernels.c) and the CNTK (cntk.c). */
#ifndef NTK_ARCCOS_H
#define NTK_ARCCOS_H
#include <math.h>

/* A function whose loops call these, compiled for AVX-512, AVX2 and the baseline, the best picked
 * at load time (GCC target_clones). The clones run the same operations (-std=c11 contracts no FMA)
 * and give the same bits; not under the sanitizers, whose runtime does not resolve clones early. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define NTK_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NTK_VECTOR_CLONES
#endif

static inline double arccos_fast(double r)
{
  const double pS0 = 1.66666666666666657415e-01, pS1 = -3.25565818622400915405e-01, pS2 = 2.01212532134862925881e-01,
               pS3 = -4.00555345006794114027e-02, pS4 = 7.91534994289814532176e-04, pS5 = 3.47933107596021167570e-05,
               qS1 = -2.40339491173441421878e+00, qS2 = 2.02094576023350569471e+00, qS3 = -6.88283971605453293030e-01,
               qS4 = 7.70381505559019352791e-02;
  const double a = fabs(r);
  const int big = a >= 0.5;
  const double z = big ? (1 - a) * 0.5 : r * r;
  const double sz = sqrt(z);
  const double s = big ? sz : a;
  const double p = z * (pS0 + z * (pS1 + z * (pS2 + z * (pS3 + z * (pS4 + z * pS5)))));
  const double q = 1 + z * (qS1 + z * (qS2 + z * (qS3 + z * qS4)));
  const double w = s + s * (p / q); /* asin(s) */
  const double small = M_PI_2 - (r < 0 ? -w : w);
  const double large = r > 0 ? 2 * w : M_PI - 2 * w;
  return big ? large : small;
}

/* e[j] = E[relu(u) relu(v)], ed[j] = E[relu'(u) relu'(v)] for (u, v) ~ N(0, [[qa, c_j], [c_j, qb_j]]);
 * 0 and 0 where a variance is 0. */
static inline void relu_arccos_row(double *restrict e /* n */, double *restrict ed /* n */, double qa, const double *restrict qb /* n */,
                                   const double *restrict c /* n */, int n)
{
  for (int j = 0; j < n; j++) {
    const double s = sqrt(qa * qb[j]);
    double r = c[j] / s;
    r = r > 1 ? 1 : r;
    r = r < -1 ? -1 : r;
    const double th = arccos_fast(r);
    const double ev = s * (1 / (2 * M_PI)) * (sqrt((1 - r) * (1 + r)) + (M_PI - th) * r);
    const double dv = (M_PI - th) * (1 / (2 * M_PI));
    e[j] = s > 0 ? ev : 0.0;
    ed[j] = s > 0 ? dv : 0.0;
  }
}

#endif
