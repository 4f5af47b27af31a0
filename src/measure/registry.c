/* The table of measurements, by name (measure.h). The built-in ones are listed here in the order
 * they run within a step: the per-step train and test metrics first (they are recorded even at a
 * step where the loss blew up), then the NTK spectrum before lambda (both share one eigensolve per
 * step), then the Hessian, whose record reuses lambda_t of the same step, and last the feature
 * measures, which reuse the NTK Gram matrix lambda assembled at the same step. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "measure.h"

extern const MeasurementClass measure_train_metrics, measure_test_metrics, measure_ntk_spectrum, measure_ntk_lambda,
  measure_hessian_sharpness, measure_hessian_density, measure_ntk_plain, measure_outputs, measure_features,
  measure_linearized, measure_ntk_analytic, measure_kernel_limit;
extern const MeasurementClass measure_grad_alignment, measure_loss_peak, measure_scale_invariance, measure_theta;

static const MeasurementClass *table[MEASURE_MAX] = {
  &measure_train_metrics, &measure_test_metrics, &measure_ntk_spectrum, &measure_ntk_lambda, &measure_hessian_sharpness, &measure_hessian_density,
  &measure_ntk_plain, &measure_outputs, &measure_features, &measure_linearized, &measure_ntk_analytic,
  &measure_kernel_limit, &measure_grad_alignment, &measure_loss_peak, &measure_scale_invariance, &measure_theta,
};
static int n_table = 16;

int measure_register(const MeasurementClass *m)
{
  if (n_table >= MEASURE_MAX || !m || !m->name || measure_find(m->name)) return -1;
  table[n_table++] = m;
  return 0;
}

int measure_count(void) { return n_table; }
const MeasurementClass *measure_get(int i) { return i >= 0 && i < n_table ? table[i] : NULL; }

const MeasurementClass *measure_find(const char *name)
{
  for (int i = 0; i < n_table; i++)
    if (strcmp(table[i]->name, name) == 0) return table[i];
  return NULL;
}

int measure_set_declare(MeasureSet *set, const Config *cfg, const Dataset *train, char *err, size_t errlen)
{
  memset(set, 0, sizeof *set);
  for (int i = 0; i < n_table; i++) {
    Schema s = {0};
    s.group = table[i]->name;
    table[i]->declare(cfg, train, &s);
    if (s.n_records <= 0) continue;
    if (s.overflow || s.n_datasets < 1 || strcmp(s.datasets[0].name, "step") || s.datasets[0].type != DS_INT64 || s.datasets[0].width != SCALAR) {
      snprintf(err, errlen, "measurement %s: %s", s.group,
               s.overflow ? "more datasets than a schema holds (SCHEMA_MAX_DATASETS)" : "its first dataset must be the int64 scalar \"step\"");
      return -1;
    }
    set->cls[set->n] = table[i];
    set->schema[set->n++] = s;
  }
  return 0;
}

int measure_set_index(const MeasureSet *set, const char *name)
{
  for (int i = 0; i < set->n; i++)
    if (strcmp(set->cls[i]->name, name) == 0) return i;
  return -1;
}

int measure_set_validate(const Config *cfg, char *err, size_t errlen)
{
  for (int i = 0; i < n_table; i++)
    if (table[i]->validate && table[i]->validate(cfg, err, errlen)) return -1;
  return 0;
}

int measure_listed_index(const int64_t *list, int n, int64_t t)
{
  for (int i = 0; i < n; i++)
    if (list[i] == t) return i;
  return -1;
}

int measure_check_listed(const char *option, const int64_t *list, int n, int64_t steps, char *err, size_t errlen)
{
  if (n > 0 && list[n - 1] > steps) {
    snprintf(err, errlen, "option %s: step %" PRId64 " is beyond -steps %" PRId64, option, list[n - 1], steps);
    return -1;
  }
  return 0;
}
