/* Options of the NTK (the NTK batch, Gram-matrix variant, how lambda is computed) and of the NTK
 * operator; what the NTK measurements record and how often is theirs (src/measure/ntk_*.c). The operator reads its options itself when it
 * is created, maybe hours into a job: they are checked here at the start, with ntk.h's defaults,
 * and not stored in Config; ntk_options_register marks them and the eigensolvers' -ntk_eps_* as
 * used. options.h describes the table. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ntk.h"
#include "options.h"

static const char *variant_choice(int i) { return ntk_variant_name((NtkVariant)i); }
static const char *method_choice(int i) { return ntk_method_name((NtkMethod)i); }
static const char *conv_choice(int i) { return i == 0 ? "value" : "residual"; }

static const OptionDesc opts[] = {
  {.name = "-ntk_batch", .kind = KIND_STRING, .def = "", .def_shown = "train for full-batch GD when its exact Gram matrix fits -gram_max_rows, else 100",
   .meaning = "NTK batch: the first N training samples (at most -n_train), or train: the training set itself (full-batch GD only)",
   OPTION_FIELD(ntk_batch_text)},
  {.name = "-ntk_variant", .kind = KIND_CHOICE, .def = "full", .n_choices = 2, .choice = variant_choice,
   .meaning = "NTK Gram matrix: full (Nk x Nk) or logit-traced (N x N)", OPTION_FIELD(ntk_variant)},
  {.name = "-ntk_method", .kind = KIND_CHOICE, .def = "auto", .n_choices = 3, .choice = method_choice,
   .meaning = "lambda by matrix-free Krylov-Schur, the exact Gram matrix, or the cheaper (auto)", OPTION_FIELD(ntk_method)},
  {.name = "-gram_max_rows", .kind = KIND_INT, .def = "4000", .lo = 1, .hi = 1e7,
   .meaning = "Largest exact NTK Gram matrix (rows) built for spectra and kernel distances", OPTION_FIELD(gram_max_rows)},
  /* The operator's own (ntk.c reads them; no Config field). */
  {.name = "-ntk_chunk", .kind = KIND_INT, .def = OPTION_STR(NTK_DEFAULT_CHUNK), .lo = 1, .hi = PETSC_MAX_INT,
   .meaning = "Samples per tape chunk in NTK products"},
  {.name = "-ntk_tape_mb", .kind = KIND_REAL, .def = OPTION_STR(NTK_DEFAULT_TAPE_MB), .lo = 0, .hi = 1e12,
   .meaning = "Keep the NTK batch's activations up to this many MB per rank, else recompute them per product"},
  {.name = "-ntk_gram_block", .kind = KIND_INT, .def = OPTION_STR(NTK_DEFAULT_GRAM_BLOCK), .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Source samples per column block when assembling the exact Gram matrix (0 = automatic)"},
  {.name = "-ntk_conv", .kind = KIND_CHOICE, .def = NTK_DEFAULT_CONV, .n_choices = 2, .choice = conv_choice,
   .meaning = "Convergence test of the NTK eigensolves: value (the eigenvalue error, estimated from the residual, the Ritz gap and "
              "the last steps) or residual"},
  {.name = "-ntk_check_residual", .kind = KIND_BOOL, .def = NTK_DEFAULT_CHECK_RESIDUAL,
   .meaning = "Recompute each accepted NTK eigenpair's residual with one more product"},
  {.name = "-ntk_coarse_levels", .kind = KIND_INT, .def = OPTION_STR(NTK_DEFAULT_COARSE_LEVELS), .lo = 0, .hi = 64,
   .meaning = "Cold lambda solves (matrix-free and exact Gram) start from the eigenvectors of the NTK of every factor-th sample, "
              "this many levels deep (0: from a random vector)"},
  {.name = "-ntk_coarse_factor", .kind = KIND_INT, .def = OPTION_STR(NTK_DEFAULT_COARSE_FACTOR), .lo = 2, .hi = PETSC_MAX_INT,
   .meaning = "Sample stride between successive NTK coarse levels"},
  {.name = "-ntk_coarse_min", .kind = KIND_INT, .def = OPTION_STR(NTK_DEFAULT_COARSE_MIN), .lo = 1, .hi = PETSC_MAX_INT,
   .meaning = "Fewest samples an NTK coarse level may have"},
};

/* cfg->ntk_batch until ntk_batch_resolve: N > 0 as given, or one of these */
enum { NTK_BATCH_DEFAULT = 0, NTK_BATCH_TRAIN = -1 };
#define NTK_BATCH_FALLBACK 100 /* the default when the training set's NTK is not affordable */

static void check(Config *cfg, OptionReader *r)
{
  const int n_train = cfg->data.n_train;
  const char *t = cfg->ntk_batch_text;
  char *end = NULL;
  if (!t[0]) cfg->ntk_batch = NTK_BATCH_DEFAULT;
  else if (strcmp(t, "train") == 0) cfg->ntk_batch = NTK_BATCH_TRAIN;
  else {
    const long v = strtol(t, &end, 10);
    if (end == t || *end || v < 1 || v > 100000000) {
      options_fail(r, "option -ntk_batch: expected a positive integer or train, got '%s'", t);
      return;
    }
    cfg->ntk_batch = (int)v;
  }
  /* lambda on the training batch: only full-batch training has one batch */
  if (cfg->ntk_batch == NTK_BATCH_TRAIN && cfg->optimizer != OPT_GD)
    options_fail(r, "option -ntk_batch: train needs full-batch training (-optimizer gd); give a number of samples");
  if (n_train > 0 && cfg->ntk_batch > n_train) options_fail(r, "option -ntk_batch: %d exceeds -n_train %d", cfg->ntk_batch, n_train);
}

void ntk_batch_resolve(Config *cfg, int n_samples, int outputs)
{
  if (cfg->ntk_batch == NTK_BATCH_TRAIN) cfg->ntk_batch = n_samples;
  else if (cfg->ntk_batch == NTK_BATCH_DEFAULT) {
    /* Full-batch GD: the stability threshold eta*lambda_0 = 2 is that of the batch it trains on, so
     * lambda is measured on the training set when the cost model accepts it: its exact Gram matrix
     * (rows: samples x outputs, or samples for the traced variant) within -gram_max_rows, where
     * the spectrum and the kernel distance stay available. Else the first 100 samples (or fewer). */
    const int64_t rows = (int64_t)n_samples * (cfg->ntk_variant ? 1 : outputs);
    const bool train = cfg->optimizer == OPT_GD && rows <= cfg->gram_max_rows;
    cfg->ntk_batch = train ? n_samples : n_samples < NTK_BATCH_FALLBACK ? n_samples : NTK_BATCH_FALLBACK;
  }
  if (cfg->hess_batch <= 0) cfg->hess_batch = cfg->ntk_batch; /* -hess_batch not given: the same samples */
  snprintf(cfg->ntk_batch_text, sizeof cfg->ntk_batch_text, "%d", cfg->ntk_batch);
}

const OptionModule options_ntk = {
  "NTK", "the NTK operator's eigensolver takes -ntk_eps_*, the exact Gram matrix's -ntk_gram_eps_*, the coarse levels' -ntk_coarse_eps_*: "
  "PETSc lists them below", opts,
  sizeof opts / sizeof *opts, check, ntk_options_register, "-ntk_*eps_*"};
