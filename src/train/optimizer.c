/* The table of update rules (optimizer.h). */
#include "optimizer.h"

extern const OptimizerClass optimizer_plain, optimizer_heavy_ball;

const OptimizerClass *optimizer_for(const Config *cfg) { return cfg->momentum > 0 ? &optimizer_heavy_ball : &optimizer_plain; }
