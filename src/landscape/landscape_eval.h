/* A loss landscape's grid point evaluated with the first layer's output precomputed
 * (landscape_eval.c, docs/landscape.md "The affine first layer").
 *
 * Every slice's parameters are a fixed combination of at most three vectors:
 *   surface  theta = c + a d1 (+ b d2)            coefficients (1, a, b)
 *   path     theta = theta_A + t (theta_B - theta_A)  (1, t)
 *   bezier   theta = (1-t)^2 theta_A + 2t(1-t) bend + t^2 theta_B.
 * The first dense layer's output z = w_mult W x + b_mult b is linear in (W, b), so over the slice
 *   z(point) = sum_k coef_k Z_k,  Z_k = w_mult W(v_k) X + b_mult b(v_k),
 * with Z_k computed once per slice for this rank's samples. A point then costs O(N n1) for that
 * layer instead of the O(N n1 d) GEMM, and its parameters are formed for the other tensors only.
 * The result equals the plain forward pass to round-off (a sum of the same products in another
 * order); it depends only on (slice, point, rank's samples), so a resumed surface is bit-identical.
 *
 * Eligible models: the first op is a dense layer reading the input (fc, uv) and there is no batch
 * norm. A first convolution (WRN) is not cached: its layer is a small share of the flops and its
 * output many times the input's size. Free of PETSc and MPI; the caller sums over its group. */
#ifndef NTK_LANDSCAPE_EVAL_H
#define NTK_LANDSCAPE_EVAL_H
#include <stddef.h>
#include <stdint.h>
#include "data.h"
#include "model.h"

enum { LANDSCAPE_AFFINE_MAX_VECS = 3 };

typedef struct {
  int nvec;                /* vectors combined (2 or 3); 0: not built */
  int width;               /* per-sample outputs of the first layer (n1) */
  int64_t rows[2];         /* this rank's train and test samples, in that order */
  int64_t lo[2];           /* their first index in the train and the test set */
  double *Z;               /* nvec x (rows[0] + rows[1]) x width */
} LandscapeAffine;

/* 1 if m's first layer can be cached; else 0 and why (one phrase) in why. */
int landscape_affine_eligible(const Model *m, char *why, size_t whylen);
/* Bytes of a cache of nvec vectors over `rows` samples (0 if not eligible). */
double landscape_affine_bytes(const Model *m, int64_t rows, int nvec);

/* Z_k for vecs[0..nvec) (each P, parameter-table order) over samples [lo[s], lo[s] + rows[s]) of
 * sets[s], s = 0 (train), 1 (test): one GEMM per vector and set. 0, or -1 out of memory (c left
 * empty). */
int landscape_affine_build(LandscapeAffine *c, const Model *m, const double *const *vecs /* nvec x P */, int nvec,
                           const Dataset *const *sets /* 2 */, const int64_t *lo /* 2 */, const int64_t *rows /* 2 */);
void landscape_affine_free(LandscapeAffine *c);

/* The loss sums and correct counts of this rank's samples at the point with coefficients
 * coef[nvec]: sums = {train loss sum, train correct, test loss sum, test correct} (loss sums of
 * model_loss, undivided). theta: the point's parameters; only the tensors after the first layer
 * are read. Chunks of t->capacity samples run across the train/test boundary. */
void landscape_affine_eval(double *sums /* 4 */, const LandscapeAffine *c, const Model *m, const double *theta /* P */,
                           const double *coef /* nvec */, const Dataset *const *sets /* 2 */, Tape *t);

/* Plain reference of the same sums: theta complete, model_forward on each set separately (tests). */
void landscape_affine_eval_ref(double *sums /* 4 */, const Model *m, const double *theta /* P */, const Dataset *const *sets /* 2 */,
                               const int64_t *lo /* 2 */, const int64_t *rows /* 2 */, Tape *t);
#endif
