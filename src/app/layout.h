/* The layout of a job: which ranks form which group and which runs each group trains. With an
 * integer -ranks_per_run the groups are equal and take runs dynamically (sweep.h); with
 * -ranks_per_run auto this planner picks groups of unequal sizes from the scaling model below, and
 * -plan_only prints the plan. The model is written out in docs/scaling.md; the figures there come
 * from this code (-plan_only with -plan_ranks, -plan_gflops, -plan_bandwidth, -plan_latency).
 *
 * One run on a group of G ranks takes, in seconds,
 *   t(G) = [3 F ceil(b / G) S + F (ceil(n_train / G) E_train + ceil(n_test / G) E_test) + M / G] / r
 *        + S (allreduce(G, 8 P) + L ceil(log2 G) alpha) + IO,
 *   allreduce(G, n) = min(ring: 2 (G - 1) alpha + 2 (G - 1) / G n beta,
 *                         recursive doubling: ceil(log2 G) (alpha + n beta)),  0 when G = 1,
 * with F the forward FLOPs per sample, b the per-step batch, S the steps, E the evaluations, M the
 * FLOPs of the lambda_t and Hessian measurements (their operators' own cost models), r the
 * sustained rate of one rank, L the small latency-bound reductions per step (two per batch-norm
 * layer; the loss rides with the gradient) and IO the checkpoint and theta bytes over IO_BYTES_PER_S. */
#ifndef NTK_LAYOUT_H
#define NTK_LAYOUT_H
#include <stdio.h>
#include "config.h"
#include "data.h"
#include "sweep.h"

/* Samples of a batch each rank must hold when the net has batch norm (the batch rule). */
#define LAYOUT_BN_MIN_SAMPLES 4
/* Krylov-Schur products assumed per lambda solve: cold (lambda_0) and warm-started (lambda_t), and
 * Hessian products per sharpness solve (docs/scaling.md). */
#define LAYOUT_LAMBDA_COLD_ITERS 40
#define LAYOUT_LAMBDA_WARM_ITERS 20
#define LAYOUT_HESS_ITERS 20
/* Sustained write rate of checkpoints and theta records, bytes per second. */
#define LAYOUT_IO_BYTES_PER_S 1e9

typedef struct {
  double rate;  /* sustained FLOP/s of one rank */
  double alpha; /* seconds per message */
  double beta;  /* seconds per byte */
} Machine;

/* One run's terms of t(G) (above). */
typedef struct {
  double flops_per_sample;   /* F */
  double batch, steps;       /* b, S */
  double n_train, evals_train, n_test, evals_test;
  double measure_flops;      /* M */
  double lambda0_flops;      /* the cold lambda_0 solve of its instance (phase 1) */
  double kernel_flops;       /* the kernel limit's runs: their instance's Gram matrices and dense
                                algebra, on every rank before phase 1 (phase 0) */
  double bytes;              /* 8 P: the gradient allreduce */
  double small_reductions;   /* L per step */
  double io_bytes;
  int max_ranks;             /* the batch rule: b, or b / LAYOUT_BN_MIN_SAMPLES with batch norm
                                (0: any group, the kernel limit's runs, which no group trains) */
  int min_ranks;             /* the memory rule: the fewest ranks (up to max_ranks) whose share of the
                                run fits a rank's memory; 1 when memory is not priced */
} RunModel;

/* What a rank may hold, for the memory rule (memory.h memory_rank_budget): bytes 0 = not priced. */
typedef struct {
  double bytes;
  int on_node;        /* ranks per node: -data_shared's share of the node's copy */
  char source[96];    /* where the figure comes from, for the listing */
} RankMemory;

typedef struct {
  int n_ranks, n_groups, n_runs;
  bool fixed;                /* integer -ranks_per_run: equal groups, dynamic assignment simulated */
  int *size, *first;         /* [n_groups] ranks of each group, its first world rank */
  int *group_of;             /* [n_runs] */
  int *list, *list_start;    /* group g trains list[list_start[g] .. list_start[g + 1]) in that order */
  double *start, *end;       /* [n_runs] predicted seconds from the start of training */
  double *finish;            /* [n_groups] */
  int n_l0;                  /* phase 1 (lambda_0 per instance), planned too: under auto the */
  int *l0_instance, *l0_group; /* [n_l0] instance i is measured by group l0_group[i], so a restart
                                  finds the same value bit for bit */
  double kernel_time;        /* phase 0: the kernel runs' preparation, all ranks together */
  double lambda0_time;       /* phase 1: every instance's lambda_0, before training */
  double makespan;           /* training */
  double serial;             /* sum of t_i(1): the training on one rank */
  double idle_fraction;      /* 1 - sum_g size_g finish_g / (n_ranks makespan) */
} Layout;

Machine layout_machine(const Config *cfg);
double layout_allreduce(const Machine *mc, int G, double bytes);
/* t(G) of one run; parts (may be NULL): [0] compute, [1] gradient and small reductions, [2] I/O. */
double layout_run_time(const RunModel *rm, const Machine *mc, int G, double parts[3]);
/* The models of every run of the sweep (rm: [n_runs]). Builds each instance's network once, and
 * a few more times for the memory rule when mem prices memory (mem NULL or 0 bytes: it does not). */
int layout_models(const Config *cfg, const Sweep *sw, const Dataset *train, const Dataset *test, const RankMemory *mem, RunModel *rm,
                  char *err, size_t errlen);
/* The layout on n_ranks: cfg->ranks_per_run > 0 simulates the dynamic scheduler on equal groups
 * (sw->order, earliest free group first); 0 plans groups (see layout.c). Deterministic. */
int layout_plan(Layout *L, const Config *cfg, const Sweep *sw, const RunModel *rm, int n_ranks);
/* Rank 0's layout to every rank of comm (the others' L is allocated here). Collective. */
void layout_bcast(Layout *L, MPI_Comm comm);
/* The group of a world rank. */
int layout_group_of_rank(const Layout *L, int rank);
void layout_print(FILE *f, const Layout *L, const Config *cfg, const Sweep *sw, const RunModel *rm, const RankMemory *mem);
void layout_free(Layout *L);

#endif
