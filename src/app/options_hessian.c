/* Options of the loss Hessian (its batch) and of the Hessian operator; what the Hessian
 * measurements record and how often is theirs (src/measure/hessian_*.c). The operator reads its options itself when it is created, maybe hours into a job: they
 * are checked here at the start, with hessian.h's defaults, and not stored in Config. options.h
 * describes the table. */
#include <inttypes.h>
#include <slepceps.h>
#include "hessian.h"
#include "options.h"

static const char *conv_choice(int i) { return i == 0 ? "value" : "residual"; }

static const OptionDesc opts[] = {
  {.name = "-hess_batch", .kind = KIND_INT, .def_shown = "the NTK batch", .lo = 1, .hi = 1e8,
   .meaning = "Hessian batch: the first N training samples (at most -n_train)", OPTION_FIELD(hess_batch)},
  /* The operator's own (hessian.c reads them; no Config field). */
  {.name = "-hess_chunk", .kind = KIND_INT, .def = OPTION_STR(HESS_DEFAULT_CHUNK), .lo = 1, .hi = PETSC_MAX_INT,
   .meaning = "Samples per tape chunk in Hessian-vector products"},
  {.name = "-hess_tape_mb", .kind = KIND_REAL, .def = OPTION_STR(HESS_DEFAULT_TAPE_MB), .lo = 0, .hi = 1e12,
   .meaning = "Keep the Hessian batch's activations up to this many MB, else recompute them per product"},
  {.name = "-hess_conv", .kind = KIND_CHOICE, .def = HESS_DEFAULT_CONV, .n_choices = 2, .choice = conv_choice,
   .meaning = "Convergence test of the eigensolves: value (the eigenvalue error, estimated from the residual, the Ritz gap and the "
              "last steps) or residual"},
  {.name = "-hess_check_residual", .kind = KIND_BOOL, .def = HESS_DEFAULT_CHECK_RESIDUAL,
   .meaning = "Recompute each accepted eigenpair's residual with one more product"},
  {.name = "-hess_coarse_levels", .kind = KIND_INT, .def = OPTION_STR(HESS_DEFAULT_COARSE_LEVELS), .lo = 0, .hi = 64,
   .meaning = "Cold top-eigenvalue solves start from the eigenvectors of the Hessian of every factor-th sample, this many levels "
              "deep (0: from a random vector)"},
  {.name = "-hess_coarse_factor", .kind = KIND_INT, .def = OPTION_STR(HESS_DEFAULT_COARSE_FACTOR), .lo = 2, .hi = PETSC_MAX_INT,
   .meaning = "Sample stride between successive coarse levels"},
  {.name = "-hess_coarse_min", .kind = KIND_INT, .def = OPTION_STR(HESS_DEFAULT_COARSE_MIN), .lo = 1, .hi = PETSC_MAX_INT,
   .meaning = "Fewest samples a coarse level may have"},
};

static void check(Config *cfg, OptionReader *r)
{
  if (!options_given(r, "-hess_batch")) cfg->hess_batch = cfg->ntk_batch; /* same samples unless the deck says otherwise */
  if (cfg->data.n_train > 0 && cfg->hess_batch > cfg->data.n_train)
    options_fail(r, "option -hess_batch: %d exceeds -n_train %d", cfg->hess_batch, cfg->data.n_train);
}

/* The operator's eigensolvers (hessian.h): top, most negative, Gauss-Newton, coarse levels. */
static PetscErrorCode register_solvers(MPI_Comm comm)
{
  static const char *const prefixes[] = {"hess_", "hess_min_", "hess_gn_", "hess_coarse_"};
  EPS eps;
  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
    PetscCall(EPSCreate(comm, &eps));
    PetscCall(EPSSetOptionsPrefix(eps, prefixes[i]));
    PetscCall(EPSSetFromOptions(eps));
    PetscCall(EPSDestroy(&eps));
  }
  PetscFunctionReturn(PETSC_SUCCESS);
}

const OptionModule options_hessian = {
  "Hessian",
  "the Hessian operator's eigensolvers take -hess_eps_*, for the most negative eigenvalue -hess_min_eps_*, for the Gauss-Newton "
  "matrix -hess_gn_eps_*, on the coarse levels -hess_coarse_eps_*: PETSc lists them below",
  opts, sizeof opts / sizeof *opts, check, register_solvers, "-hess_*eps_*"};
