/* libFuzzer harness: the whole deck path of ntkhpc, in process.
 *
 * app.c is compiled into this file (its ntkhpc_main renamed), and the deck pre-check (deck_read of
 * src/app/deck.c, wrapped below as check_deck) runs as ntkhpc runs it. PETSc is initialised once (LLVMFuzzerInitialize); for
 * each input:
 *   1. the input is written as a deck file and check_deck() runs on it;
 *   2. if it is accepted, the options database is cleared and PETSc reads the file
 *      (PetscOptionsInsertFile, as SlepcInitialize does in ntkhpc) under a returning error
 *      handler; a deck that check_deck accepts but PETSc refuses is a robustness bug (ntkhpc would
 *      print a PETSc trace): counted, and fatal with NTK_FUZZ_DECK_STRICT=1;
 *   3. config_read() and config_check_unused() validate it; their stderr goes to a memory stream
 *      and must be exactly one line "ntkhpc: error: ..." when the deck is refused, none otherwise;
 *   4. an accepted deck's effective deck text (config_deck_text) must itself pass check_deck.
 * Build and run: tests/fuzz/build.sh (docs/robustness.md). */
#define ntkhpc_main ntkhpc_app_main
#include "../../src/app/app.c"
#undef ntkhpc_main

/* ntkhpc's deck pre-check (deck.h), as app.c calls it: the deck read once and checked. */
static int check_deck(const char *path, char *err, size_t errlen)
{
  Deck d;
  const int rc = deck_read(path, &d, err, errlen);
  deck_free(&d);
  return rc;
}

#include <signal.h>

static char deck_path[256], text_path[256];
static FILE *real_stderr;
static int strict;
static unsigned long n_inputs, n_prechk_refused, n_petsc_refused, n_config_refused, n_accepted;

static void report(void)
{
  fprintf(real_stderr,
          "fuzz_deck: %lu inputs: %lu refused by check_deck, %lu accepted by check_deck but refused by "
          "PETSc, %lu refused by config_read/check_unused, %lu accepted\n",
          n_inputs, n_prechk_refused, n_petsc_refused, n_config_refused, n_accepted);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  snprintf(deck_path, sizeof deck_path, "%s/ntk-fuzz-deck-%ld.in", dir, (long)getpid());
  snprintf(text_path, sizeof text_path, "%s/ntk-fuzz-deck-%ld.txt", dir, (long)getpid());
  strict = getenv("NTK_FUZZ_DECK_STRICT") && atoi(getenv("NTK_FUZZ_DECK_STRICT"));
  /* No arguments: libFuzzer's own -flags must not reach the PETSc options database. */
  if (PetscInitializeNoArguments()) abort();
  real_stderr = stderr;
  atexit(report);
  return 0;
}

static void die(const char *what, const char *detail)
{
  fprintf(real_stderr, "fuzz_deck: %s\n%s\n", what, detail ? detail : "");
  fflush(real_stderr);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  n_inputs++;
  FILE *f = fopen(deck_path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);

  char err[1024] = "";
  if (check_deck(deck_path, err, sizeof err)) {
    if (!err[0] || strchr(err, '\n')) die("check_deck message is not one line:", err);
    n_prechk_refused++;
    return 0;
  }

  PetscCallAbort(PETSC_COMM_SELF, PetscOptionsClear(NULL));
  PetscPushErrorHandler(PetscReturnErrorHandler, NULL);
  PetscErrorCode ierr = PetscOptionsInsertFile(PETSC_COMM_WORLD, NULL, deck_path, PETSC_TRUE);
  PetscPopErrorHandler();
  if (ierr) {
    n_petsc_refused++;
    if (strict) die("check_deck accepted a deck that PETSc refuses (ntkhpc would print a PETSc trace)", NULL);
    return 0;
  }

  /* Catch what config prints: exactly one line when the deck is refused. */
  char *msg = NULL;
  size_t msglen = 0;
  FILE *mem = open_memstream(&msg, &msglen);
  if (!mem) abort();
  stderr = mem;
  FILE *real_stdout = stdout; /* -help output is not interesting here */
  FILE *null_out = fopen("/dev/null", "w");
  stdout = null_out;
  Config cfg;
  PetscBool has_help = PETSC_FALSE;
  PetscOptionsHasHelp(NULL, &has_help);
  int bad = config_read(&cfg, PETSC_COMM_WORLD);
  if (!bad && !has_help) bad = config_check_unused(PETSC_COMM_WORLD);
  stderr = real_stderr;
  stdout = real_stdout;
  fclose(null_out);
  fclose(mem);

  int lines = 0;
  for (size_t i = 0; i < msglen; i++) lines += msg[i] == '\n';
  if (bad) {
    n_config_refused++;
    if (lines != 1 || strncmp(msg, "ntkhpc: error: ", 15) != 0) die("a refused deck did not give exactly one error line:", msg);
  } else {
    n_accepted++;
    if (msglen) die("an accepted deck printed on stderr:", msg);
    char *text = config_deck_text(&cfg);
    FILE *t = fopen(text_path, "w");
    if (!t) abort();
    fputs(text, t);
    fclose(t);
    if (check_deck(text_path, err, sizeof err)) die("the effective deck of an accepted deck fails check_deck:", err);
    free(text);
  }
  free(msg);
  return 0;
}
