/* lr_schedule.h */
#include "lr_schedule.h"

#include <math.h>

double lr_schedule_at(const Config *cfg, double eta, int64_t t)
{
  double lr = eta;
  switch (cfg->lr_schedule) {
  case LR_CONSTANT: break;
  case LR_STEP: lr = eta * pow(cfg->lr_step_gamma, (double)(t / cfg->lr_step_every)); break;
  case LR_COSINE: {
    double lo = cfg->lr_min_factor * eta, frac = cfg->steps > 0 ? (double)t / (double)cfg->steps : 1.0;
    lr = lo + (eta - lo) * 0.5 * (1.0 + cos(M_PI * fmin(frac, 1.0)));
  } break;
  }
  if (t < cfg->warmup_steps) lr *= (double)(t + 1) / (double)cfg->warmup_steps;
  return lr;
}
