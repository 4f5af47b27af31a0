/* spectrum/: every eigenvalue of the NTK Gram matrix (ScaLAPACK) at the steps of -spectrum_steps,
 * when the exact Gram matrix is affordable (-gram_max_rows; never for conv nets). Row r is the
 * r-th listed step. Runs before lambda/: a step's lambda then comes from the same solve. */
#include <string.h>
#include "measure.h"

typedef struct {
  bool gram_ok;
} SpectrumState;

static bool has_spectra(const Config *c) { return c->n_spectrum_steps > 0; }

static const OptionDesc options[] = {
  {.name = "-spectrum_steps", .kind = KIND_INT64_LIST, .lo = 0, .hi = PETSC_MAX_INT, .flags = OPTION_INCREASING, .entry = "step",
   .rule = "must be >= 0", .in_deck = has_spectra, .meaning = "Steps at which the full NTK spectrum is stored (comma separated)",
   OPTION_LIST(spectrum_steps, n_spectrum_steps)},
};

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "full spectrum of the lr-weighted NTK Gram matrix J D J^T / N at the steps of -spectrum_steps";
  s->n_records = cfg->n_spectrum_steps;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the row (-1: not measured)");
  schema_add(s, "ntk", DS_FLOAT64, ntk_probe_spectrum_len(cfg, train), "1", "all eigenvalues of Theta_t, largest first");
}

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  NtkProbe *p;
  SpectrumState *s;
  PetscCall(ntk_probe_get(r, &p));
  PetscCall(PetscCalloc1(1, &s));
  s->gram_ok = ntk_probe_gram_ok(p);
  *state = s;
  return 0;
}

/* Position of step t in -spectrum_steps, or -1. */
static int listed(const Config *cfg, int64_t t) { return measure_listed_index(cfg->spectrum_steps, cfg->n_spectrum_steps, t); }

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return ((SpectrumState *)state)->gram_ok && listed(r->cfg, st->t) >= 0; }

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  NtkResult res;
  PetscCall(ntk_probe_measure(r, st->t, true, false, &res));
  double *row = records_append(out, listed(r->cfg, st->t));
  PetscCheck(row && res.spectrum, PETSC_COMM_SELF, PETSC_ERR_PLIB, "spectrum at step %lld not recorded", (long long)st->t);
  row[0] = (double)st->t;
  memcpy(row + 1, res.spectrum, (size_t)(out->width - 1) * sizeof(double));
  return 0;
}

static int validate(const Config *cfg, char *err, size_t errlen)
{
  return measure_check_listed("-spectrum_steps", cfg->spectrum_steps, cfg->n_spectrum_steps, cfg->steps, err, errlen);
}

static void destroy(void *state) { PetscFree(state); }

const MeasurementClass measure_ntk_spectrum = {
  .name = "spectrum", .option_heading = "NTK", .options = options, .n_options = sizeof options / sizeof *options,
  .validate = validate, .declare = declare, .setup = setup, .due = due, .measure = measure, .destroy = destroy,
};
