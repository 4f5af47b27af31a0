/* The empirical NTK on an NTK batch (docs/conventions.md "Empirical NTK"): the lr-weighted
 * Theta = J D J^T / N, D = diag(lr_scale) (J J^T / N for ntk and sp, where D = I), or on request the
 * plain J J^T / N; the full (Nk x Nk) matrix or its logit trace
 * Theta_bar = (1/k) sum_i Theta_{(.,i),(.,i)} (N x N).
 *
 * Two ways to its spectrum:
 *   - matrix-free: a MATSHELL y = Theta v (one VJP, one allreduce of a P-vector, one JVP per
 *     product) and SLEPc Krylov-Schur for the top eigenvalues, warm-started across calls;
 *   - exact: the Gram matrix assembled layer by layer from backpropagated signals and layer
 *     inputs without forming J (dense/activation nets only: not the WRN), then ScaLAPACK for all eigenvalues
 *     (SLEPc's EPSSCALAPACK, which this Debian SLEPc 3.18 provides) or Krylov-Schur on it.
 * ntk_cost_matfree / ntk_cost_exact estimate both so a caller can take the cheaper.
 *
 * Layout: the batch is split in contiguous slices, rank r holding samples [first, first+n_local).
 * Vectors and Gram rows follow it: full variant index (a, i) -> a*k + i (sample-major), local size
 * n_local*k; traced variant index a, local size n_local. theta is replicated on every rank.
 *
 * Options (prefix ntk_): -ntk_eps_* tune the Krylov-Schur solve (read once, at creation);
 * -ntk_gram_eps_* the eigensolves on an assembled Gram matrix; -ntk_chunk (samples per tape
 * chunk) and -ntk_tape_mb (per-rank budget in MB for stored activations: above it the forward
 * pass is recomputed chunk by chunk in every product instead), defaults NTK_DEFAULT_* below;
 * -ntk_gram_block (source samples per column block of the Gram assembly; default: temporaries of
 * about 64 MB).
 *
 * Convergence (-ntk_conv): "residual" (default) is SLEPc's ||Theta x - lambda x|| / |lambda| <= tol;
 * "value" the operator base's eigenvalue-error test (operator_base.h, shared with the Hessian),
 * which accepts lambda once its estimated error is below tol times lambda_max: fewer products
 * for the same eigenvalue accuracy, a residual near sqrt(tol gap). -ntk_check_residual (default
 * true): one product per accepted pair recomputes its residual.
 *
 * Coarse levels (-ntk_coarse_levels L, default 2; -ntk_coarse_factor f, default 4;
 * -ntk_coarse_min, default 32), as the Hessian's (operator_base.h OpCoarse): a cold top solve
 * (no warm vector), matrix-free or on an assembled Gram matrix, begins from the sum of the top
 * eigenvectors of the NTK of the samples whose global index is a multiple of f (matrix-free: an
 * NtkOperator on those samples with its own tapes, linearised when first needed; Gram: the
 * principal submatrix on their rows), solved to -ntk_coarse_eps_tol (default 1e-2) the same way
 * from the level below, zero-padded onto the finer level's rows. Only the start vector changes:
 * the answer is the full batch's, to the tolerance. Warm solves (lambda_t along training) skip
 * them. The NTK's top of a net with k outputs is a cluster of about k eigenvalues (one per
 * output, a few percent apart), which a start vector does not resolve: on the lambda_0 benchmark
 * the coarse start saves few products (benchmarks/README.md).
 */
#ifndef NTK_NTK_H
#define NTK_NTK_H
#include <stdbool.h>

#include <petscmat.h>

#include "model.h"
#include "petsc_compat.h"

/* Defaults of the -ntk_* operator options (read by ntk_operator_create, checked and listed by the
 * app's NTK option table; 0 gram_block = automatic). */
#define NTK_DEFAULT_CHUNK 512
#define NTK_DEFAULT_TAPE_MB 4096
#define NTK_DEFAULT_GRAM_BLOCK 0
#define NTK_DEFAULT_CONV "residual"
#define NTK_DEFAULT_CHECK_RESIDUAL "true"
#define NTK_DEFAULT_COARSE_LEVELS 2
#define NTK_DEFAULT_COARSE_FACTOR 4
#define NTK_DEFAULT_COARSE_MIN 32

typedef enum { NTK_FULL = 0, NTK_TRACED = 1 } NtkVariant;

const char *ntk_variant_name(NtkVariant v); /* "full", "traced" (the output attribute values) */

/* Which kernel: the lr-weighted J D J^T / N (THE NTK: lambda, eta = c / lambda_0, phases) or the
 * plain J J^T / N. */
typedef enum { NTK_WEIGHT_LR = 0, NTK_WEIGHT_PLAIN = 1 } NtkWeighting;

typedef struct NtkOperator NtkOperator;

/* Collective on comm. Keeps m (which must outlive the operator) and copies x_local. Every rank
 * passes its slice; n_local may be 0 on some ranks. ntk_set_params must be called before use.
 * With batch norm the N samples form one batch-norm batch, statistics summed over comm. */
PetscErrorCode ntk_operator_create(NtkOperator **op, MPI_Comm comm, const Model *m,
                                   const double *x_local, int n_local, int first, int n_global,
                                   NtkVariant v);
PetscErrorCode ntk_operator_destroy(NtkOperator **op);

/* The kernel the operator is (NTK_WEIGHT_LR after create); changing it forgets the warm start. */
PetscErrorCode ntk_set_weighting(NtkOperator *op, NtkWeighting w);
NtkWeighting ntk_weighting(const NtkOperator *op);

/* The MATSHELL y = Theta v at the theta last given (borrowed: do not destroy). */
PetscErrorCode ntk_operator_mat(NtkOperator *op, Mat *A);

/* Re-linearise at theta (P, identical on every rank): one forward pass on the local samples,
 * kept on the tapes (none if -ntk_tape_mb is exceeded: products then recompute it). Collective
 * (the ranks agree on whether theta is finite). */
PetscErrorCode ntk_set_params(NtkOperator *op, const double *theta);

/* Top-nev eigenvalues of Theta, largest first, by Krylov-Schur on the shell operator, warm-started
 * from the previous call's eigenvectors, else (cold) from the coarse levels; resid[i] =
 * ||Theta x - lambda x|| / |lambda| (recomputed by one product, counted, unless
 * -ntk_check_residual false). Missing
 * (unconverged, or a non-finite theta, or a solver failure) values are NaN and the call still
 * returns 0: a diverging run goes on. Collective. */
PetscErrorCode ntk_top_eigs(NtkOperator *op, int nev, double *eig, double *resid, int *nconv);

/* Statistics of the last ntk_top_eigs / ntk_gram_top_eigs: solver iterations (restarts) and
 * operator applications. */
PetscErrorCode ntk_last_solve_stats(NtkOperator *op, int *its, long *matvecs);
/* Products of the coarse levels in the last cold solve (0 after a warm start), and their cost in
 * products of this level (each weighted by its samples / N). */
PetscErrorCode ntk_last_solve_coarse(NtkOperator *op, long *matvecs, double *work);
/* Forget the warm start (the next cold solve starts from the coarse levels, or the Philox vector). */
PetscErrorCode ntk_reset_warm_start(NtkOperator *op);
/* The warm start (the sum of the last solve's eigenvectors) as a full array on rank 0, and back
 * from a full array on every rank, for checkpoints (warm_start.h): *n = 0 when there is none. Collective. */
PetscErrorCode ntk_warm_start_get(NtkOperator *op, PetscInt *n, double **buf /* n, malloc'd */);
PetscErrorCode ntk_warm_start_set(NtkOperator *op, PetscInt n, const double *buf /* n */);

/* Exact Gram matrix, for models made only of OP_DENSE and OP_ACT ops: per dense layer l
 *   Theta += (1/N) (w_mult_l^2 d_W (Delta_l Delta_l^T) .* (A_{l-1} A_{l-1}^T) + b_mult_l^2 d_b Delta_l Delta_l^T)
 * with d_W, d_b the tensors' learning-rate multipliers (1 for the plain kernel)
 * with A_{l-1} the layer's inputs (one row per sample, expanded over outputs) and Delta_l the
 * backpropagated signals d f_i / d h_l (one row per (sample, output)); traced: the same with
 * Delta Delta^T summed over i == j and 1/(Nk). G is a new MATDENSE (caller destroys), rows
 * distributed like the shell operator's vectors. Memory per rank: n_local*k*sum(n_out) for the
 * local signals, plus one layer's gathered signals (N*k*n_out) and inputs at a time. */
bool ntk_gram_supported(const Model *m);
PetscErrorCode ntk_gram_assemble(NtkOperator *op, Mat *G);
/* All Nk (or N) eigenvalues of G, descending, on every rank, by ScaLAPACK (EPSSCALAPACK: pdsyev). */
PetscErrorCode ntk_gram_spectrum(NtkOperator *op, Mat G, double *eig_desc);
/* Top-nev eigenvalues of an assembled G by Krylov-Schur (prefix ntk_gram_): the cheap way to
 * lambda once G exists; same conventions as ntk_top_eigs (no warm start). */
PetscErrorCode ntk_gram_top_eigs(NtkOperator *op, Mat G, int nev, double *eig, double *resid,
                                 int *nconv);
/* Top-nev eigenvalues of the exact full Gram matrix (NTK_FULL only) without assembling it: its
 * per-layer factors (the signals Delta_l and the input kernels K_l = A_{l-1} A_{l-1}^T, N x N) are
 * kept and a product costs one N x N x n_out GEMM per layer (2 N^2 sum(n_out) flops, against
 * (Nk)^2 sum(n_out) for the assembled matrix and about 8 N P for a matrix-free product); then
 * Krylov-Schur (prefix ntk_gram_) from the Philox vector. Same conventions as ntk_gram_top_eigs;
 * memory per rank: the signals (n_local k sum(n_out)) and n_local N per dense layer. */
PetscErrorCode ntk_gram_factored_top_eigs(NtkOperator *op, int nev, double *eig, double *resid, int *nconv);
/* ||Gt - G0||_F / ||G0||_F (Inf if G0 = 0). Collective. */
PetscErrorCode ntk_kernel_distance(Mat G0, Mat Gt, double *dist);

/* Cost models in flops (multiply-add = 2) of lambda by each method; see ntk.c for the terms.
 * The exact ones are INFINITY when ntk_gram_supported is false (conv nets), so auto picks matfree.
 * ntk_cost_exact prices the Gram matrix plus its full spectrum (ntk_gram_spectrum: pdsyev with
 * vectors, 9 R^3); ntk_cost_exact_top the Gram matrix plus ntk_gram_top_eigs (expected_iters
 * dense products), the cheaper exact route when only the top eigenvalues are wanted. */
double ntk_cost_matfree(const Model *m, int n_global, NtkVariant v, int expected_iters);
double ntk_cost_exact(const Model *m, int n_global, NtkVariant v);
double ntk_cost_exact_top(const Model *m, int n_global, NtkVariant v, int expected_iters);

/* PetscLogEvents NtkMatMult, NtkEigensolve, NtkGramAssemble, NtkGramEigen (idempotent; the
 * create call registers them too). */
PetscErrorCode ntk_register_events(void);
/* Reads (and so documents in -help and marks as used) the eigensolvers' -ntk_eps_* and
 * -ntk_gram_eps_* options; the operator's own -ntk_* options are the app's NTK option table's.
 * Call once, before checking for unused options. */
PetscErrorCode ntk_options_register(MPI_Comm comm);

#endif
