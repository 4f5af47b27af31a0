/* batch.h */
#include "batch.h"

#include <stdlib.h>
#include "rng.h"

int batch_plan_init(BatchPlan *b, const Config *cfg, int64_t n_train, uint64_t seed)
{
  b->full = cfg->optimizer == OPT_GD;
  b->n = n_train;
  b->size = b->full ? n_train : cfg->batch_size;
  b->seed = seed;
  b->perm_epoch = -1;
  b->perm = b->full ? NULL : malloc((size_t)n_train * sizeof *b->perm);
  return b->full || b->perm ? 0 : -1;
}

void batch_plan_free(BatchPlan *b)
{
  free(b->perm);
  b->perm = NULL;
}

/* Minibatch of step t: positions [(t mod spe) B, +B) of epoch t / spe's permutation. */
const int64_t *batch_of_step(BatchPlan *b, int64_t t)
{
  if (b->full) return NULL;
  const int64_t per_epoch = b->n / b->size, epoch = t / per_epoch;
  if (epoch != b->perm_epoch) {
    rng_permutation(b->perm, b->n, b->seed, RNG_STREAM_SHUFFLE, (uint64_t)epoch);
    b->perm_epoch = epoch;
  }
  return b->perm + (t % per_epoch) * b->size;
}
