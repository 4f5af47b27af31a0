/* Wide-ResNet kernels (see conv.h for the conventions and docs/layers.md for the mathematics).
 *
 * conv2d: im2col of a chunk of samples into a K x (chunk*P) matrix (K = C_in*kh*kw, P = Ho*Wo),
 * then one GEMM per chunk; the GEMM result is channel-major across the chunk (C_out x chunk*P), so
 * it is scattered back to per-sample NCHW (and dout gathered the other way). The scatter/gather is
 * O(C_out*P) per sample against O(C_out*K*P) for the GEMM.
 * Outputs must not alias inputs (except where conv.h says so). */
#include "conv.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ shapes */

int conv_out_h(const ConvShape *s) {
  return s->stride > 0 ? (s->H + 2 * s->pad - s->kh) / s->stride + 1 : 0;
}
int conv_out_w(const ConvShape *s) {
  return s->stride > 0 ? (s->W + 2 * s->pad - s->kw) / s->stride + 1 : 0;
}

int conv_shape_check(const ConvShape *s) {
  if (!s || s->C_in < 1 || s->H < 1 || s->W < 1 || s->C_out < 1 || s->kh < 1 || s->kw < 1 ||
      s->stride < 1 || s->pad < 0)
    return -1;
  if (s->H + 2 * s->pad < s->kh || s->W + 2 * s->pad < s->kw) return -1;
  return 0;
}

size_t conv_in_size(const ConvShape *s) { return (size_t)s->C_in * s->H * s->W; }
size_t conv_out_size(const ConvShape *s) {
  return (size_t)s->C_out * conv_out_h(s) * conv_out_w(s);
}
size_t conv_w_size(const ConvShape *s) { return (size_t)s->C_out * s->C_in * s->kh * s->kw; }
double conv_flops(const ConvShape *s) {
  return 2.0 * (double)conv_w_size(s) * conv_out_h(s) * conv_out_w(s);
}

/* Winograd F(2x2, 3x3) (below) serves 3x3 convs of stride 1 and pad 1: 16 transformed weight
 * planes (C_out x C_in each), then per chunk of samples the transformed input (16 x C_in x T) and
 * product (16 x C_out x T) over T = chunk * tiles 2x2 output tiles. */
static int wino_ok(const ConvShape *s) { return s->kh == 3 && s->kw == 3 && s->stride == 1 && s->pad == 1; }
static size_t wino_tiles(const ConvShape *s) { return (size_t)((s->H + 1) / 2) * (size_t)((s->W + 1) / 2); }
static size_t wino_pad_len(const ConvShape *s);
static size_t wino_fixed(const ConvShape *s) { return 16 * (size_t)s->C_out * (size_t)s->C_in + wino_pad_len(s); }
static size_t wino_per_sample(const ConvShape *s) { return 16 * ((size_t)s->C_in + (size_t)s->C_out) * wino_tiles(s); }

static size_t im2col_workspace_size(const ConvShape *s, int chunk) {
  size_t K = (size_t)s->C_in * s->kh * s->kw, P = (size_t)conv_out_h(s) * conv_out_w(s);
  return (size_t)chunk * (K + (size_t)s->C_out) * P;
}

size_t conv2d_workspace_size(const ConvShape *s, int chunk) {
  if (conv_shape_check(s) || chunk < 1) return 0;
  size_t n = im2col_workspace_size(s, chunk);
  if (wino_ok(s)) {
    size_t w = wino_fixed(s) + (size_t)chunk * wino_per_sample(s);
    if (w > n) n = w;
  }
  return n;
}

int conv2d_good_chunk(const ConvShape *s) {
  if (conv_shape_check(s)) return 1;
  if (!wino_ok(s)) return 4;
  const size_t t = wino_tiles(s), c = (256 + t - 1) / t; /* GEMMs over >= 256 tiles */
  return c < 4 ? 4 : c > 64 ? 64 : (int)c;
}

/* Largest chunk (<= B) whose im2col workspace fits; 0 if not even one sample fits. */
static int pick_chunk(const ConvShape *s, int B, size_t work_len) {
  if (conv_shape_check(s) || !work_len || work_len < conv2d_workspace_size(s, 1)) return 0;
  size_t per = im2col_workspace_size(s, 1);
  size_t c = work_len / per;
  if (c > (size_t)B) c = (size_t)B;
  return (int)c;
}

/* ------------------------------------------------------------------ im2col / col2im */

/* Valid output columns [*lo, *hi) for kernel column j: 0 <= ox*stride - pad + j < W. */
static void valid_range(int *lo, int *hi, int j, int n_in, int n_out, int stride, int pad) {
  int a = pad - j; /* need ox*stride >= a */
  int l = a > 0 ? (a + stride - 1) / stride : 0;
  int b = n_in - 1 + pad - j; /* need ox*stride <= b */
  int h = b >= 0 ? b / stride + 1 : 0;
  if (h > n_out) h = n_out;
  if (l > h) l = h;
  *lo = l, *hi = h;
}

/* col rows k = (ci*kh + i)*kw + j, columns oy*Wo + ox of this sample, row stride ld. */
static void im2col(double *col /* K x ld, this sample's P columns */, size_t ld,
                   const double *in /* C_in x H x W */, const ConvShape *s, int Ho, int Wo) {
  const int st = s->stride, pad = s->pad;
  for (int ci = 0; ci < s->C_in; ci++) {
    const double *plane = in + (size_t)ci * s->H * s->W;
    for (int i = 0; i < s->kh; i++)
      for (int j = 0; j < s->kw; j++) {
        double *row = col + ((size_t)(ci * s->kh + i) * s->kw + j) * ld;
        int lo, hi;
        valid_range(&lo, &hi, j, s->W, Wo, st, pad);
        for (int oy = 0; oy < Ho; oy++) {
          double *r = row + (size_t)oy * Wo;
          int y = oy * st - pad + i;
          if (y < 0 || y >= s->H) {
            memset(r, 0, (size_t)Wo * sizeof *r);
            continue;
          }
          const double *src = plane + (size_t)y * s->W - pad + j;
          for (int ox = 0; ox < lo; ox++) r[ox] = 0.0;
          if (st == 1)
            memcpy(r + lo, src + lo, (size_t)(hi - lo) * sizeof *r);
          else
            for (int ox = lo; ox < hi; ox++) r[ox] = src[(size_t)ox * st];
          for (int ox = hi; ox < Wo; ox++) r[ox] = 0.0;
        }
      }
  }
}

/* Adjoint of im2col: in += scatter(col). */
static void col2im_add(double *in /* C_in x H x W */, const double *col /* K x ld */, size_t ld,
                       const ConvShape *s, int Ho, int Wo) {
  const int st = s->stride, pad = s->pad;
  for (int ci = 0; ci < s->C_in; ci++) {
    double *plane = in + (size_t)ci * s->H * s->W;
    for (int i = 0; i < s->kh; i++)
      for (int j = 0; j < s->kw; j++) {
        const double *row = col + ((size_t)(ci * s->kh + i) * s->kw + j) * ld;
        int lo, hi;
        valid_range(&lo, &hi, j, s->W, Wo, st, pad);
        for (int oy = 0; oy < Ho; oy++) {
          int y = oy * st - pad + i;
          if (y < 0 || y >= s->H) continue;
          const double *r = row + (size_t)oy * Wo;
          double *dst = plane + (size_t)y * s->W - pad + j;
          for (int ox = lo; ox < hi; ox++) dst[(size_t)ox * st] += r[ox];
        }
      }
  }
}

/* ------------------------------------------------------------------ Winograd F(2x2, 3x3)
 * Lavin & Gray (2016): a 2x2 output tile of a 3x3 stride-1 correlation is
 *   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 * over the 4x4 input tile d (rows 2ty-1 .. 2ty+2, zero outside the image), with
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * Summed over input channels, the 16 elementwise products become 16 GEMMs (C_out x C_in) x (C_in x
 * T): 16 C_in C_out multiply-adds per tile instead of 36, so 2.25x fewer than im2col + GEMM.
 * The input gradient is the same correlation of dout with the flipped, transposed kernel
 * (W'[ci, co, i, j] = W[co, ci, 2-i, 2-j]), so it runs through the same code without col2im; the
 * weight gradient is the exact adjoint in g: dW = G^T [ sum_tiles (A dY A^T) (.) (B^T d B) ] G. */

/* U[xi, co, ci] = (G g G^T)[xi] of g = W[co, ci]. The flipped kernel needs no transform of its
 * own: reversing g's rows is G R = S G with S swapping rows 0 and 3, so the transform of the
 * flipped g is U with both tile indices mapped by wino_flip, and the input gradient's GEMMs read
 * U[wino_flip(xi)] transposed. */
static const int wino_flip[16] = {15, 13, 14, 12, 7, 5, 6, 4, 11, 9, 10, 8, 3, 1, 2, 0};

static void wino_weights(double *U /* 16 x C_out x C_in */, const double *W /* C_out x C_in x 3 x 3 */, int Co, int Ci) {
  enum { L = 8 }; /* kernels per block: the transform runs across them, the stores are contiguous */
  const size_t plane = (size_t)Co * Ci;
  for (size_t p0 = 0; p0 < plane; p0 += L) {
    const int n = plane - p0 < L ? (int)(plane - p0) : L;
    double g[9][L], t[12][L];
    for (int l = 0; l < n; l++)
      for (int k = 0; k < 9; k++) g[k][l] = W[(p0 + l) * 9 + k];
    for (int l = n; l < L; l++)
      for (int k = 0; k < 9; k++) g[k][l] = 0.0;
    for (int j = 0; j < 3; j++) /* t = G g (4 x 3) */
      for (int l = 0; l < L; l++) {
        t[j][l] = g[j][l];
        t[3 + j][l] = 0.5 * (g[j][l] + g[3 + j][l] + g[6 + j][l]);
        t[6 + j][l] = 0.5 * (g[j][l] - g[3 + j][l] + g[6 + j][l]);
        t[9 + j][l] = g[6 + j][l];
      }
    for (int i = 0; i < 4; i++) { /* U = t G^T (4 x 4) */
      double *u0 = U + (size_t)(4 * i) * plane + p0, *u1 = u0 + plane, *u2 = u1 + plane, *u3 = u2 + plane;
      const double *r0 = t[3 * i], *r1 = t[3 * i + 1], *r2 = t[3 * i + 2];
      for (int l = 0; l < n; l++) {
        u0[l] = r0[l];
        u1[l] = 0.5 * (r0[l] + r1[l] + r2[l]);
        u2[l] = 0.5 * (r0[l] - r1[l] + r2[l]);
        u3[l] = r2[l];
      }
    }
  }
}

/* Doubles of wino_input's and wino_output's scratch: the zero-bordered plane (Hp x Wp) and ten
 * rows of Wp (the row-transformed rows of one tile row; the column-combined rows of the output). */
static size_t wino_pad_len(const ConvShape *s) {
  const size_t Hp = 2 * (size_t)((s->H + 1) / 2) + 2, Wp = 2 * (size_t)((s->W + 1) / 2) + 2;
  return Hp * Wp + 10 * Wp;
}

/* V[xi, c, t0 + t] = (B^T d B)[xi] of the tiles t of every channel c of one sample x (C x H x W);
 * pad: wino_pad_len doubles of scratch (the plane with its zero border, so no bounds tests). Per
 * tile row: B^T on whole rows (contiguous, vectorised), then B on each tile's 4 columns, one loop
 * over the tiles per output plane. */
static void wino_input(double *V /* 16 x C x ld */, size_t ld, size_t t0, const double *x, int C, int H, int W,
                       double *pad) {
  const int th = (H + 1) / 2, tw = (W + 1) / 2, Hp = 2 * th + 2, Wp = 2 * tw + 2;
  const size_t plane = (size_t)C * ld;
  double *rows = pad + (size_t)Hp * Wp; /* 4 x Wp */
  memset(pad, 0, (size_t)Hp * Wp * sizeof *pad); /* the border stays zero: the copies fill the inside */
  for (int c = 0; c < C; c++) {
    const double *xc = x + (size_t)c * H * W;
    for (int y = 0; y < H; y++) memcpy(pad + (size_t)(y + 1) * Wp + 1, xc + (size_t)y * W, (size_t)W * sizeof *pad);
    double *vc = V + (size_t)c * ld + t0;
    for (int ty = 0; ty < th; ty++) {
      const double *restrict r0 = pad + (size_t)(2 * ty) * Wp, *restrict r1 = r0 + Wp, *restrict r2 = r1 + Wp,
                             *restrict r3 = r2 + Wp;
      double *restrict a0 = rows, *restrict a1 = rows + Wp, *restrict a2 = rows + 2 * Wp, *restrict a3 = rows + 3 * Wp;
      for (int xx = 0; xx < Wp; xx++) { /* B^T d */
        a0[xx] = r0[xx] - r2[xx];
        a1[xx] = r1[xx] + r2[xx];
        a2[xx] = r2[xx] - r1[xx];
        a3[xx] = r1[xx] - r3[xx];
      }
      for (int i = 0; i < 4; i++) { /* (B^T d) B */
        const double *restrict ai = rows + (size_t)i * Wp;
        double *restrict v0 = vc + (size_t)(4 * i) * plane + (size_t)ty * tw, *restrict v1 = v0 + plane,
                         *restrict v2 = v1 + plane, *restrict v3 = v2 + plane;
        for (int tx = 0; tx < tw; tx++) {
          const double e0 = ai[2 * tx], e1 = ai[2 * tx + 1], e2 = ai[2 * tx + 2], e3 = ai[2 * tx + 3];
          v0[tx] = e0 - e2;
          v1[tx] = e1 + e2;
          v2[tx] = e2 - e1;
          v3[tx] = e1 - e3;
        }
      }
    }
  }
}

/* y[c] = A^T M[:, c, t0 + t] A for every tile t of one sample (C x H x W), plus bias[c] if non-NULL;
 * pad: wino_pad_len doubles of scratch. Per tile row: A^T over the 4 tile rows, one loop over the
 * tiles per plane, then A across each tile's columns into two whole image rows. */
static void wino_output(double *y, const double *M /* 16 x C x ld */, size_t ld, size_t t0, int C, int H, int W,
                        const double *bias, double b_mult, double *pad) {
  const int th = (H + 1) / 2, tw = (W + 1) / 2, Wp = 2 * tw + 2;
  const size_t plane = (size_t)C * ld;
  double *b = pad; /* b[i' * 4 + j][tx]: 8 rows of tw, then two output rows of 2 tw */
  double *orow = pad + 8 * (size_t)Wp;
  for (int c = 0; c < C; c++) {
    double *yc = y + (size_t)c * H * W;
    const double *mc = M + (size_t)c * ld + t0;
    const double bc = bias ? b_mult * bias[c] : 0.0;
    for (int ty = 0; ty < th; ty++) {
      for (int j = 0; j < 4; j++) {
        const double *restrict m0 = mc + (size_t)j * plane + (size_t)ty * tw, *restrict m1 = m0 + 4 * plane,
                               *restrict m2 = m1 + 4 * plane, *restrict m3 = m2 + 4 * plane;
        double *restrict b0 = b + (size_t)j * Wp, *restrict b1 = b + (size_t)(4 + j) * Wp;
        for (int tx = 0; tx < tw; tx++) { /* A^T m */
          b0[tx] = m0[tx] + m1[tx] + m2[tx];
          b1[tx] = m1[tx] - m2[tx] - m3[tx];
        }
      }
      for (int i = 0; i < 2; i++) {
        const int yy = 2 * ty + i;
        if (yy >= H) break;
        const double *restrict c0 = b + (size_t)(4 * i) * Wp, *restrict c1 = c0 + Wp, *restrict c2 = c1 + Wp,
                               *restrict c3 = c2 + Wp;
        double *restrict o = orow;
        for (int tx = 0; tx < tw; tx++) { /* (A^T m) A */
          o[2 * tx] = c0[tx] + c1[tx] + c2[tx] + bc;
          o[2 * tx + 1] = c1[tx] - c2[tx] - c3[tx] + bc;
        }
        memcpy(yc + (size_t)yy * W, o, (size_t)W * sizeof *o);
      }
    }
  }
}

/* Yh[xi, c, t0 + t] = (A dY A^T)[xi] of the 2x2 tiles of dy (C x H x W, zero outside); pad:
 * wino_pad_len doubles of scratch. Per tile row: A on the two image rows (zero-extended to 2 tw
 * columns), then A across each tile's two columns, one loop over the tiles per plane. */
static void wino_grad_output(double *Yh /* 16 x C x ld */, size_t ld, size_t t0, const double *dy, int C, int H, int W,
                             double *pad) {
  const int th = (H + 1) / 2, tw = (W + 1) / 2, Wp = 2 * tw + 2;
  const size_t plane = (size_t)C * ld;
  double *e0 = pad, *e1 = pad + Wp, *rows = pad + 2 * (size_t)Wp; /* 2 image rows, then 4 x Wp */
  memset(pad, 0, 2 * (size_t)Wp * sizeof *pad);
  for (int c = 0; c < C; c++) {
    const double *yc = dy + (size_t)c * H * W;
    double *vc = Yh + (size_t)c * ld + t0;
    for (int ty = 0; ty < th; ty++) {
      memcpy(e0, yc + (size_t)(2 * ty) * W, (size_t)W * sizeof *e0);
      if (2 * ty + 1 < H) memcpy(e1, yc + (size_t)(2 * ty + 1) * W, (size_t)W * sizeof *e1);
      else memset(e1, 0, (size_t)W * sizeof *e1);
      double *restrict a0 = rows, *restrict a1 = rows + Wp, *restrict a2 = rows + 2 * Wp, *restrict a3 = rows + 3 * Wp;
      for (int xx = 0; xx < 2 * tw; xx++) { /* A e */
        a0[xx] = e0[xx];
        a1[xx] = e0[xx] + e1[xx];
        a2[xx] = e0[xx] - e1[xx];
        a3[xx] = -e1[xx];
      }
      for (int i = 0; i < 4; i++) { /* (A e) A^T */
        const double *restrict ai = rows + (size_t)i * Wp;
        double *restrict v0 = vc + (size_t)(4 * i) * plane + (size_t)ty * tw, *restrict v1 = v0 + plane,
                         *restrict v2 = v1 + plane, *restrict v3 = v2 + plane;
        for (int tx = 0; tx < tw; tx++) {
          const double r0 = ai[2 * tx], r1 = ai[2 * tx + 1];
          v0[tx] = r0;
          v1[tx] = r0 + r1;
          v2[tx] = r0 - r1;
          v3[tx] = -r1;
        }
      }
    }
  }
}

/* Largest chunk of samples whose Winograd workspace fits after the fixed 16 C_out C_in. */
static int wino_chunk(const ConvShape *s, int B, size_t work_len) {
  if (work_len < wino_fixed(s) + wino_per_sample(s)) return 0;
  size_t c = (work_len - wino_fixed(s)) / wino_per_sample(s);
  return (int)(c > (size_t)B ? (size_t)B : c);
}

/* out = alpha * conv3x3(in, kernel of U) + b_mult * b over B samples of Ci x H x W -> Co x H x W,
 * U the transformed kernel at the start of work: 16 x Co x Ci, or (flip) the forward transform
 * 16 x Ci x Co of the conv this is the input gradient of (wino_flip). */
static void wino_conv(double *out, const double *in, const double *b, double b_mult, int B, int Ci, int Co, int H,
                      int W, double alpha, int flip, double *work, int nb) {
  const ConvShape s = {Ci, H, W, Co, 3, 3, 1, 1};
  const size_t tiles = wino_tiles(&s), isz = (size_t)Ci * H * W, osz = (size_t)Co * H * W;
  const double *U = work;
  double *pad = work + 16 * (size_t)Co * Ci;
  for (int a0 = 0; a0 < B; a0 += nb) {
    const int n = B - a0 < nb ? B - a0 : nb;
    const size_t T = (size_t)n * tiles;
    double *V = work + wino_fixed(&s), *M = V + 16 * (size_t)Ci * T;
    for (int al = 0; al < n; al++) wino_input(V, T, (size_t)al * tiles, in + (size_t)(a0 + al) * isz, Ci, H, W, pad);
    for (int xi = 0; xi < 16; xi++)
      cblas_dgemm(CblasRowMajor, flip ? CblasTrans : CblasNoTrans, CblasNoTrans, Co, (int)T, Ci, alpha,
                  U + (size_t)(flip ? wino_flip[xi] : xi) * Co * Ci, flip ? Co : Ci, V + (size_t)xi * Ci * T, (int)T, 0.0,
                  M + (size_t)xi * Co * T, (int)T);
    for (int al = 0; al < n; al++)
      wino_output(out + (size_t)(a0 + al) * osz, M, T, (size_t)al * tiles, Co, H, W, b, b_mult, pad);
  }
}

/* dW += w_mult * dout (*) in over B samples, by the adjoint of the Winograd forward. */
static void wino_weight_grad(double *dW /* Co x Ci x 3 x 3 */, const double *dout, const double *in, int B,
                             const ConvShape *s, double w_mult, double *work, int nb) {
  const int Ci = s->C_in, Co = s->C_out, H = s->H, W = s->W;
  const size_t tiles = wino_tiles(s), isz = (size_t)Ci * H * W, osz = (size_t)Co * H * W, plane = (size_t)Co * Ci;
  double *Mg = work; /* 16 x Co x Ci, summed over the chunks */
  for (int a0 = 0; a0 < B; a0 += nb) {
    const int n = B - a0 < nb ? B - a0 : nb;
    const size_t T = (size_t)n * tiles;
    double *V = work + wino_fixed(s), *Yh = V + 16 * (size_t)Ci * T;
    for (int al = 0; al < n; al++) {
      wino_input(V, T, (size_t)al * tiles, in + (size_t)(a0 + al) * isz, Ci, H, W, work + 16 * plane);
      wino_grad_output(Yh, T, (size_t)al * tiles, dout + (size_t)(a0 + al) * osz, Co, H, W, work + 16 * plane);
    }
    for (int xi = 0; xi < 16; xi++)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, Ci, (int)T, 1.0, Yh + (size_t)xi * Co * T, (int)T,
                  V + (size_t)xi * Ci * T, (int)T, a0 ? 1.0 : 0.0, Mg + xi * plane, Ci);
  }
  for (size_t p = 0; p < plane; p++) { /* dW += w_mult G^T Mg G */
    double m[16], t[12];
    for (int xi = 0; xi < 16; xi++) m[xi] = Mg[xi * plane + p];
    for (int j = 0; j < 4; j++) { /* t = G^T m: 3 x 4 */
      t[j] = m[j] + 0.5 * (m[4 + j] + m[8 + j]);
      t[4 + j] = 0.5 * (m[4 + j] - m[8 + j]);
      t[8 + j] = 0.5 * (m[4 + j] + m[8 + j]) + m[12 + j];
    }
    double *w = dW + p * 9;
    for (int i = 0; i < 3; i++) { /* (G^T m) G: 3 x 3 */
      const double *r = t + 4 * i;
      w[3 * i] += w_mult * (r[0] + 0.5 * (r[1] + r[2]));
      w[3 * i + 1] += w_mult * 0.5 * (r[1] - r[2]);
      w[3 * i + 2] += w_mult * (0.5 * (r[1] + r[2]) + r[3]);
    }
  }
}

/* ------------------------------------------------------------------ conv2d */

int conv2d_forward(double *out /* B x C_out x Ho x Wo */, const double *in /* B x C_in x H x W */,
                   const double *W /* C_out x C_in x kh x kw */, const double *b /* C_out or NULL */,
                   int B, const ConvShape *s, double w_mult, double b_mult,
                   double *work /* work_len */, size_t work_len) {
  if (B > 0 && wino_ok(s)) {
    const int nb = wino_chunk(s, B, work_len);
    if (nb < 1 || work_len < conv2d_workspace_size(s, 1)) return -1;
    wino_weights(work, W, s->C_out, s->C_in);
    wino_conv(out, in, b, b_mult, B, s->C_in, s->C_out, s->H, s->W, w_mult, 0, work, nb);
    return 0;
  }
  return conv2d_jvp(out, NULL, in, NULL, W, b, B, s, w_mult, b_mult, work, work_len);
}

/* Shared by vjp and rvjp. din_acc = 0: din is overwritten, 1: din += . The dW product runs when
 * dW && in, the din product when din && W (din is still zeroed when W is NULL and !din_acc). */
static int conv_vjp_core(double *din /* B x C_in x H x W or NULL */, int din_acc,
                         double *dW /* C_out x C_in x kh x kw or NULL */,
                         double *db /* C_out or NULL */, const double *dout /* B x C_out x Ho x Wo */,
                         const double *in /* B x C_in x H x W or NULL */,
                         const double *W /* C_out x C_in x kh x kw or NULL */, int B,
                         const ConvShape *s, double w_mult, double b_mult,
                         double *work /* work_len */, size_t work_len) {
  if (B <= 0) return 0;
  int nb = pick_chunk(s, B, work_len);
  if (nb < 1) return -1;
  const int Ho = conv_out_h(s), Wo = conv_out_w(s);
  const size_t P = (size_t)Ho * Wo, K = (size_t)s->C_in * s->kh * s->kw, Co = (size_t)s->C_out;
  const size_t in_sz = conv_in_size(s), out_sz = Co * P;
  double *col = work;                 /* K x (nb*P) */
  double *tmp = work + K * nb * P;    /* C_out x (nb*P) */

  if (db)
    for (int a = 0; a < B; a++)
      for (size_t co = 0; co < Co; co++) {
        const double *r = dout + (size_t)a * out_sz + co * P;
        double sum = 0.0;
        for (size_t p = 0; p < P; p++) sum += r[p];
        db[co] += b_mult * sum;
      }
  int do_dW = dW && in, do_din = din && W;
  if (din && !W && !din_acc) memset(din, 0, (size_t)B * in_sz * sizeof *din);
  if (!do_dW && !do_din) return 0;
  if (s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0) {
    /* 1x1, stride 1: in_a is already the C_in x P matrix im2col would build, so per sample
     * dW += w_mult dout_a in_a^T and din_a = w_mult W^T dout_a, without im2col or col2im. */
    for (int a = 0; a < B; a++) {
      const double *g = dout + (size_t)a * out_sz;
      if (do_dW)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Co, (int)K, (int)P, w_mult, g, (int)P,
                    in + (size_t)a * in_sz, (int)P, 1.0, dW, (int)K);
      if (do_din)
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, (int)Co, w_mult, W, (int)K, g, (int)P,
                    din_acc ? 1.0 : 0.0, din + (size_t)a * in_sz, (int)P);
    }
    return 0;
  }

  for (int a0 = 0; a0 < B; a0 += nb) {
    const int n = B - a0 < nb ? B - a0 : nb;
    const size_t ld = (size_t)n * P;
    /* g = dout of the chunk as C_out x (n*P): one sample is already in that layout */
    const double *g = dout + (size_t)a0 * out_sz;
    if (n > 1) {
      for (int al = 0; al < n; al++) /* gather dout: tmp[co, al*P + p] */
        for (size_t co = 0; co < Co; co++)
          memcpy(tmp + co * ld + (size_t)al * P, dout + (size_t)(a0 + al) * out_sz + co * P,
                 P * sizeof *tmp);
      g = tmp;
    }
    if (do_dW) { /* dW += w_mult g col^T */
      for (int al = 0; al < n; al++)
        im2col(col + (size_t)al * P, ld, in + (size_t)(a0 + al) * in_sz, s, Ho, Wo);
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Co, (int)K, (int)ld, w_mult, g,
                  (int)ld, col, (int)ld, 1.0, dW, (int)K);
    }
    if (do_din) { /* dcol = w_mult W^T g, then col2im */
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)ld, (int)Co, w_mult, W,
                  (int)K, g, (int)ld, 0.0, col, (int)ld);
      double *d = din + (size_t)a0 * in_sz;
      if (!din_acc) memset(d, 0, (size_t)n * in_sz * sizeof *d);
      for (int al = 0; al < n; al++) col2im_add(d + (size_t)al * in_sz, col + (size_t)al * P, ld, s, Ho, Wo);
    }
  }
  return 0;
}

int conv2d_vjp(double *din /* B x C_in x H x W or NULL */, double *dW /* C_out x C_in x kh x kw or NULL */,
               double *db /* C_out or NULL */, const double *dout /* B x C_out x Ho x Wo */,
               const double *in /* B x C_in x H x W */, const double *W /* C_out x C_in x kh x kw */,
               int B, const ConvShape *s, double w_mult, double b_mult,
               double *work /* work_len */, size_t work_len) {
  if (B > 0 && wino_ok(s)) {
    const int nb = wino_chunk(s, B, work_len);
    if (nb < 1 || work_len < conv2d_workspace_size(s, 1)) return -1;
    conv_vjp_core(NULL, 0, NULL, db, dout, NULL, NULL, B, s, w_mult, b_mult, work, work_len); /* db only */
    if (dW && in) wino_weight_grad(dW, dout, in, B, s, w_mult, work, nb);
    if (din && W) { /* the correlation of dout with the flipped, transposed kernel */
      wino_weights(work, W, s->C_out, s->C_in);
      wino_conv(din, dout, NULL, 0.0, B, s->C_out, s->C_in, s->H, s->W, w_mult, 1, work, nb);
    } else if (din) {
      memset(din, 0, (size_t)B * conv_in_size(s) * sizeof *din);
    }
    return 0;
  }
  return conv_vjp_core(din, 0, dW, db, dout, in, W, B, s, w_mult, b_mult, work, work_len);
}

int conv2d_jvp(double *tout /* B x C_out x Ho x Wo */, const double *tin /* B x C_in x H x W or NULL */,
               const double *in /* B x C_in x H x W */, const double *W /* C_out x C_in x kh x kw */,
               const double *tW /* C_out x C_in x kh x kw or NULL */, const double *tb /* C_out or NULL */,
               int B, const ConvShape *s, double w_mult, double b_mult,
               double *work /* work_len */, size_t work_len) {
  if (B <= 0) return 0;
  int nb = pick_chunk(s, B, work_len);
  if (nb < 1) return -1;
  const int Ho = conv_out_h(s), Wo = conv_out_w(s);
  const size_t P = (size_t)Ho * Wo, K = (size_t)s->C_in * s->kh * s->kw, Co = (size_t)s->C_out;
  const size_t in_sz = conv_in_size(s), out_sz = Co * P;
  double *col = work, *tmp = work + K * nb * P;
  for (int a0 = 0; a0 < B; a0 += nb) {
    const int n = B - a0 < nb ? B - a0 : nb;
    const size_t ld = (size_t)n * P;
    /* One sample: the GEMMs write tout directly (C_out x P is its NCHW layout), on the bias. */
    double *dst = tmp, beta = 0.0; /* first GEMM overwrites dst, the second accumulates */
    if (n == 1) {
      dst = tout + (size_t)a0 * out_sz;
      for (size_t co = 0; co < Co; co++)
        for (size_t p = 0; p < P; p++) dst[co * P + p] = tb ? b_mult * tb[co] : 0.0;
      beta = 1.0;
    }
    if (tin) {
      for (int al = 0; al < n; al++)
        im2col(col + (size_t)al * P, ld, tin + (size_t)(a0 + al) * in_sz, s, Ho, Wo);
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Co, (int)ld, (int)K, w_mult, W,
                  (int)K, col, (int)ld, beta, dst, (int)ld);
      beta = 1.0;
    }
    if (tW) {
      for (int al = 0; al < n; al++)
        im2col(col + (size_t)al * P, ld, in + (size_t)(a0 + al) * in_sz, s, Ho, Wo);
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Co, (int)ld, (int)K, w_mult, tW,
                  (int)K, col, (int)ld, beta, dst, (int)ld);
      beta = 1.0;
    }
    if (n == 1) continue;
    for (int al = 0; al < n; al++) /* scatter to NCHW, adding the bias */
      for (size_t co = 0; co < Co; co++) {
        double *o = tout + (size_t)(a0 + al) * out_sz + co * P;
        const double bias = tb ? b_mult * tb[co] : 0.0;
        if (beta == 0.0) {
          for (size_t p = 0; p < P; p++) o[p] = bias;
        } else {
          const double *t = tmp + co * ld + (size_t)al * P;
          for (size_t p = 0; p < P; p++) o[p] = t[p] + bias;
        }
      }
  }
  return 0;
}

int conv2d_rvjp(double *rdin /* B x C_in x H x W or NULL */,
                double *rdW /* C_out x C_in x kh x kw or NULL */, double *rdb /* C_out or NULL */,
                const double *rdout /* B x C_out x Ho x Wo */,
                const double *dout /* B x C_out x Ho x Wo or NULL */,
                const double *in /* B x C_in x H x W */, const double *rin /* B x C_in x H x W or NULL */,
                const double *W /* C_out x C_in x kh x kw */,
                const double *vW /* C_out x C_in x kh x kw or NULL */, int B, const ConvShape *s,
                double w_mult, double b_mult, double *work /* work_len */, size_t work_len) {
  if (B > 0 && pick_chunk(s, B, work_len) < 1) return -1;
  /* Parameter products first: they read rin, which rdin may overwrite. */
  conv_vjp_core(NULL, 0, rdW, rdb, rdout, in, NULL, B, s, w_mult, b_mult, work, work_len);
  if (dout && rin) conv_vjp_core(NULL, 0, rdW, NULL, dout, rin, NULL, B, s, w_mult, b_mult, work, work_len);
  conv_vjp_core(rdin, 0, NULL, NULL, rdout, NULL, W, B, s, w_mult, b_mult, work, work_len);
  if (dout && vW) conv_vjp_core(rdin, 1, NULL, NULL, dout, NULL, vW, B, s, w_mult, b_mult, work, work_len);
  return 0;
}

/* ------------------------------------------------------------------ conv2d reference loops */

/* in[a, ci, y, x] or 0 in the padding. */
static double at(const double *in, const ConvShape *s, int a, int ci, int y, int x) {
  if (y < 0 || y >= s->H || x < 0 || x >= s->W) return 0.0;
  return in[(((size_t)a * s->C_in + ci) * s->H + y) * s->W + x];
}

/* out (+)= w_mult conv(in, W): the direct 7-loop convolution. */
static void direct_conv(double *out, int acc, const double *in, const double *W, int B,
                        const ConvShape *s, double w_mult) {
  const int Ho = conv_out_h(s), Wo = conv_out_w(s);
  for (int a = 0; a < B; a++)
    for (int co = 0; co < s->C_out; co++)
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++) {
          double sum = 0.0;
          for (int ci = 0; ci < s->C_in; ci++)
            for (int i = 0; i < s->kh; i++)
              for (int j = 0; j < s->kw; j++)
                sum += W[(((size_t)co * s->C_in + ci) * s->kh + i) * s->kw + j] *
                       at(in, s, a, ci, oy * s->stride - s->pad + i, ox * s->stride - s->pad + j);
          double *o = &out[(((size_t)a * s->C_out + co) * Ho + oy) * Wo + ox];
          *o = (acc ? *o : 0.0) + w_mult * sum;
        }
}

void conv2d_forward_ref(double *out /* B x C_out x Ho x Wo */, const double *in /* B x C_in x H x W */,
                        const double *W /* C_out x C_in x kh x kw */,
                        const double *b /* C_out or NULL */, int B, const ConvShape *s,
                        double w_mult, double b_mult) {
  conv2d_jvp_ref(out, in, NULL, W, NULL, b, B, s, w_mult, b_mult);
}

void conv2d_jvp_ref(double *tout /* B x C_out x Ho x Wo */,
                    const double *tin /* B x C_in x H x W or NULL */, const double *in /* B x C_in x H x W */,
                    const double *W /* C_out x C_in x kh x kw */,
                    const double *tW /* C_out x C_in x kh x kw or NULL */,
                    const double *tb /* C_out or NULL */, int B, const ConvShape *s, double w_mult,
                    double b_mult) {
  const size_t P = (size_t)conv_out_h(s) * conv_out_w(s);
  for (int a = 0; a < B; a++)
    for (int co = 0; co < s->C_out; co++)
      for (size_t p = 0; p < P; p++)
        tout[((size_t)a * s->C_out + co) * P + p] = tb ? b_mult * tb[co] : 0.0;
  if (tin) direct_conv(tout, 1, tin, W, B, s, w_mult);
  if (tW) direct_conv(tout, 1, in, tW, B, s, w_mult);
}

/* dW (+)= w_mult dout (*) in and/or din (+)= w_mult conv_transpose(dout, W), by direct loops. */
static void direct_vjp(double *din, int din_acc, double *dW, double *db, const double *dout,
                       const double *in, const double *W, int B, const ConvShape *s, double w_mult,
                       double b_mult) {
  const int Ho = conv_out_h(s), Wo = conv_out_w(s);
  if (din && !din_acc) memset(din, 0, (size_t)B * conv_in_size(s) * sizeof *din);
  for (int co = 0; co < s->C_out; co++) {
    if (db) {
      double sum = 0.0;
      for (int a = 0; a < B; a++)
        for (int p = 0; p < Ho * Wo; p++) sum += dout[((size_t)a * s->C_out + co) * Ho * Wo + p];
      db[co] += b_mult * sum;
    }
    for (int ci = 0; ci < s->C_in; ci++)
      for (int i = 0; i < s->kh; i++)
        for (int j = 0; j < s->kw; j++) {
          const size_t widx = (((size_t)co * s->C_in + ci) * s->kh + i) * s->kw + j;
          double sum = 0.0;
          for (int a = 0; a < B; a++)
            for (int oy = 0; oy < Ho; oy++)
              for (int ox = 0; ox < Wo; ox++) {
                const int y = oy * s->stride - s->pad + i, x = ox * s->stride - s->pad + j;
                const double g = dout[(((size_t)a * s->C_out + co) * Ho + oy) * Wo + ox];
                if (y < 0 || y >= s->H || x < 0 || x >= s->W) continue;
                const size_t iidx = (((size_t)a * s->C_in + ci) * s->H + y) * s->W + x;
                if (dW && in) sum += g * in[iidx];
                if (din && W) din[iidx] += w_mult * W[widx] * g;
              }
          if (dW && in) dW[widx] += w_mult * sum;
        }
  }
}

void conv2d_vjp_ref(double *din /* B x C_in x H x W or NULL */,
                    double *dW /* C_out x C_in x kh x kw or NULL */, double *db /* C_out or NULL */,
                    const double *dout /* B x C_out x Ho x Wo */, const double *in /* B x C_in x H x W */,
                    const double *W /* C_out x C_in x kh x kw */, int B, const ConvShape *s,
                    double w_mult, double b_mult) {
  direct_vjp(din, 0, dW, db, dout, in, W, B, s, w_mult, b_mult);
}

void conv2d_rvjp_ref(double *rdin /* B x C_in x H x W or NULL */,
                     double *rdW /* C_out x C_in x kh x kw or NULL */, double *rdb /* C_out or NULL */,
                     const double *rdout /* B x C_out x Ho x Wo */,
                     const double *dout /* B x C_out x Ho x Wo or NULL */,
                     const double *in /* B x C_in x H x W */, const double *rin /* B x C_in x H x W or NULL */,
                     const double *W /* C_out x C_in x kh x kw */,
                     const double *vW /* C_out x C_in x kh x kw or NULL */, int B, const ConvShape *s,
                     double w_mult, double b_mult) {
  if (dout && rin) direct_vjp(NULL, 0, rdW, NULL, dout, rin, NULL, B, s, w_mult, b_mult);
  direct_vjp(rdin, 0, rdW, rdb, rdout, in, W, B, s, w_mult, b_mult);
  if (dout) direct_vjp(rdin, 1, NULL, NULL, dout, NULL, vW, B, s, w_mult, b_mult);
}

/* ------------------------------------------------------------------ batch norm (split) */

#define BN_AT(p, a, c) ((p) + ((size_t)(a) * C + (size_t)(c)) * (size_t)HW)

void bn_stats(double *part /* 2C+1 */, const double *x /* B x C x HW */, int B, int C, int HW) {
  for (int c = 0; c < C; c++) {
    double s1 = 0.0, s2 = 0.0;
    for (int a = 0; a < B; a++) {
      const double *r = BN_AT(x, a, c);
      for (int p = 0; p < HW; p++) s1 += r[p], s2 += r[p] * r[p];
    }
    part[c] = s1, part[C + c] = s2;
  }
  part[2 * C] = (double)B * HW;
}

void bn_finalize(double *mean /* C */, double *rstd /* C */, double *var /* C or NULL */,
                 const double *part /* 2C+1, reduced */, int C, double eps) {
  const double n = part[2 * C];
  for (int c = 0; c < C; c++) {
    double m = part[c] / n, v = part[C + c] / n - m * m;
    if (v < 0.0) v = 0.0; /* rounding when var << mean^2 */
    mean[c] = m;
    rstd[c] = 1.0 / sqrt(v + eps);
    if (var) var[c] = v;
  }
}

void bn_forward(double *y /* B x C x HW */, const double *x /* B x C x HW */,
                const double *mean /* C */, const double *rstd /* C */,
                const double *gamma /* C or NULL */, const double *beta /* C or NULL */,
                int B, int C, int HW) {
  for (int a = 0; a < B; a++)
    for (int c = 0; c < C; c++) {
      const double scale = (gamma ? gamma[c] : 1.0) * rstd[c];
      const double shift = (beta ? beta[c] : 0.0) - scale * mean[c];
      const double *xr = BN_AT(x, a, c);
      double *yr = BN_AT(y, a, c);
      for (int p = 0; p < HW; p++) yr[p] = scale * xr[p] + shift;
    }
}

/* part[0..C) = sum v, part[C..2C) = sum v*xhat over the local positions. */
static void sums_v_vxhat(double *part, const double *v, const double *x, const double *mean,
                         const double *rstd, int B, int C, int HW) {
  for (int c = 0; c < C; c++) {
    double s1 = 0.0, s2 = 0.0;
    for (int a = 0; a < B; a++) {
      const double *vr = BN_AT(v, a, c), *xr = BN_AT(x, a, c);
      for (int p = 0; p < HW; p++) s1 += vr[p], s2 += vr[p] * (xr[p] - mean[c]);
    }
    part[c] = s1, part[C + c] = s2 * rstd[c];
  }
}

void bn_vjp_stats(double *part /* 2C */, double *dgamma /* C or NULL */, double *dbeta /* C or NULL */,
                  const double *dy /* B x C x HW */, const double *x /* B x C x HW */,
                  const double *mean /* C */, const double *rstd /* C */, int B, int C, int HW) {
  sums_v_vxhat(part, dy, x, mean, rstd, B, C, HW);
  for (int c = 0; c < C; c++) {
    if (dbeta) dbeta[c] += part[c];
    if (dgamma) dgamma[c] += part[C + c];
  }
}

/* out = g * r * (v - s1/n - xhat * s2/n) per channel (the projection shared by VJP and JVP). */
static void bn_project(double *out, const double *v, const double *x, const double *mean,
                       const double *rstd, const double *gamma, const double *part, double count,
                       int B, int C, int HW) {
  for (int c = 0; c < C; c++) {
    const double r = rstd[c], g = gamma ? gamma[c] : 1.0;
    const double m1 = part[c] / count, m2 = part[C + c] / count, mu = mean[c];
    for (int a = 0; a < B; a++) {
      const double *vr = BN_AT(v, a, c), *xr = BN_AT(x, a, c);
      double *o = BN_AT(out, a, c);
      for (int p = 0; p < HW; p++) o[p] = g * r * (vr[p] - m1 - (xr[p] - mu) * r * m2);
    }
  }
}

void bn_vjp(double *dx /* B x C x HW */, const double *dy /* B x C x HW */,
            const double *x /* B x C x HW */, const double *mean /* C */, const double *rstd /* C */,
            const double *gamma /* C or NULL */, const double *part /* 2C, reduced */, double count,
            int B, int C, int HW) {
  bn_project(dx, dy, x, mean, rstd, gamma, part, count, B, C, HW);
}

void bn_jvp_stats(double *part /* 2C */, const double *tx /* B x C x HW */,
                  const double *x /* B x C x HW */, const double *mean /* C */,
                  const double *rstd /* C */, int B, int C, int HW) {
  sums_v_vxhat(part, tx, x, mean, rstd, B, C, HW);
}

void bn_jvp(double *ty /* B x C x HW */, const double *tx /* B x C x HW or NULL */,
            const double *x /* B x C x HW */, const double *mean /* C */, const double *rstd /* C */,
            const double *gamma /* C or NULL */, const double *tgamma /* C or NULL */,
            const double *tbeta /* C or NULL */, const double *jpart /* 2C reduced, or NULL */,
            double count, int B, int C, int HW) {
  if (tx)
    bn_project(ty, tx, x, mean, rstd, gamma, jpart, count, B, C, HW);
  else
    memset(ty, 0, (size_t)B * C * HW * sizeof *ty);
  if (!(gamma && tgamma) && !tbeta) return;
  for (int c = 0; c < C; c++) {
    const double tg = (gamma && tgamma) ? tgamma[c] : 0.0, tbb = tbeta ? tbeta[c] : 0.0;
    const double r = rstd[c], mu = mean[c];
    for (int a = 0; a < B; a++) {
      const double *xr = BN_AT(x, a, c);
      double *o = BN_AT(ty, a, c);
      for (int p = 0; p < HW; p++) o[p] += tg * (xr[p] - mu) * r + tbb;
    }
  }
}

void bn_rvjp_stats(double *part /* 3C */, double *rdgamma /* C or NULL */, double *rdbeta /* C or NULL */,
                   const double *rdy /* B x C x HW */, const double *dy /* B x C x HW or NULL */,
                   const double *rx /* B x C x HW or NULL */, const double *x /* B x C x HW */,
                   const double *mean /* C */, const double *rstd /* C */,
                   const double *jpart /* 2C reduced, or NULL */, double count, int B, int C, int HW) {
  const int with_rx = dy && rx; /* dy * rxhat needs both */
  for (int c = 0; c < C; c++) {
    const double r = rstd[c], mu = mean[c];
    const double t1 = with_rx ? jpart[c] / count : 0.0, t2 = with_rx ? jpart[C + c] / count : 0.0;
    double u1 = 0.0, u2 = 0.0, u3 = 0.0;
    for (int a = 0; a < B; a++) {
      const double *Rr = BN_AT(rdy, a, c), *xr = BN_AT(x, a, c);
      const double *dr = with_rx ? BN_AT(dy, a, c) : NULL, *tr = with_rx ? BN_AT(rx, a, c) : NULL;
      for (int p = 0; p < HW; p++) {
        const double xh = (xr[p] - mu) * r;
        u1 += Rr[p];
        u2 += Rr[p] * xh;
        if (with_rx) u3 += dr[p] * r * (tr[p] - t1 - xh * t2); /* dy * rxhat */
      }
    }
    part[c] = u1, part[C + c] = u2, part[2 * C + c] = u3;
    if (rdbeta) rdbeta[c] += u1;
    if (rdgamma) rdgamma[c] += u2 + u3;
  }
}

void bn_rvjp(double *rdx /* B x C x HW */, const double *rdy /* B x C x HW */,
             const double *dy /* B x C x HW or NULL */, const double *rx /* B x C x HW or NULL */,
             const double *x /* B x C x HW */, const double *mean /* C */, const double *rstd /* C */,
             const double *gamma /* C or NULL */, const double *vgamma /* C or NULL */,
             const double *jpart /* 2C reduced, or NULL */, const double *vpart /* 2C reduced, or NULL */,
             const double *rpart /* 3C reduced */, double count, int B, int C, int HW) {
  for (int c = 0; c < C; c++) {
    const double r = rstd[c], mu = mean[c], n = count;
    const double g = gamma ? gamma[c] : 1.0, tg = (gamma && vgamma && dy) ? vgamma[c] : 0.0;
    const double t1 = dy && rx ? jpart[c] / n : 0.0, t2 = dy && rx ? jpart[C + c] / n : 0.0;
    const double trstd = -r * r * t2;
    /* mean dxhat, mean dxhat*xhat (zero without a first-order cotangent) */
    const double m1 = dy ? vpart[c] / n : 0.0, m2 = dy ? vpart[C + c] / n : 0.0;
    const double A = g * m1, Bm = g * m2;
    const double RA = tg * m1 + g * rpart[c] / n;
    const double RB = tg * m2 + g * (rpart[C + c] + rpart[2 * C + c]) / n;
    for (int a = 0; a < B; a++) {
      const double *Rr = BN_AT(rdy, a, c), *xr = BN_AT(x, a, c);
      const double *dr = dy ? BN_AT(dy, a, c) : NULL, *txr = dy && rx ? BN_AT(rx, a, c) : NULL;
      double *o = BN_AT(rdx, a, c);
      for (int p = 0; p < HW; p++) { /* every input element is read before o[p] is written */
        const double xh = (xr[p] - mu) * r;
        const double d = dr ? dr[p] : 0.0;
        const double txh = txr ? r * (txr[p] - t1 - xh * t2) : 0.0;
        const double Rdxh = tg * d + g * Rr[p];
        o[p] = trstd * (g * d - A - xh * Bm) + r * (Rdxh - RA - txh * Bm - xh * RB);
      }
    }
  }
}

/* ------------------------------------------------------------------ batch norm, textbook twins
 * Written from the chain rule in terms of x - mu, var and their tangents, not through xhat sums. */

static void bn_moments(double *mu, double *var, const double *x, int B, int C, int HW, int c) {
  const double n = (double)B * HW;
  double s = 0.0;
  for (int a = 0; a < B; a++)
    for (int p = 0; p < HW; p++) s += BN_AT(x, a, c)[p];
  double m = s / n, v = 0.0;
  for (int a = 0; a < B; a++)
    for (int p = 0; p < HW; p++) {
      double d = BN_AT(x, a, c)[p] - m;
      v += d * d;
    }
  *mu = m, *var = v / n;
}

/* Channel-wise mean over the batch of v, or of v * w. */
static double ch_mean(const double *v, const double *w, int B, int C, int HW, int c) {
  double s = 0.0;
  for (int a = 0; a < B; a++)
    for (int p = 0; p < HW; p++) s += BN_AT(v, a, c)[p] * (w ? BN_AT(w, a, c)[p] : 1.0);
  return s / ((double)B * HW);
}

void bn_forward_ref(double *y /* B x C x HW */, const double *x /* B x C x HW */,
                    const double *gamma /* C or NULL */, const double *beta /* C or NULL */,
                    int B, int C, int HW, double eps) {
  for (int c = 0; c < C; c++) {
    double mu, var;
    bn_moments(&mu, &var, x, B, C, HW, c);
    for (int a = 0; a < B; a++)
      for (int p = 0; p < HW; p++) {
        double xh = (BN_AT(x, a, c)[p] - mu) / sqrt(var + eps);
        BN_AT(y, a, c)[p] = (gamma ? gamma[c] : 1.0) * xh + (beta ? beta[c] : 0.0);
      }
  }
}

void bn_vjp_ref(double *dx /* B x C x HW */, double *dgamma /* C or NULL */, double *dbeta /* C or NULL */,
                const double *dy /* B x C x HW */, const double *x /* B x C x HW */,
                const double *gamma /* C or NULL */, int B, int C, int HW, double eps) {
  const double n = (double)B * HW;
  for (int c = 0; c < C; c++) {
    double mu, var;
    bn_moments(&mu, &var, x, B, C, HW, c);
    const double sd = sqrt(var + eps), g = gamma ? gamma[c] : 1.0;
    /* dL/dvar = sum dxhat (x - mu) * (-1/2) sd^-3; dL/dmu = -sum dxhat / sd (the var term's mu
     * derivative is zero as sum(x - mu) = 0). */
    double dvar = 0.0, dmu = 0.0, sdy = 0.0, sdyxh = 0.0;
    for (int a = 0; a < B; a++)
      for (int p = 0; p < HW; p++) {
        double d = BN_AT(dy, a, c)[p], xm = BN_AT(x, a, c)[p] - mu;
        dvar += g * d * xm * -0.5 / (sd * sd * sd);
        dmu += -g * d / sd;
        sdy += d, sdyxh += d * xm / sd;
      }
    for (int a = 0; a < B; a++)
      for (int p = 0; p < HW; p++) {
        double xm = BN_AT(x, a, c)[p] - mu;
        BN_AT(dx, a, c)[p] = g * BN_AT(dy, a, c)[p] / sd + dvar * 2.0 * xm / n + dmu / n;
      }
    if (dgamma) dgamma[c] += sdyxh;
    if (dbeta) dbeta[c] += sdy;
  }
}

void bn_jvp_ref(double *ty /* B x C x HW */, const double *tx /* B x C x HW or NULL */,
                const double *x /* B x C x HW */, const double *gamma /* C or NULL */,
                const double *tgamma /* C or NULL */, const double *tbeta /* C or NULL */,
                int B, int C, int HW, double eps) {
  for (int c = 0; c < C; c++) {
    double mu, var;
    bn_moments(&mu, &var, x, B, C, HW, c);
    const double sd = sqrt(var + eps), g = gamma ? gamma[c] : 1.0;
    double tmu = 0.0, tvar = 0.0;
    if (tx) {
      tmu = ch_mean(tx, NULL, B, C, HW, c);
      for (int a = 0; a < B; a++)
        for (int p = 0; p < HW; p++)
          tvar += 2.0 * (BN_AT(x, a, c)[p] - mu) * (BN_AT(tx, a, c)[p] - tmu);
      tvar /= (double)B * HW;
    }
    const double tsd = 0.5 * tvar / sd;
    for (int a = 0; a < B; a++)
      for (int p = 0; p < HW; p++) {
        double xm = BN_AT(x, a, c)[p] - mu, txm = tx ? BN_AT(tx, a, c)[p] - tmu : 0.0;
        double txh = txm / sd - xm * tsd / (sd * sd);
        BN_AT(ty, a, c)[p] = g * txh + (gamma && tgamma ? tgamma[c] : 0.0) * xm / sd +
                             (tbeta ? tbeta[c] : 0.0);
      }
  }
}

void bn_rvjp_ref(double *rdx /* B x C x HW */, double *rdgamma /* C or NULL */,
                 double *rdbeta /* C or NULL */, const double *rdy /* B x C x HW */,
                 const double *dy /* B x C x HW or NULL */, const double *rx /* B x C x HW or NULL */,
                 const double *x /* B x C x HW */, const double *gamma /* C or NULL */,
                 const double *vgamma /* C or NULL */, int B, int C, int HW, double eps) {
  /* A NULL cotangent dy is a zero one; then its tangent terms vanish. */
  const double *tx = dy ? rx : NULL, *tgamma = dy ? vgamma : NULL, *Rdy = rdy;
  double *Rdx = rdx, *Rdgamma = rdgamma, *Rdbeta = rdbeta;
  /* dx = g/sd * (dy - mean(dy) - xm * mean(dy*xm)/sd^2), differentiated term by term in
   * (xm, sd, g, dy), with txm = tx - mean(tx), tsd = mean(xm*tx)/sd. */
  for (int c = 0; c < C; c++) {
    double mu, var;
    bn_moments(&mu, &var, x, B, C, HW, c);
    const double n = (double)B * HW, sd = sqrt(var + eps);
    const double g = gamma ? gamma[c] : 1.0, tg = gamma && tgamma ? tgamma[c] : 0.0;
    double tmu = tx ? ch_mean(tx, NULL, B, C, HW, c) : 0.0;
    double m_dy = dy ? ch_mean(dy, NULL, B, C, HW, c) : 0.0, m_Rdy = ch_mean(Rdy, NULL, B, C, HW, c);
    double q = 0.0, tq = 0.0, tvar = 0.0, sRdyxh = 0.0, sdytxh = 0.0;
    for (int a = 0; a < B; a++)
      for (int p = 0; p < HW; p++) {
        double xm = BN_AT(x, a, c)[p] - mu, txm = tx ? BN_AT(tx, a, c)[p] - tmu : 0.0;
        const double d = dy ? BN_AT(dy, a, c)[p] : 0.0;
        q += d * xm;
        tq += BN_AT(Rdy, a, c)[p] * xm + d * txm;
        tvar += 2.0 * xm * txm;
      }
    q /= n, tq /= n, tvar /= n;
    const double tsd = 0.5 * tvar / sd;
    for (int a = 0; a < B; a++)
      for (int p = 0; p < HW; p++) {
        double xm = BN_AT(x, a, c)[p] - mu, txm = tx ? BN_AT(tx, a, c)[p] - tmu : 0.0;
        double d = dy ? BN_AT(dy, a, c)[p] : 0.0, Rd = BN_AT(Rdy, a, c)[p];
        double inner = d - m_dy - xm * q / (sd * sd);
        double tinner = Rd - m_Rdy - txm * q / (sd * sd) - xm * tq / (sd * sd) +
                        xm * q * 2.0 * tsd / (sd * sd * sd);
        BN_AT(Rdx, a, c)[p] = (tg / sd - g * tsd / (sd * sd)) * inner + g / sd * tinner;
        double xh = xm / sd, txh = txm / sd - xm * tsd / (sd * sd);
        sRdyxh += Rd * xh, sdytxh += d * txh;
      }
    if (Rdgamma) Rdgamma[c] += sRdyxh + sdytxh;
    if (Rdbeta) Rdbeta[c] += m_Rdy * n;
  }
}

/* ------------------------------------------------------------------ global average pooling */

void global_avgpool_forward(double *out /* B x C */, const double *in /* B x C x HW */, int B, int C,
                            int HW) {
  const double inv = 1.0 / HW;
  for (size_t ac = 0; ac < (size_t)B * C; ac++) {
    const double *r = in + ac * HW;
    double s = 0.0;
    for (int p = 0; p < HW; p++) s += r[p];
    out[ac] = s * inv;
  }
}

void global_avgpool_vjp(double *din /* B x C x HW */, const double *dout /* B x C */, int B, int C,
                        int HW) {
  const double inv = 1.0 / HW;
  for (size_t ac = 0; ac < (size_t)B * C; ac++) {
    double *r = din + ac * HW;
    const double v = dout[ac] * inv;
    for (int p = 0; p < HW; p++) r[p] = v;
  }
}

void global_avgpool_jvp(double *tout /* B x C */, const double *tin /* B x C x HW */, int B, int C,
                        int HW) {
  global_avgpool_forward(tout, tin, B, C, HW);
}

/* ------------------------------------------------------------------ residual add */

void residual_add_forward(double *out /* n */, const double *a /* n */, const double *b /* n */,
                          size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_add_vjp(double *da /* n or NULL */, double *db /* n or NULL */, const double *dout /* n */,
                      size_t n) {
  if (da && da != dout) memmove(da, dout, n * sizeof *da);
  if (db && db != dout) memmove(db, dout, n * sizeof *db);
}

void residual_add_jvp(double *tout /* n */, const double *ta /* n or NULL */,
                      const double *tb /* n or NULL */, size_t n) {
  for (size_t i = 0; i < n; i++) tout[i] = (ta ? ta[i] : 0.0) + (tb ? tb[i] : 0.0);
}

void add_inplace(double *dst /* n */, const double *src /* n */, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}
