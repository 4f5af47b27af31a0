/* The learning rate at a step (train/lr_schedule.c): the deck's schedule (constant, step decay,
 * cosine, exponential lr_t = eta factor^t, or torch's one-cycle) times the linear warm-up. */
#ifndef NTK_LR_SCHEDULE_H
#define NTK_LR_SCHEDULE_H
#include <stdint.h>
#include "config.h"

/* Learning rate at step t for base rate eta. */
double lr_schedule_at(const Config *cfg, double eta, int64_t t);

#endif
