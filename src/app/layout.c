/* The layout planner and its scaling model (layout.h, docs/scaling.md).
 *
 * -ranks_per_run auto: a moldable-job schedule. The groups are communicators that live for the
 * whole job, so the plan chooses a partition of the ranks into groups and a list of runs per group:
 *   1. the runs in order of their time on one rank, longest first (ties: lower index);
 *   2. for a partition, longest-processing-time placement: each run goes to the group on which it
 *      would end earliest (group finish + t_i(G)), among the groups no larger than its batch rule
 *      allows and no smaller than its memory rule needs (ties: the lower group);
 *   3. the partitions tried: m groups of as equal sizes as possible for every m up to the number of
 *      runs (sizes capped at the largest batch rule, the ranks left over in further groups of that
 *      cap), then from the best, one rank at a time moved from the group that ends first to the one
 *      that ends last while the predicted end of training improves (unequal groups).
 * The plan whose lambda_0 phase (one solve per instance, on the same groups) and training end
 * earliest wins (ties: the fewer groups). Every step is a deterministic
 * function of the deck and the rank count; rank 0 plans and broadcasts (app.c). */
#include "layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "hessian.h"
#include "kernel_run.h"
#include "memory.h"
#include "ntk.h"
#include "optimizer.h"

Machine layout_machine(const Config *cfg)
{
  return (Machine){cfg->plan_gflops * 1e9, cfg->plan_latency * 1e-6, 8.0 / (cfg->plan_bandwidth * 1e9)};
}

static double ceil_log2(int G) { return G > 1 ? ceil(log2((double)G)) : 0.0; }

double layout_allreduce(const Machine *mc, int G, double bytes)
{
  if (G <= 1) return 0.0;
  const double ring = 2.0 * (G - 1) * mc->alpha + 2.0 * (G - 1) / G * bytes * mc->beta;
  const double rd = ceil_log2(G) * (mc->alpha + bytes * mc->beta);
  return fmin(ring, rd);
}

double layout_run_time(const RunModel *rm, const Machine *mc, int G, double parts[3])
{
  const double F = rm->flops_per_sample, g = G;
  const double flops = 3.0 * F * ceil(rm->batch / g) * rm->steps +
                       F * (ceil(rm->n_train / g) * rm->evals_train + ceil(rm->n_test / g) * rm->evals_test) + rm->measure_flops / g;
  const double compute = flops / mc->rate;
  const double comm = rm->steps * (layout_allreduce(mc, G, rm->bytes) + rm->small_reductions * ceil_log2(G) * mc->alpha);
  const double io = rm->io_bytes / LAYOUT_IO_BYTES_PER_S;
  if (parts) parts[0] = compute, parts[1] = comm, parts[2] = io;
  return compute + comm + io;
}

/* FLOPs of one lambda solve with `iters` products, by the method the NTK probe would take. */
static double lambda_flops(const Config *cfg, const Model *m, int iters)
{
  const NtkVariant v = cfg->ntk_variant ? NTK_TRACED : NTK_FULL;
  const double R = v == NTK_FULL ? (double)cfg->ntk_batch * m->cfg.out_dim : cfg->ntk_batch;
  const bool gram_ok = ntk_gram_supported(m) && R <= cfg->gram_max_rows;
  const double mf = ntk_cost_matfree(m, cfg->ntk_batch, v, iters), ex = gram_ok ? ntk_cost_exact_top(m, cfg->ntk_batch, v, iters) : INFINITY;
  if (cfg->ntk_method == NTK_METHOD_EXACT && gram_ok) return ex;
  if (cfg->ntk_method == NTK_METHOD_MATFREE) return mf;
  return fmin(mf, ex);
}

/* The memory rule: the fewest ranks G <= max_ranks with the run's need per rank within the budget
 * (the need does not grow with G: bisection); max_ranks if none fits, which the memory check then
 * refuses with its one line. */
static int fewest_ranks(const Config *cfg, const RunSpec *run, const Dataset *train, const Dataset *test, const RankMemory *mem, int max_ranks,
                        int *min_ranks, char *err, size_t errlen)
{
  MemoryNeed need;
  double total;
  int lo = 1, hi = max_ranks > 0 ? max_ranks : 1;
  while (lo < hi) { /* the smallest G in [lo, hi] that fits; hi if none does */
    const int mid = lo + (hi - lo) / 2;
    if (memory_rank_need(cfg, run, mid, mem->on_node, train, test, &need, &total, err, errlen)) return -1;
    if (total <= mem->bytes) hi = mid;
    else lo = mid + 1;
  }
  *min_ranks = lo;
  return 0;
}

int layout_models(const Config *cfg, const Sweep *sw, const Dataset *train, const Dataset *test, const RankMemory *mem, RunModel *rm,
                  char *err, size_t errlen)
{
  const double S = (double)cfg->steps;
  for (int i = 0; i < sw->n_runs; i++) {
    const RunSpec *run = &sw->runs[i];
    if (i > 0 && run->instance == sw->runs[i - 1].instance) { /* runs of one instance differ only in eta */
      rm[i] = rm[i - 1];
      continue;
    }
    RunModel *r = &rm[i];
    memset(r, 0, sizeof *r);
    r->batch = cfg->optimizer == OPT_GD ? train->n : cfg->batch_size;
    r->steps = S;
    r->n_train = train->n, r->n_test = test->n;
    r->evals_train = cfg->optimizer == OPT_SGD ? (double)record_count(cfg->steps, cfg->record_every) : 0.0;
    r->evals_test = (double)record_count(cfg->steps, cfg->test_every);
    r->max_ranks = 0, r->min_ranks = 1; /* any group */
    if (run->width == MODEL_WIDTH_INF && cfg->kernel_regression) { /* the kernel limit: no network, no run time */
      r->kernel_flops = kernel_runs_flops(cfg, train, test);
      r->steps = r->evals_train = r->evals_test = 0; /* no group trains it: its trajectory comes with phase 0 */
      continue;
    }
    ModelConfig mc = cfg->model;
    mc.width = run->width, mc.param = run->param;
    mc.in_dim = train->d, mc.out_dim = train->k;
    mc.in_channels = train->channels, mc.in_height = train->height, mc.in_width = train->width;
    Model m = {0};
    if (model_build(&m, &mc, err, errlen)) {
      model_destroy(&m);
      return -1;
    }
    const double P = (double)m.n_params;
    r->flops_per_sample = model_flops_per_sample(&m);
    r->bytes = 8.0 * P;
    int n_bn = 0;
    for (int k = 0; k < m.n_ops; k++) n_bn += m.ops[k].kind == OP_BN;
    r->small_reductions = 2.0 * n_bn; /* batch-norm statistics forward and backward (the loss rides with the gradient) */
    const bool bn = model_has_batch_norm(&m);
    r->max_ranks = (int)fmax(1.0, floor(r->batch / (bn ? LAYOUT_BN_MIN_SAMPLES : 1)));
    if (mem && mem->bytes > 0 && fewest_ranks(cfg, run, train, test, mem, r->max_ranks, &r->min_ranks, err, errlen)) {
      model_destroy(&m);
      return -1;
    }
    /* measurements along the trajectory: lambda_t (warm), sharpness, Hessian densities */
    const double n_lambda = (double)record_count(cfg->steps, cfg->lambda_every) + (double)(cfg->lambda_dense_steps < cfg->steps ? cfg->lambda_dense_steps : cfg->steps);
    r->lambda0_flops = lambda_flops(cfg, &m, LAYOUT_LAMBDA_COLD_ITERS);
    r->measure_flops = n_lambda * lambda_flops(cfg, &m, LAYOUT_LAMBDA_WARM_ITERS);
    const double hv = hessian_cost_matvec(&m, cfg->hess_batch > 0 ? cfg->hess_batch : cfg->ntk_batch);
    if (cfg->hess_every > 0) r->measure_flops += (double)record_count(cfg->steps, cfg->hess_every) * LAYOUT_HESS_ITERS * hv;
    r->measure_flops += (double)cfg->n_density_steps * ((double)cfg->slq_probes * cfg->slq_lanczos + cfg->trace_probes) * hv;
    /* I/O: the run's final checkpoint (theta, theta_0, gradient, optimizer state) and the theta
     * records. Periodic checkpoints are not priced: -checkpoint_every may change on restart, and
     * the plan must not (a restart keeps every run's group size). */
    r->io_bytes = r->bytes * (3.0 + optimizer_for(cfg)->n_state);
    if (cfg->theta_every > 0) r->io_bytes += r->bytes * ((double)record_count(cfg->steps, cfg->theta_every) + (double)cfg->theta_dense_steps);
    model_destroy(&m);
  }
  return 0;
}

/* ------------------------------------------------------------------ planning */

typedef struct {
  int n_runs, n_ranks, cap; /* cap: the largest group any run may use */
  const RunModel *rm;
  const double *t;          /* [n_runs][cap + 1]: t_i(G) */
  const int *order;         /* longest on one rank first */
} Problem;

static double t_of(const Problem *p, int i, int G) { return p->t[(size_t)i * (p->cap + 1) + G]; }

/* Longest-processing-time placement on groups of the given sizes: group_of, start, end per run and
 * finish per group; returns the end of training, INFINITY if some run fits no group by the memory
 * rule (it is then placed by the batch rule alone, so that a listing still shows every run). */
static double lpt(const Problem *p, int m, const int *size, int *group_of, double *start, double *end, double *finish)
{
  int feasible = 1;
  for (int g = 0; g < m; g++) finish[g] = 0.0;
  for (int k = 0; k < p->n_runs; k++) {
    const int i = p->order[k];
    int best = -1;
    double best_end = INFINITY;
    for (int pass = 0; pass < 2 && best < 0; pass++) /* pass 1: the memory rule cannot be met, placed anyway */
      for (int g = 0; g < m; g++) {
        if ((p->rm[i].max_ranks > 0 && size[g] > p->rm[i].max_ranks) || size[g] > p->cap || (pass == 0 && size[g] < p->rm[i].min_ranks)) continue;
        const double e = finish[g] + t_of(p, i, size[g]);
        if (e < best_end) best = g, best_end = e;
      }
    if (best < 0) return INFINITY; /* cannot happen: the batch rule admits groups up to the cap */
    feasible &= size[best] >= p->rm[i].min_ranks;
    group_of[i] = best, start[i] = finish[best], end[i] = best_end, finish[best] = best_end;
  }
  double ms = 0.0;
  for (int g = 0; g < m; g++) ms = fmax(ms, finish[g]);
  return feasible ? ms : INFINITY;
}

/* m groups of equal sizes (the first W % m one larger), capped; leftover ranks in groups of cap. */
static int partition(const Problem *p, int m, int *size)
{
  const int W = p->n_ranks;
  int used = (long long)m * p->cap < W ? m * p->cap : W, n = 0;
  for (int g = 0; g < m; g++) size[n++] = used / m + (g < used % m);
  for (int left = W - used; left > 0; left -= p->cap) size[n++] = left < p->cap ? left : p->cap;
  return n;
}

static int sort_cap;
static const double *sort_t;
static int by_serial_desc(const void *a, const void *b)
{
  const int x = *(const int *)a, y = *(const int *)b;
  const double tx = sort_t[(size_t)x * (sort_cap + 1) + 1], ty = sort_t[(size_t)y * (sort_cap + 1) + 1];
  if (tx != ty) return tx > ty ? -1 : 1;
  return x - y;
}

static void alloc_layout(Layout *L, int n_groups, int n_runs, int n_ranks)
{
  L->n_groups = n_groups, L->n_runs = n_runs, L->n_ranks = n_ranks;
  L->size = calloc((size_t)n_groups, sizeof *L->size);
  L->first = calloc((size_t)n_groups, sizeof *L->first);
  L->finish = calloc((size_t)n_groups, sizeof *L->finish);
  L->list_start = calloc((size_t)n_groups + 1, sizeof *L->list_start);
  L->group_of = calloc((size_t)(n_runs > 0 ? n_runs : 1), sizeof *L->group_of);
  L->list = calloc((size_t)(n_runs > 0 ? n_runs : 1), sizeof *L->list);
  L->start = calloc((size_t)(n_runs > 0 ? n_runs : 1), sizeof *L->start);
  L->end = calloc((size_t)(n_runs > 0 ? n_runs : 1), sizeof *L->end);
}

/* Phase 1's solves: the first run of each instance in sw->order (rep: [n_runs]); returns their count. */
static int instance_reps(const Sweep *sw, const RunModel *rm, int *rep)
{
  int n = 0;
  for (int k = 0; k < sw->n_runs; k++) {
    const int i = sw->order[k];
    int seen = 0;
    for (int j = 0; j < n && !seen; j++) seen = sw->runs[rep[j]].instance == sw->runs[i].instance;
    if (!seen && rm[i].flops_per_sample > 0) rep[n++] = i;
  }
  return n;
}

/* Phase 1: one lambda_0 per instance, largest first, each on the group that is free first (the
 * shared counter's order). */
static double phase1_time(const int *rep, int n_rep, const RunModel *rm, const Machine *mc, int m, const int *size, int *group_of_rep)
{
  double *free_at = calloc((size_t)(m > 0 ? m : 1), sizeof *free_at), end = 0;
  for (int k = 0; k < n_rep; k++) {
    const int i = rep[k];
    int g = 0;
    for (int h = 1; h < m; h++)
      if (free_at[h] < free_at[g]) g = h;
    free_at[g] += rm[i].lambda0_flops / size[g] / mc->rate + LAYOUT_LAMBDA_COLD_ITERS * layout_allreduce(mc, size[g], rm[i].bytes);
    if (group_of_rep) group_of_rep[k] = g;
  }
  for (int g = 0; g < m; g++) end = fmax(end, free_at[g]);
  free(free_at);
  return end;
}

/* Lists per group in order of start, first ranks, idle fraction, phase 1. */
static void finish_layout(Layout *L, const Sweep *sw, const RunModel *rm, const Machine *mc)
{
  int at = 0, n = 0;
  for (int g = 0; g < L->n_groups; g++) {
    L->first[g] = at, at += L->size[g];
    L->list_start[g] = n;
    for (int i = 0; i < L->n_runs; i++) { /* the group's runs by start (ties: index), insertion-sorted */
      if (L->group_of[i] != g) continue;
      int k = n++;
      while (k > L->list_start[g] && L->start[L->list[k - 1]] > L->start[i]) L->list[k] = L->list[k - 1], k--;
      L->list[k] = i;
    }
  }
  L->list_start[L->n_groups] = n;
  double busy = 0;
  L->makespan = 0;
  for (int g = 0; g < L->n_groups; g++) L->makespan = fmax(L->makespan, L->finish[g]), busy += L->size[g] * L->finish[g];
  L->idle_fraction = L->makespan > 0 ? fmax(0.0, 1.0 - busy / (L->n_ranks * L->makespan)) : 0.0;
  L->serial = 0;
  for (int i = 0; i < L->n_runs; i++) L->serial += layout_run_time(&rm[i], mc, 1, NULL);
  int *rep = malloc((size_t)(sw->n_runs > 0 ? sw->n_runs : 1) * sizeof *rep);
  L->n_l0 = instance_reps(sw, rm, rep);
  L->l0_instance = malloc((size_t)(L->n_l0 > 0 ? L->n_l0 : 1) * sizeof *L->l0_instance);
  L->l0_group = malloc((size_t)(L->n_l0 > 0 ? L->n_l0 : 1) * sizeof *L->l0_group);
  L->lambda0_time = phase1_time(rep, L->n_l0, rm, mc, L->n_groups, L->size, L->l0_group);
  L->kernel_time = 0; /* phase 0: each kernel instance once (its runs share the model), over every rank */
  for (int i = 0; i < L->n_runs; i++)
    if (rm[i].kernel_flops > 0 && (i == 0 || sw->runs[i].instance != sw->runs[i - 1].instance))
      L->kernel_time += rm[i].kernel_flops / (L->n_ranks * mc->rate);
  for (int k = 0; k < L->n_l0; k++) L->l0_instance[k] = sw->runs[rep[k]].instance;
  free(rep);
}

/* Integer -ranks_per_run: groups rank / G (the last one smaller when G does not divide W), runs
 * in sw->order to the group that is free first, as the shared counter hands them out. */
static void plan_fixed(Layout *L, const Sweep *sw, const RunModel *rm, const Machine *mc, int W, int G)
{
  const int m = (W + G - 1) / G;
  alloc_layout(L, m, sw->n_runs, W);
  L->fixed = true;
  for (int g = 0; g < m; g++) L->size[g] = g < m - 1 || W % G == 0 ? G : W % G;
  for (int k = 0; k < sw->n_runs; k++) {
    const int i = sw->order[k];
    int g = 0;
    for (int h = 1; h < m; h++)
      if (L->finish[h] < L->finish[g]) g = h;
    L->group_of[i] = g, L->start[i] = L->finish[g];
    L->end[i] = L->finish[g] = L->start[i] + layout_run_time(&rm[i], mc, L->size[g], NULL);
  }
}

static void plan_auto(Layout *L, const Sweep *sw, const RunModel *rm, const Machine *mc, int W)
{
  /* the objective: the end of phase 1 (lambda_0, on the same groups) plus the end of training */
  const int n = sw->n_runs;
  int cap = 1;
  for (int i = 0; i < n; i++) cap = rm[i].max_ranks > cap ? rm[i].max_ranks : cap;
  if (cap > W) cap = W;
  double *t = malloc((size_t)(n > 0 ? n : 1) * (size_t)(cap + 1) * sizeof *t);
  for (int i = 0; i < n; i++)
    for (int G = 1; G <= cap; G++) t[(size_t)i * (cap + 1) + G] = layout_run_time(&rm[i], mc, G, NULL);
  int *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
  for (int i = 0; i < n; i++) order[i] = i;
  sort_cap = cap, sort_t = t;
  qsort(order, (size_t)n, sizeof *order, by_serial_desc);
  const Problem p = {n, W, cap, rm, t, order};
  int *rep = malloc((size_t)(n > 0 ? n : 1) * sizeof *rep);
  const int n_rep = instance_reps(sw, rm, rep);
  /* the number of groups: at most W (one rank each) */
  int *size = malloc((size_t)(W > 0 ? W : 1) * sizeof *size), *best_size = malloc((size_t)(W > 0 ? W : 1) * sizeof *best_size);
  int *gof = malloc((size_t)(n > 0 ? n : 1) * sizeof *gof);
  double *st = malloc((size_t)(n > 0 ? n : 1) * sizeof *st), *en = malloc((size_t)(n > 0 ? n : 1) * sizeof *en), *fin = malloc((size_t)(W > 0 ? W : 1) * sizeof *fin);
  double best = INFINITY;
  int best_m = 0;
  const int m_max = n < W ? (n > 0 ? n : 1) : W;
  for (int m = 1; m <= m_max; m++) {
    if (m > 256 && m % (m / 64) != 0 && m != m_max) continue; /* many groups: about 64 values per doubling of m */
    const int k = partition(&p, m, size);
    const double ms = lpt(&p, k, size, gof, st, en, fin) + phase1_time(rep, n_rep, rm, mc, k, size, NULL);
    if (ms < best * (1 - 1e-12)) best = ms, best_m = k, memcpy(best_size, size, (size_t)k * sizeof *size);
  }
  /* unequal groups: a rank from the group that ends first to the one that ends last */
  for (int it = 0; it < 4 * W && isfinite(best); it++) {
    lpt(&p, best_m, best_size, gof, st, en, fin);
    int gl = 0, ge = -1;
    for (int g = 1; g < best_m; g++)
      if (fin[g] > fin[gl]) gl = g;
    for (int g = 0; g < best_m; g++)
      if (g != gl && best_size[g] > 1 && (ge < 0 || fin[g] < fin[ge])) ge = g;
    if (ge < 0 || best_size[gl] >= cap) break;
    memcpy(size, best_size, (size_t)best_m * sizeof *size);
    size[ge]--, size[gl]++;
    const double ms = lpt(&p, best_m, size, gof, st, en, fin) + phase1_time(rep, n_rep, rm, mc, best_m, size, NULL);
    if (!(ms < best * (1 - 1e-12))) break;
    best = ms, memcpy(best_size, size, (size_t)best_m * sizeof *size);
  }
  if (!isfinite(best)) /* no partition fits: some run needs more ranks than the job has (the memory
                          check refuses it); the largest groups, so that the listing shows it */
    best_m = partition(&p, 1, best_size);
  alloc_layout(L, best_m, n, W);
  memcpy(L->size, best_size, (size_t)best_m * sizeof *size);
  lpt(&p, best_m, L->size, L->group_of, L->start, L->end, L->finish);
  free(t), free(order), free(size), free(best_size), free(gof), free(st), free(en), free(fin), free(rep);
}

int layout_plan(Layout *L, const Config *cfg, const Sweep *sw, const RunModel *rm, int n_ranks)
{
  memset(L, 0, sizeof *L);
  const Machine mc = layout_machine(cfg);
  if (cfg->ranks_per_run > 0) plan_fixed(L, sw, rm, &mc, n_ranks, cfg->ranks_per_run);
  else plan_auto(L, sw, rm, &mc, n_ranks);
  finish_layout(L, sw, rm, &mc);
  return 0;
}

void layout_bcast(Layout *L, MPI_Comm comm)
{
  int rank, hdr[4] = {L->n_groups, L->n_runs, L->n_ranks, L->fixed};
  MPI_Comm_rank(comm, &rank);
  MPI_Bcast(hdr, 4, MPI_INT, 0, comm);
  if (rank != 0) alloc_layout(L, hdr[0], hdr[1], hdr[2]), L->fixed = hdr[3];
  const int m = L->n_groups, n = L->n_runs;
  MPI_Bcast(L->size, m, MPI_INT, 0, comm);
  MPI_Bcast(L->first, m, MPI_INT, 0, comm);
  MPI_Bcast(L->finish, m, MPI_DOUBLE, 0, comm);
  MPI_Bcast(L->list_start, m + 1, MPI_INT, 0, comm);
  MPI_Bcast(L->group_of, n, MPI_INT, 0, comm);
  MPI_Bcast(L->list, n, MPI_INT, 0, comm);
  MPI_Bcast(L->start, n, MPI_DOUBLE, 0, comm);
  MPI_Bcast(L->end, n, MPI_DOUBLE, 0, comm);
  MPI_Bcast(&L->n_l0, 1, MPI_INT, 0, comm);
  if (rank != 0) {
    L->l0_instance = malloc((size_t)(L->n_l0 > 0 ? L->n_l0 : 1) * sizeof *L->l0_instance);
    L->l0_group = malloc((size_t)(L->n_l0 > 0 ? L->n_l0 : 1) * sizeof *L->l0_group);
  }
  MPI_Bcast(L->l0_instance, L->n_l0, MPI_INT, 0, comm);
  MPI_Bcast(L->l0_group, L->n_l0, MPI_INT, 0, comm);
  double v[5] = {L->lambda0_time, L->makespan, L->serial, L->idle_fraction, L->kernel_time};
  MPI_Bcast(v, 5, MPI_DOUBLE, 0, comm);
  L->lambda0_time = v[0], L->makespan = v[1], L->serial = v[2], L->idle_fraction = v[3], L->kernel_time = v[4];
}

int layout_group_of_rank(const Layout *L, int rank)
{
  for (int g = 0; g < L->n_groups; g++)
    if (rank >= L->first[g] && rank < L->first[g] + L->size[g]) return g;
  return -1;
}

void layout_print(FILE *f, const Layout *L, const Config *cfg, const Sweep *sw, const RunModel *rm, const RankMemory *mem)
{
  const Machine mc = layout_machine(cfg);
  char memory[160] = "memory not priced (no -memory_limit)";
  if (mem && mem->bytes > 0) snprintf(memory, sizeof memory, "memory %.0f bytes per rank (%s)", mem->bytes, mem->source);
  fprintf(f, "[ntkhpc] plan: %d runs on %d ranks in %d groups (-ranks_per_run %s); machine: %g GFLOP/s per rank, %g Gb/s, latency %g us; %s\n",
          L->n_runs, L->n_ranks, L->n_groups, L->fixed ? "fixed" : "auto", cfg->plan_gflops, cfg->plan_bandwidth, cfg->plan_latency, memory);
  for (int g = 0; g < L->n_groups; g++) {
    fprintf(f, "[ntkhpc] plan: group %d: ranks %d-%d (%d ranks), %d runs, ends at %.6g s:", g, L->first[g], L->first[g] + L->size[g] - 1,
            L->size[g], L->list_start[g + 1] - L->list_start[g], L->finish[g]);
    for (int k = L->list_start[g]; k < L->list_start[g + 1]; k++) fprintf(f, " %d", L->list[k]);
    fprintf(f, "\n");
  }
  for (int i = 0; i < L->n_runs; i++) {
    const RunSpec *r = &sw->runs[i];
    const RunModel *m = &rm[i];
    const int G = L->size[L->group_of[i]];
    double parts[3];
    const double t = layout_run_time(m, &mc, G, parts);
    fprintf(f,
            "[ntkhpc] plan: run %d: width %d seed %lld %s eta %g | flops_per_sample %.17g batch %.17g steps %.17g n_train %.17g "
            "evals_train %.17g n_test %.17g evals_test %.17g measure_flops %.17g bytes %.17g small_reductions %.17g io_bytes %.17g "
            "max_ranks %d min_ranks %d kernel_flops %.17g | group %d ranks %d start %.17g end %.17g time %.17g compute %.17g comm %.17g io %.17g time1 %.17g\n",
            i, r->width, (long long)r->seed, param_name(r->param), cfg->eta_in_lambda0_units ? r->eta_factor : r->eta, m->flops_per_sample,
            m->batch, m->steps, m->n_train, m->evals_train, m->n_test, m->evals_test, m->measure_flops, m->bytes, m->small_reductions,
            m->io_bytes, m->max_ranks, m->min_ranks, m->kernel_flops, L->group_of[i], G, L->start[i], L->end[i], t, parts[0], parts[1], parts[2],
            layout_run_time(m, &mc, 1, NULL));
  }
  fprintf(f, "[ntkhpc] plan: predicted time %.6g s: kernel phase %.6g s, lambda_0 phase %.6g s, training %.6g s; idle fraction %.4f; "
             "efficiency %.4f (one rank: %.6g s)\n",
          L->kernel_time + L->lambda0_time + L->makespan, L->kernel_time, L->lambda0_time, L->makespan, L->idle_fraction,
          L->makespan > 0 ? L->serial / (L->n_ranks * L->makespan) : 1.0, L->serial);
}

void layout_free(Layout *L)
{
  free(L->l0_instance), free(L->l0_group);
  free(L->size), free(L->first), free(L->group_of), free(L->list), free(L->list_start), free(L->start), free(L->end), free(L->finish);
  memset(L, 0, sizeof *L);
}
