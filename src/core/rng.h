/* Counter-based random numbers (Philox4x32-10, Random123).
 *
 * Every draw is a pure function of (seed, stream, index): the stream names the tensor or the
 * purpose (data shuffle, teacher network, ...) and the index the element or epoch. A model's
 * initialisation and a run's minibatch order are therefore identical for any number of MPI ranks
 * and any placement of tasks on ranks (docs/conventions.md, "Random numbers").
 *
 * Mapping (fixed; changing it changes every result):
 *   counter = { index_lo32, index_hi32, stream_lo32, stream_hi32 }, key = { seed_lo32, seed_hi32 }.
 *   uniform(i):  53-bit double in (0,1) from the first two output words of counter i.
 *   normal(i):   Box-Muller on the pair drawn at counter floor(i/2): cos branch for even i,
 *                sin branch for odd i, so filling a range costs one Philox call per two normals.
 */
#ifndef NTK_RNG_H
#define NTK_RNG_H
#include <stddef.h>
#include <stdint.h>

/* Named streams. Tensor streams are RNG_STREAM_PARAM_BASE + tensor index. A named stream that
 * needs sub-streams puts the sub-stream number in the high 32 bits (stream + (j << 32)), which can
 * never collide with another named or tensor stream. */
enum {
  RNG_STREAM_SHUFFLE = 1,       /* minibatch permutation; index = epoch-local position */
  RNG_STREAM_DATA_SUBSET = 2,   /* choice of training/test subsets */
  RNG_STREAM_TEACHER_X = 3,     /* teacher-student Gaussian inputs */
  RNG_STREAM_TEACHER_W = 4,     /* teacher network weights; sub-tensor j uses + (j << 32) */
  RNG_STREAM_AUGMENT = 5,       /* data augmentation (crop, flip) */
  RNG_STREAM_PROBE = 6,         /* random probe vectors (Hutchinson, SLQ, eigensolver starts) */
  RNG_STREAM_LANDSCAPE = 7,     /* loss-landscape directions; direction j uses + (j << 32) */
  RNG_STREAM_PARAM_BASE = 1024  /* + tensor index in the model's parameter table */
};

/* Uniform double in the open interval (0,1). */
double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);

/* Standard normal N(0,1). */
double rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

/* out[j] = rng_normal(seed, stream, first + j) for j < n, with one Philox call per pair. */
void rng_normal_fill(double *out /* n */, size_t n, uint64_t seed, uint64_t stream, uint64_t first);

/* Raw 64-bit word: the first two output words of counter `index`. Used for permutations. */
uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t index);

/* perm <- a uniformly random permutation of 0..n-1, a pure function of (seed, stream, epoch).
 * Implemented as a sort by random 64-bit keys rng_u64(seed, stream, epoch * n + i), ties by i. */
void rng_permutation(int64_t *perm /* n */, int64_t n, uint64_t seed, uint64_t stream, uint64_t epoch);

#endif
