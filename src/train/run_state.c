/* One run's numerics on one rank (run_state.h).
 *
 * For each step the global batch (the whole training subset for gd, a minibatch for sgd) is cut
 * into contiguous slices, one per rank; each rank accumulates its slice's gradient in chunks of at
 * most -eval_chunk samples, and the group sums gradient, loss and correct count in buckets that the
 * last chunk's backward pass starts (grad_reduce.h). */
#include "run_state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <petscsys.h>
#include "augment.h"
#include "grad_reduce.h"

static PetscLogEvent EV_GRADIENT, EV_ALLREDUCE, EV_EVALUATE;

int run_state_register_events(PetscClassId cls)
{
  PetscCall(PetscLogEventRegister("NtkGradient", cls, &EV_GRADIENT));
  PetscCall(PetscLogEventRegister("NtkAllreduce", cls, &EV_ALLREDUCE));
  PetscCall(PetscLogEventRegister("NtkEvaluate", cls, &EV_EVALUATE));
  PetscCall(grad_reduce_register_events(cls));
  return 0;
}

/* [lo, hi) of n items for rank g of G: contiguous, sizes differ by at most one. */
static void slice(int64_t n, int g, int G, int64_t *lo, int64_t *hi)
{
  *lo = n * g / G;
  *hi = n * (g + 1) / G;
}

static void sum_group(RunState *s, double *buf, int n)
{
  if (s->gsize == 1) return;
  PetscLogEventBegin(EV_ALLREDUCE, 0, 0, 0, 0);
  MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, s->group);
  PetscLogEventEnd(EV_ALLREDUCE, 0, 0, 0, 0);
}

static void group_reduce(double *buf, int n, void *ctx) { sum_group((RunState *)ctx, buf, n); }

/* Forward (and, if grad != NULL, backward) at theta over the samples idx[0..n) of ds (idx == NULL:
 * the contiguous samples first..first+n). Adds sum_a ||f_a - y_a||^2 / 2 to *loss_sum and the number
 * of correct argmax predictions to *correct; grad += d/dtheta of that sum / n_global.
 * dtheta != NULL: the same for the linearised model f(x; theta) + J(x) dtheta at theta = theta_0
 * (one JVP on the forward pass's tape; the VJP is then J^T of that linearisation).
 * aug_step >= 0: the inputs are augmented (random crop + flip keyed by (seed, aug_step, sample),
 * augment.h); only training steps pass it, evaluations pass -1.
 * With batch norm the n samples are this rank's slice of ONE batch: one model call (setup sizes
 * the tape for the largest slice), made even with n = 0, statistics summed over the group. */
static void pass(RunState *s, const double *theta, const double *dtheta, const Dataset *ds, const int64_t *idx, int64_t first, int64_t n,
                 double n_global, double *grad, double *loss_sum, double *correct, int64_t aug_step)
{
  const Model *m = &s->model;
  const int d = ds->d, k = ds->k, chunk = s->tape.capacity;
  const bool bn = model_has_batch_norm(m);
  const Reducer group = {group_reduce, s}, *red = bn ? &group : NULL;
  for (int64_t c0 = 0; c0 < n || (bn && c0 == 0); c0 += chunk) {
    int B = (int)(n - c0 < chunk ? n - c0 : chunk);
    const double *x, *y;
    const int *lab;
    if (idx) {
      for (int a = 0; a < B; a++) {
        int64_t i = idx[c0 + a];
        if (aug_step < 0) memcpy(s->xbuf + (size_t)a * d, ds->x + (size_t)i * d, (size_t)d * sizeof(double)); /* else augment_gather */
        memcpy(s->ybuf + (size_t)a * k, ds->y + (size_t)i * k, (size_t)k * sizeof(double));
        s->lbuf[a] = ds->label[i];
      }
      x = s->xbuf, y = s->ybuf, lab = s->lbuf;
    } else {
      x = ds->x + (size_t)(first + c0) * d;
      y = ds->y + (size_t)(first + c0) * k;
      lab = ds->label + first + c0;
    }
    if (aug_step >= 0) { /* overwrites the gathered rows with their augmented copies */
      augment_gather(s->xbuf, ds->x, idx ? idx + c0 : NULL, first + c0, B, ds->channels, ds->height, ds->width, s->cfg->augment_pad,
                     (uint64_t)s->run->seed, aug_step);
      x = s->xbuf;
    }
    const double *f = model_forward(m, theta, x, B, &s->tape, red);
    if (dtheta) { /* f_lin = f + J dtheta */
      model_jvp(m, theta, dtheta, B, &s->tape, s->flin, red);
      for (size_t q = 0; q < (size_t)B * k; q++) s->flin[q] += f[q];
      f = s->flin;
    }
    if (grad) {
      /* dL/df = (f - y) / N over the global batch. The last chunk completes the gradient op by op:
       * its buckets start their group sums from the backward pass. */
      *loss_sum += model_loss(m, s->dfbuf, f, y, B, 1.0 / n_global);
      if (s->gsize > 1 && c0 + B >= n) s->tape.hook = grad_reduce_hook(&s->reduce, grad);
      model_vjp(m, theta, s->dfbuf, B, &s->tape, grad, red);
      s->tape.hook = (GradHook){0};
    } else {
      *loss_sum += model_loss(m, NULL, f, y, B, 1.0);
    }
    *correct += count_correct(f, lab, B, k);
  }
}

/* With batch norm (train mode, no running statistics) an evaluated set is cut, in its order, into
 * batches of the training batch's size (the last one shorter), each normalised with its own
 * statistics and split over the group like a training batch: deterministic and independent of the
 * number of ranks; for gd the train loss equals the loss of the gradient pass. */
static void evaluate(RunState *s, const double *theta, const double *dtheta, const Dataset *ds, double *loss, double *acc)
{
  PetscLogEventBegin(EV_EVALUATE, 0, 0, 0, 0);
  int64_t lo, hi;
  double sums[2] = {0, 0};
  if (model_has_batch_norm(&s->model)) {
    const int64_t E = s->batches.size;
    for (int64_t b0 = 0; b0 < ds->n; b0 += E) {
      const int64_t nb = ds->n - b0 < E ? ds->n - b0 : E;
      slice(nb, s->grank, s->gsize, &lo, &hi);
      pass(s, theta, dtheta, ds, NULL, b0 + lo, hi - lo, ds->n, NULL, &sums[0], &sums[1], -1);
    }
  } else {
    slice(ds->n, s->grank, s->gsize, &lo, &hi);
    pass(s, theta, dtheta, ds, NULL, lo, hi - lo, ds->n, NULL, &sums[0], &sums[1], -1);
  }
  sum_group(s, sums, 2);
  *loss = sums[0] / ds->n;
  *acc = ds->label[0] >= 0 ? sums[1] / ds->n : NAN;
  PetscLogEventEnd(EV_EVALUATE, 0, 0, 0, 0);
}

/* The gradient over step t's batch at theta (+ the linearisation dtheta) into grad (P + 2). */
static double gradient(RunState *s, const double *theta, const double *dtheta, int64_t t, double *grad, double *acc)
{
  const Dataset *tr = s->train;
  PetscLogEventBegin(EV_GRADIENT, 0, 0, 0, 0);
  memset(grad, 0, (s->P + 2) * sizeof(double));
  const int64_t *batch = batch_of_step(&s->batches, t), n_global = s->batches.size;
  int64_t lo, hi;
  slice(n_global, s->grank, s->gsize, &lo, &hi);
  pass(s, theta, dtheta, tr, batch ? batch + lo : NULL, lo, hi - lo, (double)n_global, grad, &grad[s->P], &grad[s->P + 1],
       s->cfg->augment ? t : -1);
  PetscLogEventEnd(EV_GRADIENT, 0, 0, 0, 0);
  if (s->gsize > 1) { /* what the backward pass did not overlap */
    PetscLogEventBegin(EV_ALLREDUCE, 0, 0, 0, 0);
    grad_reduce_finish(&s->reduce, grad);
    PetscLogEventEnd(EV_ALLREDUCE, 0, 0, 0, 0);
  }
  *acc = tr->label[0] >= 0 ? grad[s->P + 1] / n_global : NAN;
  return grad[s->P] / n_global;
}

void run_state_evaluate(RunState *s, const Dataset *ds, double *loss, double *acc) { evaluate(s, s->theta, NULL, ds, loss, acc); }

double run_state_gradient(RunState *s, int64_t t, double *acc) { return gradient(s, s->theta, NULL, t, s->grad, acc); }

static void evaluate_cb(void *loop, const Dataset *ds, double *loss, double *acc) { run_state_evaluate((RunState *)loop, ds, loss, acc); }
static void evaluate_lin_cb(void *loop, const double *dtheta, const Dataset *ds, double *loss, double *acc)
{
  RunState *s = loop;
  evaluate(s, s->theta0, dtheta, ds, loss, acc);
}
static double gradient_lin_cb(void *loop, const double *dtheta, int64_t t, double *grad, double *acc)
{
  RunState *s = loop;
  return gradient(s, s->theta0, dtheta, t, grad, acc);
}
static void update_cb(void *loop, double *theta, double *const *state, const double *grad, double lr)
{
  RunState *s = loop;
  s->opt->update(theta, state, grad, s->lr_scale, s->P, lr, s->cfg);
}

int run_state_setup(RunState *s, MPI_Comm group, const Config *cfg, const RunSpec *run, const Dataset *train, const Dataset *test)
{
  char err[256];
  memset(s, 0, sizeof *s);
  s->group = group, s->cfg = cfg, s->run = run, s->train = train, s->test = test;
  MPI_Comm_rank(group, &s->grank);
  MPI_Comm_size(group, &s->gsize);
  ModelConfig mc = cfg->model;
  mc.width = run->width;
  mc.param = run->param;
  mc.in_dim = train->d;
  mc.in_channels = train->channels, mc.in_height = train->height, mc.in_width = train->width;
  mc.out_dim = train->k;
  if (model_build(&s->model, &mc, err, sizeof err) || model_freeze(&s->model, cfg->freeze, err, sizeof err)) {
    fprintf(stderr, "ntkhpc: error: run %d: %s\n", run->index, err);
    return -1;
  }
  s->P = s->model.n_params;
  /* Collective over the group (the node window), so before anything one rank alone may fail at. */
  if (grad_reduce_setup(&s->reduce, &s->model, group, cfg->grad_bucket_mb, cfg->grad_overlap, (GradSum)cfg->grad_sum,
                        cfg->grad_node_ranks, cfg->linearized)) goto oom;
  if (batch_plan_init(&s->batches, cfg, train->n, (uint64_t)run->seed)) goto oom;
  int chunk = cfg->eval_chunk;
  /* Batch norm: a rank's slice of a batch is one model call, so the tape holds the largest slice
   * (-eval_chunk does not apply; docs/layers.md). */
  if (model_has_batch_norm(&s->model)) chunk = (int)((s->batches.size + s->gsize - 1) / s->gsize);
  if (tape_create_train(&s->tape, &s->model, chunk)) goto oom; /* forward, JVP, VJP only: cotangents reused */
  s->opt = optimizer_for(cfg);
  s->theta = malloc(s->P * sizeof(double));
  s->theta0 = malloc(s->P * sizeof(double));
  s->grad = grad_reduce_buffer(&s->reduce); /* the node window's slot: summed in place */
  if (!s->grad) s->grad = s->grad_own = malloc((s->P + 2) * sizeof(double));
  s->lr_scale = malloc(s->P * sizeof(double));
  s->xbuf = malloc((size_t)chunk * train->d * sizeof(double));
  s->ybuf = malloc((size_t)chunk * train->k * sizeof(double));
  s->lbuf = malloc((size_t)chunk * sizeof(int));
  s->dfbuf = malloc((size_t)chunk * train->k * sizeof(double));
  s->flin = malloc((size_t)chunk * train->k * sizeof(double));
  if (!s->flin || !s->theta || !s->theta0 || !s->grad || !s->lr_scale || !s->xbuf || !s->ybuf || !s->lbuf || !s->dfbuf) goto oom;
  for (int i = 0; i < s->opt->n_state; i++)
    if (!(s->opt_state[i] = calloc(s->P, sizeof(double)))) goto oom;
  model_init(&s->model, s->theta, (uint64_t)run->seed);
  memcpy(s->theta0, s->theta, s->P * sizeof(double));
  model_lr_scales(&s->model, s->lr_scale);
  if (cfg->momentum_init != 0 && s->opt->n_state > 0) /* heavy ball's v_0 = c theta_0 on the trained tensors */
    for (int t = 0; t < s->model.n_tensors; t++) {
      const ParamTensor *pt = &s->model.tensors[t];
      for (size_t i = 0; !pt->frozen && i < pt->size; i++) s->opt_state[0][pt->offset + i] = cfg->momentum_init * s->theta[pt->offset + i];
    }
  s->mrun = (MeasureRun){.group = group, .grank = s->grank, .gsize = s->gsize, .cfg = cfg, .run = run, .train = train, .test = test,
                         .model = &s->model, .P = s->P, .theta = s->theta, .theta0 = s->theta0, .evaluate = evaluate_cb,
                         .evaluate_lin = evaluate_lin_cb, .gradient_lin = gradient_lin_cb, .update = update_cb, .n_opt_state = s->opt->n_state,
                         .loop = s};
  return 0;
oom:
  fprintf(stderr, "ntkhpc: error: run %d: out of memory for %zu parameters\n", run->index, s->P);
  return -1;
}

void run_state_teardown(RunState *s)
{
  ntk_probe_destroy(&s->mrun.ntk); /* before the model they point to */
  hess_probe_destroy(&s->mrun.hess);
  free(s->theta), free(s->theta0), free(s->grad_own), free(s->lr_scale);
  free(s->xbuf), free(s->ybuf), free(s->lbuf), free(s->dfbuf), free(s->flin);
  for (int i = 0; i < OPTIMIZER_MAX_STATE; i++) free(s->opt_state[i]);
  batch_plan_free(&s->batches);
  tape_destroy(&s->tape);
  grad_reduce_free(&s->reduce);
  model_destroy(&s->model);
}
