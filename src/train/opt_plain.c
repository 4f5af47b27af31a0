/* Plain (stochastic) gradient steps with coupled weight decay: theta -= lr * scale .* (g + wd theta). */
#include "optimizer.h"

static void update(double *th, double *const *state, const double *g, const double *sc, size_t P, double lr, const Config *cfg)
{
  const double wd = cfg->weight_decay;
  for (size_t p = 0; p < P; p++) {
    if (sc[p] == 0.0) continue; /* a frozen tensor (-freeze) stays bit for bit, whatever g is */
    const double step = g[p] + wd * th[p];
    th[p] -= lr * sc[p] * step;
  }
}

const OptimizerClass optimizer_plain = {.name = "plain", .n_state = 0, .update = update};
