/* The up-front memory check (app/memory.c; docs/robustness.md "Memory"): before any parameter,
 * tape or Gram matrix is allocated, the largest run's bytes per rank are estimated from the model
 * and the options, and a sweep that cannot fit in -memory_limit is refused with one line. */
#ifndef NTK_MEMORY_H
#define NTK_MEMORY_H
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

/* Collective over world: compares every run's need with the memory of a rank (-memory_limit, or
 * the node's MemAvailable over the ranks on the node). 0, or -1 with one line in err (rank 0). */
int memory_check(const Config *cfg, const Sweep *sw, const Dataset *train, const Dataset *test, MPI_Comm world, char *err, size_t errlen);

#endif
