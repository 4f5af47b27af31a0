/* The data-parallel gradient sum, in buckets started as the backward pass completes them.
 *
 * The gradient buffer (P parameters, then the loss sum and the correct count) is cut into buckets
 * of whole ops' tensors, about -grad_bucket_mb each, in the order the reverse sweep finishes them.
 * With overlap, model_vjp's hook starts each bucket's MPI_Iallreduce as soon as its last op is
 * done and the later ops' GEMMs run while it travels; without, every bucket starts after the
 * sweep. Both post the same Iallreduces on the same ranges in the same order, so their results are
 * bit-identical for a given group: overlap changes when the sums happen, never what they are.
 *
 * -grad_sum node (the default) sums through the node's memory instead of MPI messages: each rank's
 * gradient buffer is its slot of an MPI-3 shared-memory window of the group's ranks on its node;
 * after the backward pass every rank sums its own slice of all the node's slots in a fixed order
 * (slot 0 first) and writes the sum into every slot, so each element is added once and read back by
 * all. A group over several nodes with the same number of ranks on each then allreduces every
 * slice among the ranks that own it on the other nodes (one MPI_Allreduce of P / ranks-per-node
 * doubles per rank, all NICs busy). On a node the sum moves 2 (P + 2) doubles per rank through
 * memory, where Open MPI copies through its own shared-memory buffers (the figures:
 * benchmarks/README.md, bench_scaling.py). It has no overlap (nothing is in flight while the pass
 * runs). A group whose
 * nodes hold unequal numbers of its ranks, or a window that cannot be made, falls back to the
 * buckets. -grad_node_ranks k cuts each real node into nodes of k ranks, so that one machine runs
 * the several-node path (tests). */
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
  /* -grad_sum node: */
  MPI_Comm node, cross; /* the group's ranks on this node; the ranks of this slice on every node */
  MPI_Win win;          /* the node's slots; the node path is on when slot is set */
  double **slot;        /* [node_size] every node rank's gradient buffer (P + 2), as mapped here */
  int node_rank, node_size, n_nodes;
  size_t lo_mine, hi_mine; /* this rank's slice of the P + 2 doubles */
  double *kept;         /* P + 2: the slot's gradient while another buffer is summed through it */
} GradReduce;

typedef enum { GRAD_SUM_NODE, GRAD_SUM_MPI } GradSum;
const char *grad_sum_name(GradSum s); /* "node", "mpi"; NULL past the last */

/* Plans the buckets of m's gradient (P + 2 doubles) for `comm` with target size bucket_mb (0: one
 * bucket) and, with GRAD_SUM_NODE and more than one rank, the node window (node_ranks > 0: nodes of
 * that many ranks at most). other_buffers: buffers other than grad_reduce_buffer's will be summed
 * too (the linearised model's). Collective over comm. Returns 0, or -1 (out of memory). */
int grad_reduce_setup(GradReduce *g, const Model *m, MPI_Comm comm, double bucket_mb, bool overlap, GradSum sum, int node_ranks,
                      bool other_buffers);
/* Collective over comm (frees the window). */
void grad_reduce_free(GradReduce *g);
/* The buffer to compute the gradient in (P + 2 doubles): this rank's slot of the node window, or
 * NULL when the sum goes through the buckets (the caller allocates its own). Summing it needs no
 * copy; any other buffer is copied in and out, and the slot's content is kept. */
double *grad_reduce_buffer(const GradReduce *g);

/* The hook model_vjp calls during the last chunk's backward pass of a gradient into grad (zero
 * hook: no overlap, or a group of one). */
GradHook grad_reduce_hook(GradReduce *g, double *grad);
/* Starts what is left and waits for all buckets: grad is then summed over the group. */
void grad_reduce_finish(GradReduce *g, double *grad);

/* The PetscLogEvents of the bucket starts, in class cls: NtkGradBucket (count = buckets, flops =
 * doubles summed) and, of those, NtkGradEarly (started from the backward pass); NtkGradNodeSum
 * (one per node sum, flops = the doubles this rank adds). */
int grad_reduce_register_events(PetscClassId cls);

#endif
