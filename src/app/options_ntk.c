/* Options of the NTK (the NTK batch, Gram-matrix variant, how lambda is computed) and of the NTK
 * operator; what the NTK measurements record and how often is theirs (src/measure/ntk_*.c). The operator reads its options itself when it
 * is created, maybe hours into a job: they are checked here at the start, with ntk.h's defaults,
 * and not stored in Config; ntk_options_register marks them and the eigensolvers' -ntk_eps_* as
 * used. options.h describes the table. */
#include <inttypes.h>
#include "ntk.h"
#include "options.h"

static const char *variant_choice(int i) { return ntk_variant_name((NtkVariant)i); }
static const char *method_choice(int i) { return ntk_method_name((NtkMethod)i); }

static const OptionDesc opts[] = {
  {.name = "-ntk_batch", .kind = KIND_INT, .def = "100", .lo = 1, .hi = 1e8,
   .meaning = "NTK batch: the first N training samples (at most -n_train)", OPTION_FIELD(ntk_batch)},
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
};

static void check(Config *cfg, OptionReader *r)
{
  const int n_train = cfg->data.n_train;
  /* The default batch shrinks to a small training set; a batch the deck asks for does not. */
  if (!options_given(r, "-ntk_batch") && n_train > 0 && cfg->ntk_batch > n_train) cfg->ntk_batch = n_train;
  if (n_train > 0 && cfg->ntk_batch > n_train) options_fail(r, "option -ntk_batch: %d exceeds -n_train %d", cfg->ntk_batch, n_train);
}

const OptionModule options_ntk = {
  "NTK", "the NTK operator's eigensolver takes -ntk_eps_*, the exact Gram matrix's -ntk_gram_eps_*: PETSc lists them below", opts,
  sizeof opts / sizeof *opts, check, ntk_options_register, "-ntk_*eps_*"};
