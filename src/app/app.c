/* The job's flow (app.h): check the deck, read the options, load the data, build the sweep, plan a
 * restart, measure lambda_0 per instance, create the output from the measurements' schemas, train
 * every run the scheduler hands to this group, and close. Exit codes in app.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <slepceps.h>
#include "checkpoint.h"
#include "config.h"
#include "options.h"
#include "data.h"
#include "hessian.h"
#include "ntk.h"
#include "petsc_compat.h"
#include "output.h"
#include "progress.h"
#include "sweep.h"
#include "app.h"
#include "instance.h"
#include "measure.h"
#include "run_hooks.h"
#include "train.h"

enum { EXIT_RUNTIME = 1, EXIT_BAD_INPUT = 2, EXIT_SIGNAL = CKPT_EXIT_SIGNAL };

/* PETSc prints this at the top of its own -help, after ntkhpc's (options.c). */
static const char help[] = "ntkhpc: the options of PETSc and SLEPc follow (ntkhpc's own are listed above).\n";

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

/* Phase 1: lambda_0 of every model instance, measured once by one group (largest first) and shared
 * by all the instance's runs: with -eta_factors it sets their learning rates, eta = c / lambda_0.
 * Every rank ends with every instance's row. */
static int measure_instances(const Config *cfg, const Dataset *train, const Dataset *test, Sweep *sw, MPI_Comm world, MPI_Comm group,
                             InstanceRow *rows /* n_instances */, int32_t *measured /* n_instances: in and out */, int *stopped)
{
  const int n = sw->n_instances;
  int rank;
  MPI_Comm_rank(world, &rank);
  int *rep = malloc((size_t)(n ? n : 1) * sizeof *rep); /* a run of each instance still to measure, in cost order */
  int k = 0;
  for (int i = 0; i < sw->n_runs; i++) { /* sw->order is by cost; instances keep its order */
    const RunSpec *r = &sw->runs[sw->order[i]];
    int seen = measured[r->instance]; /* measured by an earlier job (checkpoint) */
    for (int j = 0; j < k && !seen; j++) seen = sw->runs[rep[j]].instance == r->instance;
    if (!seen) rep[k++] = sw->order[i];
  }
  /* Per instance: lambda0, resid, seconds, eta_max_lo, eta_max_hi; set by exactly one group (all
   * of whose ranks agree) and -inf elsewhere, so a MAX over the world gathers them. NaN would not
   * survive the MAX: it travels as -inf plus a flag. */
  enum { NV = 5 };
  double *vals = malloc((size_t)n * NV * sizeof *vals);
  int *ints = calloc((size_t)n * 4 + 1, sizeof *ints); /* method, probes, nan-flags (bit j: value j is NaN), measured */
  for (int i = 0; i < NV * n; i++) vals[i] = -INFINITY;
  Scheduler sched;
  const int created = scheduler_create(&sched, world, group, k) == 0;
  int rc = created ? 0 : -1, grank;
  MPI_Comm_rank(group, &grank);
  TrainContext ctx = {.group = group, .cfg = cfg, .train = train, .test = test};
  int pos;
  for (;;) {
    int sig = ckpt_signal_received() != 0; /* a signal: finish this instance, take no other */
    MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, group);
    if (created && sig && grank == 0) scheduler_request_stop(&sched);
    if (!created || (pos = scheduler_next(&sched)) < 0) break;
    InstanceRow row;
    const RunSpec *r = &sw->runs[rep[pos]];
    rc |= instance_measure_lambda0(&ctx, r, &row);
    if (cfg->eta_max_search && row.lambda0 > 0) rc |= instance_search_eta_max(&ctx, r, row.lambda0, &row);
    const double v[NV] = {row.lambda0, row.lambda0_resid, row.seconds, row.eta_max_lo, row.eta_max_hi};
    for (int j = 0; j < NV; j++) {
      if (isnan(v[j])) ints[4 * row.instance + 2] |= 1 << j;
      else vals[NV * row.instance + j] = v[j];
    }
    ints[4 * row.instance] = row.method;
    ints[4 * row.instance + 1] = row.eta_max_probes;
    ints[4 * row.instance + 3] = 1;
  }
  if (created) {
    *stopped = scheduler_stop_requested(&sched);
    MPI_Allreduce(MPI_IN_PLACE, stopped, 1, MPI_INT, MPI_MAX, world);
    scheduler_destroy(&sched);
  }
  MPI_Allreduce(MPI_IN_PLACE, vals, NV * n, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(MPI_IN_PLACE, ints, 4 * n, MPI_INT, MPI_MAX, world); /* flags: one group sets them */
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, world);
  for (int i = 0; i < n; i++) {
    if (measured[i] || !ints[4 * i + 3]) continue; /* from the checkpoint, or not measured (stopped) */
    measured[i] = 1;
    const RunSpec *r = NULL;
    for (int j = 0; j < sw->n_runs && !r; j++)
      if (sw->runs[j].instance == i) r = &sw->runs[j];
    double v[NV];
    for (int j = 0; j < NV; j++) v[j] = (ints[4 * i + 2] >> j & 1) ? NAN : vals[NV * i + j];
    rows[i] = (InstanceRow){i, r->width, (int32_t)r->param, r->seed, r->n_params, v[0], v[1], ints[4 * i], v[2], v[3], v[4], ints[4 * i + 1]};
  }
  if (*stopped) { /* the rows measured so far go to sweep.h5; no learning rate is needed yet */
    free(rep), free(vals), free(ints);
    return rc ? EXIT_RUNTIME : 0;
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
    printf("[ntkhpc] lambda_0 of %d instances measured (%.1f s of group time)\n", k, tot);
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

/* Phase 2: trains every run the scheduler hands to this group; runs finished by an earlier job
 * (status[i] != RUN_PENDING: RUN_RUNNING resumes from its checkpoint) are skipped. Returns 0,
 * EXIT_SIGNAL (stopped by a signal, every unfinished run checkpointed) or EXIT_RUNTIME. */
static int run_sweep(const Config *cfg, const Dataset *train, const Dataset *test, const Sweep *sw, OutputFile *out, MPI_Comm world,
                     MPI_Comm group, const int32_t *status /* n_runs */, const SummaryRow *done_rows /* n_runs, rank 0 */, const char *deck)
{
  int rank, size, grank;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  MPI_Comm_rank(group, &grank);
  int *todo = malloc((size_t)sw->n_runs * sizeof *todo), n_todo = 0; /* in cost order */
  for (int i = 0; i < sw->n_runs; i++)
    if (status[sw->order[i]] != RUN_DONE && status[sw->order[i]] != RUN_DIVERGED) todo[n_todo++] = sw->order[i];
  Progress progress;
  progress_init(&progress, world, sw, cfg->progress_seconds, cfg->quiet);
  for (int i = 0; i < sw->n_runs && rank == 0; i++)
    if (status[i] == RUN_DONE || status[i] == RUN_DIVERGED) progress_preload(&progress, &done_rows[i]);
  Scheduler sched;
  if (scheduler_create(&sched, world, group, n_todo)) {
    say_error(rank, "cannot create the MPI window of the run scheduler");
    free(todo);
    return EXIT_RUNTIME;
  }
  if (rank == 0 && !cfg->quiet) {
    printf("[ntkhpc] %d runs (%d model instances) on %d ranks in groups of %d; output %s\n", sw->n_runs, sw->n_instances, size,
           cfg->ranks_per_run, cfg->output);
    if (n_todo < sw->n_runs) printf("[ntkhpc] restart: %d runs finished earlier, %d to do\n", sw->n_runs - n_todo, n_todo);
    fflush(stdout);
  }
  int stopped = 0, finished = 0;
  RunHooksContext hooks = {&progress, &sched};
  TrainContext ctx = {group, cfg, train, test, out, run_hooks(&hooks), cfg->checkpoint_dir, deck, &stopped};
  int rc = 0, pos;
  for (;;) {
    if (grank == 0 && ckpt_signal_received()) scheduler_request_stop(&sched); /* between runs */
    if (stopped || (pos = scheduler_next(&sched)) < 0) break;
    SummaryRow row;
    rc |= train_run(&ctx, &sw->runs[todo[pos]], &row);
    if (!stopped && grank == 0) finished++;
  }
  progress_finish(&progress, grank == 0);
  scheduler_destroy(&sched);
  progress_free(&progress);
  int any, all_finished;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, world);
  MPI_Allreduce(&finished, &all_finished, 1, MPI_INT, MPI_SUM, world);
  free(todo);
  if (any) return EXIT_RUNTIME;
  return all_finished < n_todo ? EXIT_SIGNAL : 0;
}

/* What to do with the checkpoint directory (docs/checkpoint.md, "Restart rule"). Rank 0 decides:
 *   -overwrite without -restart: start afresh (old checkpoints removed);
 *   no sweep.h5: start afresh (stale run files removed); an existing output needs -overwrite;
 *   no -restart and no output: start afresh (the checkpoints belong to a vanished output);
 *   otherwise (-restart, or the output exists): continue, after checking every checkpoint file;
 *     without -restart, a sweep whose runs are all finished is not redone: "output exists".
 * Returns 0 (fresh), 1 (resume: instances, measured, status and done_rows filled) or -1 (err). */
static int plan_restart(const Config *cfg, const Sweep *sw, const char *deck, InstanceRow *inst, int32_t *measured, int32_t *status,
                        SummaryRow *done_rows, char *err, size_t errlen)
{
  struct stat st;
  const bool output_exists = stat(cfg->output, &st) == 0;
  if (cfg->overwrite && !cfg->restart) return 0;
  char msg[4600] = "";
  int got = ckpt_read_sweep(cfg->checkpoint_dir, deck, sw->n_instances, inst, measured, msg, sizeof msg);
  if (got == 1) return 0;
  if (!cfg->restart && !output_exists) return 0;
  if (got < 0) {
    if (cfg->restart) snprintf(err, errlen, "%s", msg);
    else snprintf(err, errlen, "output file %s exists: refusing to overwrite (give -overwrite to replace it)",
                  cfg->output);
    return -1;
  }
  int n_finished = 0;
  for (int i = 0; i < sw->n_runs; i++) {
    RunCheckpoint c;
    int r = ckpt_read_run(cfg->checkpoint_dir, deck, i, &c, msg, sizeof msg);
    if (r < 0) {
      snprintf(err, errlen, "%s", msg);
      return -1;
    }
    status[i] = r == 1 ? RUN_PENDING : c.status;
    if (r == 0 && c.status != RUN_RUNNING) done_rows[i] = c.summary, n_finished++;
    if (r == 0) ckpt_run_free(&c);
  }
  if (!cfg->restart && n_finished == sw->n_runs) {
    snprintf(err, errlen, "output file %s exists: refusing to overwrite (give -overwrite to replace it)",
             cfg->output);
    return -1;
  }
  return 1;
}

int ntkhpc_main(int argc, char **argv)
{
  MPI_Init(&argc, &argv);
  MPI_Comm world = MPI_COMM_WORLD;
  int rank;
  MPI_Comm_rank(world, &rank);
  char err[4700] = "";

  /* -version and -help need no deck. ntkhpc's -help comes before anything PETSc prints; PETSc
   * sees -help too and then lists its own options and the eigensolvers'. */
  int help_printed = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-version") || !strcmp(argv[i], "--version")) {
      if (rank == 0) printf("ntkhpc %s\n", NTK_VERSION);
      MPI_Finalize();
      return 0;
    }
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) argv[i] = (char *)"-help"; /* the name PETSc knows */
    help_printed |= !strcmp(argv[i], "-help");
  }
  if (help_printed && rank == 0) options_print_help(stdout);

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
  ckpt_install_signal_handlers(); /* after PETSc, whose own handler would otherwise abort on SIGTERM */
  PetscCall(train_register_events());
  PetscCall(ntk_register_events());
  PetscCall(hessian_register_events());
  PetscBool has_help = PETSC_FALSE;
  PetscCall(PetscOptionsHasHelp(NULL, &has_help));
  if (has_help && !help_printed && rank == 0) options_print_help(stdout); /* -help in the deck */

  Config cfg;
  int code = 0;
  if (config_read(&cfg, world) || options_register_solvers(world)) code = EXIT_BAD_INPUT;
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

  /* Image shape of the samples (the WRN's input layer); every ModelConfig is copied from cfg.model. */
  cfg.model.in_channels = train.channels, cfg.model.in_height = train.height, cfg.model.in_width = train.width;
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

  /* Restart or fresh start (rank 0 decides from the checkpoint directory; every rank follows). */
  char *deck_text = config_deck_text(&cfg);
  const int ni = sweep.n_instances, nr = sweep.n_runs;
  InstanceRow *instances = calloc((size_t)ni, sizeof *instances);
  int32_t *measured = calloc((size_t)ni, sizeof *measured), *status = calloc((size_t)nr, sizeof *status);
  SummaryRow *done_rows = calloc((size_t)nr, sizeof *done_rows);
  int plan = rank == 0 ? plan_restart(&cfg, &sweep, deck_text, instances, measured, status, done_rows, err, sizeof err) : 0;
  MPI_Bcast(&plan, 1, MPI_INT, 0, world);
  Config ocfg = cfg; /* resuming replaces the output: it is rebuilt from the checkpoints */
  ocfg.overwrite = cfg.overwrite || plan == 1;
  if (plan < 0) {
    MPI_Bcast(err, (int)sizeof err, MPI_CHAR, 0, world);
    say_error(rank, err);
    code = EXIT_BAD_INPUT;
  } else if (output_check_path(world, &ocfg, err, sizeof err)) { /* a bad output path fails now, not after lambda_0 */
    say_error(rank, err);
    code = EXIT_BAD_INPUT;
  } else {
    bad = 0;
    if (rank == 0) {
      if (plan == 0) ckpt_remove_all(cfg.checkpoint_dir);
      bad = ckpt_make_dir(cfg.checkpoint_dir, err, sizeof err) != 0;
      if (!bad && plan == 1 && !cfg.quiet) {
        printf("[ntkhpc] restarting from the checkpoints in %s\n", cfg.checkpoint_dir);
        fflush(stdout);
      }
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, world);
    if (bad) {
      MPI_Bcast(err, (int)sizeof err, MPI_CHAR, 0, world);
      say_error(rank, err);
      code = EXIT_BAD_INPUT;
    }
  }
  if (code) goto free_plan;
  MPI_Bcast(status, nr, MPI_INT32_T, 0, world);
  MPI_Bcast(measured, ni, MPI_INT32_T, 0, world);
  MPI_Bcast(instances, (int)(ni * sizeof *instances), MPI_BYTE, 0, world);
  for (int i = 0; i < ni; i++)
    if (!measured[i]) instances[i] = (InstanceRow){i, 0, 0, 0, 0, NAN, NAN, 0, NAN, NAN, NAN, 0};

  MPI_Comm group;
  MPI_Comm_split(world, rank / cfg.ranks_per_run, rank, &group);
  int stopped = 0;
  code = measure_instances(&cfg, &train, &test, &sweep, world, group, instances, measured, &stopped);
  if (rank == 0 && ckpt_write_sweep(cfg.checkpoint_dir, deck_text, ni, instances, measured, err, sizeof err)) {
    say_error(rank, err);
    if (!code) code = EXIT_RUNTIME;
  }
  if (!code && stopped) code = EXIT_SIGNAL; /* lambda_0 so far is in sweep.h5 */
  OutputFile out;
  MeasureSet measurements;
  if (code) {
    /* the message is printed */
  } else if (measure_set_declare(&measurements, &cfg, &train),
             output_create(&out, world, &ocfg, sweep.runs, sweep.n_runs, sweep.n_instances, measurements.schema, measurements.n, deck_text, err,
                           sizeof err)) {
    say_error(rank, err);
    code = EXIT_BAD_INPUT;
  } else {
    for (int i = 0; i < ni && rank == 0; i++)
      if (output_write_instance(&out, &instances[i])) code = EXIT_RUNTIME;
    for (int i = 0; i < nr && rank == 0; i++) { /* runs finished earlier: from their checkpoints */
      if (status[i] != RUN_DONE && status[i] != RUN_DIVERGED) continue;
      RunCheckpoint c;
      int r = ckpt_read_run(cfg.checkpoint_dir, deck_text, i, &c, err, sizeof err);
      if (r == 0 && ckpt_refill_output(&out, &c)) r = -1;
      if (r == 0) ckpt_run_free(&c);
      if (r) {
        say_error(rank, err[0] ? err : "cannot copy a finished run from its checkpoint into the output");
        code = EXIT_RUNTIME;
      }
    }
    int rc = run_sweep(&cfg, &train, &test, &sweep, &out, world, group, status, done_rows, deck_text);
    if (rc) code = rc;
    if (output_close(&out)) code = EXIT_RUNTIME;
    if (code == EXIT_SIGNAL && rank == 0)
      fprintf(stderr, "ntkhpc: stopped by a signal: every unfinished run is checkpointed in %s; continue with -restart (exit code %d)\n",
              cfg.checkpoint_dir, EXIT_SIGNAL);
  }
  MPI_Comm_free(&group);
free_plan:
  free(instances), free(measured), free(status), free(done_rows);
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
