/* Directions and coordinates of loss landscapes (Li et al. 2018; docs/landscape.md): filter
 * normalisation, points of a surface, least-squares projection onto two directions, and the
 * principal components of a trajectory. Plain C over flat arrays: no PETSc, no MPI. */
#ifndef NTK_LANDSCAPE_DIRS_H
#define NTK_LANDSCAPE_DIRS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "model.h"

/* The slices of tensor t of model m that filter normalisation scales one by one: rows of a dense
 * weight (one per output unit), output channels of a convolution's weight; a one-dimensional
 * tensor (bias, batch-norm gamma/beta) is one slice. *is_1d tells which. Returns the number of
 * slices; each is size / slices contiguous values. */
int landscape_tensor_slices(const Model *m, int t, bool *is_1d);

/* dir <- N(0, 1) from the Philox stream RNG_STREAM_LANDSCAPE (sub-stream `which` in the high
 * 32 bits, index = position in theta), then per slice s of every tensor:
 *   dir_s <- dir_s |theta_s| / (|dir_s| + 1e-10);
 * one-dimensional tensors are set to zero unless with_1d. filter = false: no scaling (plain
 * Gaussian direction, 1-D tensors still zero unless with_1d). */
void landscape_random_direction(double *dir /* P */, const Model *m, const double *theta /* P */, uint64_t seed, int which, bool filter,
                                bool with_1d);
void landscape_filter_normalize(double *dir /* P */, const Model *m, const double *theta /* P */, bool with_1d);
void landscape_filter_normalize_ref(double *dir /* P */, const Model *m, const double *theta /* P */, bool with_1d);

/* out = c + a d1 + b d2 (d2 may be NULL). */
void landscape_point(double *out /* P */, const double *c /* P */, const double *d1 /* P */, const double *d2 /* P or NULL */, double a, double b,
                     size_t P);
void landscape_point_ref(double *out /* P */, const double *c /* P */, const double *d1 /* P */, const double *d2 /* P or NULL */, double a,
                         double b, size_t P);

/* The quadratic Bezier curve with one bend (Garipov et al. 2018):
 * out = (1 - t)^2 a + 2 t (1 - t) bend + t^2 b. */
void landscape_bezier_point(double *out /* P */, const double *a /* P */, const double *bend /* P */, const double *b /* P */, double t, size_t P);
void landscape_bezier_point_ref(double *out /* P */, const double *a /* P */, const double *bend /* P */, const double *b /* P */, double t,
                                size_t P);

/* Least squares: (a, b) minimising |x - c - a d1 - b d2| (d2 NULL: a only, b = NaN), the residual
 * norm in *resid and |x - c| in *dist. Returns -1 if the directions are linearly dependent. */
int landscape_project(double *ab /* 2 */, double *resid, double *dist, const double *x /* P */, const double *c /* P */,
                      const double *d1 /* P */, const double *d2 /* P or NULL */, size_t P);

/* The top n_pc principal components of the rows X_t = theta_t - theta_T (t < n, theta_T = rows[n-1])
 * of a trajectory: unit vectors pc[j] (P each) along the right singular vectors of X, ordered by
 * singular value, each signed so that its largest-magnitude entry is positive; sv[j] the singular
 * values. Computed from the n x n Gram matrix X X^T (cyclic Jacobi). Returns -1 when fewer than
 * n_pc components are non-zero or out of memory. */
int landscape_pca(double *pc /* n_pc x P */, double *sv /* n_pc */, const double *rows /* n x P */, int n, size_t P, int n_pc);

/* Eigen-decomposition of a small symmetric matrix A (n x n, destroyed) by cyclic Jacobi:
 * eigenvalues in w, descending; eigenvectors as the columns of V (n x n). */
void landscape_sym_eig(double *w /* n */, double *V /* n x n */, double *A /* n x n */, int n);

#endif
