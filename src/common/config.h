/* The run-time configuration: every option of the deck. The options are described, read and
 * validated module by module in src/app/options*.c (options.h); decks are PETSc options files and
 * `-help` lists every key with its meaning and default. The enums' names are in config.c. */
#ifndef NTK_CONFIG_H
#define NTK_CONFIG_H
#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>
#include "data.h"
#include "model.h"

#define CONFIG_MAX_LIST 256

typedef enum { OPT_GD = 0, OPT_SGD } OptimizerKind;           /* "gd", "sgd" */
typedef enum { LR_CONSTANT = 0, LR_STEP, LR_COSINE, LR_EXP, LR_ONECYCLE } LrSchedule; /* "constant", "step", "cosine", "exp", "onecycle" */
typedef enum { NTK_METHOD_AUTO = 0, NTK_METHOD_MATFREE, NTK_METHOD_EXACT } NtkMethod; /* "auto", "matfree", "exact" */

typedef struct {
  /* model (one ModelConfig per instance is derived from these and the sweep lists) */
  ModelConfig model;            /* width and param are overwritten per instance */
  int n_abc[ABC_KINDS];         /* entries given of -abc_input, -abc_hidden, -abc_output, -abc_bias (3 each) */
  /* sweep lists */
  int n_widths;   int widths[CONFIG_MAX_LIST];
  bool mup_limit;               /* also the exact infinite-width limit (width MODEL_WIDTH_INF), after -widths */
  int n_seeds;    int64_t seeds[CONFIG_MAX_LIST];
  int n_params;   Parameterization params[PARAM_COUNT];
  int n_etas;     double etas[CONFIG_MAX_LIST];        /* absolute learning rates, or ... */
  bool eta_in_lambda0_units;                           /* ... factors c: eta = c / lambda_0 */
  /* data */
  DataConfig data;
  bool data_shared;             /* one copy of the data per node, in a shared-memory window (app/shared_data.c) */
  /* training */
  OptimizerKind optimizer;
  int batch_size;               /* SGD minibatch (GD: the whole training subset) */
  int64_t steps;
  double momentum;              /* heavy ball, 0 = none */
  double weight_decay;          /* L2 coupled into the gradient */
  LrSchedule lr_schedule;
  int64_t warmup_steps;         /* linear warm-up from 0, applied on top of any schedule */
  int64_t lr_step_every;        /* LR_STEP: multiply by lr_step_gamma every this many steps */
  double lr_step_gamma;
  double lr_min_factor;         /* LR_COSINE: final lr as a fraction of eta */
  int64_t record_every;         /* m: train metrics every m steps */
  int64_t test_every;           /* M: test metrics every M steps (0 = only at the end) */
  int64_t outputs_every;        /* outputs f(x) on the first outputs_batch training samples (0 = off) */
  int outputs_batch;
  int eval_chunk;               /* samples per forward pass in evaluations (memory bound) */
  bool grad_overlap;            /* group gradient sums start during the backward pass (grad_reduce.h) */
  double grad_bucket_mb;        /* their bucket size (0: one sum after the pass) */
  int grad_sum;                 /* GradSum: through the node's shared memory or MPI's allreduce (grad_reduce.h) */
  int grad_node_ranks;          /* > 0: nodes of at most this many ranks for the node sum (tests of several nodes) */
  bool augment;                 /* random crop + horizontal flip of training batches (augment.h) */
  int augment_pad;              /* zero padding p of the random crop */
  /* NTK spectrum (docs/conventions.md: Theta = J J^T / N on the NTK batch) */
  int ntk_batch;                /* N: the first ntk_batch training samples (after ntk_batch_resolve) */
  char ntk_batch_text[16];      /* -ntk_batch as given: a number, "train", or "" (the default);
                                   ntk_batch_resolve writes the resolved number back */
  int ntk_variant;              /* 0 full (Nk x Nk), 1 logit-traced (N x N); see ntk.h */
  int ntk_nev;                  /* top-k eigenvalues recorded */
  int ntk_weighting;            /* NtkWeighting: 0 lr (J D J^T / N only), 1 plain (J J^T / N recorded too) */
  int64_t lambda_every;         /* lambda_t every this many steps (0 = first and last step only) */
  int64_t lambda_dense_steps;   /* ... and at every step t < lambda_dense_steps (the catapult) */
  NtkMethod ntk_method;         /* how lambda is computed; auto = the cheaper by the cost model */
  int n_spectrum_steps;         /* full spectrum (exact Gram matrix) at these steps */
  int64_t spectrum_steps[CONFIG_MAX_LIST];
  bool kernel_distance;         /* ||Theta_t - Theta_0||_F / ||Theta_0||_F at lambda steps, if the
                                   exact Gram matrix is affordable */
  int gram_max_rows;            /* the exact Gram matrix is affordable up to this many rows */
  int64_t features_every;       /* feature-learning measures every this many steps (0 = never) */
  bool linearized;              /* train the linearised model beside every network (measure/linearized.c) */
  int64_t linearized_every;     /* its records every this many steps (0 = the -record_every schedule) */
  bool ntk_analytic;            /* empirical against analytic NTK at step 0 (measure/ntk_analytic.c) */
  /* loss Hessian on the Hessian batch (docs/conventions.md) */
  int hess_batch;               /* the first hess_batch training samples (default: -ntk_batch) */
  int64_t hess_every;           /* sharpness every this many steps (0 = never) */
  int hess_nev;                 /* top eigenvalues recorded */
  bool hess_min_eig;            /* also the most negative eigenvalue */
  int n_density_steps;          /* Hutchinson trace and SLQ density at these steps */
  int64_t density_steps[CONFIG_MAX_LIST];
  int trace_probes, slq_probes, slq_lanczos;
  /* optional bisection for the divergence boundary eta_max, per instance */
  bool eta_max_search;
  double eta_max_lo, eta_max_hi;  /* initial bracket, in units of 1/lambda_0 */
  double eta_max_tol;             /* stop when hi - lo <= tol (units of 1/lambda_0) */
  int64_t eta_max_steps;          /* length of each probe run */
  /* phases / divergence */
  double diverge_factor;        /* stop when loss > diverge_factor * L0 or non-finite */
  double catapult_factor;       /* catapult if L_peak > catapult_factor * L0 ... */
  int64_t catapult_window;      /* ... within the first catapult_window steps */
  /* parallel layout */
  int ranks_per_run;            /* size of each run's sub-communicator */
  /* -ranks_per_run auto (ranks_per_run 0): the layout planner (src/app/layout.c) and its machine */
  bool plan_only;               /* print the layout and its predicted time, train nothing */
  int plan_ranks;               /* plan for this many ranks (0: the job's) */
  double plan_gflops;           /* sustained float64 GEMM rate of one rank, GFLOP/s */
  double plan_bandwidth;        /* fabric bandwidth per rank, Gb/s */
  double plan_latency;          /* message latency alpha, microseconds */
  /* output and progress */
  char *output;                 /* any length (allocated by the option reader; config_free) */
  bool overwrite;
  double flush_seconds;         /* write buffered trajectory rows at least this often */
  double progress_seconds;      /* rank 0 prints a summary at least this often */
  bool quiet;
  /* checkpoints, restart and sweep splitting (docs/checkpoint.md) */
  char *checkpoint_dir;         /* resolved: default <output>.ckpt (allocated, any length) */
  int64_t checkpoint_every;     /* checkpoint running runs every this many steps (0 = off) */
  double checkpoint_minutes;    /* ... and at least this often (0 = off); always at a run's end */
  bool restart;                 /* continue from the checkpoints */
  bool keep_checkpoints;        /* keep the checkpoint folder of a finished job */
  int sweep_part, sweep_parts;  /* run only the deck's runs d with d % sweep_parts == sweep_part */
  /* infinite width (docs/infinite_width.md) */
  bool kernel_regression;       /* also the kernel-regression run per learning rate (width MODEL_WIDTH_INF) */
  int kernel_tile;              /* rows and columns of a Gram matrix tile */
  int kernel_net;               /* 0: the fc net's NTK, 1: the CNTK (cntk.h) */
  bool kernel_prior;            /* also the losses expected over the GP prior of f_0 (NNGP kernel) */
  /* exponential and one-cycle schedules, frozen tensors, the momentum buffer's start (#18) */
  double lr_exp_factor;         /* LR_EXP: lr_t = eta * factor^t */
  double onecycle_pct;          /* LR_ONECYCLE: fraction of -steps spent rising (torch OneCycleLR pct_start) */
  double onecycle_div;          /* ... initial lr = eta / div */
  double onecycle_final_div;    /* ... final lr = eta / (div * final_div) */
  char freeze[1024];            /* comma-separated tensor names (or layer prefixes) kept at their initial values */
  double momentum_init;         /* heavy ball's initial velocity v_0 = momentum_init * theta_0 (trained tensors;
                                   docs/li_arora.md gives the value that makes the exponential schedule exact) */
  int64_t align_every;          /* gradient-Hessian alignment every this many steps (0 = never) */
  bool loss_peak;               /* record the step and value of the train loss's peak */
  int64_t scale_inv_every;      /* per-tensor norm, effective lr and angular update every this many steps */
  /* loss landscapes (src/app/options_landscape.c, docs/landscape.md) */
  int64_t theta_every;          /* record theta every this many steps (0 = never) */
  int64_t theta_dense_steps;    /* ... and at every step t < this */
  char landscape_steps_text[1024]; /* centres: steps, "end", "peak" (comma-separated; "" = no surfaces) */
  int n_landscape_centres;
  int64_t landscape_centres[64];   /* parsed: a step >= 0, LANDSCAPE_END or LANDSCAPE_PEAK */
  int n_landscape_runs;   int landscape_runs[CONFIG_MAX_LIST]; /* runs with surfaces (none given: all) */
  int landscape_dim;            /* 1 or 2 */
  int landscape_dir;            /* LandscapeDirKind */
  int64_t landscape_seed;       /* Philox seed of random directions */
  bool landscape_filter;        /* filter normalisation of random directions */
  bool landscape_bias;          /* also perturb one-dimensional tensors (biases, batch norm) */
  char landscape_tensors[1024]; /* random directions only in these tensors ("" = all), comma-separated names */
  int n_landscape_alpha;  double landscape_alpha[3]; /* lo, hi, points */
  int n_landscape_beta;   double landscape_beta[3];
  int landscape_train_samples, landscape_test_samples; /* first n of each subset (0 = all) */
  char landscape_paths[1024];   /* straight lines: "A:B" or "A@s:B@t" pairs, comma-separated */
  int n_landscape_path_t; double landscape_path_t[3]; /* lo, hi, points of t along a path */
  int landscape_bezier_steps;   /* train a quadratic Bezier curve per path for this many steps (0 = none) */
  double landscape_bezier_lr;   /* its learning rate (0: run A's eta) */
  int landscape_ranks_per_point;/* ranks evaluating one grid point together (data-parallel) */
  int landscape_hess_every;     /* gradient norm and top Hessian eigenvalue at every k-th point of each axis (0 = off) */
  int landscape_hess_batch;     /* ... on the first this many training samples (0: -hess_batch) */
  double landscape_affine_cache_mb; /* per-rank memory cap of the affine first-layer cache (0 = never cache) */
  char *landscape_output;  /* (allocated, any length) the surfaces' HDF5 file */
  char *landscape_from;    /* (allocated, any length) evaluate surfaces of this finished output instead of training */
  bool wrn_residual;            /* -wrn_residual: false sets model.wrn_plain */
  int64_t pause_at_step;        /* test hook (train/pause.h): each run pauses at its first step >= this (-1 = off) */
  char memory_limit_text[32];   /* -memory_limit as given ("" = the node's) */
  double memory_limit;          /* ... in bytes per rank (0 = the node's MemAvailable over its ranks; app/memory.h) */
} Config;

/* -landscape_steps tokens other than a step, and the kinds of -landscape_dir. */
enum { LANDSCAPE_END = -1, LANDSCAPE_PEAK = -2 };
typedef enum { LDIR_RANDOM = 0, LDIR_PCA, LDIR_HESSIAN, LDIR_NTK, LDIR_COUNT } LandscapeDirKind; /* "random", "pca", "hessian", "ntk" */
const char *landscape_dir_name(int k);

/* Names of the enums, for output attributes and messages. */
const char *optimizer_name(OptimizerKind o);
const char *lr_schedule_name(LrSchedule s);
const char *ntk_method_name(NtkMethod m);
const char *ntk_weighting_name(int w); /* -ntk_weighting: "lr" (0), "plain" (1) */

#endif
