/* One run's numerics on one rank of its group: the model, its parameters, and the data-parallel
 * passes over a data set (train/run_state.c). Every rank of the group holds the full parameter
 * vector; a batch is cut into contiguous slices, one per rank, and bucketed allreduces, overlapping
 * the backward pass, sum gradient, loss and correct count. */
#ifndef NTK_RUN_STATE_H
#define NTK_RUN_STATE_H
#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>
#include <petscsys.h>
#include "batch.h"
#include "config.h"
#include "data.h"
#include "grad_reduce.h"
#include "measure.h"
#include "model.h"
#include "optimizer.h"
#include "runs.h"

typedef struct {
  MPI_Comm group;
  int grank, gsize;
  const Config *cfg;
  const RunSpec *run;
  const Dataset *train, *test;
  Model model;
  Tape tape;
  GradReduce reduce;    /* the gradient's bucketed group sum */
  size_t P;
  double *theta;        /* P */
  double *theta0;       /* P, initialisation (distance from init) */
  double *grad;         /* P + 2: gradient, then loss sum and correct count (summed together): the
                           node window's slot (grad_reduce_buffer) or grad_own */
  double *grad_own;     /* P + 2, when the sum goes through MPI */
  double *lr_scale;     /* P, per-parameter learning-rate multipliers (muP) */
  double *xbuf, *ybuf;  /* chunk x d, chunk x k: gathered minibatch rows */
  int *lbuf;            /* chunk labels */
  double *dfbuf;        /* chunk x k: dL/df of a chunk */
  double *flin;         /* chunk x k: the linearised model's outputs of a chunk (linearized.c) */
  BatchPlan batches;    /* which samples step t trains on */
  const OptimizerClass *opt;
  double *opt_state[OPTIMIZER_MAX_STATE]; /* P each */
  MeasureRun mrun;      /* what the measurements see of this run */
} RunState;

/* Builds the run's model at its width and parameterization, initialises theta from its seed and
 * allocates the buffers; collective over group only in that every rank does the same. Prints one
 * line and returns -1 on failure (the caller agrees over the group). */
int run_state_setup(RunState *s, MPI_Comm group, const Config *cfg, const RunSpec *run, const Dataset *train, const Dataset *test);
void run_state_teardown(RunState *s);

/* Train loss and accuracy over a whole data set at theta (collective over the group). */
void run_state_evaluate(RunState *s, const Dataset *ds, double *loss, double *acc);
/* Gradient of the loss over step t's batch into s->grad, summed over the group. Returns the batch
 * loss (the train loss at theta for full-batch gd) and writes the batch accuracy. Collective. */
double run_state_gradient(RunState *s, int64_t t, double *acc);

/* PetscLogEvents of the passes (-log_view), in class cls. */
int run_state_register_events(PetscClassId cls);

#endif
