/* The data-parallel gradient sum, in buckets started as the backward pass completes them.
 *
 * The gradient buffer (P parameters, then the loss sum and the correct count) is cut into buckets
 * of whole ops' tensors, about -grad_bucket_mb each, in the order the reverse sweep finishes them.
 * With overlap, model_vjp's hook starts each bucket's MPI_Iallreduce as soon as its last op is
 * done and the later ops' GEMMs run while it travels; without, every bucket starts after the
 * sweep. Both post the same Iallreduces on the same ranges in the same order, so their results are
 * bit-identical for a given group: overlap changes when the sums happen, never what they are. */
#ifndef NTK_GRAD_REDUCE_H
#define NTK_GRAD_REDUCE_H
#include <stdbool.h>
#include <stddef.h>
#include <mpi.h>
#include <petscsys.h>
#include "model.h"

typedef struct {
  MPI_Comm comm;
  bool overlap;         /* start buckets from the backward pass (else after it) */
  int n_buckets;        /* the last one is the tail: loss sum and correct count (all of grad if untiled) */
  size_t *lo, *hi;      /* [n_buckets] element ranges of grad, in start order */
  int *ready_op;        /* [n_buckets] the op whose completion makes the bucket ready (-1: tail) */
  MPI_Request *req;     /* [n_buckets] */
  int started;          /* buckets started in the current sum */
  double *grad;         /* the buffer being summed */
} GradReduce;

/* Plans the buckets of m's gradient (P + 2 doubles) for `comm` with target size bucket_mb (0: one
 * bucket). Returns 0, or -1 (out of memory). */
int grad_reduce_setup(GradReduce *g, const Model *m, MPI_Comm comm, double bucket_mb, bool overlap);
void grad_reduce_free(GradReduce *g);

/* The hook model_vjp calls during the last chunk's backward pass of a gradient into grad (zero
 * hook: no overlap, or a group of one). */
GradHook grad_reduce_hook(GradReduce *g, double *grad);
/* Starts what is left and waits for all buckets: grad is then summed over the group. */
void grad_reduce_finish(GradReduce *g, double *grad);

/* The PetscLogEvents of the bucket starts, in class cls: NtkGradBucket (count = buckets, flops =
 * doubles summed) and, of those, NtkGradEarly (started from the backward pass). */
int grad_reduce_register_events(PetscClassId cls);

#endif
