/* Constructors of the sweep's rows and the record schedule (runs.h). */
#include "runs.h"

#include <math.h>

SummaryRow summary_row_pending(const RunSpec *run, RunStatus status)
{
  SummaryRow r = {0};
  r.run = run->index;
  r.instance = run->instance;
  r.width = run->width;
  r.param = (int32_t)run->param;
  r.seed = run->seed;
  r.eta = run->eta;
  r.eta_factor = run->eta_factor;
  r.status = status;
  r.loss0 = r.loss_peak = r.loss_final = NAN;
  r.acc_final = r.test_loss_final = r.test_acc_final = r.wall_seconds = NAN;
  r.lambda0 = r.lambda_final = r.peak_ratio = r.eta_lambda0 = r.eta_lambda_final = r.lambda_ratio = NAN;
  r.peak_step = -1;
  r.phase = PHASE_UNKNOWN;
  return r;
}

InstanceRow instance_row_unmeasured(const RunSpec *run)
{
  return (InstanceRow){run->instance, run->width, (int32_t)run->param, run->seed, run->n_params, NAN, NAN, 0, NAN, NAN, NAN, 0};
}

int64_t record_count(int64_t steps, int64_t every)
{
  if (steps <= 0) return 1;
  if (every <= 0) return 2;
  return steps / every + 1 + (steps % every != 0);
}

int64_t record_step(int64_t steps, int64_t every, int64_t r)
{
  if (r <= 0 || steps <= 0) return 0;
  if (every <= 0) return steps;
  const int64_t regular = steps / every + 1; /* records 0 .. regular-1 are multiples of every */
  return r < regular ? r * every : steps;
}

int record_due(int64_t steps, int64_t every, int64_t t)
{
  return t == 0 || t == steps || (every > 0 && t % every == 0);
}
