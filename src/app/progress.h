/* Progress reports. Rank 0 prints a line per finished run and, at least every progress_seconds,
 * a summary: runs done out of the total, elapsed time, time left (from the cost model) and where
 * the running runs are. Group leaders send small messages to rank 0; rank 0 drains them whenever
 * progress_poll() is called (between its own training steps) and at the end. */
#ifndef NTK_PROGRESS_H
#define NTK_PROGRESS_H
#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>
#include "runs.h"
#include "sweep.h"

typedef struct {
  int run;
  int64_t step, steps;
  double loss, lambda;
  double updated;       /* MPI_Wtime of the last heartbeat */
} RunningRun;

typedef struct {
  MPI_Comm world;
  int rank, size;
  const Sweep *sweep;
  int n_done, n_diverged;
  int n_left;           /* rank 0: group leaders that have left the sweep */
  double total_cost, done_cost;
  double t_start, t_last_print, t_last_beat, interval;
  bool quiet;
  RunningRun *running;  /* rank 0: latest heartbeat per world rank (group leaders) */
  /* rank 0: the idle fraction of the ranks, sum over groups that have no run left of
   * ranks x (now - when they left) over ranks x elapsed */
  int idle_ranks;       /* ranks of the groups that have left */
  double idle_since;    /* sum of ranks x the time (from t_start) each such group left */
  double last_left;     /* the latest such time: the end of training */
} Progress;

/* "42s", "3m07s", "2h05m"; "?" for a negative or non-finite s. */
void progress_format_duration(char *buf, size_t len, double s);

void progress_init(Progress *p, MPI_Comm world, const Sweep *sw, double interval, bool quiet);
/* Group leaders: a run has ended; its summary row goes to rank 0. */
void progress_run_done(Progress *p, const SummaryRow *row);
/* Group leaders: where a run is; sent at most every interval seconds. */
void progress_heartbeat(Progress *p, int run, int64_t step, int64_t steps, double loss, double lambda);
/* Rank 0: handle pending messages and print a summary when one is due. Cheap; others: no-op. */
void progress_poll(Progress *p);
/* Rank 0: a run finished in an earlier job (restart); counted as done, not printed. */
void progress_preload(Progress *p, const SummaryRow *row);
/* Collective over world: rank 0 waits until every group leader (leader = true, its group of
 * group_size ranks) has left the sweep, handling the reports on the way, then prints the final
 * summary with the idle fraction of the ranks (docs/output.md "Progress"). */
void progress_finish(Progress *p, bool leader, int group_size);
/* Rank 0: the idle fraction at time now (seconds from t_start): 0 before any group has left. */
double progress_idle_fraction(const Progress *p, double now);
void progress_free(Progress *p);

#endif
