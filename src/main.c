/* ntkhpc: sweeps of wide networks trained across MPI sub-communicators, one HDF5 file per job.
 *
 *   mpirun -n R ntkhpc deck.in [-key value ...]
 *
 * The deck is a PETSc options file; command-line options override it. Exit codes:
 *   0 success, 1 runtime failure (I/O, out of memory), 2 bad input (deck, option, data file). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <slepcsys.h>
#include "config.h"
#include "data.h"
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
  char line[8192];
  int lineno = 0, rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '#' || *p == '\n' || *p == '\r' || *p == 0) continue;
    if (p[0] != '-' || !(p[1] == '_' || (p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z'))) {
      p[strcspn(p, "\r\n")] = 0;
      snprintf(err, len, "deck %s line %d: expected '-key value', got '%.60s'", path, lineno, p);
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

/* Splits the world into run groups and trains every run the scheduler hands to this group. */
static int run_sweep(const Config *cfg, const Dataset *train, const Dataset *test, const Sweep *sw, OutputFile *out,
                     MPI_Comm world)
{
  int rank, size;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  MPI_Comm group;
  MPI_Comm_split(world, rank / cfg->ranks_per_run, rank, &group);

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
  MPI_Comm_free(&group);
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
  PetscBool has_help = PETSC_FALSE;
  PetscCall(PetscOptionsHasHelp(NULL, &has_help));

  Config cfg;
  int code = 0;
  if (config_read(&cfg, world)) code = EXIT_BAD_INPUT;
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

  char *deck_text = config_deck_text(&cfg);
  OutputFile out;
  if (output_create(&out, world, &cfg, &sweep, deck_text, err, sizeof err)) {
    say_error(rank, err);
    code = EXIT_BAD_INPUT;
  } else {
    code = run_sweep(&cfg, &train, &test, &sweep, &out, world);
    if (output_close(&out)) code = EXIT_RUNTIME;
  }
  free(deck_text);
  sweep_free(&sweep);
free_data:
  data_free(&train);
  data_free(&test);
finalize:
  PetscCall(SlepcFinalize());
  MPI_Finalize();
  return code;
}
