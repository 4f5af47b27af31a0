/* Loss landscapes of a finished sweep (docs/landscape.md): filter-normalised random or PCA
 * directions, 1-D and 2-D grids centred on recorded steps of theta, trajectory projections, and
 * straight-line paths between solutions, evaluated by a dynamic scheduler over grid points and
 * written point by point into their place in one parallel HDF5 file with a done bitmap, so a
 * killed job resumes and finishes with bit-identical values.
 *
 * Layer: above src/train (it evaluates points with a run's RunState), below src/app (which gives
 * it the sweep's scheduler through LandscapeScheduler and calls landscape_run). */
#ifndef NTK_LANDSCAPE_H
#define NTK_LANDSCAPE_H
#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>
#include "config.h"
#include "data.h"
#include "runs.h"

/* The dynamic assignment of grid points: the app's one-sided counter (src/app/sweep.c). create is
 * collective over world (group: the caller's group of -landscape_ranks_per_point ranks); next is
 * collective over group and returns the next position < n or -1; stop asks every group to stop. */
typedef struct {
  void *(*create)(MPI_Comm world, MPI_Comm group, int64_t n);
  int64_t (*next)(void *s);
  void (*stop)(void *s);
  void (*destroy)(void *s);
} LandscapeScheduler;

/* True when the deck asks for surfaces or paths. */
bool landscape_on(const Config *cfg);

/* RUN[@STEP] of -landscape_paths: 0, or -1 (step -1: the run's last record of theta). */
int landscape_parse_endpoint(const char *s, int *run, int64_t *step);

/* Collective over world. Evaluates every surface and path the deck asks for on the runs of the
 * finished output `source` (its theta records), into cfg->landscape_output, resuming it when it
 * exists with the same specification. deck_text: the sweep's effective deck (part of the
 * specification). Returns 0, 1 (runtime failure), 2 (bad input: one line printed) or 3 (stopped
 * by a signal; rerun to resume). */
int landscape_run(const Config *cfg, const RunSpec *runs, int n_runs, const Dataset *train, const Dataset *test, const char *source,
                  const char *deck_text, const LandscapeScheduler *sched, MPI_Comm world);

#endif
