/* Heavy-ball momentum with coupled weight decay: v = mu v + g + wd theta; theta -= lr * scale .* v. */
#include "optimizer.h"

static void update(double *th, double *const *state, const double *g, const double *sc, size_t P, double lr, const Config *cfg)
{
  const double mu = cfg->momentum, wd = cfg->weight_decay;
  double *v = state[0];
  for (size_t p = 0; p < P; p++) {
    if (sc[p] == 0.0) continue; /* a frozen tensor (-freeze) stays bit for bit, its velocity 0 */
    double step = g[p] + wd * th[p];
    step = v[p] = mu * v[p] + step;
    th[p] -= lr * sc[p] * step;
  }
}

const OptimizerClass optimizer_heavy_ball = {.name = "heavy_ball", .n_state = 1, .state_names = {"velocity"}, .update = update};
