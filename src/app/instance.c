/* lambda_0 of a model instance and the eta_max bisection (instance.h). */
#include "instance.h"

#include <math.h>
#include <stdio.h>
#include "measure.h"
#include "run_state.h"

int instance_measure_lambda0(const TrainContext *ctx, const RunSpec *run, InstanceRow *row)
{
  RunState s;
  double t0 = MPI_Wtime();
  int rc = run_state_setup(&s, ctx->group, ctx->cfg, run, ctx->train, ctx->test);
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, ctx->group);
  *row = instance_row_unmeasured(run);
  if (!rc) {
    NtkResult res;
    NtkProbe *p;
    if (ntk_probe_measure(&s.mrun, 0, false, false, &res) || ntk_probe_get(&s.mrun, &p)) rc = -1;
    else {
      row->lambda0 = res.lambda;
      row->lambda0_resid = res.resid[0];
      row->method = ntk_probe_uses_exact(p) ? NTK_METHOD_EXACT : NTK_METHOD_MATFREE;
    }
  }
  row->seconds = MPI_Wtime() - t0;
  run_state_teardown(&s);
  return rc ? -1 : 0;
}

/* A short run at eta = c / lambda_0 with nothing written: does it diverge? */
static int probe_diverges(const TrainContext *ctx, const RunSpec *run, double lambda0, double c, int *diverges)
{
  Config pc = *ctx->cfg;
  pc.steps = ctx->cfg->eta_max_steps;
  pc.record_every = pc.steps;
  pc.test_every = 0;
  pc.lambda_every = 0;
  pc.lambda_dense_steps = 0;
  pc.n_spectrum_steps = 0;
  pc.hess_every = 0; /* a probe only asks whether the run diverges */
  pc.n_density_steps = 0;
  pc.features_every = 0;
  pc.kernel_distance = false;
  TrainContext pctx = *ctx;
  pctx.cfg = &pc;
  pctx.out = NULL;
  pctx.hooks = (SweepHooks){0};
  pctx.ckpt_dir = NULL; /* probes are short: never checkpointed */
  pctx.stopped = NULL;
  RunSpec r = *run;
  r.eta_factor = c;
  r.lambda0 = lambda0;
  r.eta = c / lambda0;
  SummaryRow row;
  double t0 = MPI_Wtime();
  int rc = train_run(&pctx, &r, &row), grank;
  *diverges = row.phase == PHASE_DIVERGENT;
  MPI_Comm_rank(ctx->group, &grank);
  if (grank == 0 && !ctx->cfg->quiet) { /* the search runs before the progress channel exists */
    printf("[ntkhpc] instance %d: eta_max probe at eta*lambda0 = %.4g %s after %lld steps (%.1f s)\n", run->instance, c,
           *diverges ? "diverges" : "converges", (long long)row.steps_done, MPI_Wtime() - t0);
    fflush(stdout);
  }
  return rc;
}

int instance_search_eta_max(const TrainContext *ctx, const RunSpec *run, double lambda0, InstanceRow *row)
{
  const Config *cfg = ctx->cfg;
  double lo = cfg->eta_max_lo, hi = cfg->eta_max_hi;
  int d, rc = 0, probes = 0;
  rc |= probe_diverges(ctx, run, lambda0, hi, &d), probes++;
  if (!d) { /* even the top of the bracket converges: only a lower bound */
    row->eta_max_lo = hi, row->eta_max_hi = INFINITY, row->eta_max_probes = probes;
    return rc;
  }
  rc |= probe_diverges(ctx, run, lambda0, lo, &d), probes++;
  if (d) hi = lo, lo = 0.0; /* diverges already at the bottom: search below it */
  while (hi - lo > cfg->eta_max_tol && !rc) {
    const double mid = 0.5 * (lo + hi);
    rc |= probe_diverges(ctx, run, lambda0, mid, &d), probes++;
    if (d) hi = mid;
    else lo = mid;
  }
  row->eta_max_lo = lo, row->eta_max_hi = hi, row->eta_max_probes = probes;
  return rc;
}
