/* run_hooks.h */
#include "run_hooks.h"

static void heartbeat(void *ctx, int run, int64_t step, int64_t steps, double loss, double lambda)
{
  RunHooksContext *c = ctx;
  if (c->progress) progress_heartbeat(c->progress, run, step, steps, loss, lambda);
}

static void run_done(void *ctx, const SummaryRow *row)
{
  RunHooksContext *c = ctx;
  if (c->progress) progress_run_done(c->progress, row);
}

static int stop_requested(void *ctx)
{
  RunHooksContext *c = ctx;
  return c->sched ? scheduler_stop_requested(c->sched) : 0;
}

static void request_stop(void *ctx)
{
  RunHooksContext *c = ctx;
  if (c->sched) scheduler_request_stop(c->sched);
}

SweepHooks run_hooks(RunHooksContext *c) { return (SweepHooks){c, heartbeat, run_done, stop_requested, request_stop}; }
