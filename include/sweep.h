/* The sweep: every run the deck asks for, the cost model that orders them, and the dynamic
 * assignment of runs to sub-communicators. */
#ifndef NTK_SWEEP_H
#define NTK_SWEEP_H
#include <stdint.h>
#include <mpi.h>
#include "config.h"

/* Model instance = (arch, width, seed, param); run = instance + learning rate (CONVENTIONS.md). */
typedef struct {
  int index;            /* position in the deck's enumeration: HDF5 group runs/run_%06d */
  int instance;         /* model instance id, shared by runs differing only in eta */
  int width;
  int64_t seed;
  Parameterization param;
  double eta;           /* absolute base learning rate */
  double eta_factor;    /* eta * lambda_0 when given in units of 1/lambda_0, else NaN */
  double lambda0;       /* the instance's lambda_0 once measured (NaN before) */
  int64_t n_params;
  double cost;          /* estimated FLOPs of the whole run */
} RunSpec;

typedef struct {
  int n_runs, n_instances;
  int in_dim, out_dim;  /* d and k of the data the sweep was built for */
  RunSpec *runs;        /* [n_runs] in deck order */
  int *order;           /* [n_runs] run indices, most expensive first (the assignment order) */
} Sweep;

int sweep_build(Sweep *sw, const Config *cfg, int n_train, int n_test, int in_dim, int out_dim, char *err,
                size_t errlen);
void sweep_free(Sweep *sw);

/* Dynamic largest-first assignment: an MPI one-sided shared counter over sweep->order.
 * Collective over world. Each group leader takes the next position; the group broadcasts it. */
typedef struct {
  MPI_Win win;
  long *counter;        /* on world rank 0 */
  MPI_Comm world, group;
  int n_runs;
} Scheduler;

int scheduler_create(Scheduler *s, MPI_Comm world, MPI_Comm group, int n_runs);
/* Collective over group: the next position in the order, or -1 when the sweep is exhausted. */
int scheduler_next(Scheduler *s);
void scheduler_destroy(Scheduler *s);

#endif
