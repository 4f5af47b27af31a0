/* The up-front memory check (app/memory.c; docs/robustness.md "Memory"): before any parameter,
 * tape or Gram matrix is allocated, the largest run's bytes per rank are estimated from the model
 * and the options, and a sweep that cannot fit in -memory_limit is refused with one line. */
#ifndef NTK_MEMORY_H
#define NTK_MEMORY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mpi.h>
#include "config.h"
#include "data.h"
#include "sweep.h"

/* Bytes of one rank of a run's group, by kind. */
typedef struct {
  double params;  /* theta, theta_0, gradient, learning-rate scales, optimizer state; the operators' copies and work vectors */
  double tapes;   /* the training tape and the NTK and Hessian operators' tapes (within -ntk_tape_mb, -hess_tape_mb) */
  double grams;   /* the exact NTK Gram matrices (row-distributed) and their eigensolver's copies; the Krylov bases */
  double data;    /* the training and test subsets (memory_need: one copy; memory_check: a rank's share of its
                     node's copy with -data_shared, else the copy every rank holds) */
  double other;   /* the libraries and the program (a constant) */
} MemoryNeed;

/* The estimate for run `run` of the sweep (its width and parameterization) on a group of
 * run->ranks (-ranks_per_run auto's plan) or cfg->ranks_per_run ranks. 0, or -1 (err) if its model cannot be built. */
int memory_need(const Config *cfg, const RunSpec *run, const Dataset *train, const Dataset *test, MemoryNeed *need, char *err, size_t errlen);

/* -memory_limit as text ("" = the node's) to bytes: a number with an optional suffix k, M, G or T
 * (powers of 1024). 0, or -1 with a message naming the text as typed. */
int memory_parse_limit(const char *text, double *bytes, char *err, size_t errlen);

/* What one rank may hold (collective over world): -memory_limit, else the node's MemAvailable (with
 * stable, MemTotal: the same on every start of a job, as a plan must be) over the ranks on it, the
 * smallest over the job's nodes (0 if the system does not say); on_node: the ranks on this node;
 * source: where the figure comes from, for messages. */
int memory_rank_budget(const Config *cfg, MPI_Comm world, bool stable, double *avail, int *on_node, char *source, size_t len);

/* memory_need for the run on a group of G ranks, with -data_shared's share of a node's copy over
 * on_node ranks; total: the sum of the kinds. 0, or -1 (err) if its model cannot be built. */
int memory_rank_need(const Config *cfg, const RunSpec *run, int G, int on_node, const Dataset *train, const Dataset *test, MemoryNeed *need,
                     double *total, char *err, size_t errlen);

/* Collective over world: compares every run's need with the memory of a rank (-memory_limit, or
 * the node's MemAvailable over the ranks on the node). 0, or -1 with one line in err (rank 0). */
int memory_check(const Config *cfg, const Sweep *sw, const Dataset *train, const Dataset *test, MPI_Comm world, char *err, size_t errlen);

#endif
