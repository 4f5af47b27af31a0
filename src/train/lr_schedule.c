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
  case LR_EXP: lr = eta * pow(cfg->lr_exp_factor, (double)t); break;
  case LR_ONECYCLE: { /* torch.optim.lr_scheduler.OneCycleLR, anneal_strategy 'cos', three_phase False */
    const double lo = eta / cfg->onecycle_div, fin = lo / cfg->onecycle_final_div;
    const double up_end = cfg->onecycle_pct * (double)cfg->steps - 1.0, down_end = (double)cfg->steps - 1.0;
    const double tt = (double)t;
    if (tt <= up_end) {
      const double p = up_end > 0 ? tt / up_end : 1.0;
      lr = eta + (lo - eta) / 2.0 * (cos(M_PI * p) + 1.0);
    } else {
      const double p = down_end > up_end ? fmin((tt - up_end) / (down_end - up_end), 1.0) : 1.0;
      lr = fin + (eta - fin) / 2.0 * (cos(M_PI * p) + 1.0);
    }
  } break;
  }
  if (t < cfg->warmup_steps) lr *= (double)(t + 1) / (double)cfg->warmup_steps;
  return lr;
}
