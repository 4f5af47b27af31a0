/* Counter-based random numbers: Philox4x32-10 with the fixed mapping documented in rng.h.
 *
 * Words to 64 bits: the output words are paired little-endian, u64 = w[0] | w[1] << 32 (and
 * w[2] | w[3] << 32 for the second uniform of a Box-Muller pair), matching the lo/hi order of the
 * counter and key. */
#include "rng.h"

#include <Random123/philox.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* 2*pi spelled out: M_PI is not ISO C. */
static const double two_pi = 6.283185307179586476925286766559;

static philox4x32_ctr_t philox_block(uint64_t seed, uint64_t stream, uint64_t index) {
  philox4x32_ctr_t ctr = {{(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)stream,
                           (uint32_t)(stream >> 32)}};
  philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
  return philox4x32_R(10, ctr, key);
}

static inline uint64_t words_to_u64(uint32_t lo, uint32_t hi) {
  return (uint64_t)lo | ((uint64_t)hi << 32);
}

/* Top 53 bits, shifted by half a step: never 0 (so log() is finite) and never 1. */
static inline double u64_to_open01(uint64_t u) {
  return ((double)(u >> 11) + 0.5) * 0x1p-53;
}

/* Both Box-Muller normals of pair `pair`; the single path keeps pointwise and fill bitwise equal. */
static void normal_pair(double *even, double *odd, uint64_t seed, uint64_t stream, uint64_t pair) {
  philox4x32_ctr_t r = philox_block(seed, stream, pair);
  double u1 = u64_to_open01(words_to_u64(r.v[0], r.v[1]));
  double u2 = u64_to_open01(words_to_u64(r.v[2], r.v[3]));
  double radius = sqrt(-2.0 * log(u1));
  double angle = two_pi * u2;
  *even = radius * cos(angle);
  *odd = radius * sin(angle);
}

uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
  philox4x32_ctr_t r = philox_block(seed, stream, index);
  return words_to_u64(r.v[0], r.v[1]);
}

double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return u64_to_open01(rng_u64(seed, stream, index));
}

double rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  double even, odd;
  normal_pair(&even, &odd, seed, stream, index / 2);
  return (index & 1) ? odd : even;
}

void rng_normal_fill(double *out /* n */, size_t n, uint64_t seed, uint64_t stream, uint64_t first) {
  size_t j = 0;
  double even, odd;
  if (n > 0 && (first & 1)) { /* leading odd index: sin half of its pair */
    normal_pair(&even, &odd, seed, stream, first / 2);
    out[j++] = odd;
  }
  for (; j + 1 < n; j += 2) {
    normal_pair(&out[j], &out[j + 1], seed, stream, (first + j) / 2);
  }
  if (j < n) { /* trailing even index: cos half of its pair */
    normal_pair(&even, &odd, seed, stream, (first + j) / 2);
    out[j] = even;
  }
}

typedef struct {
  uint64_t key;
  int64_t i;
} SortKey;

static int compare_sort_keys(const void *pa, const void *pb) {
  const SortKey *a = pa, *b = pb;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}

void rng_permutation(int64_t *perm /* n */, int64_t n, uint64_t seed, uint64_t stream, uint64_t epoch) {
  if (n <= 0) return;
  SortKey *keys = malloc((size_t)n * sizeof *keys);
  if (!keys) { /* no error channel in the interface; a wrong order would be silent */
    fprintf(stderr, "rng_permutation: out of memory for n = %lld\n", (long long)n);
    abort();
  }
  uint64_t base = epoch * (uint64_t)n;
  for (int64_t i = 0; i < n; i++) {
    keys[i].key = rng_u64(seed, stream, base + (uint64_t)i);
    keys[i].i = i;
  }
  qsort(keys, (size_t)n, sizeof *keys, compare_sort_keys);
  for (int64_t i = 0; i < n; i++) perm[i] = keys[i].i;
  free(keys);
}
