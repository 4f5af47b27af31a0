/* Random crop with zero padding and horizontal flip (see augment.h for the definition). */
#include "augment.h"

#include <stddef.h>
#include <string.h>

#include "rng.h"

AugmentDraw augment_draw(uint64_t seed, int64_t step, int64_t sample, int pad) {
  const uint64_t stream = (uint64_t)RNG_STREAM_AUGMENT + ((uint64_t)step << 32);
  uint64_t u = rng_u64(seed, stream, (uint64_t)sample);
  const uint64_t m = 2 * (uint64_t)pad + 1;
  AugmentDraw d;
  d.dy = (int)(u % m);
  u /= m;
  d.dx = (int)(u % m);
  u /= m;
  d.flip = (u & 1) != 0;
  return d;
}

void augment_sample(double *out /* C x H x W */, const double *in /* C x H x W */, int C, int H, int W,
                    int pad, AugmentDraw draw) {
  /* Source column of crop column x is x + sx0; it lies in the image for x in [x_lo, x_hi). */
  const int sy0 = draw.dy - pad, sx0 = draw.dx - pad;
  int x_lo = -sx0 > 0 ? -sx0 : 0;
  int x_hi = W - sx0 < W ? W - sx0 : W;
  if (x_hi < x_lo) x_hi = x_lo; /* the shift leaves the image entirely (pad > W) */
  for (int c = 0; c < C; c++) {
    const double *ic = in + (size_t)c * H * W; /* H x W */
    double *oc = out + (size_t)c * H * W;      /* H x W */
    for (int y = 0; y < H; y++) {
      double *orow = oc + (size_t)y * W; /* W */
      const int sy = y + sy0;
      if (sy < 0 || sy >= H || x_lo == x_hi) {
        memset(orow, 0, (size_t)W * sizeof(double));
        continue;
      }
      const double *irow = ic + (size_t)sy * W; /* W */
      if (!draw.flip) {
        memset(orow, 0, (size_t)x_lo * sizeof(double));
        memcpy(orow + x_lo, irow + x_lo + sx0, (size_t)(x_hi - x_lo) * sizeof(double));
        memset(orow + x_hi, 0, (size_t)(W - x_hi) * sizeof(double));
      } else { /* out column x reads crop column W-1-x */
        for (int x = 0; x < W; x++) {
          const int cx = W - 1 - x;
          orow[x] = (cx >= x_lo && cx < x_hi) ? irow[cx + sx0] : 0.0;
        }
      }
    }
  }
}

void augment_sample_ref(double *out /* C x H x W */, const double *in /* C x H x W */, int C, int H,
                        int W, int pad, AugmentDraw draw) {
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const int xc = draw.flip ? W - 1 - x : x;
        const int py = y + draw.dy, px = xc + draw.dx; /* in the padded image */
        const int sy = py - pad, sx = px - pad;        /* in the input */
        const bool inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
        out[((size_t)c * H + y) * W + x] = inside ? in[((size_t)c * H + sy) * W + sx] : 0.0;
      }
}

void augment_gather(double *out /* B x C*H*W */, const double *x /* n x C*H*W */,
                    const int64_t *idx /* B, or NULL */, int64_t first, int B, int C, int H, int W,
                    int pad, uint64_t seed, int64_t step) {
  const size_t d = (size_t)C * H * W;
  for (int a = 0; a < B; a++) {
    const int64_t i = idx ? idx[a] : first + a;
    augment_sample(out + (size_t)a * d, x + (size_t)i * d, C, H, W, pad, augment_draw(seed, step, i, pad));
  }
}
