/* The sweep's side of a run (train.h SweepHooks): progress reports to rank 0 and the job-wide
 * stop flag of the scheduler's window. */
#ifndef NTK_RUN_HOOKS_H
#define NTK_RUN_HOOKS_H
#include "progress.h"
#include "sweep.h"
#include "train.h"

typedef struct {
  Progress *progress;   /* NULL: no reports */
  Scheduler *sched;     /* NULL: local signals only */
} RunHooksContext;

SweepHooks run_hooks(RunHooksContext *c);

#endif
