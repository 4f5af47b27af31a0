/* The measurement registry from outside the code: this program is ntkhpc plus one measurement
 * registered here, with no edit anywhere else. tests/test_registry.sh runs it like ntkhpc and
 * checks that the measurement's datasets appear in the output and the checkpoints, survive a
 * kill -9 and a restart bit for bit, and are read by postproc.
 *
 * The toy measurement "toy", every -record_every steps and at the last step:
 *   step, theta_sum = sum of theta (a value only this measurement knows how to compute),
 *   count = how many times it has measured in this run, and moments = [sum theta^2, max |theta|].
 * Its warm-start state is `count`: if a restart did not give it back, count (and so the output)
 * would differ from the uninterrupted run's.
 * Its one option, -toy_scale (theta_sum is scaled by it), is declared in its table, so the app's
 * reader checks it, -help lists it under the heading "Toy" and a bad value is one line and exit 2;
 * having no Config field, the measurement reads it itself.
 * With NTK_TOY_KILL_AT_STEP=k in the environment, rank 0 kills its own process with SIGKILL when
 * it measures step k: a kill -9 at an exact moment, with no timing involved. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include "app.h"
#include "measure.h"

typedef struct {
  double count;
  double scale;
} ToyState;

static const OptionDesc toy_options[] = {
  {.name = "-toy_scale", .kind = KIND_REAL, .def = "1", .lo = 0, .hi = 1e6, .flags = OPTION_OPEN_LO, .meaning = "Factor on theta_sum"},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "a measurement registered by tests/test_registry.c";
  s->n_records = record_count(cfg->steps, cfg->record_every);
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "theta_sum", DS_FLOAT64, SCALAR, "1", "sum of the parameters");
  schema_add(s, "count", DS_INT64, SCALAR, "1", "measurements so far in this run, restored from checkpoints");
  schema_add(s, "moments", DS_FLOAT64, 2, "1", "sum of squared parameters and the largest |parameter|");
}

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  ToyState *s;
  PetscCall(PetscCalloc1(1, &s));
  s->scale = 1;
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-toy_scale", &s->scale, NULL)); /* checked by the app's reader */
  *state = s;
  return 0;
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return st->final || st->t % r->cfg->record_every == 0; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  ToyState *s = state;
  const char *kill_at = getenv("NTK_TOY_KILL_AT_STEP");
  if (kill_at && atoll(kill_at) == st->t && r->grank == 0 && r->run->index == 0) kill(getpid(), SIGKILL);
  double sum = 0, sq = 0, mx = 0;
  for (size_t p = 0; p < r->P; p++) {
    sum += r->theta[p];
    sq += r->theta[p] * r->theta[p];
    mx = fmax(mx, fabs(r->theta[p]));
  }
  s->count += 1;
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "toy records full");
  row[0] = (double)st->t, row[1] = s->scale * sum, row[2] = s->count, row[3] = sq, row[4] = mx;
  return 0;
}

static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a)
{
  a[0].n = 1;
  a[0].data = NULL;
  if (r->grank == 0) { /* the checkpoint writer's copy */
    a[0].data = malloc(sizeof(double));
    PetscCheck(a[0].data, PETSC_COMM_SELF, PETSC_ERR_MEM, "toy state");
    a[0].data[0] = ((ToyState *)state)->count;
  }
  return 0;
}

static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a)
{
  ((ToyState *)state)->count = a[0].n == 1 ? a[0].data[0] : 0;
  return 0;
}

static void destroy(void *state) { PetscFree(state); }

static const MeasurementClass toy = {
  .name = "toy", .option_heading = "Toy", .options = toy_options, .n_options = 1, .declare = declare, .setup = setup, .due = due, .measure = measure,
  .n_state = 1, .state_names = {"count"}, .state_get = state_get, .state_set = state_set, .destroy = destroy,
};

int main(int argc, char **argv)
{
  if (measure_register(&toy)) return 1;
  return ntkhpc_main(argc, argv);
}
