/* Data augmentation of image samples: random crop with zero padding and random horizontal flip,
 * the standard CIFAR-10 recipe of Wide ResNets (Zagoruyko & Komodakis 2016; pad 4, crop back to
 * H x W, flip with probability 1/2), like torchvision's RandomCrop(padding=p) followed by
 * RandomHorizontalFlip.
 *
 * A sample is C x H x W, channel-major (the NCHW rows of conv.h). With zero padding p the padded
 * image is P[c, y, x] = in[c, y - p, x - p] inside the image and 0 outside, of size
 * (H + 2p) x (W + 2p); the crop at offset (dy, dx), 0 <= dy, dx <= 2p, and the optional flip give
 *   out[c, y, x] = P[c, y + dy, x' + dx],   x' = flip ? W - 1 - x : x.
 * Offset (p, p) without flip is the identity. Inputs are already standardised (data.c), so the
 * padding is the training set's mean pixel.
 *
 * Counter-based (docs/conventions.md, "Random numbers"): the offsets and flip of a sample are a
 * pure function of (run seed, step, global sample index), so a run is reproducible and the same for
 * any number of ranks and any chunking of its batches. No PETSc, no MPI, no malloc.
 */
#ifndef NTK_AUGMENT_H
#define NTK_AUGMENT_H
#include <stdbool.h>
#include <stdint.h>

#define AUGMENT_MAX_PAD 64 /* keeps (2p+1)^2 * 2 far below 2^64: the draw's modulo bias is < 2^-50 */

/* One sample's random transform. */
typedef struct {
  int dy, dx; /* crop offset in the padded image, each in [0, 2 pad] */
  bool flip;  /* horizontal flip after the crop */
} AugmentDraw;

/* The transform of global sample `sample` at training step `step` (0 <= step < 2^32, pad in
 * [0, AUGMENT_MAX_PAD]): one 64-bit Philox word u = rng_u64(seed, RNG_STREAM_AUGMENT + (step << 32),
 * sample) (the step is the sub-stream, rng.h) read in base m = 2 pad + 1:
 *   dy = u mod m,  dx = (u / m) mod m,  flip = (u / m^2) mod 2.
 * Uniform over the (2p+1)^2 x 2 outcomes up to a bias below 2^-50. */
AugmentDraw augment_draw(uint64_t seed, int64_t step, int64_t sample, int pad);

/* out = crop_{dy,dx}(pad_p(in)), flipped if draw.flip. out and in must not overlap. Row copies. */
void augment_sample(double *out /* C x H x W */, const double *in /* C x H x W */, int C, int H, int W,
                    int pad, AugmentDraw draw);
/* The same, one pixel at a time from the formula above. */
void augment_sample_ref(double *out /* C x H x W */, const double *in /* C x H x W */, int C, int H,
                        int W, int pad, AugmentDraw draw);

/* Gathers and augments the rows of a training batch: for a < B, with i = idx ? idx[a] : first + a,
 *   out[a] = augment_sample(x[i], augment_draw(seed, step, i, pad)).
 * Keyed by the global sample index i, so any split of a batch into chunks or rank slices gives
 * the same rows. */
void augment_gather(double *out /* B x C*H*W */, const double *x /* n x C*H*W */,
                    const int64_t *idx /* B, or NULL */, int64_t first, int B, int C, int H, int W,
                    int pad, uint64_t seed, int64_t step);

#endif
