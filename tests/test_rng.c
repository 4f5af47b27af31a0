/* Unit tests for rng.c: purity, distributions, stream independence, permutations, and the fixed
 * (seed, stream, index) -> Philox mapping pinned against raw Random123 calls and its published
 * known-answer vectors. Seeds are fixed, so every statistical check is deterministic; tolerances
 * are 5 standard errors (or a 1e-3 level) so a correct generator passes and a biased one fails. */
#include <Random123/philox.h>
#include <stdint.h>
#include <string.h>

#include "rng.h"
#include "testutil.h"

/* Independent re-derivation of the mapping in rng.h, straight from Random123. */
static philox4x32_ctr_t raw_philox(uint64_t seed, uint64_t stream, uint64_t index) {
  philox4x32_ctr_t c = {{(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)stream,
                         (uint32_t)(stream >> 32)}};
  philox4x32_key_t k = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
  return philox4x32_R(10, c, k);
}
static double raw_open01(uint32_t lo, uint32_t hi) {
  uint64_t u = (uint64_t)lo | ((uint64_t)hi << 32);
  return ((double)(u >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
}

static void test_known_answers(void) {
  /* Random123 kat_vectors for philox4x32 with 10 rounds: (ctr, key) -> output. */
  struct {
    uint32_t ctr[4], key[2], out[4];
  } kat[3] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (int t = 0; t < 3; t++) {
    philox4x32_ctr_t c = {{kat[t].ctr[0], kat[t].ctr[1], kat[t].ctr[2], kat[t].ctr[3]}};
    philox4x32_key_t k = {{kat[t].key[0], kat[t].key[1]}};
    philox4x32_ctr_t r = philox4x32_R(10, c, k);
    CHECK(memcmp(r.v, kat[t].out, sizeof r.v) == 0, "philox4x32-10 KAT %d mismatch", t);

    /* The same vector through rng.h's mapping: counter = {index lo, hi, stream lo, hi}. */
    uint64_t index = (uint64_t)kat[t].ctr[0] | ((uint64_t)kat[t].ctr[1] << 32);
    uint64_t stream = (uint64_t)kat[t].ctr[2] | ((uint64_t)kat[t].ctr[3] << 32);
    uint64_t seed = (uint64_t)kat[t].key[0] | ((uint64_t)kat[t].key[1] << 32);
    uint64_t want = (uint64_t)kat[t].out[0] | ((uint64_t)kat[t].out[1] << 32);
    CHECK(rng_u64(seed, stream, index) == want, "rng_u64 KAT %d: %016llx vs %016llx", t,
          (unsigned long long)rng_u64(seed, stream, index), (unsigned long long)want);
    double u = raw_open01(kat[t].out[0], kat[t].out[1]);
    CHECK(rng_uniform(seed, stream, index) == u, "rng_uniform KAT %d", t);
  }
  /* Pinned literal: rng_u64(0,0,0) = first two KAT words, lo word first. */
  CHECK(rng_u64(0, 0, 0) == 0xe169c58d6627e8d5ull, "rng_u64(0,0,0) = %016llx",
        (unsigned long long)rng_u64(0, 0, 0));

  /* Normals against Box-Muller on raw words, with all three arguments using their high bits. */
  const uint64_t seeds[] = {0, 42, 0x123456789abcdefull};
  const uint64_t streams[] = {RNG_STREAM_SHUFFLE, RNG_STREAM_PARAM_BASE + 3, 0xfedcba9876543210ull};
  const uint64_t indices[] = {0, 1, 7, 0x100000001ull, 0x100000002ull};
  int bad_u64 = 0, bad_normal = 0;
  for (int s = 0; s < 3; s++)
    for (int t = 0; t < 3; t++)
      for (int i = 0; i < 5; i++) {
        uint64_t seed = seeds[s], stream = streams[t], index = indices[i];
        philox4x32_ctr_t r = raw_philox(seed, stream, index);
        if (rng_u64(seed, stream, index) != ((uint64_t)r.v[0] | ((uint64_t)r.v[1] << 32))) bad_u64++;
        philox4x32_ctr_t p = raw_philox(seed, stream, index / 2);
        double radius = sqrt(-2.0 * log(raw_open01(p.v[0], p.v[1])));
        double angle = 6.283185307179586 * raw_open01(p.v[2], p.v[3]);
        double want = (index % 2) ? radius * sin(angle) : radius * cos(angle);
        if (!tu_close(rng_normal(seed, stream, index), want, 1e-14)) bad_normal++;
      }
  CHECK(bad_u64 == 0, "rng_u64 differs from raw philox in %d cases", bad_u64);
  CHECK(bad_normal == 0, "rng_normal differs from raw Box-Muller in %d cases", bad_normal);
}

static void test_purity_and_fill(void) {
  const uint64_t seed = 1234, stream = RNG_STREAM_PARAM_BASE + 1;
  CHECK(rng_uniform(seed, stream, 99) == rng_uniform(seed, stream, 99), "uniform not pure");
  CHECK(rng_normal(seed, stream, 99) == rng_normal(seed, stream, 99), "normal not pure");
  CHECK(rng_u64(seed, stream, 99) == rng_u64(seed, stream, 99), "u64 not pure");
  CHECK(rng_uniform(seed, stream, 99) != rng_uniform(seed, stream, 100), "adjacent uniforms equal");
  CHECK(rng_normal(seed, stream, 98) != rng_normal(seed, stream, 99), "cos/sin halves equal");

  /* Fill equals pointwise for every parity of start and length, bitwise, and writes only n. */
  double buf[40];
  int mismatches = 0, overruns = 0;
  for (uint64_t first = 0; first < 4; first++)
    for (size_t n = 0; n < 8; n++) {
      for (int j = 0; j < 40; j++) buf[j] = -999.0;
      rng_normal_fill(buf, n, seed, stream, first + 1000);
      for (size_t j = 0; j < n; j++)
        if (buf[j] != rng_normal(seed, stream, first + 1000 + j)) mismatches++;
      for (size_t j = n; j < 40; j++)
        if (buf[j] != -999.0) overruns++;
    }
  CHECK(mismatches == 0, "rng_normal_fill differs from rng_normal at %d entries", mismatches);
  CHECK(overruns == 0, "rng_normal_fill wrote past n at %d entries", overruns);

  /* A fill split into two calls at an odd boundary equals one call. */
  double whole[33], split[33];
  rng_normal_fill(whole, 33, seed, stream, 5);
  rng_normal_fill(split, 14, seed, stream, 5);
  rng_normal_fill(split + 14, 19, seed, stream, 19);
  CHECK(memcmp(whole, split, sizeof whole) == 0, "split fill differs from whole fill");
}

enum { N_DRAWS = 1000000 };

static void test_uniform_distribution(void) {
  double sum = 0, sum2 = 0, lo = 1, hi = 0;
  int bins[10] = {0};
  for (uint64_t i = 0; i < N_DRAWS; i++) {
    double u = rng_uniform(7, RNG_STREAM_DATA_SUBSET, i);
    sum += u;
    sum2 += u * u;
    if (u < lo) lo = u;
    if (u > hi) hi = u;
    int b = (int)(u * 10);
    if (b >= 0 && b < 10) bins[b]++;
  }
  CHECK(lo > 0.0 && hi < 1.0, "uniform outside (0,1): min %g max %g", lo, hi);
  double mean = sum / N_DRAWS, var = sum2 / N_DRAWS - mean * mean;
  double se_mean = sqrt(1.0 / 12.0 / N_DRAWS);
  CHECK(fabs(mean - 0.5) < 5 * se_mean, "uniform mean %.6f", mean);
  CHECK(fabs(var - 1.0 / 12.0) < 5 * sqrt(1.0 / 180.0 / N_DRAWS), "uniform variance %.6f", var);
  double chi2 = 0, expect = N_DRAWS / 10.0;
  for (int b = 0; b < 10; b++) chi2 += (bins[b] - expect) * (bins[b] - expect) / expect;
  CHECK(chi2 < 27.88, "uniform decile chi2 %.2f (9 dof, p = 1e-3 at 27.88)", chi2);
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void test_normal_distribution(void) {
  double *z = malloc(N_DRAWS * sizeof *z);
  rng_normal_fill(z, N_DRAWS, 2024, RNG_STREAM_PARAM_BASE, 0);
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  int finite = 1;
  for (int i = 0; i < N_DRAWS; i++) {
    double x = z[i];
    if (!isfinite(x)) finite = 0;
    m1 += x;
    m2 += x * x;
    m3 += x * x * x;
    m4 += x * x * x * x;
  }
  m1 /= N_DRAWS, m2 /= N_DRAWS, m3 /= N_DRAWS, m4 /= N_DRAWS;
  double rootn = sqrt((double)N_DRAWS);
  CHECK(finite, "non-finite normal draw");
  CHECK(fabs(m1) < 5 / rootn, "normal mean %.5f", m1);                  /* Var x = 1 */
  CHECK(fabs(m2 - 1) < 5 * sqrt(2.0) / rootn, "normal E x^2 %.5f", m2); /* Var x^2 = 2 */
  CHECK(fabs(m3) < 5 * sqrt(15.0) / rootn, "normal E x^3 %.5f", m3);    /* Var x^3 = 15 */
  CHECK(fabs(m4 - 3) < 5 * sqrt(96.0) / rootn, "normal E x^4 %.5f", m4); /* Var x^4 = 96 */

  /* Kolmogorov-Smirnov against Phi on the first 1e5 draws (critical 1.95/sqrt(n) at p = 1e-3). */
  enum { N_KS = 100000 };
  qsort(z, N_KS, sizeof *z, compare_doubles);
  double ks = 0;
  for (int i = 0; i < N_KS; i++) {
    double cdf = 0.5 * erfc(-z[i] / sqrt(2.0));
    double d = fmax(fabs(cdf - (double)i / N_KS), fabs(cdf - (double)(i + 1) / N_KS));
    if (d > ks) ks = d;
  }
  CHECK(ks < 1.95 / sqrt((double)N_KS), "normal KS statistic %.5f", ks);
  free(z);
}

/* Sample correlation of two equally long sequences. */
static double correlation(const double *x, const double *y, int n) {
  double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
  for (int i = 0; i < n; i++) mx += x[i], my += y[i];
  mx /= n, my /= n;
  for (int i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / sqrt(sxx * syy);
}

static void test_decorrelation(void) {
  enum { N = 200000 };
  double *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
  double tol = 5 / sqrt((double)N);
  rng_normal_fill(a, N, 11, RNG_STREAM_PARAM_BASE + 0, 0);

  rng_normal_fill(b, N, 11, RNG_STREAM_PARAM_BASE + 1, 0);
  double c = correlation(a, b, N);
  CHECK(fabs(c) < tol, "adjacent streams correlated: %.5f", c);
  CHECK(memcmp(a, b, 16 * sizeof *a) != 0, "adjacent streams start identically");

  rng_normal_fill(b, N, 12, RNG_STREAM_PARAM_BASE + 0, 0);
  c = correlation(a, b, N);
  CHECK(fabs(c) < tol, "adjacent seeds correlated: %.5f", c);
  CHECK(memcmp(a, b, 16 * sizeof *a) != 0, "adjacent seeds start identically");

  /* Stream high word matters: streams s and s + 2^32 differ. */
  rng_normal_fill(b, N, 11, RNG_STREAM_PARAM_BASE + (1ull << 32), 0);
  c = correlation(a, b, N);
  CHECK(fabs(c) < tol, "streams differing in the high word correlated: %.5f", c);

  /* Lag 1 (cos/sin halves of one pair and across pairs) and lag 2 within a stream. */
  c = correlation(a, a + 1, N - 1);
  CHECK(fabs(c) < tol, "lag-1 correlation %.5f", c);
  c = correlation(a, a + 2, N - 2);
  CHECK(fabs(c) < tol, "lag-2 correlation %.5f", c);
  /* Squares of the two halves of a pair: independent for exact Box-Muller. */
  for (int i = 0; i < N / 2; i++) { /* in place: a[2i], a[2i+1] are read before a[i] is written */
    double even = a[2 * i], odd = a[2 * i + 1];
    a[i] = even * even;
    b[i] = odd * odd;
  }
  c = correlation(a, b, N / 2);
  CHECK(fabs(c) < 5 / sqrt(N / 2.0), "cos/sin squares correlated: %.5f", c);
  free(a);
  free(b);
}

static int is_permutation(const int64_t *p, int64_t n) {
  char *seen = calloc((size_t)n + 1, 1);
  int ok = 1;
  for (int64_t i = 0; i < n; i++) {
    if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
    else seen[p[i]] = 1;
  }
  free(seen);
  return ok;
}

static void test_permutation(void) {
  enum { N = 1001 };
  int64_t p0[N], p0again[N], p1[N], pstream[N];
  rng_permutation(p0, N, 5, RNG_STREAM_SHUFFLE, 0);
  rng_permutation(p0again, N, 5, RNG_STREAM_SHUFFLE, 0);
  rng_permutation(p1, N, 5, RNG_STREAM_SHUFFLE, 1);
  rng_permutation(pstream, N, 5, RNG_STREAM_SHUFFLE + 100, 0);
  CHECK(is_permutation(p0, N) && is_permutation(p1, N) && is_permutation(pstream, N),
        "not a permutation of 0..n-1");
  CHECK(memcmp(p0, p0again, sizeof p0) == 0, "permutation not pure");
  int fixed_points = 0, same_as_p1 = 0;
  for (int i = 0; i < N; i++) fixed_points += (p0[i] == i), same_as_p1 += (p0[i] == p1[i]);
  CHECK(same_as_p1 < 10, "epochs 0 and 1 agree at %d of %d positions", same_as_p1, N);
  CHECK(fixed_points < 10, "%d fixed points (identity-like order)", fixed_points);
  CHECK(memcmp(p0, pstream, sizeof p0) != 0, "streams give the same permutation");

  /* It is the documented sort: keys rng_u64(seed, stream, epoch*n + perm[j]) nondecreasing. */
  int unsorted = 0;
  for (int j = 1; j < N; j++)
    if (rng_u64(5, RNG_STREAM_SHUFFLE, 1ull * N + p1[j - 1]) > rng_u64(5, RNG_STREAM_SHUFFLE, 1ull * N + p1[j]))
      unsorted++;
  CHECK(unsorted == 0, "permutation is not the key sort (%d inversions)", unsorted);

  /* Uniform over the 6 permutations of 3 items across 60000 epochs (chi2, 5 dof, p = 1e-3). */
  enum { EPOCHS = 60000 };
  int counts[6] = {0}, invalid = 0;
  for (uint64_t e = 0; e < EPOCHS; e++) {
    int64_t q[3];
    rng_permutation(q, 3, 99, RNG_STREAM_SHUFFLE, e);
    if (!is_permutation(q, 3)) {
      invalid++;
      continue;
    }
    int code = (int)(q[0] * 2 + (q[1] > q[2])); /* q[0] and the order of the rest */
    counts[code]++;
  }
  CHECK(invalid == 0, "%d invalid small permutations", invalid);
  double chi2 = 0, expect = EPOCHS / 6.0;
  for (int c = 0; c < 6; c++) chi2 += (counts[c] - expect) * (counts[c] - expect) / expect;
  CHECK(chi2 < 20.52, "permutations of 3 not uniform: chi2 %.2f", chi2);

  int64_t one = -7;
  rng_permutation(&one, 1, 1, RNG_STREAM_SHUFFLE, 3);
  CHECK(one == 0, "n = 1 permutation gave %lld", (long long)one);
}

int main(void) {
  test_known_answers();
  test_purity_and_fill();
  test_uniform_distribution();
  test_normal_distribution();
  test_decorrelation();
  test_permutation();
  return tu_report("test_rng");
}
