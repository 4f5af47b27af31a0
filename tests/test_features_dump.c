/* ntkhpc plus one measurement registered here, "probe": at every step it records theta_t and the
 * probe batch (the first -ntk_batch training samples as the run sees them, standardised), so that
 * tests/features_check.py can recompute every feature-learning measure of features/ from the net's
 * own weights with numpy, independently of the C code. theta is padded with NaN to the largest P
 * of the deck's fc nets. With NTK_FEATURES_KILL_AT_STEP=k, rank 0 kills its own process with
 * SIGKILL when it reaches step k of run 0 (an exact moment for the restart check). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "app.h"
#include "measure.h"

static int64_t max_params(const Config *cfg, const Dataset *tr)
{
  const int64_t L = cfg->model.depth, d = tr->d, k = tr->k, b = cfg->model.bias;
  int64_t best = 0;
  for (int i = 0; i < cfg->n_widths; i++) {
    const int64_t n = cfg->widths[i];
    const int64_t P = (d * n + b * n) + (L - 1) * (n * n + b * n) + (n * k + b * k);
    if (P > best) best = P;
  }
  return best;
}

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "theta_t and the probe batch, by tests/test_features_dump.c";
  s->n_records = cfg->steps + 1;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "theta", DS_FLOAT64, max_params(cfg, train), "1", "theta_t, NaN-padded");
  schema_add(s, "x", DS_FLOAT64, (int64_t)cfg->ntk_batch * train->d, "1", "probe batch inputs");
  schema_add(s, "y", DS_FLOAT64, (int64_t)cfg->ntk_batch * train->k, "1", "probe batch targets");
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return true; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  const char *kill_at = getenv("NTK_FEATURES_KILL_AT_STEP");
  if (kill_at && atoll(kill_at) == st->t && r->grank == 0 && r->run->index == 0) kill(getpid(), SIGKILL);
  double *row = records_append(out, st->t);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "probe records full");
  const int N = r->cfg->ntk_batch, d = r->train->d, k = r->train->k;
  const int64_t Pmax = max_params(r->cfg, r->train);
  row[0] = (double)st->t;
  if ((int64_t)r->P <= Pmax) memcpy(row + 1, r->theta, r->P * sizeof(double)); /* fc nets only */
  memcpy(row + 1 + Pmax, r->train->x, (size_t)N * d * sizeof(double));
  memcpy(row + 1 + Pmax + (size_t)N * d, r->train->y, (size_t)N * k * sizeof(double));
  return 0;
}

static const MeasurementClass probe = {.name = "probe", .declare = declare, .due = due, .measure = measure};

int main(int argc, char **argv)
{
  if (measure_register(&probe)) return 1;
  return ntkhpc_main(argc, argv);
}
