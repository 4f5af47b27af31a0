/* Warm-start vectors to and from plain arrays (see warm_start.h). */
#include <stdlib.h>
#include <string.h>
#include "warm_start.h"

PetscErrorCode warm_start_gather(Vec v, PetscInt *n, double **buf)
{
  PetscFunctionBeginUser;
  *n = 0;
  *buf = NULL;
  if (!v) PetscFunctionReturn(0);
  VecScatter sc;
  Vec all;
  const PetscScalar *a;
  PetscMPIInt rank;
  PetscCall(VecGetSize(v, n));
  PetscCallMPI(MPI_Comm_rank(PetscObjectComm((PetscObject)v), &rank));
  /* Only the writer needs the vector: gather to rank 0, not to every rank. */
  PetscCall(VecScatterCreateToZero(v, &sc, &all));
  PetscCall(VecScatterBegin(sc, v, all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(sc, v, all, INSERT_VALUES, SCATTER_FORWARD));
  if (rank == 0) {
    *buf = malloc((size_t)(*n > 0 ? *n : 1) * sizeof(double));
    PetscCheck(*buf, PETSC_COMM_SELF, PETSC_ERR_MEM, "warm start: out of memory for %" PetscInt_FMT " doubles", *n);
    PetscCall(VecGetArrayRead(all, &a));
    memcpy(*buf, a, (size_t)*n * sizeof(double));
    PetscCall(VecRestoreArrayRead(all, &a));
  }
  PetscCall(VecScatterDestroy(&sc));
  PetscCall(VecDestroy(&all));
  PetscFunctionReturn(0);
}

PetscErrorCode warm_start_scatter(Mat A, Vec *warm, PetscInt n, const double *buf)
{
  PetscInt N, lo, hi;
  PetscScalar *a;
  PetscFunctionBeginUser;
  PetscCall(VecDestroy(warm));
  if (n == 0) PetscFunctionReturn(0);
  PetscCall(MatGetSize(A, &N, NULL));
  PetscCheck(n == N, PetscObjectComm((PetscObject)A), PETSC_ERR_ARG_SIZ, "warm start of length %" PetscInt_FMT " for an operator of size %" PetscInt_FMT, n, N);
  PetscCall(MatCreateVecs(A, warm, NULL));
  PetscCall(VecGetOwnershipRange(*warm, &lo, &hi));
  PetscCall(VecGetArray(*warm, &a));
  memcpy(a, buf + lo, (size_t)(hi - lo) * sizeof(double));
  PetscCall(VecRestoreArray(*warm, &a));
  PetscFunctionReturn(0);
}
