/* Data augmentation (src/augment.c): the row-copy kernel and its per-pixel _ref twin against a
 * naive pad-then-crop-then-flip on an explicit padded image, for every offset and flip; flip twice
 * and the centred crop are the identity; the counter-based draws are uniform over (2p+1)^2 x 2
 * (chi-square) and independent of how a batch is split into chunks or rank slices. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "rng.h"
#include "testutil.h"

/* Naive: build the (H+2p) x (W+2p) zero-padded image, cut the H x W window at (dy, dx), and
 * reverse each row if flip. Independent of both kernels. */
static void naive(double *out, const double *in, int C, int H, int W, int p, AugmentDraw d) {
  const int Hp = H + 2 * p, Wp = W + 2 * p;
  double *P = calloc((size_t)C * Hp * Wp, sizeof *P);      /* C x Hp x Wp */
  double *crop = malloc((size_t)C * H * W * sizeof *crop); /* C x H x W */
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) P[((size_t)c * Hp + y + p) * Wp + x + p] = in[((size_t)c * H + y) * W + x];
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) crop[((size_t)c * H + y) * W + x] = P[((size_t)c * Hp + y + d.dy) * Wp + x + d.dx];
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        out[((size_t)c * H + y) * W + x] = crop[((size_t)c * H + y) * W + (d.flip ? W - 1 - x : x)];
  free(P);
  free(crop);
}

/* Distinct nonzero values, so a misplaced or dropped pixel always shows. */
static void fill_image(double *x, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) x[i] = 1.0 + rng_uniform(seed, RNG_STREAM_PROBE, i);
}

static void test_kernels_against_naive(void) {
  const int shapes[][4] = {{1, 28, 28, 4}, {3, 32, 32, 4}, {2, 5, 7, 3}, {1, 3, 2, 4}, {2, 4, 4, 0}, {1, 1, 1, 2}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int C = shapes[s][0], H = shapes[s][1], W = shapes[s][2], p = shapes[s][3];
    const size_t n = (size_t)C * H * W;
    double *in = malloc(n * sizeof *in), *a = malloc(n * sizeof *a), *r = malloc(n * sizeof *r),
           *v = malloc(n * sizeof *v);
    fill_image(in, n, 7 + s);
    int bad_fast = 0, bad_ref = 0, cases = 0;
    for (int dy = 0; dy <= 2 * p; dy++)
      for (int dx = 0; dx <= 2 * p; dx++)
        for (int f = 0; f < 2; f++) {
          AugmentDraw d = {dy, dx, f != 0};
          for (size_t i = 0; i < n; i++) a[i] = r[i] = NAN; /* every output must be written */
          naive(v, in, C, H, W, p, d);
          augment_sample(a, in, C, H, W, p, d);
          augment_sample_ref(r, in, C, H, W, p, d);
          bad_fast += memcmp(a, v, n * sizeof *a) != 0;
          bad_ref += memcmp(r, v, n * sizeof *r) != 0;
          cases++;
        }
    CHECK(bad_fast == 0, "augment_sample %dx%dx%d p=%d: %d of %d (offset, flip) cases differ from naive", C, H, W, p,
          bad_fast, cases);
    CHECK(bad_ref == 0, "augment_sample_ref %dx%dx%d p=%d: %d of %d cases differ from naive", C, H, W, p, bad_ref,
          cases);
    free(in), free(a), free(r), free(v);
  }
}

/* Centred crop (dy = dx = p) is the identity, flipping twice is the identity, a flip alone
 * reverses rows, and a shift by one moves every pixel by one. */
static void test_identities(void) {
  const int C = 3, H = 32, W = 32, p = 4;
  const size_t n = (size_t)C * H * W;
  double *in = malloc(n * sizeof *in), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  fill_image(in, n, 3);
  augment_sample(a, in, C, H, W, p, (AugmentDraw){p, p, false});
  CHECK(memcmp(a, in, n * sizeof *a) == 0, "centred crop without flip is not the identity");
  augment_sample(a, in, C, H, W, p, (AugmentDraw){p, p, true});
  augment_sample(b, a, C, H, W, p, (AugmentDraw){p, p, true});
  CHECK(memcmp(b, in, n * sizeof *b) == 0, "flip twice is not the identity");
  CHECK(memcmp(a, in, n * sizeof *a) != 0, "flip changed nothing");
  CHECK(a[5] == in[W - 1 - 5] && a[(size_t)2 * H * W + W + 1] == in[(size_t)2 * H * W + W + W - 2],
        "flip does not reverse rows");
  augment_sample(a, in, C, H, W, 0, (AugmentDraw){0, 0, false});
  CHECK(memcmp(a, in, n * sizeof *a) == 0, "pad 0, offset 0 is not the identity");
  /* dy = p + 1: out row y is input row y + 1; the last row is padding */
  augment_sample(a, in, C, H, W, p, (AugmentDraw){p + 1, p, false});
  int bad = 0;
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        double want = y + 1 < H ? in[((size_t)c * H + y + 1) * W + x] : 0.0;
        bad += a[((size_t)c * H + y) * W + x] != want;
      }
  CHECK(bad == 0, "shift by one row: %d pixels wrong", bad);
  /* pad 0 draws: offsets always 0, so only flips */
  int nonzero = 0, flips = 0;
  for (int i = 0; i < 1000; i++) {
    AugmentDraw d = augment_draw(5, 3, i, 0);
    nonzero += d.dy != 0 || d.dx != 0;
    flips += d.flip;
  }
  CHECK(nonzero == 0 && flips > 400 && flips < 600, "pad 0 draws: %d nonzero offsets, %d flips of 1000", nonzero,
        flips);
  free(in), free(a), free(b);
}

/* Chi-square of counts against the uniform expectation. */
static double chi_square(const long *count, int cells, long total) {
  double e = (double)total / cells, chi = 0;
  for (int c = 0; c < cells; c++) chi += (count[c] - e) * (count[c] - e) / e;
  return chi;
}

/* Over 200 steps x 1000 samples the joint (dy, dx, flip) counts are uniform over 162 cells: the
 * chi-square statistic with 161 degrees of freedom has mean 161 and sd 18; 161 + 6 sd = 269 fails
 * only for a real bias. Also per step: different steps give different draws for one sample. */
static void test_uniform(void) {
  const int p = 4, m = 2 * p + 1, cells = m * m * 2;
  long count[162] = {0}, total = 0;
  int range_bad = 0;
  for (int64_t step = 0; step < 200; step++)
    for (int64_t i = 0; i < 1000; i++) {
      AugmentDraw d = augment_draw(11, step, i, p);
      if (d.dy < 0 || d.dy >= m || d.dx < 0 || d.dx >= m) {
        range_bad++;
        continue;
      }
      count[(d.dy * m + d.dx) * 2 + d.flip]++;
      total++;
    }
  CHECK(range_bad == 0, "%d offsets outside [0, 2p]", range_bad);
  double chi = chi_square(count, cells, total);
  CHECK(chi < 269.0, "joint (dy, dx, flip) not uniform: chi2 = %.1f with 161 dof", chi);
  /* marginals: dy over 9 cells (8 dof: mean 8, sd 4) */
  long mdy[9] = {0}, mdx[9] = {0}, mf[2] = {0};
  for (int c = 0; c < cells; c++) {
    mdy[c / 2 / m] += count[c];
    mdx[(c / 2) % m] += count[c];
    mf[c % 2] += count[c];
  }
  double cdy = chi_square(mdy, m, total), cdx = chi_square(mdx, m, total), cf = chi_square(mf, 2, total);
  CHECK(cdy < 32 && cdx < 32 && cf < 25, "marginals not uniform: chi2 dy %.1f dx %.1f flip %.1f", cdy, cdx, cf);
  /* a degenerate generator (e.g. the same draw for every step) would fail this */
  int same = 0;
  AugmentDraw d0 = augment_draw(11, 0, 42, p);
  for (int64_t step = 1; step < 100; step++) {
    AugmentDraw d = augment_draw(11, step, 42, p);
    same += d.dy == d0.dy && d.dx == d0.dx && d.flip == d0.flip;
  }
  CHECK(same < 10, "sample 42 draws the same transform at %d of 99 later steps", same);
  AugmentDraw f = augment_draw(11, 0, 42, p);
  CHECK(f.dy == d0.dy && f.dx == d0.dx && f.flip == d0.flip, "augment_draw is not a pure function");
}

/* One batch gathered whole, in chunks of 5 and as 4 rank slices of chunks of 3: bitwise equal,
 * and equal to per-sample augment_sample with the sample's own draw. */
static void test_chunking(void) {
  const int C = 3, H = 8, W = 6, p = 2, n = 50, B = 37;
  const size_t d = (size_t)C * H * W;
  double *x = malloc((size_t)n * d * sizeof *x), *whole = malloc((size_t)B * d * sizeof *whole),
         *chunked = malloc((size_t)B * d * sizeof *chunked), *sliced = malloc((size_t)B * d * sizeof *sliced),
         *one = malloc(d * sizeof *one);
  int64_t idx[37];
  fill_image(x, (size_t)n * d, 9);
  rng_permutation(idx, B, 1, RNG_STREAM_SHUFFLE, 0); /* B distinct indices < n */
  for (int a = 0; a < B; a++) idx[a] = (idx[a] * 7 + 3) % n;
  const uint64_t seed = 4;
  const int64_t step = 17;
  augment_gather(whole, x, idx, 0, B, C, H, W, p, seed, step);
  for (int a0 = 0; a0 < B; a0 += 5)
    augment_gather(chunked + (size_t)a0 * d, x, idx + a0, 0, B - a0 < 5 ? B - a0 : 5, C, H, W, p, seed, step);
  for (int g = 0; g < 4; g++) {
    int lo = B * g / 4, hi = B * (g + 1) / 4;
    for (int a0 = lo; a0 < hi; a0 += 3)
      augment_gather(sliced + (size_t)a0 * d, x, idx + a0, 0, hi - a0 < 3 ? hi - a0 : 3, C, H, W, p, seed, step);
  }
  CHECK(memcmp(whole, chunked, (size_t)B * d * sizeof *whole) == 0, "chunks of 5 differ from the whole batch");
  CHECK(memcmp(whole, sliced, (size_t)B * d * sizeof *whole) == 0, "4 rank slices differ from the whole batch");
  int bad = 0, changed = 0;
  for (int a = 0; a < B; a++) {
    naive(one, x + (size_t)idx[a] * d, C, H, W, p, augment_draw(seed, step, idx[a], p));
    bad += memcmp(one, whole + (size_t)a * d, d * sizeof *one) != 0;
    changed += memcmp(x + (size_t)idx[a] * d, whole + (size_t)a * d, d * sizeof *one) != 0;
  }
  CHECK(bad == 0, "%d gathered rows differ from naive with their own draw", bad);
  CHECK(changed > B / 2, "only %d of %d rows were transformed", changed, B);
  /* contiguous form (idx == NULL): rows first..first+B */
  augment_gather(whole, x, NULL, 5, 10, C, H, W, p, seed, step);
  bad = 0;
  for (int a = 0; a < 10; a++) {
    naive(one, x + (size_t)(5 + a) * d, C, H, W, p, augment_draw(seed, step, 5 + a, p));
    bad += memcmp(one, whole + (size_t)a * d, d * sizeof *one) != 0;
  }
  CHECK(bad == 0, "contiguous gather: %d rows differ", bad);
  free(x), free(whole), free(chunked), free(sliced), free(one);
}

int main(void) {
  test_kernels_against_naive();
  test_identities();
  test_uniform();
  test_chunking();
  return tu_report("test_augment");
}
