/* Bucketed, overlapped gradient allreduce (grad_reduce.h). */
#include "grad_reduce.h"

#include <stdlib.h>
#include <string.h>
#include <petscsys.h>

static PetscLogEvent EV_BUCKET, EV_EARLY;

int grad_reduce_register_events(PetscClassId cls)
{
  PetscCall(PetscLogEventRegister("NtkGradBucket", cls, &EV_BUCKET));
  PetscCall(PetscLogEventRegister("NtkGradEarly", cls, &EV_EARLY));
  return 0;
}

/* The parameter range an op owns: [lo, hi) of theta, or lo == hi for none. */
static void op_span(const Model *m, const Op *op, size_t *lo, size_t *hi)
{
  *lo = SIZE_MAX, *hi = 0;
  const int ids[2] = {op->w, op->b};
  for (int j = 0; j < 2; j++) {
    if (ids[j] < 0) continue;
    const ParamTensor *p = &m->tensors[ids[j]];
    if (p->offset < *lo) *lo = p->offset;
    if (p->offset + p->size > *hi) *hi = p->offset + p->size;
  }
  if (*hi == 0) *lo = 0;
}

int grad_reduce_setup(GradReduce *g, const Model *m, MPI_Comm comm, double bucket_mb, bool overlap)
{
  memset(g, 0, sizeof *g);
  g->comm = comm;
  g->overlap = overlap;
  const size_t P = m->n_params, target = (size_t)(bucket_mb * 1048576.0 / sizeof(double));
  /* At most one bucket per op with parameters, plus the tail. */
  const int cap = m->n_ops + 1;
  g->lo = malloc(cap * sizeof *g->lo), g->hi = malloc(cap * sizeof *g->hi);
  g->ready_op = malloc(cap * sizeof *g->ready_op), g->req = malloc(cap * sizeof *g->req);
  if (!g->lo || !g->hi || !g->ready_op || !g->req) {
    grad_reduce_free(g);
    return -1;
  }
  /* Walking the ops backwards, their parameter spans must tile [0, P) downwards (the model lays
   * tensors out in op order); a bucket closes once it holds `target` doubles. Any other layout,
   * or target 0, leaves everything to the tail. */
  size_t top = P, end = P;
  int last = -1; /* the lowest op with parameters */
  bool tiled = target > 0;
  for (int i = m->n_ops - 1; i >= 0 && tiled; i--) {
    size_t lo, hi;
    op_span(m, &m->ops[i], &lo, &hi);
    if (lo == hi) continue;
    if (hi != top) tiled = false;
    top = lo, last = i;
    if (tiled && (end - top >= target || top == 0)) {
      g->lo[g->n_buckets] = top, g->hi[g->n_buckets] = end, g->ready_op[g->n_buckets++] = i;
      end = top;
    }
  }
  if (!tiled || top != 0 || last < 0) g->n_buckets = 0, end = P;
  /* The tail: the loss sum and the correct count, with all parameters if the layout was not tiled. */
  g->lo[g->n_buckets] = end == 0 ? P : 0, g->hi[g->n_buckets] = P + 2, g->ready_op[g->n_buckets++] = -1;
  return 0;
}

void grad_reduce_free(GradReduce *g)
{
  free(g->lo), free(g->hi), free(g->ready_op), free(g->req);
  memset(g, 0, sizeof *g);
}

/* One event per bucket start, its flops the bucket's doubles: -log_view counts the buckets. */
static void start(GradReduce *g, int b)
{
  PetscLogEventBegin(EV_BUCKET, 0, 0, 0, 0);
  PetscLogFlops((PetscLogDouble)(g->hi[b] - g->lo[b]));
  MPI_Iallreduce(MPI_IN_PLACE, g->grad + g->lo[b], (int)(g->hi[b] - g->lo[b]), MPI_DOUBLE, MPI_SUM, g->comm, &g->req[b]);
  PetscLogEventEnd(EV_BUCKET, 0, 0, 0, 0);
}

/* Op `op` is done: start, in order, every bucket it completes, and let MPI progress the ones in
 * flight (Open MPI moves nonblocking collectives only inside MPI calls). */
static void ready(int op, void *ctx)
{
  GradReduce *g = ctx;
  while (g->started < g->n_buckets - 1 && g->ready_op[g->started] >= op) {
    PetscLogEventBegin(EV_EARLY, 0, 0, 0, 0); /* counts the buckets started inside the backward pass */
    start(g, g->started++);
    PetscLogEventEnd(EV_EARLY, 0, 0, 0, 0);
  }
  if (g->started > 0) {
    int flag;
    MPI_Testall(g->started, g->req, &flag, MPI_STATUSES_IGNORE);
  }
}

GradHook grad_reduce_hook(GradReduce *g, double *grad)
{
  g->grad = grad;
  return g->overlap ? (GradHook){ready, g} : (GradHook){0};
}

void grad_reduce_finish(GradReduce *g, double *grad)
{
  g->grad = grad;
  while (g->started < g->n_buckets) start(g, g->started++);
  MPI_Waitall(g->n_buckets, g->req, MPI_STATUSES_IGNORE);
  g->started = 0;
}
