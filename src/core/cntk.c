/* The analytic CNTK and NNGP of a plain conv net (cntk.h). */
#include "cntk.h"
#include "arccos.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for variances a, b and covariance c (rho = 1 if one). */
static inline void relu_expect(double *e, double *ed, double a, double b, double c, int one)
{
  const double s = sqrt(a * b);
  if (!(s > 0)) {
    *e = 0, *ed = 0;
    return;
  }
  double rho = one ? 1.0 : c / s;
  rho = rho > 1 ? 1 : rho < -1 ? -1 : rho;
  const double th = acos(rho);
  *e = s / (2 * M_PI) * (sqrt(1 - rho * rho) + (M_PI - th) * rho);
  *ed = (M_PI - th) / (2 * M_PI);
}

void cntk_variances(double *q, const double *x, const CntkSpec *s)
{
  const int H = s->H, W = s->W, P = H * W, C = s->C;
  const double a = s->sigma_w * s->sigma_w / 9, b2 = s->sigma_b * s->sigma_b;
  double *v = malloc((size_t)P * sizeof *v);
  for (int p = 0; p < P; p++) {
    double t = 0;
    for (int c = 0; c < C; c++) t += x[(size_t)c * P + p] * x[(size_t)c * P + p];
    v[p] = t / C;
  }
  for (int l = 0; l < s->depth; l++) {
    double *ql = q + (size_t)l * P;
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) {
        double t = 0;
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++) {
            const int y = h + dy, z = w + dx;
            if (y >= 0 && y < H && z >= 0 && z < W) t += v[y * W + z];
          }
        ql[h * W + w] = a * t + b2;
      }
    for (int p = 0; p < P; p++) v[p] = ql[p] / 2; /* E[relu(u)^2] = q / 2 */
  }
  free(v);
}

size_t cntk_work_size(const CntkSpec *s)
{
  const size_t P = (size_t)s->H * s->W;
  return 4 * P * P + 4 * P;
}

/* out0 = a S(in0) + b2 and, if in1, out1 = out0 + a S(in1), with S(in)(p, p') = sum over the 3x3
 * diagonal offsets o of in(p + o, p' + o), zero outside; layout [h][w][h'][w'] (P x P): the next
 * layer's K and Theta from E and Ed Theta. Each output row (h, w, h', .) is written once from the
 * up to 9 shifted input rows, which are in cache (for fixed (h, w) they lie in 9 slabs of P; in
 * raster order a slab is reused within W slabs: one pass over memory per array). */
static void patch_sum(double *restrict out0, const double *restrict in0, double *restrict out1, const double *restrict in1, int H, int W, double a,
                      double b2)
{
  const size_t row = W;
  for (int h = 0; h < H; h++)
    for (int w = 0; w < W; w++)
      for (int h2 = 0; h2 < H; h2++) {
        double *o0 = out0 + (((size_t)h * W + w) * H + h2) * row, *o1 = out1 ? out1 + (((size_t)h * W + w) * H + h2) * row : NULL;
        for (int w2 = 0; w2 < W; w2++) o0[w2] = 0;
        if (o1)
          for (int w2 = 0; w2 < W; w2++) o1[w2] = 0;
        for (int dy = -1; dy <= 1; dy++) {
          const int y = h + dy, y2 = h2 + dy;
          if (y < 0 || y >= H || y2 < 0 || y2 >= H) continue;
          for (int dx = -1; dx <= 1; dx++) {
            const int z = w + dx;
            if (z < 0 || z >= W) continue;
            const int lo = dx < 0 ? 1 : 0, hi = dx > 0 ? W - 1 : W; /* w' with w' + dx inside */
            const size_t at = (((size_t)y * W + z) * H + y2) * row + dx;
            const double *i0 = in0 + at;
            for (int w2 = lo; w2 < hi; w2++) o0[w2] += i0[w2];
            if (o1) {
              const double *i1 = in1 + at;
              for (int w2 = lo; w2 < hi; w2++) o1[w2] += i1[w2];
            }
          }
        }
        for (int w2 = 0; w2 < W; w2++) o0[w2] = a * o0[w2] + b2;
        if (o1)
          for (int w2 = 0; w2 < W; w2++) o1[w2] = o0[w2] + a * o1[w2];
      }
}

/* One row of pixel pairs through the relu: e = E[relu relu], et = E[relu' relu'] th, from the
 * covariances k and the square roots (and inverses) of the variances (arccos.h). */
static inline void relu_row_theta(double *restrict e /* n */, double *restrict et /* n */, double sa, double ia, const double *restrict sb /* n */,
                                  const double *restrict ib /* n */, const double *restrict k /* n */, const double *restrict th /* n */, int n)
{
  for (int j = 0; j < n; j++) {
    double ev, dv;
    relu_arccos1(&ev, &dv, sa * sb[j], k[j] * (ia * ib[j]));
    e[j] = ev;
    et[j] = dv * th[j];
  }
}

/* Sums of two rows in 8 partial sums each (vectorised), added to *se, *st. */
static inline void row_sums(double *se, double *st, const double *restrict e /* n */, const double *restrict et /* n */, int n)
{
  double ae[8] = {0}, at[8] = {0};
  int j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; u++) ae[u] += e[j + u], at[u] += et[j + u];
  for (; j < n; j++) ae[0] += e[j], at[0] += et[j];
  double a = 0, b = 0;
  for (int u = 0; u < 8; u++) a += ae[u], b += at[u];
  *se += a, *st += b;
}

NTK_VECTOR_CLONES void cntk_pair(double *K, double *Theta, const double *x1, const double *q1, const double *x2, const double *q2, int same, const CntkSpec *s,
               double *work)
{
  const int H = s->H, W = s->W, P = H * W, L = s->depth;
  const size_t PP = (size_t)P * P;
  double *k = work, *th = work + PP, *e = work + 2 * PP, *ed = work + 3 * PP, *sa = work + 4 * PP, *ia = sa + P, *sb = ia + P, *ib = sb + P;
  const double a = s->sigma_w * s->sigma_w / 9, b2 = s->sigma_b * s->sigma_b;
  /* Sigma_0 = X1^T X2 / C (channel-major images: C x P) */
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, P, s->C, 1.0 / s->C, x1, P, x2, P, 0.0, e, P);
  patch_sum(k, e, NULL, NULL, H, W, a, b2);
  memcpy(th, k, PP * sizeof *th);
  double se = 0, sd = 0;
  for (int l = 0; l < L; l++) {
    const double *qa = q1 + (size_t)l * P, *qb = q2 + (size_t)l * P;
    const int last = l == L - 1; /* the last layer's E and Ed Theta are only summed (pooling) */
    sqrt_and_inverse(sa, ia, qa, P);
    sqrt_and_inverse(sb, ib, qb, P);
    for (int p = 0; p < P; p++) {
      const size_t r = (size_t)p * P, o = last ? 0 : r;
      relu_row_theta(e + o, ed + o, sa[p], ia[p], sb, ib, k + r, th + r, P);
      if (same) { /* a pixel with itself: correlation 1 */
        relu_expect(&e[o + p], &ed[o + p], qa[p], qb[p], k[r + p], 1);
        ed[o + p] *= th[r + p];
      }
      if (last) row_sums(&se, &sd, e, ed, P);
    }
    if (!last) patch_sum(k, e, th, ed, H, W, a, b2);
  }
  const double w2 = s->sigma_w * s->sigma_w, kk = w2 * se / (double)PP + b2;
  if (K) *K = kk;
  if (Theta) *Theta = kk + w2 * sd / (double)PP;
}

void cntk_pair_ref(double *K, double *Theta, const double *x1, const double *x2, int same, const CntkSpec *s)
{
  const int H = s->H, W = s->W, P = H * W, C = s->C, L = s->depth;
  const size_t PP = (size_t)P * P;
  double *q1 = malloc((size_t)L * P * sizeof *q1), *q2 = malloc((size_t)L * P * sizeof *q2);
  cntk_variances(q1, x1, s);
  cntk_variances(q2, x2, s);
  double *prev_e = malloc(PP * sizeof *prev_e), *prev_t = malloc(PP * sizeof *prev_t), *k = malloc(PP * sizeof *k), *th = malloc(PP * sizeof *th);
  const double a = s->sigma_w * s->sigma_w / 9, b2 = s->sigma_b * s->sigma_b;
  /* prev_e: Sigma_0, prev_t: 0 (the input has no tangent) */
  for (int p = 0; p < P; p++)
    for (int p2 = 0; p2 < P; p2++) {
      double t = 0;
      for (int c = 0; c < C; c++) t += x1[(size_t)c * P + p] * x2[(size_t)c * P + p2];
      prev_e[(size_t)p * P + p2] = t / C, prev_t[(size_t)p * P + p2] = 0;
    }
  double ke = 0, kt = 0;
  for (int l = 0; l <= L; l++) {
    if (l == L) { /* pooling and readout */
      for (size_t i = 0; i < PP; i++) ke += prev_e[i], kt += prev_t[i];
      break;
    }
    /* layer l + 1: K and Theta at every pixel pair, the 3x3 sums written out */
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++)
        for (int h2 = 0; h2 < H; h2++)
          for (int w2 = 0; w2 < W; w2++) {
            double se = 0, st = 0;
            for (int dy = -1; dy <= 1; dy++)
              for (int dx = -1; dx <= 1; dx++) {
                const int y = h + dy, z = w + dx, y2 = h2 + dy, z2 = w2 + dx;
                if (y < 0 || y >= H || z < 0 || z >= W || y2 < 0 || y2 >= H || z2 < 0 || z2 >= W) continue;
                const size_t j = (size_t)(y * W + z) * P + (y2 * W + z2);
                se += prev_e[j], st += prev_t[j];
              }
            const size_t i = (size_t)(h * W + w) * P + (h2 * W + w2);
            k[i] = a * se + b2;
            th[i] = k[i] + a * st;
          }
    /* relu: E and Ed Theta */
    for (int p = 0; p < P; p++)
      for (int p2 = 0; p2 < P; p2++) {
        const size_t i = (size_t)p * P + p2;
        const double va = q1[(size_t)l * P + p], vb = q2[(size_t)l * P + p2], sq = sqrt(va * vb);
        double rho = same && p == p2 ? 1.0 : k[i] / sq;
        if (rho > 1) rho = 1;
        if (rho < -1) rho = -1;
        const double ang = acos(rho);
        prev_e[i] = sq / (2 * M_PI) * (sin(ang) + (M_PI - ang) * cos(ang));
        prev_t[i] = (M_PI - ang) / (2 * M_PI) * th[i];
      }
  }
  const double w2 = s->sigma_w * s->sigma_w, kk = w2 * ke / (double)PP + b2;
  if (K) *K = kk;
  if (Theta) *Theta = kk + w2 * kt / (double)PP;
  free(q1), free(q2), free(prev_e), free(prev_t), free(k), free(th);
}

void cntk_block(double *K, double *Theta, const double *x1, int n1, const double *x2, int n2, const CntkSpec *s)
{
  if (n1 <= 0 || n2 <= 0) return;
  const size_t P = (size_t)s->H * s->W, d = (size_t)s->C * P, L = (size_t)s->depth;
  double *q1 = malloc((size_t)n1 * L * P * sizeof *q1), *q2 = malloc((size_t)n2 * L * P * sizeof *q2);
  double *work = malloc(cntk_work_size(s) * sizeof *work);
  for (int i = 0; i < n1; i++) cntk_variances(q1 + i * L * P, x1 + i * d, s);
  for (int j = 0; j < n2; j++) cntk_variances(q2 + j * L * P, x2 + j * d, s);
  for (int i = 0; i < n1; i++)
    for (int j = 0; j < n2; j++) {
      const size_t ij = (size_t)i * n2 + j;
      cntk_pair(K ? &K[ij] : NULL, Theta ? &Theta[ij] : NULL, x1 + i * d, q1 + i * L * P, x2 + j * d, q2 + j * L * P, x1 == x2 && i == j, s,
                work);
    }
  free(q1), free(q2), free(work);
}
