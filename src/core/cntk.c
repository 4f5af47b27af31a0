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

static size_t planes_work_size(int H, int W);

size_t cntk_work_size(const CntkSpec *s)
{
  const size_t P = (size_t)s->H * s->W;
  return 2 * P * P + 4 * P + planes_work_size(s->H, s->W);
}

/* The layout of all P x P arrays is [h][w][h'][w'], so the pixel pairs whose first pixel lies in image
 * row y form a contiguous "plane" of W P doubles, and the pairs of one first pixel (y, w) a block
 * of P (flat over (h', w')).
 *
 * The 3x3 patch sum S(in)(p, p') = sum over the diagonal offsets o of in(p + o, p' + o), zero
 * outside, is separable: the column offsets first (patch_cols: T(y, w, ., .) from the blocks
 * (y, w - 1), (y, w), (y, w + 1), shifted by -1, 0, +1 within the flat block, 2 adds per entry),
 * then the row offsets (patch_rows: from the T planes y - 1, y, y + 1, shifted by -W, 0, +W,
 * 2 adds), against the 8 adds of the direct sum (cntk_pair_ref writes the 9 terms out). */

/* t = c + lo m(-1) + hi pl(+1) over a flat block: lo, hi are 0 where w' = 0 (W - 1), 1 elsewhere. */
static inline void patch_cols(double *restrict t /* P */, const double *restrict c /* P */, const double *restrict m /* P */,
                              const double *restrict pl /* P */, const double *restrict lo /* P */, const double *restrict hi /* P */, int P)
{
  if (P == 1) {
    t[0] = c[0];
    return;
  }
  t[0] = c[0] + hi[0] * pl[1];
  for (int j = 1; j < P - 1; j++) t[j] = c[j] + lo[j] * m[j - 1] + hi[j] * pl[j + 1];
  t[P - 1] = c[P - 1] + lo[P - 1] * m[P - 2];
}

/* o = up(-W) + c + dn(+W) over a flat block, the terms with h' + dy outside the image left out. */
static inline void patch_rows(double *restrict o /* P */, const double *restrict up /* P */, const double *restrict c /* P */,
                              const double *restrict dn /* P */, int P, int W)
{
  const int a = W < P ? W : P, b = P - W > a ? P - W : a;
  for (int j = 0; j < a; j++) o[j] = c[j] + (j + W < P ? dn[j + W] : 0.0);
  for (int j = a; j < b; j++) o[j] = up[j - W] + c[j] + dn[j + W];
  for (int j = b; j < P; j++) o[j] = up[j - W] + c[j];
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

/* Scratch of layer_planes: two planes (the producer's output), a ring of 3 T planes for each of two
 * arrays, the masks lo and hi and a zero block (P each). */
static size_t planes_work_size(int H, int W) { return 8 * (size_t)W * H * W + 3 * (size_t)H * W; }

/* One layer of the recursion in place, streamed plane by plane so that the intermediate arrays stay
 * in cache (L2):
 *   x1 != NULL (the first layer): k = a S(Sigma_0) + b2, th = k, Sigma_0 = X1^T X2 / C a plane at a
 *     time (one small GEMM per image row);
 *   else: k, th hold K_l, Theta_l; E and Ed Theta of a plane (relu_row_theta; pixels with
 *     themselves at correlation 1 when same) go straight into the column sums, and
 *     k = a S(E) + b2, th = k + a S(Ed Theta) overwrite plane h once planes h and h + 1 have been
 *     read. sa, ia, sb, ib: sqrt and 1 / sqrt of the layer's variances qa, qb. */
NTK_VECTOR_CLONES static void layer_planes(double *restrict k /* P x P */, double *restrict th /* P x P */, const double *x1 /* C x P */,
                                const double *x2 /* C x P */, int C, const double *sa /* P */, const double *ia /* P */, const double *sb /* P */,
                                const double *ib /* P */, const double *qa /* P */, const double *qb /* P */, int same, int H, int W, double a,
                                double b2, double *restrict pw /* planes_work_size */)
{
  const int P = H * W, nm = x1 ? 1 : 2;
  const size_t plane = (size_t)W * P;
  double *prod[2] = {pw, pw + plane}, *ring[2][3], *lo = pw + 8 * plane, *hi = lo + P, *zero = hi + P;
  for (int m = 0; m < 2; m++)
    for (int r = 0; r < 3; r++) ring[m][r] = pw + (2 + 3 * (size_t)m + r) * plane;
  for (int j = 0; j < P; j++) lo[j] = j % W != 0, hi[j] = j % W != W - 1, zero[j] = 0;
  for (int h = -1; h < H; h++) {
    for (int y = h < 0 ? 0 : h + 1; y <= h + 1 && y < H; y++) { /* plane y + 1 (the first pass also plane 0) */
      if (x1)
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, W, P, C, 1.0 / C, x1 + (size_t)y * W, P, x2, P, 0.0, prod[0], P);
      else
        for (int w = 0; w < W; w++) {
          const int p = y * W + w;
          const size_t r = (size_t)p * P, o = (size_t)w * P;
          relu_row_theta(prod[0] + o, prod[1] + o, sa[p], ia[p], sb, ib, k + r, th + r, P);
          if (same) { /* a pixel with itself: correlation 1 */
            relu_expect(&prod[0][o + p], &prod[1][o + p], qa[p], qb[p], k[r + p], 1);
            prod[1][o + p] *= th[r + p];
          }
        }
      for (int m = 0; m < nm; m++)
        for (int w = 0; w < W; w++) {
          const double *blk = prod[m] + (size_t)w * P;
          patch_cols(ring[m][y % 3] + (size_t)w * P, blk, w > 0 ? blk - P : zero, w < W - 1 ? blk + P : zero, lo, hi, P);
        }
    }
    if (h < 0) continue;
    for (int w = 0; w < W; w++) {
      double *o0 = k + ((size_t)h * W + w) * P, *o1 = th + ((size_t)h * W + w) * P;
      for (int m = 0; m < nm; m++) {
        const double *up = h > 0 ? ring[m][(h - 1) % 3] + (size_t)w * P : zero, *c = ring[m][h % 3] + (size_t)w * P,
                     *dn = h < H - 1 ? ring[m][(h + 1) % 3] + (size_t)w * P : zero;
        patch_rows(m ? o1 : o0, up, c, dn, P, W);
      }
      for (int j = 0; j < P; j++) o0[j] = a * o0[j] + b2;
      if (x1) memcpy(o1, o0, (size_t)P * sizeof *o1);
      else
        for (int j = 0; j < P; j++) o1[j] = o0[j] + a * o1[j];
    }
  }
}

NTK_VECTOR_CLONES void cntk_pair(double *K, double *Theta, const double *x1, const double *q1, const double *x2, const double *q2, int same, const CntkSpec *s,
               double *work)
{
  const int H = s->H, W = s->W, P = H * W, L = s->depth;
  const size_t PP = (size_t)P * P;
  double *k = work, *th = work + PP, *sa = work + 2 * PP, *ia = sa + P, *sb = ia + P, *ib = sb + P, *pw = ib + P;
  const double a = s->sigma_w * s->sigma_w / 9, b2 = s->sigma_b * s->sigma_b;
  layer_planes(k, th, x1, x2, s->C, NULL, NULL, NULL, NULL, NULL, NULL, 0, H, W, a, b2, pw); /* K_1 = Theta_1 */
  for (int l = 0; l < L; l++) {
    const double *qa = q1 + (size_t)l * P, *qb = q2 + (size_t)l * P;
    sqrt_and_inverse(sa, ia, qa, P);
    sqrt_and_inverse(sb, ib, qb, P);
    if (l < L - 1) layer_planes(k, th, NULL, NULL, 0, sa, ia, sb, ib, qa, qb, same, H, W, a, b2, pw);
  }
  /* the last layer: E and Ed Theta only summed (pooling), a row at a time; sa.. still the last layer's */
  double se = 0, sd = 0, *e = pw, *et = pw + P;
  const double *qa = q1 + (size_t)(L - 1) * P, *qb = q2 + (size_t)(L - 1) * P;
  for (int p = 0; p < P; p++) {
    const size_t r = (size_t)p * P;
    relu_row_theta(e, et, sa[p], ia[p], sb, ib, k + r, th + r, P);
    if (same) {
      relu_expect(&e[p], &et[p], qa[p], qb[p], k[r + p], 1);
      et[p] *= th[r + p];
    }
    row_sums(&se, &sd, e, et, P);
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
  const int sym = x1 == x2 && n1 == n2; /* a symmetric block: the pairs j >= i, mirrored */
  for (int i = 0; i < n1; i++)
    for (int j = sym ? i : 0; j < n2; j++) {
      const size_t ij = (size_t)i * n2 + j, ji = (size_t)j * n2 + i;
      cntk_pair(K ? &K[ij] : NULL, Theta ? &Theta[ij] : NULL, x1 + i * d, q1 + i * L * P, x2 + j * d, q2 + j * L * P, x1 == x2 && i == j, s,
                work);
      if (sym && K) K[ji] = K[ij];
      if (sym && Theta) Theta[ji] = Theta[ij];
    }
  free(q1), free(q2), free(work);
}

double cntk_pair_flops(const CntkSpec *s)
{
  const double P = (double)s->H * s->W;
  return P * P * (2.0 * s->C + 60.0 * s->depth + 2.0);
}
