/* The operator base shared by the NTK (ntk.c) and loss-Hessian (hessian.c) shell operators.
 *
 * Both linearise a network at a replicated theta on a batch split in contiguous slices over the
 * ranks, apply their product chunk by chunk from tapes, and find extreme eigenvalues by
 * warm-started Krylov-Schur. What they share lives here: the batch slice and its tiling check, the
 * chunk tapes and their memory budget (-PREFIXchunk, -PREFIXtape_mb), setting the parameters (the
 * ranks agree on whether theta is finite; the shell matrices' state is bumped), the guarded
 * eigensolve with its start vector, warm start and per-pair check, the solve statistics, and
 * log-event registration. Each operator embeds an OpBase as its first member, is itself the
 * context of its shell matrices, and keeps only its own product and what is genuinely its own.
 */
#ifndef NTK_OPERATOR_BASE_H
#define NTK_OPERATOR_BASE_H
#include <stdint.h>

#include <petscmat.h>
#include <slepceps.h>

#include "model.h"
#include "petsc_compat.h"

/* Cost models: one double on the wire of a collective counts as this many flops (~8 bytes at
 * ~10 GB/s against ~20 GFLOP/s per core). */
#define OP_FLOPS_PER_WORD 16.0

/* Shell matrices an operator may own (NTK: Theta; Hessian: H and the Gauss-Newton G). */
#define OP_MAX_MATS 2
/* Ritz values of the previous restart kept for the eigenvalue-error test. */
#define OP_RITZ_MAX 64
/* Restarts of the quick solve with a basis of nev + 1 from a good start (opbase_run). */
#define OP_QUICK_RESTARTS 4
/* Default tolerance of the coarse (subsample) solves that only provide a start vector. */
#define OP_COARSE_TOL 1e-2
/* A converged pair is kept only if its checked error is below this many solver tolerances. */
#define OP_RESID_FACTOR 100.0

/* The eigenvalue-error convergence test of a solve (opbase_conv_install): a Ritz value is accepted
 * when its estimated eigenvalue error, relative to the spectral scale max(|lambda|, the largest
 * |Ritz value| seen, scale at the start), is below the tolerance: the smaller of the residual norm
 * (a bound) and max(res^2 / gap, the error the last two restarts extrapolate to, doubled), gap
 * being the distance to the other Ritz values. value = false: the residual norm alone. */
typedef struct {
  PetscBool value;
  double scale;                      /* running spectral scale of the current solve */
  double ritz_prev[2][OP_RITZ_MAX];  /* Ritz values at the last two restarts: [0] the last */
  int n_ritz_prev[2];
} OpConv;

/* Coarse levels (both operators' -PREFIXcoarse_levels, _factor, _min): a cold top solve starts from
 * the top eigenvectors of the same operator on the samples whose global index is a multiple of
 * factor (the same set for any rank count, each rank keeping its own), solved the same way from
 * the level below, levels deep while a level keeps at least min samples. */
typedef struct {
  PetscInt levels, factor, min;
} OpCoarse;

typedef struct {
  const char *name;        /* "ntk", "hessian": the prefix of messages */
  MPI_Comm comm;           /* the caller's comm: PETSc objects live here */
  MPI_Comm pcomm;          /* a duplicate for our own collectives */
  int rank, size;
  const Model *m;
  int n_local, first, n_global, d;
  int *nl_all, *first_all; /* [size] every rank's slice */
  double *x;               /* n_local x d */
  double *theta;           /* P, the linearisation point */
  int chunk, n_chunks;
  PetscBool stored;        /* every chunk's tape kept from set_params to the products */
  PetscBool cotangents;    /* tapes keep first-order cotangents too (Hessian), not activations only */
  int n_tapes;
  Tape *tapes;
  PetscBool have_params, theta_finite;
  Reducer red;             /* batch-norm statistics summed over pcomm */
  const Reducer *redp;     /* &red if the model has batch norm, else NULL (no extra messages) */
  Mat mats[OP_MAX_MATS];   /* the shell matrices, destroyed and re-stated by the base */
  int n_mats;
  long n_mult;             /* products applied (the operator's Mult counts them) */
  int last_its;            /* of the last solve; -1 after a solver failure */
  long last_matvecs;
  OpConv conv;             /* the convergence test of the solve under way (opbase_conv_install) */
  long coarse_matvecs;     /* products of the coarse levels in the last cold solve */
  double coarse_work;      /* the same in this level's products (each weighted by samples / n_global) */
} OpBase;

/* An operator's log events: its class, their names, and the ids opbase_register_events fills in. */
#define OP_MAX_EVENTS 6
typedef struct {
  const char *cls;
  int n;
  const char *names[OP_MAX_EVENTS];
  PetscLogEvent id[OP_MAX_EVENTS];
  PetscBool registered;
} OpEvents;

/* Registers ev's class and events, once. */
PetscErrorCode opbase_register_events(OpEvents *ev);

/* Reads -<prefix>chunk and -<prefix>tape_mb over the defaults in *chunk, *tape_mb; chunk > 0. */
PetscErrorCode opbase_read_tape_options(MPI_Comm comm, const char *name, const char *prefix, PetscInt *chunk, PetscReal *tape_mb);

/* Collective on comm. Checks the slice [first, first + n_local) of n_global and that the ranks'
 * slices tile the batch in rank order; copies x_local (n_local x d); allocates theta. */
PetscErrorCode opbase_create(OpBase *b, const char *name, MPI_Comm comm, const Model *m, const double *x_local, int n_local,
                             int first, int n_global);
/* Chunks of at most chunk samples, every chunk's tape kept if the slice fits tape_mb (activations,
 * and with cotangents their first-order cotangents too), else one tape recomputed per product. The
 * per-product workspace (tangents; cotangents unless kept; R-cotangents) is tape 0's, shared.
 * With batch norm the slice is one chunk (one batch-norm batch) on one kept tape. */
PetscErrorCode opbase_tapes_create(OpBase *b, PetscInt chunk, PetscReal tape_mb, PetscBool cotangents);
/* A symmetric MATSHELL y = mult(x) with context ctx (the operator), owned by the base. */
PetscErrorCode opbase_shell_create(OpBase *b, PetscInt nloc, PetscInt N, void *ctx, PetscErrorCode (*mult)(Mat, Vec, Vec),
                                   const char *name, Mat *A);
PetscErrorCode opbase_destroy(OpBase *b);

/* Chunk c of the local slice: its length, its inputs, and its tape at theta (the kept one, or
 * tape 0 with the forward pass recomputed now). */
int opbase_chunk_len(const OpBase *b, int c);
const double *opbase_chunk_x(const OpBase *b, int c);
Tape *opbase_chunk_tape(OpBase *b, int c);

/* set_params in two halves around the operator's own linearisation: Begin copies theta and makes
 * the ranks agree on whether it is finite; End marks the parameters set and bumps the shell
 * matrices' state. Collective. */
PetscErrorCode opbase_set_params_begin(OpBase *b, const double *theta);
PetscErrorCode opbase_set_params_end(OpBase *b);

/* Krylov-Schur on A for the eigenvalues at which (symmetric), before its convergence test is
 * chosen; then the options under prefix and the basis they leave (ncv, mpd: PETSC_DEFAULT unless set). */
PetscErrorCode opbase_eps_create(MPI_Comm comm, Mat A, EPSWhich which, EPS *eps);
PetscErrorCode opbase_eps_from_options(EPS eps, const char *prefix, PetscInt *ncv, PetscInt *mpd);
/* EPSSolve whose failure is returned in *ierr (a diverging run goes on), not raised. */
PetscErrorCode opbase_eps_solve(EPS eps, PetscErrorCode *ierr);

/* One warm-started eigensolve (opbase_solve). Hooks left NULL take the plain behaviour. */
typedef struct {
  EPS eps;
  Mat A;
  PetscInt ncv, mpd;    /* the basis (default run: ncv capped at A's size) */
  Vec *warm;            /* the start if *warm, replaced by the sum of the kept eigenvectors; NULL: none */
  uint64_t seed;        /* otherwise a Philox start indexed by global row (rank-count independent) */
  PetscLogEvent event;  /* logged around the solve */
  PetscBool count_checks; /* last_matvecs includes the products of check */
  void *ctx;
  /* A start other than Philox when there is no warm one; *done = false falls back to Philox. */
  PetscErrorCode (*cold_start)(void *ctx, int want, Vec start, PetscBool *done);
  /* The solve itself (default: dimensions want, ncv, mpd and one EPSSolve); solver failures go to
   * *ierr. good_start: from the warm vector or the cold start. */
  PetscErrorCode (*run)(void *ctx, EPS eps, Vec start, int want, PetscInt rows, PetscBool good_start, PetscErrorCode *ierr);
  /* Judges converged pair i (x may be rescaled): its reported residual, and whether it is kept;
   * the first pair not kept ends the list (default: EPSComputeError relative, all kept). */
  PetscErrorCode (*check)(void *ctx, EPS eps, PetscInt i, PetscScalar lambda, Vec x, PetscReal *resid, PetscBool *keep);
} OpSolve;

/* eig, resid <- NaN, *nconv <- 0, statistics zeroed. */
PetscErrorCode opbase_solve_reset(OpBase *b, int nev, double *eig, double *resid, int *nconv);
/* The same, then *go = whether there is anything to solve (nev > 0, finite theta); the parameters must be set. */
PetscErrorCode opbase_solve_prologue(OpBase *b, int nev, double *eig, double *resid, int *nconv, PetscBool *go);
/* Top nev of s->A as s describes: eig, resid of the kept pairs, NaN for the rest, never an error
 * from the solver itself (reported through PetscInfo, the warm start dropped). Collective. */
PetscErrorCode opbase_solve(OpBase *b, const OpSolve *s, int nev, double *eig, double *resid, int *nconv);
PetscErrorCode opbase_last_solve_stats(const OpBase *b, int *its, long *matvecs);

/* ---- shared by the NTK and Hessian solves: eigenvalue-error test, quick solve, coarse levels */

/* Installs b->conv's test (relative to its running scale) and the monitor that records the Ritz
 * values of each restart on eps. */
PetscErrorCode opbase_conv_install(OpBase *b, EPS eps);
/* Estimated eigenvalue error of Ritz value theta with residual norm res (absolute). */
double opbase_ritz_error(const OpConv *c, double theta, double res);

/* The context of opbase_run / opbase_check (OpSolve.run, .check): one eigensolve's settings. */
typedef struct {
  OpBase *b;
  Mat A;
  PetscInt ncv_user, mpd_user; /* the -*_eps_ncv/mpd given (PETSC_DEFAULT/<= 0: none) */
  PetscBool coarse;      /* a coarse level: a start vector only (basis nev + 3, no explicit check) */
  PetscBool quick;       /* from a warm start, try the quick solve with a basis of nev + 1 first */
  PetscBool quick_coarse; /* the same from a coarse start */
  PetscBool from_coarse; /* set by opbase_cold_start: the start is the coarse level's */
  PetscBool check_resid; /* recompute each pair's residual with one product */
  PetscBool rel_lambda;  /* resid relative to |lambda| (NTK), else to max(|lambda|, scale) (Hessian) */
  double scale;          /* the test's spectral scale: scale0, after the solve also |Ritz values| */
  PetscReal tol;         /* after the solve: its tolerance */
  Vec r;                 /* work vector of the check */
  /* the operator's cold start (OpSolve.cold_start) and its context */
  PetscErrorCode (*cold_start)(void *ctx, int want, Vec start, PetscBool *done);
  void *cold_ctx;
} OpRun;
/* OpSolve.run: the quick solve (basis nev + 1, OP_QUICK_RESTARTS restarts; tests after every
 * product) from a good start when allowed and no basis was given; if it does not converge, the
 * solve proper from the same start with the chosen basis. */
PetscErrorCode opbase_run(void *ctx, EPS eps, Vec start, int want, PetscInt rows, PetscBool good_start, PetscErrorCode *ierr);
/* OpSolve.check: an explicit residual product unless coarse or !check_resid (then the solver's
 * own estimate); the pair is kept if its error by the test's measure is within OP_RESID_FACTOR tolerances. */
PetscErrorCode opbase_check(void *ctx, EPS eps, PetscInt i, PetscScalar kr, Vec x, PetscReal *resid, PetscBool *keep);
/* OpSolve.cold_start through OpRun: calls run->cold_start. */
PetscErrorCode opbase_cold_start(void *ctx, int want, Vec start, PetscBool *done);
/* The solve of s (hooks opbase_run/check/cold_start with run as context): r allocated, coarse
 * statistics zeroed (the cold start adds to them). */
PetscErrorCode opbase_solve_shared(OpBase *b, OpSolve *s, OpRun *run, int nev, double *eig, double *resid, int *nconv);

/* Reads -<prefix>coarse_levels, _factor, _min over the defaults in *c, checked. */
PetscErrorCode opbase_read_coarse_options(MPI_Comm comm, const char *name, const char *prefix, OpCoarse *c);
/* This rank's part of the coarse level below the slice [first, first + n_local) of n_global: coarse samples cfirst .. cfirst + cn - 1 of
 * n_coarse (global coarse index j is global sample j * factor); local coarse sample j is local row
 * (cfirst + j) * factor - first. False if there is no level (levels <= 0, too few samples). */
PetscBool opbase_coarse_slice(const OpCoarse *c, int levels, int first, int n_local, int n_global, int *cfirst, int *cn, int *n_coarse);
/* Adds a coarse level's statistics (its last solve and its own coarse levels) to b's. */
void opbase_coarse_account(OpBase *b, const OpBase *c);

#endif
