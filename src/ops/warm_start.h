/* Warm starts of the eigensolvers as plain arrays, for checkpoints: a restarted run must start each
 * Krylov-Schur solve from the same vector as the uninterrupted run did, or lambda_t and the
 * sharpness would differ from it at the level of the solver tolerance. */
#ifndef NTK_WARM_START_H
#define NTK_WARM_START_H
#include <petscmat.h>

/* The whole of v on rank 0 of its communicator (the checkpoint writer): *n = global length on
 * every rank (0 when v is NULL), *buf malloc'd on rank 0 (the caller frees), NULL elsewhere.
 * Collective. */
PetscErrorCode warm_start_gather(Vec v, PetscInt *n, double **buf);

/* *warm <- buf (n = global length, the same full array on every rank), created with A's layout;
 * n == 0 destroys *warm (no warm start). Collective. Fails if n is not A's size. */
PetscErrorCode warm_start_scatter(Mat A, Vec *warm, PetscInt n, const double *buf);

#endif
