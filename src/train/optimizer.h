/* Update rules, one file each, listed in one table (train/optimizer.c). An entry gives its update
 * and the names of its state vectors (each P long), which checkpoints keep as "opt.<name>". The
 * rule is chosen by the deck's options; which samples a step uses is batch.h's business. */
#ifndef NTK_OPTIMIZER_H
#define NTK_OPTIMIZER_H
#include <stddef.h>
#include "config.h"

#define OPTIMIZER_MAX_STATE 4

typedef struct {
  const char *name;
  int n_state;
  const char *state_names[OPTIMIZER_MAX_STATE];
  /* theta -= lr * lr_scale .* (step from grad, weight decay and state); state vectors start at 0
   (heavy ball: -momentum_init). Parameters with lr_scale 0 (frozen) are skipped, untouched. */
  void (*update)(double *theta /* P */, double *const *state /* n_state x P */, const double *grad /* P */, const double *lr_scale /* P */,
                 size_t P, double lr, const Config *cfg);
} OptimizerClass;

/* The update rule the deck asks for: heavy-ball momentum when -momentum > 0, else plain steps. */
const OptimizerClass *optimizer_for(const Config *cfg);

#endif
