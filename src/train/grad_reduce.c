/* The data-parallel gradient sum: through the node's shared memory, or bucketed, overlapped
 * allreduces (grad_reduce.h). */
#include "grad_reduce.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <petscsys.h>

static PetscLogEvent EV_BUCKET, EV_EARLY, EV_NODE;

int grad_reduce_register_events(PetscClassId cls)
{
  PetscCall(PetscLogEventRegister("NtkGradBucket", cls, &EV_BUCKET));
  PetscCall(PetscLogEventRegister("NtkGradEarly", cls, &EV_EARLY));
  PetscCall(PetscLogEventRegister("NtkGradNodeSum", cls, &EV_NODE));
  return 0;
}

const char *grad_sum_name(GradSum s)
{
  static const char *const names[] = {"node", "mpi"};
  return (unsigned)s < sizeof names / sizeof *names ? names[s] : NULL;
}

/* ------------------------------------------------------------------ the node window */

/* The node path is on exactly when g->slot is set (a zeroed GradReduce holds no MPI handles). */
static void node_free(GradReduce *g)
{
  if (!g->slot) return;
  MPI_Win_unlock_all(g->win);
  MPI_Win_free(&g->win);
  MPI_Comm_free(&g->node);
  MPI_Comm_free(&g->cross);
  free(g->slot), free(g->kept);
  g->slot = NULL, g->kept = NULL;
}

/* The window of the group's ranks on this node, one slot of n doubles each, or none (the buckets):
 * when the group is one rank, a node holds one of its ranks, the nodes hold different numbers of
 * them, or MPI cannot make the window. Every rank of comm reaches the same decision. */
static void node_setup(GradReduce *g, MPI_Comm comm, size_t n, int node_ranks)
{
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size < 2) return;
  MPI_Comm real, node, cross;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &real);
  int real_rank, node_rank, node_size;
  MPI_Comm_rank(real, &real_rank);
  MPI_Comm_split(real, node_ranks > 0 ? real_rank / node_ranks : 0, rank, &node); /* a test's smaller nodes */
  MPI_Comm_free(&real);
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &node_size);
  int range[2] = {-node_size, node_size}; /* -min, max */
  MPI_Allreduce(MPI_IN_PLACE, range, 2, MPI_INT, MPI_MAX, comm);
  if (-range[0] < 2 || -range[0] != range[1]) { /* a node with one rank, or unequal nodes */
    MPI_Comm_free(&node);
    return;
  }
  MPI_Comm_split(comm, node_rank, rank, &cross);
  MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN); /* no window: the buckets, not an abort */
  double *mine = NULL, **slot = calloc((size_t)node_size, sizeof *slot);
  MPI_Win win;
  MPI_Info info; /* each slot on its own rank's pages (first touched there: its NUMA domain), not one block */
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  const int made = MPI_Win_allocate_shared((MPI_Aint)(n * sizeof(double)), sizeof(double), info, node, &mine, &win) == MPI_SUCCESS;
  MPI_Info_free(&info);
  int failed = !made || !slot;
  for (int q = 0; !failed && q < node_size; q++) {
    MPI_Aint bytes;
    int unit;
    failed = MPI_Win_shared_query(win, q, &bytes, &unit, &slot[q]) != MPI_SUCCESS || (size_t)bytes < n * sizeof(double);
  }
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm);
  if (failed) {
    if (made) MPI_Win_free(&win);
    MPI_Comm_free(&node);
    MPI_Comm_free(&cross);
    free(slot);
    return;
  }
  MPI_Win_lock_all(MPI_MODE_NOCHECK, win); /* one passive epoch for the run: plain loads and stores, synchronised below */
  g->node = node, g->cross = cross, g->win = win, g->slot = slot;
  g->node_rank = node_rank, g->node_size = node_size, g->n_nodes = size / node_size;
  g->lo_mine = n * (size_t)node_rank / (size_t)node_size;
  g->hi_mine = n * (size_t)(node_rank + 1) / (size_t)node_size;
}

/* Every rank's stores to its slot are visible to the node's other ranks after this, and theirs to it. */
static void node_sync(GradReduce *g)
{
  MPI_Win_sync(g->win);
  MPI_Barrier(g->node);
  MPI_Win_sync(g->win);
}

/* grad (P + 2) summed over the group through the node's slots (see grad_reduce.h). */
static void node_sum(GradReduce *g, double *grad)
{
  double *const *slot = g->slot, *mine = slot[g->node_rank];
  const size_t n = g->hi[g->n_buckets - 1];
  PetscLogEventBegin(EV_NODE, 0, 0, 0, 0);
  if (grad != mine) { /* another buffer (the linearised model's): the slot holds the run's gradient, kept aside */
    if (!g->kept) abort(); /* grad_reduce_setup was told no other buffer would come */
    memcpy(g->kept, mine, n * sizeof(double));
    memcpy(mine, grad, n * sizeof(double));
  }
  node_sync(g);
  const size_t lo = g->lo_mine, hi = g->hi_mine, len = hi - lo;
  enum { BLOCK = 512 }; /* the partial sums stay in L1 */
  double acc[BLOCK];
  const int one_node = g->n_nodes == 1; /* the node's sum is the group's: written to every slot at once */
  for (size_t b0 = lo; b0 < hi; b0 += BLOCK) { /* s_0 + s_1 + ... in slot order, whichever rank adds */
    const size_t nb = hi - b0 < BLOCK ? hi - b0 : BLOCK;
    memcpy(acc, slot[0] + b0, nb * sizeof(double));
    for (int q = 1; q < g->node_size; q++) {
      const double *src = slot[q] + b0;
      for (size_t i = 0; i < nb; i++) acc[i] += src[i];
    }
    for (int q = 0; q < g->node_size; q++)
      if (one_node || q == g->node_rank) memcpy(slot[q] + b0, acc, nb * sizeof(double));
  }
  if (!one_node) { /* the slice's owners on the other nodes add theirs, then the sum goes to every slot */
    for (size_t off = 0; off < len;) { /* MPI counts are int */
      const int cnt = (int)(len - off < (size_t)INT_MAX ? len - off : (size_t)INT_MAX);
      MPI_Allreduce(MPI_IN_PLACE, mine + lo + off, cnt, MPI_DOUBLE, MPI_SUM, g->cross);
      off += (size_t)cnt;
    }
    for (int q = 0; q < g->node_size; q++)
      if (q != g->node_rank) memcpy(slot[q] + lo, mine + lo, len * sizeof(double));
  }
  node_sync(g); /* nobody touches this slot again before the next sum */
  if (grad != mine) {
    memcpy(grad, mine, n * sizeof(double));
    memcpy(mine, g->kept, n * sizeof(double));
  }
  PetscLogFlops((PetscLogDouble)(len * (size_t)(g->node_size - 1)));
  PetscLogEventEnd(EV_NODE, 0, 0, 0, 0);
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

int grad_reduce_setup(GradReduce *g, const Model *m, MPI_Comm comm, double bucket_mb, bool overlap, GradSum sum, int node_ranks,
                      bool other_buffers)
{
  memset(g, 0, sizeof *g);
  g->comm = comm;
  g->overlap = overlap;
  if (sum == GRAD_SUM_NODE) node_setup(g, comm, m->n_params + 2, node_ranks); /* collective: before anything that may fail */
  if (g->slot && other_buffers && !(g->kept = malloc((m->n_params + 2) * sizeof(double)))) return -1;
  const size_t P = m->n_params, target = (size_t)(bucket_mb * 1048576.0 / sizeof(double));
  /* At most one bucket per op with parameters, plus the tail. */
  const int cap = m->n_ops + 1;
  g->lo = malloc(cap * sizeof *g->lo), g->hi = malloc(cap * sizeof *g->hi);
  g->ready_op = malloc(cap * sizeof *g->ready_op), g->req = malloc(cap * sizeof *g->req);
  if (!g->lo || !g->hi || !g->ready_op || !g->req) return -1; /* grad_reduce_free, on every rank, frees what is held */
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
  node_free(g); /* collective: every rank of the group frees, also after a setup that failed on one */
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

double *grad_reduce_buffer(const GradReduce *g) { return g->slot ? g->slot[g->node_rank] : NULL; }

GradHook grad_reduce_hook(GradReduce *g, double *grad)
{
  g->grad = grad;
  return g->overlap && !g->slot ? (GradHook){ready, g} : (GradHook){0};
}

void grad_reduce_finish(GradReduce *g, double *grad)
{
  if (g->slot) {
    node_sum(g, grad);
    return;
  }
  g->grad = grad;
  while (g->started < g->n_buckets) start(g, g->started++);
  MPI_Waitall(g->n_buckets, g->req, MPI_STATUSES_IGNORE);
  g->started = 0;
}
