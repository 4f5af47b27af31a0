/* Training of one run on its sub-communicator: full-batch gradient descent or minibatch SGD,
 * data-parallel over the group's ranks (each rank takes a slice of the batch; the gradient is
 * summed with one allreduce per step), with optional momentum, weight decay and schedules. */
#ifndef NTK_TRAIN_H
#define NTK_TRAIN_H
#include <mpi.h>
#include "config.h"
#include "data.h"
#include "output.h"
#include "progress.h"
#include "sweep.h"

typedef struct {
  MPI_Comm group;       /* the run's sub-communicator */
  const Config *cfg;
  const Dataset *train, *test;
  OutputFile *out;      /* written by the group's rank 0 only */
  Progress *progress;
} TrainContext;

/* Registers the PetscLogEvents of training (visible in -log_view). Call once after init. */
int train_register_events(void);

/* Trains run `run` to the end or to divergence, writing its trajectory and summary row.
 * Collective over ctx->group. Returns 0, or non-zero on an internal error. */
int train_run(const TrainContext *ctx, const RunSpec *run, SummaryRow *result);

#endif
