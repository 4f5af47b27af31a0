/* One copy of the data per node (docs/architecture.md "One run", step 2): the training and test
 * subsets, from which every probe batch (the NTK batch, the Hessian batch, the landscape's and the
 * kernel's sample sets) is taken, live in an MPI-3 shared-memory window of the node. One rank per
 * node loads and standardises them (core's data_load), copies them into the window and frees its
 * own copy; every rank of the node then reads the same pages, which are read-only from then on
 * (mprotect: a stray write faults instead of changing another rank's data). With -data_shared
 * false every rank loads its own copy, as before; the results are the same bit for bit. */
#ifndef NTK_SHARED_DATA_H
#define NTK_SHARED_DATA_H
#include <stddef.h>
#include <mpi.h>
#include "petsc_compat.h"
#include "config.h"
#include "data.h"

typedef struct {
  MPI_Comm node;    /* the ranks of this node (MPI_COMM_TYPE_SHARED); MPI_COMM_NULL: private copies */
  MPI_Win win;      /* the window (MPI_WIN_NULL: private copies) */
  char *base;       /* [bytes]: this node's window, as mapped in this rank */
  size_t bytes;     /* the window's size */
  int node_size;    /* ranks on this node (1 with private copies) */
} SharedData;

/* Collective over world. Loads train and test per cfg->data, shared per node if cfg->data_shared.
 * *bad: 0, or 1 with one line in err when this rank's (or its node's loader's) loading failed or
 * the node's window could not be made: bad input (the caller agrees over world and exits 2). A
 * rank whose node failed leaves train and test empty. */
PetscErrorCode shared_data_load(SharedData *sd, Dataset *train, Dataset *test, const Config *cfg, MPI_Comm world, int *bad, char *err,
                                size_t errlen);

/* Collective over world (the window's node): frees the datasets and the window. */
void shared_data_free(SharedData *sd, Dataset *train, Dataset *test);

#endif
