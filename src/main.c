/* ntkhpc: sweeps of wide networks trained across MPI sub-communicators, one HDF5 file per job.
 *
 *   mpirun -n R ntkhpc deck.in [-key value ...]
 *
 * The deck is a PETSc options file; command-line options override it. Exit codes:
 *   0 success, 1 runtime failure (I/O, out of memory), 2 bad input (deck, option, data file). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <slepceps.h>
#include "config.h"
#include "data.h"
#include "hessian.h"
#include "ntk.h"
#include "ntk_petsc.h"
#include "output.h"
#include "progress.h"
#include "sweep.h"
#include "train.h"

enum { EXIT_RUNTIME = 1, EXIT_BAD_INPUT = 2 };

static const char help[] =
  "ntkhpc: trains sweeps of wide networks (widths x seeds x parameterizations x learning rates)\n"
  "and records their trajectories in one parallel HDF5 file.\n"
  "Usage: mpirun -n R ntkhpc deck.in [-key value ...]   (deck: a PETSc options file)\n\n";

/* Checks the deck before PETSc reads it, so a typo gives one line naming the file and line instead
 * of a PETSc trace. Accepted: blank lines, '#' comments, and lines "-key [value ...]". */
static int check_deck(const char *path, char *err, size_t len)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, len, "deck %s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(err, len, "deck %s: is a directory, not a file", path);
    fclose(f);
    return -1;
  }
  char line[8192];
  int lineno = 0, rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '#' || *p == '\n' || *p == '\r' || *p == 0) continue;
    p[strcspn(p, "#\r\n")] = 0; /* PETSc drops everything after '#' */
    if (p[0] != '-' || !(p[1] == '_' || (p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z'))) {
      snprintf(err, len, "deck %s line %d: expected '-key value', got '%.60s'", path, lineno, p);
      rc = -1;
      break;
    }
    /* PETSc takes at most one value per line ('"' groups words) and executes a few keys as
     * directives; both would otherwise end in a PETSc trace instead of one line. */
    int ntok = 0;
    for (const char *q = p; *q;) {
      while (*q == ' ' || *q == '\t') q++;
      if (!*q) break;
      ntok++;
      if (*q == '"') {
        const char *e = strchr(q + 1, '"');
        q = e ? e + 1 : q + strlen(q);
      } else {
        while (*q && *q != ' ' && *q != '\t') q++;
      }
    }
    size_t klen = strcspn(p, " \t");
    static const char *const directives[] = {"-options_file", "-options_file_yaml", "-options_string_yaml",
                                             "-prefix_push", "-prefix_pop"};
    for (size_t i = 0; i < sizeof directives / sizeof *directives && !rc; i++)
      if (strlen(directives[i]) == klen && strncmp(p, directives[i], klen) == 0) {
        snprintf(err, len, "deck %s line %d: %s is not allowed in a deck", path, lineno, directives[i]);
        rc = -1;
      }
    if (rc) break;
    if (ntok > 2) {
      snprintf(err, len, "deck %s line %d: expected '-key value' with one value (quote a value with spaces), got '%.60s'",
               path, lineno, p);
      rc = -1;
      break;
    }
  }
  if (!rc && ferror(f)) {
    snprintf(err, len, "deck %s: read error", path);
    rc = -1;
  }
  fclose(f);
  return rc;
}

static void say_error(int rank, const char *msg)
{
  if (rank == 0) {
    fprintf(stderr, "ntkhpc: error: %s\n", msg);
    fflush(stderr);
  }
}

/* Options that the operators read only when they are created (maybe hours later): read them all
 * now, so that -help lists them and a typo among them fails before any work. */
static PetscErrorCode register_solver_options(MPI_Comm comm)
{
  PetscInt chunk = 512;
  PetscReal tape_mb = 4096;
  EPS eps;
  PetscCall(ntk_options_register(comm));
  PetscOptionsBegin(comm, "hess_", "Hessian operator (prefix -hess_; its eigensolvers take -hess_eps_* and, for the most negative eigenvalue, -hess_min_eps_*)", NULL);
  PetscCall(PetscOptionsInt("-chunk", "Samples per tape chunk in Hessian-vector products", NULL, chunk, &chunk, NULL));
  PetscCall(PetscOptionsReal("-tape_mb", "Keep the Hessian batch's activations up to this many MB, else recompute them per product", NULL, tape_mb, &tape_mb, NULL));
  PetscOptionsEnd();
  const char *prefixes[] = {"hess_", "hess_min_"};
  for (int i = 0; i < 2; i++) {
    PetscCall(EPSCreate(comm, &eps));
    PetscCall(EPSSetOptionsPrefix(eps, prefixes[i]));
    PetscCall(EPSSetFromOptions(eps));
    PetscCall(EPSDestroy(&eps));
  }
  return 0;
}

/* Phase 1: lambda_0 of every model instance, measured once by one group (largest first) and shared
 * by all the instance's runs: with -eta_factors it sets their learning rates, eta = c / lambda_0.
 * Every rank ends with every instance's row. */
static int measure_instances(const Config *cfg, const Dataset *train, const Dataset *test, Sweep *sw, MPI_Comm world, MPI_Comm group,
                             InstanceRow *rows /* n_instances */)
{
  const int n = sw->n_instances;
  int rank;
  MPI_Comm_rank(world, &rank);
  int *rep = malloc((size_t)n * sizeof *rep); /* a run of each instance, in cost order */
  int k = 0;
  for (int i = 0; i < sw->n_runs; i++) { /* sw->order is by cost; instances keep its order */
    const RunSpec *r = &sw->runs[sw->order[i]];
    int seen = 0;
    for (int j = 0; j < k && !seen; j++) seen = sw->runs[rep[j]].instance == r->instance;
    if (!seen) rep[k++] = sw->order[i];
  }
  /* Per instance: lambda0, resid, seconds, eta_max_lo, eta_max_hi; set by exactly one group (all
   * of whose ranks agree) and -inf elsewhere, so a MAX over the world gathers them. NaN would not
   * survive the MAX: it travels as -inf plus a flag. */
  enum { NV = 5 };
  double *vals = malloc((size_t)n * NV * sizeof *vals);
  int *ints = calloc((size_t)n * 3, sizeof *ints); /* method, probes, nan-flags (bit j: value j is NaN) */
  for (int i = 0; i < NV * n; i++) vals[i] = -INFINITY;
  Scheduler sched;
  const int created = scheduler_create(&sched, world, group, n) == 0;
  int rc = created ? 0 : -1;
  TrainContext ctx = {group, cfg, train, test, NULL, NULL};
  int pos;
  while (created && (pos = scheduler_next(&sched)) >= 0) {
    InstanceRow row;
    const RunSpec *r = &sw->runs[rep[pos]];
    rc |= train_measure_instance(&ctx, r, &row);
    if (cfg->eta_max_search && row.lambda0 > 0) rc |= train_search_eta_max(&ctx, r, row.lambda0, &row);
    const double v[NV] = {row.lambda0, row.lambda0_resid, row.seconds, row.eta_max_lo, row.eta_max_hi};
    for (int j = 0; j < NV; j++) {
      if (isnan(v[j])) ints[3 * row.instance + 2] |= 1 << j;
      else vals[NV * row.instance + j] = v[j];
    }
    ints[3 * row.instance] = row.method;
    ints[3 * row.instance + 1] = row.eta_max_probes;
  }
  if (created) scheduler_destroy(&sched);
  MPI_Allreduce(MPI_IN_PLACE, vals, NV * n, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(MPI_IN_PLACE, ints, 3 * n, MPI_INT, MPI_MAX, world); /* flags: one group sets them */
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, world);
  for (int i = 0; i < n; i++) {
    const RunSpec *r = NULL;
    for (int j = 0; j < sw->n_runs && !r; j++)
      if (sw->runs[j].instance == i) r = &sw->runs[j];
    double v[NV];
    for (int j = 0; j < NV; j++) v[j] = (ints[3 * i + 2] >> j & 1) ? NAN : vals[NV * i + j];
    rows[i] = (InstanceRow){i, r->width, (int32_t)r->param, r->seed, r->n_params, v[0], v[1], ints[3 * i], v[2], v[3], v[4], ints[3 * i + 1]};
  }
  for (int j = 0; j < sw->n_runs; j++) {
    RunSpec *r = &sw->runs[j];
    r->lambda0 = rows[r->instance].lambda0;
    if (cfg->eta_in_lambda0_units) r->eta = r->eta_factor / r->lambda0;
  }
  int bad = 0;
  for (int i = 0; i < n && !bad; i++)
    if (cfg->eta_in_lambda0_units && !(rows[i].lambda0 > 0)) {
      if (rank == 0)
        fprintf(stderr, "ntkhpc: error: instance %d (width %d, seed %lld, %s): lambda_0 = %g could not be measured, so -eta_factors "
                        "give no learning rate (try -ntk_method exact or a larger -ntk_eps_max_it)\n",
                i, rows[i].width, (long long)rows[i].seed, param_name((Parameterization)rows[i].param), rows[i].lambda0);
      bad = 1;
    }
  if (rank == 0 && !cfg->quiet && !bad) {
    double tot = 0;
    for (int i = 0; i < n; i++) tot += rows[i].seconds;
    printf("[ntkhpc] lambda_0 of %d instances measured (%.1f s of group time)\n", n, tot);
    fflush(stdout);
  }
  if (rank == 0 && !cfg->quiet && cfg->eta_max_search)
    for (int i = 0; i < n; i++)
      printf("[ntkhpc] instance %d (width %d seed %lld %s): lambda_0 %.6g, eta_max * lambda_0 in (%.4g, %.4g] after %d probe runs\n", i,
             rows[i].width, (long long)rows[i].seed, param_name((Parameterization)rows[i].param), rows[i].lambda0, rows[i].eta_max_lo,
             rows[i].eta_max_hi, rows[i].eta_max_probes);
  free(rep), free(vals), free(ints);
  return rc || bad ? EXIT_RUNTIME : 0;
}

/* Phase 2: trains every run the scheduler hands to this group. */
static int run_sweep(const Config *cfg, const Dataset *train, const Dataset *test, const Sweep *sw, OutputFile *out, MPI_Comm world,
                     MPI_Comm group)
{
  int rank, size;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  Progress progress;
  progress_init(&progress, world, sw, cfg->progress_seconds, cfg->quiet);
  Scheduler sched;
  if (scheduler_create(&sched, world, group, sw->n_runs)) {
    say_error(rank, "cannot create the MPI window of the run scheduler");
    return EXIT_RUNTIME;
  }
  if (rank == 0 && !cfg->quiet) {
    printf("[ntkhpc] %d runs (%d model instances) on %d ranks in groups of %d; output %s\n", sw->n_runs, sw->n_instances, size,
           cfg->ranks_per_run, cfg->output);
    fflush(stdout);
  }
  TrainContext ctx = {group, cfg, train, test, out, &progress};
  int rc = 0, pos;
  while ((pos = scheduler_next(&sched)) >= 0) {
    SummaryRow row;
    rc |= train_run(&ctx, &sw->runs[sw->order[pos]], &row);
  }
  progress_finish(&progress);
  scheduler_destroy(&sched);
  progress_free(&progress);
  int any;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, world);
  return any ? EXIT_RUNTIME : 0;
}

int main(int argc, char **argv)
{
  MPI_Init(&argc, &argv);
  MPI_Comm world = MPI_COMM_WORLD;
  int rank;
  MPI_Comm_rank(world, &rank);
  char err[1024] = "";

  /* argv[1] is the deck unless it is an option; PETSc gets the rest. */
  const char *deck = NULL;
  int pargc = argc;
  char **pargv = argv;
  if (argc > 1 && argv[1][0] != '-') {
    deck = argv[1];
    for (int i = 1; i + 1 < argc; i++) argv[i] = argv[i + 1];
    pargc = argc - 1;
  }
  int bad = 0;
  if (deck && rank == 0) bad = check_deck(deck, err, sizeof err) != 0;
  MPI_Bcast(&bad, 1, MPI_INT, 0, world);
  if (bad) {
    say_error(rank, err);
    MPI_Finalize();
    return EXIT_BAD_INPUT;
  }

  PetscCall(SlepcInitialize(&pargc, &pargv, deck, help));
  PetscCall(train_register_events());
  PetscCall(ntk_register_events());
  PetscCall(hessian_register_events());
  PetscBool has_help = PETSC_FALSE;
  PetscCall(PetscOptionsHasHelp(NULL, &has_help));

  Config cfg;
  int code = 0;
  if (config_read(&cfg, world)) code = EXIT_BAD_INPUT;
  if (!code && register_solver_options(world)) code = EXIT_BAD_INPUT;
  if (!code && has_help) goto finalize;
  if (!code && config_check_unused(world)) code = EXIT_BAD_INPUT;
  if (code) goto finalize;

  /* Data: every rank loads the subsets (they are small next to the networks in this study). */
  Dataset train = {0}, test = {0};
  bad = data_load(&train, &test, &cfg.data, err, sizeof err) != 0;
  int any_bad;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, world);
  if (any_bad) {
    say_error(rank, err[0] ? err : "data loading failed on some rank");
    code = EXIT_BAD_INPUT;
    goto free_data;
  }

  Sweep sweep;
  if (sweep_build(&sweep, &cfg, train.n, test.n, train.d, train.k, err, sizeof err)) {
    say_error(rank, err);
    code = EXIT_BAD_INPUT;
    goto free_data;
  }

  if (cfg.ntk_batch > train.n || cfg.hess_batch > train.n) {
    char msg[128];
    snprintf(msg, sizeof msg, "option -%s: %d exceeds the %d training samples", cfg.ntk_batch > train.n ? "ntk_batch" : "hess_batch",
             cfg.ntk_batch > train.n ? cfg.ntk_batch : cfg.hess_batch, train.n);
    say_error(rank, msg);
    code = EXIT_BAD_INPUT;
    goto free_sweep;
  }
  /* A bad output path must fail now, not after lambda_0 of every instance. */
  if (output_check_path(world, &cfg, err, sizeof err)) {
    say_error(rank, err);
    code = EXIT_BAD_INPUT;
    goto free_sweep;
  }
  MPI_Comm group;
  MPI_Comm_split(world, rank / cfg.ranks_per_run, rank, &group);
  InstanceRow *instances = calloc((size_t)sweep.n_instances, sizeof *instances);
  code = measure_instances(&cfg, &train, &test, &sweep, world, group, instances);
  char *deck_text = config_deck_text(&cfg);
  OutputFile out;
  if (code) {
    /* the message is printed */
  } else if (output_create(&out, world, &cfg, &sweep, deck_text, err, sizeof err)) {
    say_error(rank, err);
    code = EXIT_BAD_INPUT;
  } else {
    for (int i = 0; i < sweep.n_instances && rank == 0; i++)
      if (output_write_instance(&out, &instances[i])) code = EXIT_RUNTIME;
    int rc = run_sweep(&cfg, &train, &test, &sweep, &out, world, group);
    if (rc) code = rc;
    if (output_close(&out)) code = EXIT_RUNTIME;
  }
  MPI_Comm_free(&group);
  free(instances);
  free(deck_text);
free_sweep:
  sweep_free(&sweep);
free_data:
  data_free(&train);
  data_free(&test);
finalize:
  PetscCall(SlepcFinalize());
  MPI_Finalize();
  return code;
}
