/* Which samples a step trains on (train/batch.c), kept apart from how the parameters are updated
 * (optimizer.h): -optimizer gd takes the whole training subset every step, -optimizer sgd a
 * minibatch of -batch_size from a per-epoch permutation that is a pure function of (seed, epoch),
 * so the trajectory does not depend on the number of ranks. */
#ifndef NTK_BATCH_H
#define NTK_BATCH_H
#include <stdbool.h>
#include <stdint.h>
#include "config.h"

typedef struct {
  bool full;            /* every step the whole training subset */
  int64_t n, size;      /* training samples, samples per step */
  uint64_t seed;
  int64_t *perm;        /* n: the permutation of the current epoch (minibatches) */
  int64_t perm_epoch;
} BatchPlan;

/* 0, or -1 when out of memory. */
int batch_plan_init(BatchPlan *b, const Config *cfg, int64_t n_train, uint64_t seed);
void batch_plan_free(BatchPlan *b);
/* The global batch of step t: NULL for the full batch (the contiguous samples 0..size), else
 * size sample indices. */
const int64_t *batch_of_step(BatchPlan *b, int64_t t);

#endif
