/* Infinite-width gradient descent as kernel regression in discrete time (docs/infinite_width.md,
 * docs/conventions.md "Linearised model and infinite width").
 *
 * With Theta = Theta_{L+1}(X, X) (N x N), Theta_inf = Theta / N = V diag(lambda) V^T (ScaLAPACK,
 * through SLEPc's EPSSCALAPACK on the distributed dense matrix), f_0 = 0 (the mean predictor of the
 * infinite-width net) and the deck's learning rates eta_s (schedule applied), after t steps
 *
 *   train:  f_t(X)  = Y - V diag(d_t) V^T Y = V diag(1 - d_t) V^T Y,                       d_t = prod_{s<t} (1 - eta_s lambda)
 *   test:   f_t(X*) = Theta(X*, X) V diag((1 - d_t) / (N lambda)) V^T Y
 *
 * which is f_t - y = (I - eta Theta_inf)^t (f_0 - y) and its test-point form at constant eta. The
 * converged predictor Theta(X*, X) Theta^{-1} Y comes from a Cholesky solve (ScaLAPACK).
 *
 * The prior expectation. A wide network starts from a random f_0, which tends to a Gaussian process
 * with the NNGP kernel K = K_{L+1}, independently per output. Averaged over it, the losses gain
 * (k outputs, D = diag(d_t), G = diag((1 - d_t) / (N lambda)), C = Theta(X*, X))
 *
 *   train:  k / (2N) sum_i d_i^2 (V^T K V)_ii
 *   test:   k / (2M) [ tr K(X*, X*) - 2 tr(C V G V^T K(X, X*)) + tr(C V G V^T K V G V^T C^T) ]
 *
 * since f_t - y gains V D V^T f_0(X) on the train set and f_0(X*) - C V G V^T f_0(X) on the test
 * set, both of mean zero. These are the curves a finite network's loss, averaged over seeds,
 * approaches as the width grows (the f_0 = 0 curves above are their mean-predictor parts). */
#ifndef NTK_KERNEL_REGRESSION_H
#define NTK_KERNEL_REGRESSION_H
#include <slepceps.h>
#include "config.h"
#include "data.h"
#include "schema.h"

typedef struct {
  MPI_Comm comm;
  int N, M, k;
  double *spectrum;       /* N: eigenvalues of Theta_inf = Theta(X, X) / N, largest first */
  double lambda0;         /* spectrum[0] */
  /* the converged kernel-regression predictor (Cholesky solve); NaN if Theta is not positive definite */
  double conv_train_loss, conv_train_acc, conv_test_loss, conv_test_acc;
  /* private */
  Mat V, C;               /* eigenvectors (N x N, columns), Theta(X*, X) (M x N; NULL if M = 0) */
  double *c;              /* N x k: V^T Y on every rank */
  /* the prior expectation (kreg_setup_prior), or prior == 0 */
  int prior;
  double *q;              /* N: diag(V^T K V) */
  double *s;              /* N: diag(V^T K(X, X*) C V) */
  double k_test_trace;    /* tr K(X*, X*) */
  double *H;              /* rows H_first.. of (V^T K V) o (V^T C^T C V), H_rows x N (NULL if M = 0) */
  PetscInt H_first, H_rows;
  const Dataset *train, *test;
} KernelRegression;

/* Collective. Takes G (N x N, Theta(X, X)) and C (M x N, Theta(X*, X), or NULL) as assembled by
 * kernel_gram_assemble; keeps C (destroyed by kreg_free), leaves G to the caller. */
PetscErrorCode kreg_setup(KernelRegression *kr, MPI_Comm comm, Mat G, Mat C, const Dataset *train, const Dataset *test);

/* Collective. Prepares the prior expectation from K = K(X, X) (N x N, the layout of kreg_setup's G),
 * Kc = K(X*, X) (M x N, the layout of its C; NULL if M = 0) and k_test_trace = tr K(X*, X*).
 * Leaves K and Kc to the caller. */
PetscErrorCode kreg_setup_prior(KernelRegression *kr, Mat K, Mat Kc, double k_test_trace);

/* Collective. What the prior adds to the train and test losses after the steps whose factors are
 * d (N: d_t per eigenvalue) and omd (1 - d_t). */
PetscErrorCode kreg_prior_terms(KernelRegression *kr, const double *d, const double *omd, double *train_extra, double *test_extra);

/* Collective. Train (and test, if test_loss) loss (1/2n) sum |f - y|^2 and accuracy after the steps
 * whose factors are omd (N: 1 - d_t per eigenvalue, accurate when d_t is near 1). */
PetscErrorCode kreg_evaluate(KernelRegression *kr, const double *omd, double *train_loss, double *train_acc,
                             double *test_loss, double *test_acc);

/* Collective. The whole trajectory at base rate eta under cfg's schedule (steps, -record_every,
 * -test_every, the learning-rate schedule), into the rows of the train and test schemas (train rows
 * step, loss, accuracy, param_norm = NaN, dist_init = NaN, lr; test rows step, loss, accuracy):
 * every recorded step until the end, or until the train loss exceeds cfg->diverge_factor times
 * the initial one (or is not finite; that row is recorded). Returns in *diverged whether it did,
 * and in *steps_done the last step reached. With the prior (kreg_setup_prior) and prior_train /
 * prior_test given, their entry j is the prior-expected loss at train / test row j. */
PetscErrorCode kreg_trajectory(KernelRegression *kr, const Config *cfg, double eta, RecordBuffer *train_rows, RecordBuffer *test_rows,
                               double *prior_train, double *prior_test, int *diverged, int64_t *steps_done);

void kreg_free(KernelRegression *kr);

#endif
