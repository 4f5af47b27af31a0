/* theta/: the parameter vector theta_t itself, every -theta_every steps and at the last step
 * (0: off). What loss landscapes are made of (docs/landscape.md): surfaces are centred on recorded
 * steps, trajectories are projected onto the surfaces' directions, PCA directions come from these
 * rows. The dataset is as wide as the largest model of the sweep (a run with fewer parameters
 * leaves the tail NaN; n_params says how many are its own). Cost: 8 P bytes per record in memory,
 * in the checkpoint and in the output (docs/landscape.md "Cost"). */
#include <math.h>
#include <string.h>
#include "measure.h"

static bool on(const Config *c) { return c->theta_every > 0; }
static bool dense(const Config *c) { return on(c) && c->theta_dense_steps > 0; }

static const OptionDesc options[] = {
  {.name = "-theta_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT, .in_deck = on,
   .meaning = "Record theta_t every this many steps and at the last step (0 = never); loss landscapes need it", OPTION_FIELD(theta_every)},
  {.name = "-theta_dense_steps", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT, .in_deck = dense,
   .meaning = "... and at every step t < this (the catapult's spike)", OPTION_FIELD(theta_dense_steps)},
};

/* Is step t recorded (besides the last step)? */
static bool theta_due(const Config *c, int64_t t) { return record_due(c->steps, c->theta_every, t) || t < c->theta_dense_steps; }

static int64_t theta_count(const Config *c)
{
  int64_t n = record_count(c->steps, c->theta_every);
  for (int64_t t = 0; t < c->theta_dense_steps && t <= c->steps; t++) n += !record_due(c->steps, c->theta_every, t);
  return n;
}

/* The most parameters any run of the sweep has (every listed width and parameterization). */
static int64_t max_params(const Config *cfg, const Dataset *train)
{
  int64_t best = 0;
  for (int w = 0; w < cfg->n_widths + (cfg->mup_limit ? 1 : 0); w++)
    for (int p = 0; p < cfg->n_params; p++) {
      ModelConfig mc = cfg->model;
      mc.width = w < cfg->n_widths ? cfg->widths[w] : MODEL_WIDTH_INF;
      mc.param = cfg->params[p];
      mc.in_dim = train->d, mc.out_dim = train->k;
      Model m;
      char err[256];
      if (model_build(&m, &mc, err, sizeof err)) continue; /* the sweep reports it */
      if ((int64_t)m.n_params > best) best = (int64_t)m.n_params;
      model_destroy(&m);
    }
  return best;
}

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "the parameters theta_t, every -theta_every steps, every step before -theta_dense_steps, and at the last step (loss landscapes)";
  s->n_records = on(cfg) ? theta_count(cfg) : 0;
  if (!s->n_records) return;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "n_params", DS_INT64, SCALAR, "1", "P: the run's number of parameters (the first P values of theta are its own)");
  schema_add(s, "theta", DS_FLOAT64, max_params(cfg, train), "1",
             "theta_t in the model's parameter-table order (tensor offsets as in the model; NaN beyond n_params)");
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return theta_due(r->cfg, st->t) || st->final; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "theta records full at step %lld", (long long)st->t);
  row[0] = (double)st->t, row[1] = (double)r->P;
  memcpy(row + 2, r->theta, r->P * sizeof(double)); /* the rest stays NaN (the fill) */
  return 0;
}

const MeasurementClass measure_theta = {
  .name = "theta", .option_heading = "Loss landscapes", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .due = due, .measure = measure,
};
