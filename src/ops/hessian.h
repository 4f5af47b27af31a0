/* The loss Hessian on a Hessian batch (docs/conventions.md "Hessian"): H = G + R of
 * L = 1/(2N) sum_a ||f(x_a) - y_a||^2, lr-weighted as D^1/2 H D^1/2 with D = diag(lr_scale) (H itself
 * for ntk and sp, where D = I; every product, solve, trace and density below is of the weighted
 * matrix, and so is G), as a SLEPc shell matrix over the P parameters, and its
 * spectrum: top eigenvalues (sharpness), the most negative eigenvalue, Hutchinson's trace and
 * stochastic Lanczos quadrature (SLQ) for the spectral density. Also the Gauss-Newton part
 * G = J^T J / N as a second shell matrix (lambda_max(G) = lambda_max(Theta)).
 *
 * Layout. The batch is split in contiguous slices, rank r holding samples [first, first+n_local)
 * of n_global (n_local may be 0); theta is replicated. Vectors of the shell matrices have P rows
 * in PETSc's default layout over comm. A product gathers v on every rank (MPI_Allgatherv), adds
 * the local samples' contribution by forward-over-reverse (model_hvp_apply, chunk by chunk, one
 * JVP and one R-backward per chunk: the forward pass and first-order cotangents are kept from
 * hessian_set_params when they fit), and sums the parts into each rank's rows
 * (MPI_Reduce_scatter). Results do not depend on the number of ranks beyond rounding.
 *
 * Options (prefix hess_): -hess_eps_* tune the top-eigenvalue Krylov-Schur solve and
 * -hess_min_eps_* the most-negative one (read once, at creation); -hess_gn_eps_* the Gauss-Newton
 * one; -hess_coarse_eps_* the coarse levels' (tolerance 1e-2 unless set); -hess_chunk (samples per
 * tape chunk, default 512); -hess_tape_mb (per-rank budget for stored activations and cotangents,
 * default 4096: above it every product recomputes them chunk by chunk).
 *
 * Convergence (-hess_conv). "value" (default): a Ritz value is accepted when its estimated
 * eigenvalue error, relative to the spectral scale, is below -hess_*eps_tol: the smaller of the
 * residual norm (a bound) and max(res^2 / gap, the error the last two restarts extrapolate to,
 * doubled), gap being the distance to the other Ritz values. "residual": the residual norm alone,
 * SLEPc's usual test, which asks for eigenvectors accurate to tol and so for more products.
 *
 * Coarse levels (-hess_coarse_levels L, default 2; -hess_coarse_factor f, default 4;
 * -hess_coarse_min, default 32). A top-eigenvalue solve without a warm start begins from the sum of
 * the top eigenvectors of the Hessian of the samples whose global index is a multiple of f (the
 * same set for any rank count, each rank keeping its own), solved the same way from the level
 * below, L levels deep while a level keeps at least coarse_min samples. The top of a wide net's
 * Hessian is a property of the network more than of the samples, so that start is close: on the
 * benchmark (benchmarks/README.md) the full-batch solve then needs 5 products instead of 17, the
 * coarse levels costing 1.25 more. Only the start vector changes: the answer is the full
 * batch's, to the tolerance. Unless -hess_eps_ncv says otherwise, a top solve from a warm or
 * coarse start first tries a basis of nev + 1 vectors, which tests after every product, for at
 * most 4 restarts, then solves with SLEPc's default basis from the same start; a coarse level
 * from a random start uses nev + 3 vectors (its tolerance is loose).
 *
 * Random probes (trace, SLQ) are Rademacher vectors drawn counter-based, rank-count independent:
 * probe j, parameter index p (global) is +1 if rng_u64(seed, RNG_STREAM_PROBE + (j << 32), p) is
 * odd, else -1 (sub-stream j of the probe stream, rng.h).
 */
#ifndef NTK_HESSIAN_H
#define NTK_HESSIAN_H
#include <stdint.h>

#include <petscmat.h>

#include "model.h"
#include "petsc_compat.h"

typedef struct HessianOperator HessianOperator;

/* Defaults of the -hess_* operator options (main.c lists and checks them at start). */
#define HESS_DEFAULT_CHUNK 512
#define HESS_DEFAULT_TAPE_MB 4096
#define HESS_DEFAULT_CONV "value"
#define HESS_DEFAULT_CHECK_RESIDUAL "true"
#define HESS_DEFAULT_COARSE_LEVELS 2
#define HESS_DEFAULT_COARSE_FACTOR 4
#define HESS_DEFAULT_COARSE_MIN 32

/* Collective on comm. Keeps m (which must outlive the operator) and copies x_local (n_local x d)
 * and y_local (n_local x k). The slices must tile [0, n_global) in rank order. hessian_set_params
 * must be called before use. */
PetscErrorCode hessian_operator_create(HessianOperator **op, MPI_Comm comm, const Model *m,
                                       const double *x_local, const double *y_local, int n_local,
                                       int first, int n_global);
PetscErrorCode hessian_operator_destroy(HessianOperator **op);

/* Linearise at theta (P, identical on every rank): forward pass and cotangents of the local
 * samples, kept on tapes if they fit. Collective (the ranks agree on whether theta is finite). */
PetscErrorCode hessian_set_params(HessianOperator *op, const double *theta);

/* The MATSHELLs y = H v and y = G v at the theta last given (borrowed: do not destroy). */
PetscErrorCode hessian_operator_mat(HessianOperator *op, Mat *H);
PetscErrorCode hessian_gn_mat(HessianOperator *op, Mat *G);

/* Top-nev eigenvalues of H (largest algebraic first) by Krylov-Schur (prefix hess_), warm-started
 * from the sum of the previous call's eigenvectors, else from the coarse levels. resid[i] =
 * ||H x - lambda x|| / s with x the unit eigenvector and s = max(|lambda|, |lambda_max|):
 * recomputed with one more product per eigenpair after the solve (residual check; with
 * -hess_check_residual false the solver's own error estimate instead); a pair whose error by the
 * convergence test's measure exceeds 100 times the solver tolerance is dropped. Missing values (unconverged, failed check, non-finite theta, solver
 * failure) are NaN and the call still returns 0; nconv counts the valid leading values.
 * Collective. */
PetscErrorCode hessian_top_eigs(HessianOperator *op, int nev, double *eig, double *resid, int *nconv);
/* The most negative (smallest algebraic) eigenvalue, Krylov-Schur with prefix hess_min_,
 * warm-started likewise. Converged when the residual is below tol * max(|lambda|, |lambda_max|):
 * relative to the spectrum's scale, since the smallest eigenvalue of a wide net's Hessian sits in
 * a cluster near 0 where a test relative to |lambda| alone would never be met. lambda_max is taken
 * from a hessian_top_eigs at the same theta, or computed first if there was none. */
PetscErrorCode hessian_min_eig(HessianOperator *op, double *eig, double *resid, int *nconv);
/* The same for G (Gauss-Newton), options prefix hess_gn_ (read at each call), no warm start;
 * resid as above. */
PetscErrorCode hessian_gn_top_eigs(HessianOperator *op, int nev, double *eig, double *resid, int *nconv);

/* Statistics of the last solve: Krylov-Schur restarts and products with H (or G), residual check
 * included, coarse levels not. */
PetscErrorCode hessian_last_solve_stats(HessianOperator *op, int *its, long *matvecs);
/* Products of the coarse levels in the last top-eigenvalue solve (0 after a warm start), and
 * their cost in full-batch products. */
PetscErrorCode hessian_last_solve_coarse(HessianOperator *op, long *matvecs, double *work);
/* Forget the warm starts (the next solves start from the deterministic Philox vector). */
PetscErrorCode hessian_reset_warm_start(HessianOperator *op);
/* The warm starts of the top (which = 0) and most negative (which = 1) eigenvalue solves as full
 * arrays on rank 0, and back from full arrays on every rank, for checkpoints (warm_start.h): *n = 0 when there is none. */
PetscErrorCode hessian_warm_start_get(HessianOperator *op, int which, PetscInt *n, double **buf /* n, malloc'd */);
PetscErrorCode hessian_warm_start_set(HessianOperator *op, int which, PetscInt n, const double *buf /* n */);

/* Hutchinson: trace = mean over n_probe Rademacher z_j of z_j^T H z_j, stderr_ = sample standard
 * deviation / sqrt(n_probe) (NaN for n_probe < 2). NaN for a non-finite theta. Collective. */
PetscErrorCode hessian_trace(HessianOperator *op, int n_probe, uint64_t seed, double *trace, double *stderr_);

/* Stochastic Lanczos quadrature: for each probe j, m Lanczos steps from z_j/||z_j|| with full
 * reorthogonalisation (classical Gram-Schmidt, twice) give a tridiagonal T_j whose eigenvalues are
 * the nodes and whose eigenvectors' squared first components, divided by n_probe, the weights:
 * nodes[j*m + i], weights[j*m + i] (n_probe*m entries each, every probe's weights sum to
 * 1/n_probe). sum_i w_i nodes_i^p = (1/n_probe) sum_j z_j^T H^p z_j / P exactly (up to rounding)
 * for p <= 2m-1, an unbiased estimate of tr(H^p)/P. After a Lanczos breakdown (invariant
 * subspace, e.g. m >= P) the remaining nodes of that probe repeat its first node with weight 0.
 * NaN everywhere for a non-finite theta. Collective; the results are on every rank. */
PetscErrorCode hessian_slq(HessianOperator *op, int n_probe, int m, uint64_t seed, double *nodes, double *weights);
/* Gaussian-broadened density of SLQ output on a grid:
 * density[g] = sum_i w_i exp(-(grid[g] - nodes_i)^2 / (2 sigma^2)) / (sigma sqrt(2 pi)). */
void hessian_slq_density(double *density /* n_grid */, const double *grid /* n_grid */, int n_grid,
                         const double *nodes /* n_nodes */, const double *weights /* n_nodes */,
                         int n_nodes, double sigma);

/* Loss L at the current theta (1/(2N) sum ||f - y||^2), from hessian_set_params. */
PetscErrorCode hessian_loss(HessianOperator *op, double *loss);
/* The gradient-Hessian alignment at the point of hessian_set_params (docs/conventions.md):
 * align = g^T (D^1/2 H D^1/2) g / |g|^2 with g = D^1/2 grad L on the Hessian batch, the curvature
 * along the step direction, and gnorm = |g|. One gradient pass and one product. Collective. */
PetscErrorCode hessian_alignment(HessianOperator *op, double *align, double *gnorm);

/* PetscLogEvents HessMatMult, HessEigensolve, HessTrace, HessSLQ (idempotent; the create call
 * registers them too). */
PetscErrorCode hessian_register_events(void);

/* Flops of one H v product over n_global samples with the forward pass and cotangents stored
 * (JVP 2F - F1 plus R-backward 4F - 3F1 per sample, F = forward GEMM flops, F1 its input layer),
 * plus the allgather and reduce-scatter of P doubles priced as flops (OP_FLOPS_PER_WORD, operator_base.h). */
double hessian_cost_matvec(const Model *m, int n_global);

#endif
