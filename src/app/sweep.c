/* The sweep's runs, their cost estimates, and the largest-first dynamic scheduler. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sweep.h"

/* FLOPs of a whole run: forward + backward (about 3x forward) on every training step's samples,
 * plus the forward passes of the train and test evaluations. Only the ordering uses it, and the
 * time-left estimate, so a constant factor does not matter. */
static double run_cost(const Config *cfg, double flops_per_sample, int n_train, int n_test)
{
  double per_step = cfg->optimizer == OPT_GD ? n_train : cfg->batch_size;
  double train = 3.0 * flops_per_sample * per_step * (double)cfg->steps;
  double evals = flops_per_sample * ((cfg->optimizer == OPT_SGD ? (double)n_train * record_count(cfg->steps, cfg->record_every) : 0.0) +
                                     (double)n_test * record_count(cfg->steps, cfg->test_every));
  return train + evals + 1.0;
}

static const RunSpec *sort_base;
static int by_cost_desc(const void *a, const void *b)
{
  const RunSpec *x = &sort_base[*(const int *)a], *y = &sort_base[*(const int *)b];
  if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
  return x->index - y->index; /* deterministic tie-break */
}

int sweep_build(Sweep *sw, const Config *cfg, int n_train, int n_test, int in_dim, int out_dim, char *err, size_t errlen)
{
  memset(sw, 0, sizeof *sw);
  /* -mup_limit: the infinite width is one more width, after the deck's. -kernel_regression: so is
   * the kernel limit, with one run per learning rate only (no seed, param ntk: f_0 = 0). */
  const int n_widths = cfg->n_widths + (cfg->mup_limit ? 1 : 0) + (cfg->kernel_regression ? 1 : 0);
  const int n_deck = (n_widths - (cfg->kernel_regression ? 1 : 0)) * cfg->n_seeds * cfg->n_params * cfg->n_etas +
                     (cfg->kernel_regression ? cfg->n_etas : 0);
  const int part = cfg->sweep_part, parts = cfg->sweep_parts > 0 ? cfg->sweep_parts : 1;
  sw->n_runs = n_deck / parts + (part < n_deck % parts);
  if (sw->n_runs == 0) {
    snprintf(err, errlen, "option -sweep_part: part %d of %d holds no run (the deck has %d runs)", part, parts, n_deck);
    return -1;
  }
  sw->in_dim = in_dim;
  sw->out_dim = out_dim;
  sw->runs = calloc((size_t)sw->n_runs, sizeof *sw->runs);
  sw->order = malloc((size_t)sw->n_runs * sizeof *sw->order);
  int r = 0, d = 0;
  /* Deck order: width, seed, parameterization, learning rate (innermost). */
  for (int w = 0; w < n_widths; w++)
    for (int s = 0; s < cfg->n_seeds; s++)
      for (int p = 0; p < cfg->n_params; p++) {
        const bool kernel = cfg->kernel_regression && w == n_widths - 1;
        if (kernel && (s > 0 || p > 0)) continue;
        ModelConfig mc = cfg->model;
        mc.width = w < cfg->n_widths ? cfg->widths[w] : MODEL_WIDTH_INF;
        mc.param = kernel ? PARAM_NTK : cfg->params[p];
        mc.in_dim = in_dim;
        mc.out_dim = out_dim;
        Model m = {0};
        if (!kernel && (model_build(&m, &mc, err, errlen) || model_freeze(&m, cfg->freeze, err, errlen))) {
          model_destroy(&m);
          sweep_free(sw);
          return -1;
        }
        double cost = kernel ? 0.0 : run_cost(cfg, model_flops_per_sample(&m), n_train, n_test);
        const int r_first = r;
        for (int e = 0; e < cfg->n_etas; e++, d++) {
          if (d % parts != part) continue;
          RunSpec *run = &sw->runs[r];
          run->index = r++;
          run->deck_index = d;
          run->instance = sw->n_instances;
          run->width = mc.width;
          run->seed = cfg->seeds[s];
          run->param = mc.param;
          /* With -eta_factors the absolute rate is known only once lambda_0 is measured. */
          run->eta = cfg->eta_in_lambda0_units ? NAN : cfg->etas[e];
          run->eta_factor = cfg->eta_in_lambda0_units ? cfg->etas[e] : NAN;
          run->lambda0 = NAN;
          run->n_params = kernel ? 0 : (int64_t)m.n_params;
          run->cost = cost;
        }
        if (r > r_first) sw->n_instances++; /* instances without a run in this part are skipped */
        if (!kernel) model_destroy(&m);
      }
  for (int i = 0; i < sw->n_runs; i++) sw->order[i] = i;
  sort_base = sw->runs;
  qsort(sw->order, (size_t)sw->n_runs, sizeof *sw->order, by_cost_desc);
  return 0;
}

void sweep_free(Sweep *sw)
{
  free(sw->runs);
  free(sw->order);
  memset(sw, 0, sizeof *sw);
}

/* ------------------------------------------------------------------ scheduler
 * A shared counter on world rank 0, advanced with MPI_Fetch_and_op under a passive-target lock:
 * a group that finishes early takes the next (cheaper) run at once, without a master rank. */

int scheduler_create(Scheduler *s, MPI_Comm world, MPI_Comm group, int n_runs)
{
  int rank;
  MPI_Comm_rank(world, &rank);
  s->world = world;
  s->group = group;
  s->n_runs = n_runs;
  s->list = NULL, s->n_list = s->next = 0;
  if (MPI_Win_allocate(rank == 0 ? (MPI_Aint)(2 * sizeof(long)) : 0, sizeof(long), MPI_INFO_NULL, world, &s->counter, &s->win))
    return -1;
  if (rank == 0) {
    MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, s->win);
    s->counter[0] = s->counter[1] = 0;
    MPI_Win_unlock(0, s->win);
  }
  MPI_Barrier(world);
  return 0;
}

int scheduler_create_list(Scheduler *s, MPI_Comm world, MPI_Comm group, int n_runs, const int *list, int n_list)
{
  if (scheduler_create(s, world, group, n_runs)) return -1;
  s->list = list, s->n_list = n_list;
  return 0;
}

int scheduler_next(Scheduler *s)
{
  int grank;
  long next = 0, one = 1;
  MPI_Comm_rank(s->group, &grank);
  if (grank == 0) {
    if (scheduler_stop_requested(s)) next = s->n_runs;
    else if (s->list) next = s->next < s->n_list ? s->list[s->next] : s->n_runs;
    else {
      MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, s->win);
      MPI_Fetch_and_op(&one, &next, MPI_LONG, 0, 0, MPI_SUM, s->win);
      MPI_Win_unlock(0, s->win);
    }
  }
  MPI_Bcast(&next, 1, MPI_LONG, 0, s->group);
  if (s->list) s->next++;
  return next < s->n_runs ? (int)next : -1;
}

void scheduler_request_stop(Scheduler *s)
{
  long one = 1, old;
  MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, s->win);
  MPI_Fetch_and_op(&one, &old, MPI_LONG, 0, 1, MPI_REPLACE, s->win);
  MPI_Win_unlock(0, s->win);
}

int scheduler_stop_requested(Scheduler *s)
{
  long flag = 0;
  MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, s->win);
  MPI_Fetch_and_op(NULL, &flag, MPI_LONG, 0, 1, MPI_NO_OP, s->win);
  MPI_Win_unlock(0, s->win);
  return flag != 0;
}

void scheduler_destroy(Scheduler *s) { MPI_Win_free(&s->win); }
