/* The relu arc-cosine expectations over a row of pairs, written so that the compiler vectorises
 * the loop with no division and one square root per element beyond sin(acos rho):
 *   - acos through asin(s) = s + s z R(z) (fdlibm's reduction: z = rho^2 for |rho| < 1/2, else
 *     z = (1 - |rho|) / 2 and s = sqrt z), with R a degree-12 polynomial in z on [0, 1/4] in place of
 *     fdlibm's rational p/q (Chebyshev interpolation in 50-digit arithmetic, relative error of R
 *     8e-17, which enters asin scaled by z R / (1 + z R) < 0.05), evaluated by Estrin's scheme
 *     with fused multiply-adds. Against mpmath's acos over [-1, 1] (uniform, and clustered at +-1
 *     and +-1/2) the maximum error is 1.14 ulp, mean 0.33 ulp, as for fdlibm's rational p/q in the
 *     same branch-free form (1.12 ulp; the maximum from pi/2 - w near -1/2); checked by
 *     tests/test_arccos.c (against glibc's acos) and tests/arccos_check.py (against mpmath);
 *   - sin(acos rho) as sqrt(1 - rho^2), 1 - rho^2 by one fma;
 *   - the callers pass sqrt(q) and 1 / sqrt(q) of the variances, computed once per sample (pixel),
 *     so rho = c (1/sqrt(qa)) (1/sqrt(qb)) and sqrt(qa qb) = sqrt(qa) sqrt(qb) cost two products.
 * Used by the fc NTK (inf_kernels.c) and the CNTK (cntk.c). */
#ifndef NTK_ARCCOS_H
#define NTK_ARCCOS_H
#include <math.h>

/* A function whose loops call these, compiled for AVX-512, FMA (Haswell on) and the baseline, the
 * best picked at load time (GCC target_clones). The clones run the same operations and give the
 * same bits: -std=c11 contracts nothing, and every fused multiply-add is an explicit fma(), which
 * is correctly rounded wherever it runs (one instruction in the avx512f and fma clones, glibc's
 * fma in the default one and in builds without clones). Not under the sanitizers, whose runtime
 * does not resolve clones early. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define NTK_VECTOR_CLONES __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define NTK_VECTOR_CLONES
#endif

static inline double arccos_fast(double r)
{
  /* R(z) = (asin(sqrt z) / sqrt z - 1) / z on [0, 1/4]: R(0) = 1/6 */
  const double c0 = 1.66666666666666685e-01, c1 = 7.49999999999843292e-02, c2 = 4.46428571463554288e-02, c3 = 3.03819441385312465e-02,
               c4 = 2.23721729421498886e-02, c5 = 1.73523927208699726e-02, c6 = 1.39712129735529329e-02, c7 = 1.14791774151849057e-02,
               c8 = 1.03228143501857793e-02, c9 = 5.45750671864035815e-03, c10 = 1.74008794426940214e-02, c11 = -1.48518870712472037e-02,
               c12 = 2.87578513674215663e-02;
  const double a = fabs(r);
  const int big = a >= 0.5;
  const double z = big ? (1 - a) * 0.5 : r * r;
  const double s = big ? sqrt(z) : a;
  const double z2 = z * z, z4 = z2 * z2;
  /* Estrin's scheme: short dependency chains */
  const double p01 = fma(c1, z, c0), p23 = fma(c3, z, c2), p45 = fma(c5, z, c4), p67 = fma(c7, z, c6), p89 = fma(c9, z, c8),
               p1011 = fma(c11, z, c10);
  const double p03 = fma(p23, z2, p01), p47 = fma(p67, z2, p45), p811 = fma(p1011, z2, p89);
  const double R = fma(z4, fma(z4, fma(z4, c12, p811), p47), p03);
  const double w = fma(s, z * R, s); /* asin(s) */
  const double small = M_PI_2 - (r < 0 ? -w : w);
  const double large = r > 0 ? 2 * w : M_PI - 2 * w;
  return big ? large : small;
}

/* f = sin(theta) + (pi - theta) cos(theta) and pt = pi - theta, theta = acos(r), r clamped to
 * [-1, 1] here: E[relu(u) relu(v)] = sd f / 2 pi and E[relu'(u) relu'(v)] = pt / 2 pi for
 * sqrt(Var u Var v) = sd and correlation r (callers fold the 1 / 2 pi into their own constants). */
static inline void relu_arccos_raw(double *f, double *pt, double r)
{
  r = r > 1 ? 1 : r;
  r = r < -1 ? -1 : r;
  *pt = M_PI - arccos_fast(r);
  *f = fma(*pt, r, sqrt(fma(-r, r, 1)));
}

/* e = E[relu(u) relu(v)], ed = E[relu'(u) relu'(v)] for sqrt(Var u Var v) = sd and correlation r
 * (clamped to [-1, 1] here); 0 and 0 where sd = 0. */
static inline void relu_arccos1(double *e, double *ed, double sd, double r)
{
  double f, pt;
  relu_arccos_raw(&f, &pt, r);
  *e = sd > 0 ? sd * (1 / (2 * M_PI)) * f : 0.0;
  *ed = sd > 0 ? pt * (1 / (2 * M_PI)) : 0.0;
}

/* sqrt(q) and 1 / sqrt(q) (0 for q = 0) of n variances. */
static inline void sqrt_and_inverse(double *restrict sq /* n */, double *restrict isq /* n */, const double *restrict q /* n */, int n)
{
  for (int j = 0; j < n; j++) {
    sq[j] = sqrt(q[j]);
    isq[j] = sq[j] > 0 ? 1 / sq[j] : 0.0;
  }
}

/* e[j] = E[relu(u) relu(v)], ed[j] = E[relu'(u) relu'(v)] for (u, v) ~ N(0, [[qa, c_j], [c_j, qb_j]]),
 * given sa = sqrt(qa), ia = 1 / sqrt(qa), sb, ib likewise (sqrt_and_inverse); 0 and 0 where a
 * variance is 0. */
static inline void relu_arccos_row(double *restrict e /* n */, double *restrict ed /* n */, double sa, double ia, const double *restrict sb /* n */,
                                   const double *restrict ib /* n */, const double *restrict c /* n */, int n)
{
  for (int j = 0; j < n; j++) relu_arccos1(&e[j], &ed[j], sa * sb[j], c[j] * (ia * ib[j]));
}

#endif
