/* Feature-learning kernels (docs/conventions.md "Feature learning"): plain C over flat arrays, no
 * PETSc, no MPI. The measurement (src/measure/features.c) gathers what they need across ranks. */
#ifndef NTK_FEATURE_KERNELS_H
#define NTK_FEATURE_KERNELS_H
#include <stdbool.h>
#include <stddef.h>

/* Spectral norm of D = mult (A1 - A0), rows x cols row-major, from the unit vector v (cols; the
 * warm start, overwritten with the top right singular vector).
 * feat_spectral_norm: Lanczos on D^T D with full reorthogonalisation (BLAS), cycles of at most
 * FEAT_LANCZOS products restarted from the Ritz vector, until the Ritz value changes by at most
 * tol relative and its residual is below sqrt(tol) theta, or after max_iter products; work:
 * feat_spectral_work(rows, cols) doubles. feat_spectral_norm_ref: plain power iteration until
 * sigma^2 changes by at most tol relative; work: rows doubles. Both return sigma (0 for D = 0, v
 * then unchanged) and the products D^T D v used in *iters (NULL: not wanted). */
#define FEAT_LANCZOS 40
size_t feat_spectral_work(int rows, int cols);
double feat_spectral_norm(const double *A1, const double *A0, double mult, int rows, int cols, double *v /* cols */,
                          double *work, int max_iter, double tol, int *iters);
double feat_spectral_norm_ref(const double *A1, const double *A0, double mult, int rows, int cols, double *v /* cols */,
                          double *work /* rows */, int max_iter, double tol, int *iters);

/* Centred alignment of two symmetric N x N kernels,
 *   <C K C, C L C>_F / (|C K C|_F |C L C|_F),  C = I - 1 1^T / N:
 * the centred kernel-target alignment for L = Y Y^T, and linear CKA for K = X X^T, L = Z Z^T.
 * work: 2 N^2 + N doubles. NaN when a centred kernel is zero. */
double feat_centered_alignment(const double *K, const double *L, int N, double *work /* 2 N^2 + N */);

/* rows x N block of the Gram matrix scale * H_rows H_all^T: H_rows (rows x n) against H_all
 * (N x n), both row-major. */
void feat_gram_rows(const double *H_rows, int rows, const double *H_all, int N, int n, double scale, double *out /* rows x N */);

#endif
