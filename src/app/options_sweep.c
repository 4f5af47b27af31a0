/* Options of the sweep: the lists whose product is the set of runs, the eta_max bisection per model
 * instance, the ranks per run and the splitting of a sweep into parts (options.h describes the
 * table). */
#include <math.h>
#include "memory.h"
#include "options.h"

static const char *param_choice(int i) { return param_name((Parameterization)i); }
static bool absolute_etas(const Config *c) { return !c->eta_in_lambda0_units; }
static bool factor_etas(const Config *c) { return c->eta_in_lambda0_units; }
static bool searches(const Config *c) { return c->eta_max_search; }

/* -etas and -eta_factors fill the same list; check() keeps one of them and records which. */
static const OptionDesc opts[] = {
  {.name = "-widths", .kind = KIND_INT_LIST, .def = "512", .lo = 1, .hi = 1e8, .flags = OPTION_UNIQUE | OPTION_NONEMPTY,
   .entry = "width", .rule = "must be a positive integer", .meaning = "Hidden widths n to sweep (comma separated)",
   OPTION_LIST(widths, n_widths)},
  {.name = "-seeds", .kind = KIND_INT64_LIST, .def = "0", .lo = 0, .hi = PETSC_MAX_INT, .flags = OPTION_UNIQUE | OPTION_NONEMPTY,
   .entry = "seed", .rule = "must be >= 0", .meaning = "Random seeds to sweep (comma separated)", OPTION_LIST(seeds, n_seeds)},
  {.name = "-params", .kind = KIND_CHOICE_LIST, .def = "ntk", .n_choices = PARAM_COUNT, .choice = param_choice,
   .flags = OPTION_UNIQUE | OPTION_NONEMPTY, .entry = "parameterization", .meaning = "Parameterizations to sweep (comma separated)",
   OPTION_LIST(params, n_params)},
  {.name = "-etas", .kind = KIND_REAL_LIST, .def = "0.5", .lo = 0, .hi = INFINITY, .flags = OPTION_OPEN_LO | OPTION_UNIQUE | OPTION_NONEMPTY,
   .entry = "learning rate", .rule = "must be positive and finite", .in_deck = absolute_etas,
   .meaning = "Absolute learning rates eta to sweep (comma separated)", OPTION_LIST(etas, n_etas)},
  {.name = "-eta_factors", .kind = KIND_REAL_LIST, .lo = 0, .hi = INFINITY, .flags = OPTION_OPEN_LO | OPTION_UNIQUE | OPTION_NONEMPTY,
   .entry = "learning rate", .rule = "must be positive and finite", .in_deck = factor_etas,
   .meaning = "Learning rates in units of 1/lambda_0, instead of -etas: eta = c / lambda_0 (c = 2 is eta_crit)",
   OPTION_LIST(etas, n_etas)},
  {.name = "-eta_max_search", .kind = KIND_BOOL, .def = "false", .in_deck = searches,
   .meaning = "Bisect eta_factor per instance for the divergence boundary eta_max (short probe runs)", OPTION_FIELD(eta_max_search)},
  {.name = "-eta_max_lo", .kind = KIND_REAL, .def = "2", .lo = 0, .hi = 1e6, .flags = OPTION_OPEN_LO, .in_deck = searches,
   .meaning = "eta_max search: lower end of the initial bracket (units of 1/lambda_0)", OPTION_FIELD(eta_max_lo)},
  {.name = "-eta_max_hi", .kind = KIND_REAL, .def = "64", .lo = 0, .hi = 1e6, .flags = OPTION_OPEN_LO, .in_deck = searches,
   .meaning = "eta_max search: upper end of the initial bracket (units of 1/lambda_0)", OPTION_FIELD(eta_max_hi)},
  {.name = "-eta_max_tol", .kind = KIND_REAL, .def = "0.1", .lo = 0, .hi = 1e6, .flags = OPTION_OPEN_LO, .in_deck = searches,
   .meaning = "eta_max search: width of the final bracket (units of 1/lambda_0)", OPTION_FIELD(eta_max_tol)},
  {.name = "-eta_max_steps", .kind = KIND_INT64, .def = "100", .lo = 1, .hi = PETSC_MAX_INT, .in_deck = searches,
   .meaning = "eta_max search: steps of each probe run", OPTION_FIELD(eta_max_steps)},
  {.name = "-ranks_per_run", .kind = KIND_INT, .def = "1", .lo = 1, .hi = 1e6, .flags = OPTION_AUTO,
   .meaning = "MPI ranks per run (data-parallel sub-communicator); auto: groups of unequal sizes planned from the cost model "
              "(docs/scaling.md)", OPTION_FIELD(ranks_per_run)},
  {.name = "-plan_only", .kind = KIND_BOOL, .def = "false",
   .meaning = "Print the layout (groups, their runs, predicted times, idle fraction) and exit without training or writing",
   OPTION_FIELD(plan_only)},
  {.name = "-plan_ranks", .kind = KIND_INT, .def = "0", .lo = 0, .hi = 1e6,
   .meaning = "-plan_only: plan for this many MPI ranks instead of the job's (0: the job's)", OPTION_FIELD(plan_ranks)},
  {.name = "-plan_gflops", .kind = KIND_REAL, .def = "15", .lo = 0, .hi = 1e9, .flags = OPTION_OPEN_LO,
   .meaning = "Layout planner: sustained float64 GEMM rate of one rank in GFLOP/s", OPTION_FIELD(plan_gflops)},
  {.name = "-plan_bandwidth", .kind = KIND_REAL, .def = "100", .lo = 0, .hi = 1e9, .flags = OPTION_OPEN_LO,
   .meaning = "Layout planner: network bandwidth of one rank in Gb/s (allreduce beta = 8 / bandwidth)", OPTION_FIELD(plan_bandwidth)},
  {.name = "-plan_latency", .kind = KIND_REAL, .def = "2", .lo = 0, .hi = 1e9,
   .meaning = "Layout planner: message latency (allreduce alpha) in microseconds", OPTION_FIELD(plan_latency)},
  {.name = "-sweep_part", .kind = KIND_INT, .def = "0", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Run only the deck's runs d with d % sweep_parts == sweep_part (Slurm array index)", OPTION_FIELD(sweep_part)},
  {.name = "-sweep_parts", .kind = KIND_INT, .def = "1", .lo = 1, .hi = PETSC_MAX_INT,
   .meaning = "Number of parts the sweep is split into (Slurm array size)", OPTION_FIELD(sweep_parts)},
  {.name = "-memory_limit", .kind = KIND_STRING, .def = "", .def_shown = "the node's MemAvailable / its ranks",
   .meaning = "Memory of one rank in bytes (suffix k, M, G, T: powers of 1024); a sweep whose largest run needs more is refused up front",
   OPTION_FIELD(memory_limit_text)},
};

static void check(Config *cfg, OptionReader *r)
{
  int size;
  if (options_given(r, "-etas") && options_given(r, "-eta_factors"))
    options_fail(r, "option -eta_factors: give either -etas or -eta_factors, not both (the deck may set one)");
  cfg->eta_in_lambda0_units = options_given(r, "-eta_factors");
  if (cfg->eta_max_lo >= cfg->eta_max_hi) options_fail(r, "option -eta_max_lo: %g must be below -eta_max_hi %g", cfg->eta_max_lo, cfg->eta_max_hi);
  if (cfg->sweep_part >= cfg->sweep_parts) options_fail(r, "option -sweep_part: %d must be below -sweep_parts %d", cfg->sweep_part, cfg->sweep_parts);
  MPI_Comm_size(options_comm(r), &size);
  if (options_given(r, "-plan_ranks") && !cfg->plan_only) options_fail(r, "option -plan_ranks: needs -plan_only true (a job runs on its own ranks)");
  if (cfg->plan_ranks > 0) size = cfg->plan_ranks;
  if (cfg->ranks_per_run > size) options_fail(r, "option -ranks_per_run: %d exceeds the %d MPI ranks of this job", cfg->ranks_per_run, size);
  char err[256];
  if (memory_parse_limit(cfg->memory_limit_text, &cfg->memory_limit, err, sizeof err)) options_fail(r, "%s", err);
}

const OptionModule options_sweep = {"Sweep", NULL, opts, sizeof opts / sizeof *opts, check, NULL, NULL};
