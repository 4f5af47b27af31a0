/* scale_inv/: for scale-invariant nets (batch norm before each activation; docs/li_arora.md), per
 * trained tensor theta_l: its norm, the effective learning rate lr * lr_scale_l / |theta_l|^2 (the
 * rate at which its direction moves) and the angular update per step, the angle between theta_l(t)
 * and theta_l(t-1) in radians. Every -scale_inv_every steps and at the last step; theta_{t-1} is
 * kept from the step before each record (and in checkpoints). Tensors are in the model's
 * parameter-table order, named in the norm dataset's description; frozen tensors give eff_lr 0 and
 * angle 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "measure.h"

static bool in_deck(const Config *c) { return c->scale_inv_every > 0; }

static const OptionDesc options[] = {
  {.name = "-scale_inv_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Per-tensor norm, effective lr eta/|theta_l|^2 and angular update every this many steps (0 = never)",
   .in_deck = in_deck, OPTION_FIELD(scale_inv_every)},
};

typedef struct {
  double *prev;     /* P: theta at step prev_t */
  int64_t prev_t;   /* -1: none */
} SiState;

/* The tensor table of the deck's model (names and count do not depend on width or parameterization). */
static int deck_model(const Config *cfg, const Dataset *train, Model *m)
{
  ModelConfig mc = cfg->model;
  char err[256];
  mc.width = cfg->n_widths > 0 ? cfg->widths[0] : 1;
  mc.param = cfg->n_params > 0 ? cfg->params[0] : PARAM_NTK;
  mc.in_dim = train->d, mc.out_dim = train->k;
  mc.in_channels = train->channels, mc.in_height = train->height, mc.in_width = train->width;
  return model_build(m, &mc, err, sizeof err);
}

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  static char names[2048];
  Model m;
  int nt = 1;
  snprintf(names, sizeof names, "|theta_l| per trained tensor, in the order:");
  if (cfg->scale_inv_every > 0 && !deck_model(cfg, train, &m)) {
    nt = m.n_tensors;
    for (int t = 0; t < nt; t++) {
      const size_t len = strlen(names);
      snprintf(names + len, sizeof names - len, " %s", m.tensors[t].name);
    }
    model_destroy(&m);
  }
  s->description = "scale-invariant nets: per-tensor norm, effective learning rate lr/|theta_l|^2 and angular update per step";
  s->n_records = cfg->scale_inv_every > 0 ? record_count(cfg->steps, cfg->scale_inv_every) : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "lr", DS_FLOAT64, SCALAR, "1", "learning rate in force at step t");
  schema_add(s, "norm", DS_FLOAT64, nt, "1", names);
  schema_add(s, "eff_lr", DS_FLOAT64, nt, "1", "effective learning rate lr * lr_scale_l / |theta_l(t)|^2 per tensor");
  schema_add(s, "angle", DS_FLOAT64, nt, "rad", "angle between theta_l(t) and theta_l(t-1) per tensor (NaN at t = 0)");
}

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  SiState *s;
  PetscCall(PetscCalloc1(1, &s));
  PetscCall(PetscMalloc1(r->P, &s->prev));
  s->prev_t = -1;
  *state = s;
  return 0;
}

static void destroy(void *state)
{
  SiState *s = state;
  if (!s) return;
  PetscFree(s->prev);
  PetscFree(s);
}

/* A record's step, and the step before it (theta_{t-1} is kept then). */
static bool due(const MeasureRun *r, void *state, const StepInfo *st)
{
  const int64_t m = r->cfg->scale_inv_every;
  return st->final || st->t % m == 0 || (st->t + 1) % m == 0 || (st->t + 1 == r->cfg->steps);
}

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  SiState *s = state;
  const Model *m = r->model;
  const bool record = st->final || st->t % r->cfg->scale_inv_every == 0;
  if (record) {
    const int nt = m->n_tensors;
    double *row = records_append(out, out->n);
    PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "scale_inv records full at step %lld", (long long)st->t);
    row[0] = (double)st->t, row[1] = st->lr;
    for (int k = 0; k < nt; k++) {
      const ParamTensor *p = &m->tensors[k];
      const double *th = r->theta + p->offset, *pv = s->prev + p->offset;
      double nn = 0, pp = 0;
      for (size_t i = 0; i < p->size; i++) nn += th[i] * th[i], pp += pv[i] * pv[i];
      row[2 + k] = sqrt(nn);
      row[2 + nt + k] = st->lr * p->lr_scale / nn;
      /* |a/|a| - b/|b|| = 2 sin(angle/2): accurate for small angles, where acos(a.b/|a||b|) is not */
      double d = 0;
      for (size_t i = 0; i < p->size; i++) {
        const double e = th[i] / sqrt(nn) - pv[i] / sqrt(pp);
        d += e * e;
      }
      row[2 + 2 * nt + k] = s->prev_t >= 0 && s->prev_t == st->t - 1 ? 2.0 * asin(fmin(1.0, sqrt(d) / 2.0)) : NAN;
    }
  }
  memcpy(s->prev, r->theta, r->P * sizeof *s->prev);
  s->prev_t = st->t;
  return 0;
}

static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a)
{
  const SiState *s = state;
  a[0].n = (int64_t)r->P + 1;
  if (r->grank == 0) {
    a[0].data = malloc(((size_t)r->P + 1) * sizeof *a[0].data);
    PetscCheck(a[0].data, PETSC_COMM_SELF, PETSC_ERR_MEM, "scale_inv: out of memory");
    a[0].data[0] = (double)s->prev_t;
    memcpy(a[0].data + 1, s->prev, r->P * sizeof *s->prev);
  }
  return 0;
}

static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a)
{
  SiState *s = state;
  if (a[0].n == (int64_t)r->P + 1) {
    s->prev_t = (int64_t)a[0].data[0];
    memcpy(s->prev, a[0].data + 1, r->P * sizeof *s->prev);
  }
  return 0;
}

const MeasurementClass measure_scale_invariance = {
  .name = "scale_inv", .option_heading = "Training", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .setup = setup, .due = due, .measure = measure, .destroy = destroy,
  .n_state = 1, .state_names = {"theta_prev"}, .state_get = state_get, .state_set = state_set,
};
