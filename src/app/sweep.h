/* The sweep: every run the deck asks for, the cost model that orders them, and the dynamic
 * assignment of runs to sub-communicators. */
#ifndef NTK_SWEEP_H
#define NTK_SWEEP_H
#include <stdint.h>
#include <mpi.h>
#include "config.h"
#include "runs.h"


typedef struct {
  int n_runs, n_instances;
  int in_dim, out_dim;  /* d and k of the data the sweep was built for */
  RunSpec *runs;        /* [n_runs] in deck order */
  int *order;           /* [n_runs] run indices, most expensive first (the assignment order) */
} Sweep;

/* The runs of the deck in deck order; with -sweep_parts n only those whose deck index d has
 * d % n == -sweep_part (renumbered from 0, instances likewise). Fails if the part is empty. */
int sweep_build(Sweep *sw, const Config *cfg, int n_train, int n_test, int in_dim, int out_dim, char *err,
                size_t errlen);
void sweep_free(Sweep *sw);

/* Dynamic largest-first assignment: an MPI one-sided shared counter over sweep->order.
 * Collective over world. Each group leader takes the next position; the group broadcasts it.
 * The window also holds a stop flag: after a signal no group takes another position. */
typedef struct {
  MPI_Win win;
  long *counter;        /* on world rank 0: [0] next position, [1] stop flag */
  MPI_Comm world, group;
  int n_runs;
  const int *list;      /* scheduler_create_list: this group's positions, in order */
  int n_list, next;
} Scheduler;

int scheduler_create(Scheduler *s, MPI_Comm world, MPI_Comm group, int n_runs);
/* The same with a planned assignment (-ranks_per_run auto, layout.h): scheduler_next hands this
 * group the positions list[0 .. n_list) in turn (every rank of the group passes the same list);
 * the stop flag works as above. The list is not copied. */
int scheduler_create_list(Scheduler *s, MPI_Comm world, MPI_Comm group, int n_runs, const int *list, int n_list);
/* Collective over group: the next position in the order, or -1 when the sweep is exhausted or a
 * stop was requested. */
int scheduler_next(Scheduler *s);
/* Any one rank, no collective: ask every group to stop taking positions. */
void scheduler_request_stop(Scheduler *s);
/* Any one rank, no collective: has a stop been requested? */
int scheduler_stop_requested(Scheduler *s);
void scheduler_destroy(Scheduler *s);

#endif
