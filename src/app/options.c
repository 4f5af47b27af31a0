/* Every option of ntkhpc is read and validated here, in one PetscOptionsBegin/End block, so that
 * `-help` lists them all with their meaning and default.
 *
 * Error policy: a bad value gives ONE line "ntkhpc: error: option -NAME: what is wrong" on rank 0
 * and a non-zero exit. PETSc's own parse errors (wrong type, unknown enum value) would print a
 * multi-line trace, so while options are read PETSc's error handler is swapped for one that just
 * returns the code, and we name the option ourselves. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <petscsys.h>
#include "augment.h"
#include "config.h"
#include "petsc_compat.h"

static const char *const optimizer_names[] = {"gd", "sgd"};
static const char *const schedule_names[] = {"constant", "step", "cosine"};

const char *optimizer_name(OptimizerKind o) { return optimizer_names[o]; }
const char *lr_schedule_name(LrSchedule s) { return schedule_names[s]; }
const char *ntk_method_name(NtkMethod m) { return m == NTK_METHOD_MATFREE ? "matfree" : m == NTK_METHOD_EXACT ? "exact" : "auto"; }

double config_lr_at(const Config *cfg, double eta, int64_t t)
{
  double lr = eta;
  switch (cfg->lr_schedule) {
  case LR_CONSTANT: break;
  case LR_STEP: lr = eta * pow(cfg->lr_step_gamma, (double)(t / cfg->lr_step_every)); break;
  case LR_COSINE: {
    double lo = cfg->lr_min_factor * eta, frac = cfg->steps > 0 ? (double)t / (double)cfg->steps : 1.0;
    lr = lo + (eta - lo) * 0.5 * (1.0 + cos(M_PI * fmin(frac, 1.0)));
  } break;
  }
  if (t < cfg->warmup_steps) lr *= (double)(t + 1) / (double)cfg->warmup_steps;
  return lr;
}

/* ------------------------------------------------------------------ error reporting */

typedef struct {
  MPI_Comm comm;
  int bad; /* number of errors so far; only the first is printed */
} Checker;

static void fail(Checker *c, const char *fmt, ...)
{
  int rank;
  MPI_Comm_rank(c->comm, &rank);
  if (!c->bad && rank == 0) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ntkhpc: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    va_end(ap);
  }
  c->bad++;
}

/* The raw text given for -key, for messages ("" when absent). */
static const char *raw_value(const char *key, char *buf, size_t len)
{
  PetscBool set = PETSC_FALSE;
  buf[0] = 0;
  if (PetscOptionsGetString(NULL, NULL, key, buf, len, &set) || !set) buf[0] = 0;
  return buf;
}

/* Wrappers: read one option, turn a PETSc parse error into our one line, check the range.
 * They take PetscOptionsObject so the PetscOptions* macros work inside them. */
static void opt_int(PetscOptionItems *PetscOptionsObject, Checker *c, const char *key, const char *help,
                    PetscInt def, PetscInt lo, PetscInt hi, PetscInt *out, PetscBool *set)
{
  char raw[256];
  *out = def;
  if (PetscOptionsInt(key, help, NULL, def, out, set)) {
    fail(c, "option %s: expected an integer, got '%s'", key, raw_value(key, raw, sizeof raw));
    *out = def;
    return;
  }
  if (*out < lo || *out > hi) fail(c, "option %s: %" PetscInt_FMT " is outside [%" PetscInt_FMT ", %" PetscInt_FMT "]", key, *out, lo, hi);
}

static void opt_real(PetscOptionItems *PetscOptionsObject, Checker *c, const char *key, const char *help,
                     double def, double lo, double hi, int open_lo, double *out, PetscBool *set)
{
  char raw[256];
  PetscReal v = def;
  if (PetscOptionsReal(key, help, NULL, def, &v, set)) {
    fail(c, "option %s: expected a real number, got '%s'", key, raw_value(key, raw, sizeof raw));
    *out = def;
    return;
  }
  *out = v;
  if (!isfinite(v) || v < lo || v > hi || (open_lo && v == lo))
    fail(c, "option %s: %g is outside %s%g, %g]", key, v, open_lo ? "(" : "[", lo, hi);
}

static void opt_bool(PetscOptionItems *PetscOptionsObject, Checker *c, const char *key, const char *help,
                     bool def, bool *out, PetscBool *set)
{
  char raw[256];
  PetscBool v = def ? PETSC_TRUE : PETSC_FALSE;
  if (PetscOptionsBool(key, help, NULL, v, &v, set)) {
    fail(c, "option %s: expected true or false, got '%s'", key, raw_value(key, raw, sizeof raw));
    return;
  }
  *out = v == PETSC_TRUE;
}

/* An enumerated option given by name; names[] lists the choices. */
static void opt_choice(PetscOptionItems *PetscOptionsObject, Checker *c, const char *key, const char *help,
                       const char *const *names, int n, int def, int *out, PetscBool *set)
{
  char raw[256], choices[512] = "";
  PetscInt v = def;
  if (PetscOptionsEList(key, help, NULL, names, n, names[def], &v, set)) {
    for (int i = 0; i < n; i++) {
      strncat(choices, names[i], sizeof choices - strlen(choices) - 1);
      if (i + 1 < n) strncat(choices, ", ", sizeof choices - strlen(choices) - 1);
    }
    fail(c, "option %s: unknown value '%s' (choose one of: %s)", key, raw_value(key, raw, sizeof raw), choices);
    v = def;
  }
  *out = (int)v;
}

static void opt_string(PetscOptionItems *PetscOptionsObject, Checker *c, const char *key, const char *help,
                       const char *def, char *out, size_t len, PetscBool *set)
{
  /* PetscOptionsString leaves out untouched when the key is absent: start from the default. */
  snprintf(out, len, "%s", def);
  if (PetscOptionsString(key, help, NULL, def, out, len, set)) fail(c, "option %s: cannot read the value", key);
}

/* PETSc reports a list option given with no value ("-widths" alone, or "") as not set, which
 * would silently fall back to the default: that is an error. */
static void check_not_empty(Checker *c, const char *key, PetscBool set, PetscInt n)
{
  PetscBool given = PETSC_FALSE;
  if (PetscOptionsHasName(NULL, NULL, key, &given)) given = PETSC_FALSE;
  if (given && (!set || n == 0)) fail(c, "option %s: the list is empty", key);
}

/* ------------------------------------------------------------------ reading */

static const char *const *act_names_list(void)
{
  static const char *names[ACT_COUNT];
  for (int i = 0; i < ACT_COUNT; i++) names[i] = act_name((Activation)i);
  return names;
}

static PetscErrorCode read_options(Config *cfg, Checker *c)
{
  PetscInt ival;
  PetscBool set, batch_set, step_every_set, gamma_set, min_set, augment_pad_set, teacher_set = PETSC_FALSE, dir_set, ntk_batch_set, hess_batch_set;
  const char *const *acts = act_names_list();
  const char *arch_names[ARCH_COUNT], *data_names[DATA_COUNT];
  for (int i = 0; i < ARCH_COUNT; i++) arch_names[i] = arch_name((Architecture)i);
  for (int i = 0; i < DATA_COUNT; i++) data_names[i] = data_kind_name((DataKind)i);
  int choice;
  PetscBool wrn_depth_set, bn_set, bn_eps_set; /* -arch wrn options */

  PetscOptionsBegin(c->comm, NULL, "ntkhpc: wide networks, their NTK and the catapult phase (options of the deck)", NULL);

  /* ---- model */
  opt_choice(PetscOptionsObject, c, "-arch", "Architecture (wrn: pre-activation Wide ResNet, -widths = widening factor k)", arch_names, ARCH_COUNT, ARCH_FC, &choice, NULL);
  cfg->model.arch = (Architecture)choice;
  opt_int(PetscOptionsObject, c, "-depth", "Number of hidden layers L", 3, 1, 1000, &ival, NULL);
  cfg->model.depth = (int)ival;
  opt_choice(PetscOptionsObject, c, "-activation", "Activation phi of the hidden layers", acts, ACT_COUNT, ACT_RELU, &choice, NULL);
  cfg->model.act = (Activation)choice;
  opt_bool(PetscOptionsObject, c, "-bias", "Biases on every dense layer", true, &cfg->model.bias, NULL);
  opt_real(PetscOptionsObject, c, "-sigma_w", "Weight scale sigma_w (CONVENTIONS.md table)", M_SQRT2, 0, 1e6, 1, &cfg->model.sigma_w, NULL);
  opt_real(PetscOptionsObject, c, "-sigma_b", "Bias scale sigma_b", 0.0, 0, 1e6, 0, &cfg->model.sigma_b, NULL);
  opt_int(PetscOptionsObject, c, "-base_width", "muP base width n0 (r = width / n0)", 64, 1, 100000000, &ival, NULL);
  cfg->model.base_width = (int)ival;
  opt_bool(PetscOptionsObject, c, "-mup_zero_readout", "muP: zero-initialise the output layer", false, &cfg->model.mup_zero_readout, NULL);
  opt_int(PetscOptionsObject, c, "-wrn_depth", "-arch wrn: depth d = 6n+4 of WRN-d-k (n blocks per group; -widths are the widening factor k)", 16, 10,
          100000, &ival, &wrn_depth_set);
  cfg->model.wrn_depth = (int)ival;
  if ((ival - 4) % 6 != 0) fail(c, "option -wrn_depth: %d is not 6n+4 (10, 16, 22, 28, 40, ...)", (int)ival);
  opt_bool(PetscOptionsObject, c, "-batch_norm", "-arch wrn: train-mode batch norm before every activation (statistics of the whole batch)", true,
           &cfg->model.batch_norm, &bn_set);
  opt_real(PetscOptionsObject, c, "-bn_eps", "-arch wrn: batch-norm epsilon", BN_EPS_DEFAULT, 0, 1, 1, &cfg->model.bn_eps, &bn_eps_set);

  /* ---- sweep lists */
  {
    PetscInt list[CONFIG_MAX_LIST], n = CONFIG_MAX_LIST;
    list[0] = 512;
    if (PetscOptionsIntArray("-widths", "Hidden widths n to sweep (comma separated)", NULL, list, &n, &set)) fail(c, "option -widths: expected a comma-separated list of integers");
    check_not_empty(c, "-widths", set, n);
    if (!set) n = 1;
    cfg->n_widths = (int)n;
    for (PetscInt i = 0; i < n; i++) {
      if (list[i] < 1 || list[i] > 100000000) fail(c, "option -widths: width %" PetscInt_FMT " must be a positive integer", list[i]);
      for (PetscInt j = 0; j < i; j++)
        if (list[j] == list[i]) fail(c, "option -widths: %" PetscInt_FMT " is listed twice", list[i]);
      cfg->widths[i] = (int)list[i];
    }
    n = CONFIG_MAX_LIST;
    list[0] = 0;
    if (PetscOptionsIntArray("-seeds", "Random seeds to sweep (comma separated, >= 0)", NULL, list, &n, &set)) fail(c, "option -seeds: expected a comma-separated list of integers");
    check_not_empty(c, "-seeds", set, n);
    if (!set) n = 1;
    cfg->n_seeds = (int)n;
    for (PetscInt i = 0; i < n; i++) {
      if (list[i] < 0) fail(c, "option -seeds: seed %" PetscInt_FMT " must be >= 0", list[i]);
      for (PetscInt j = 0; j < i; j++)
        if (list[j] == list[i]) fail(c, "option -seeds: %" PetscInt_FMT " is listed twice", list[i]);
      cfg->seeds[i] = list[i];
    }
  }
  {
    char *names[PARAM_COUNT + 1];
    PetscInt n = PARAM_COUNT + 1;
    if (PetscOptionsStringArray("-params", "Parameterizations to sweep: ntk, sp, mup (comma separated)", NULL, names, &n, &set)) fail(c, "option -params: cannot read the list");
    check_not_empty(c, "-params", set, n);
    if (!set) {
      cfg->n_params = 1;
      cfg->params[0] = PARAM_NTK;
      n = 0;
    } else if (n > PARAM_COUNT) {
      fail(c, "option -params: at most %d entries (ntk, sp, mup), each once", PARAM_COUNT);
    } else {
      cfg->n_params = (int)n;
    }
    const PetscInt n_checked = n < PARAM_COUNT ? n : PARAM_COUNT; /* names beyond were refused above */
    for (PetscInt i = 0; i < n_checked; i++) {
      int p = param_from_name(names[i]);
      if (p < 0) fail(c, "option -params: unknown parameterization '%s' (choose from ntk, sp, mup)", names[i]);
      else cfg->params[i] = (Parameterization)p;
      for (PetscInt j = 0; j < i && p >= 0; j++)
        if (cfg->params[j] == (Parameterization)p) fail(c, "option -params: '%s' is listed twice", names[i]);
    }
    for (PetscInt i = 0; i < n; i++) PetscCall(PetscFree(names[i]));
    if (set && n == 0) fail(c, "option -params: the list is empty");
  }
  {
    /* Learning rates: absolute (-etas) or in units of 1/lambda_0 (-eta_factors), not both. */
    PetscReal etas[CONFIG_MAX_LIST], factors[CONFIG_MAX_LIST];
    PetscInt n_etas = CONFIG_MAX_LIST, n_factors = CONFIG_MAX_LIST;
    PetscBool etas_set, factors_set;
    etas[0] = 0.5;
    if (PetscOptionsRealArray("-etas", "Absolute learning rates eta to sweep (comma separated)", NULL, etas, &n_etas, &etas_set))
      fail(c, "option -etas: expected a comma-separated list of real numbers");
    if (PetscOptionsRealArray("-eta_factors", "Learning rates in units of 1/lambda_0: eta = c / lambda_0 (c = 2 is eta_crit)", NULL, factors,
                              &n_factors, &factors_set))
      fail(c, "option -eta_factors: expected a comma-separated list of real numbers");
    check_not_empty(c, "-etas", etas_set, n_etas);
    check_not_empty(c, "-eta_factors", factors_set, n_factors);
    if (etas_set && factors_set) fail(c, "option -eta_factors: give either -etas or -eta_factors, not both (the deck may set one)");
    const char *key = factors_set ? "-eta_factors" : "-etas";
    PetscReal *list = factors_set ? factors : etas;
    PetscInt n = factors_set ? n_factors : etas_set ? n_etas : 1;
    if ((etas_set || factors_set) && n == 0) fail(c, "option %s: the list is empty", key);
    cfg->eta_in_lambda0_units = factors_set;
    cfg->n_etas = (int)n;
    for (PetscInt i = 0; i < n; i++) {
      if (!(list[i] > 0) || !isfinite(list[i])) fail(c, "option %s: learning rate %g must be positive and finite", key, (double)list[i]);
      for (PetscInt j = 0; j < i; j++)
        if (list[j] == list[i]) fail(c, "option %s: %g is listed twice", key, (double)list[i]);
      cfg->etas[i] = list[i];
    }
  }

  /* ---- NTK spectrum */
  opt_int(PetscOptionsObject, c, "-ntk_batch", "NTK batch: the first N training samples (default 100, at most -n_train)", 100, 1, 100000000, &ival,
          &ntk_batch_set);
  cfg->ntk_batch = (int)ival;
  {
    static const char *const variants[] = {"full", "traced"};
    opt_choice(PetscOptionsObject, c, "-ntk_variant", "NTK Gram matrix: full (Nk x Nk) or logit-traced (N x N)", variants, 2, 0, &choice, NULL);
    cfg->ntk_variant = choice;
    static const char *const methods[] = {"auto", "matfree", "exact"};
    opt_choice(PetscOptionsObject, c, "-ntk_method", "lambda by matrix-free Krylov-Schur, the exact Gram matrix, or the cheaper (auto)", methods, 3,
               NTK_METHOD_AUTO, &choice, NULL);
    cfg->ntk_method = (NtkMethod)choice;
  }
  opt_int(PetscOptionsObject, c, "-ntk_nev", "Top eigenvalues of the NTK recorded at each lambda step", 3, 1, 1000, &ival, NULL);
  cfg->ntk_nev = (int)ival;
  opt_int(PetscOptionsObject, c, "-lambda_every", "Measure lambda_t every this many steps (0 = first and last step only)", 10, 0, PETSC_MAX_INT, &ival, NULL);
  cfg->lambda_every = ival;
  {
    PetscInt list[CONFIG_MAX_LIST], n = CONFIG_MAX_LIST;
    if (PetscOptionsIntArray("-spectrum_steps", "Steps at which the full NTK spectrum is stored (comma separated)", NULL, list, &n, &set))
      fail(c, "option -spectrum_steps: expected a comma-separated list of integers");
    cfg->n_spectrum_steps = set ? (int)n : 0;
    for (PetscInt i = 0; set && i < n; i++) {
      if (list[i] < 0) fail(c, "option -spectrum_steps: step %" PetscInt_FMT " must be >= 0", list[i]);
      if (i > 0 && list[i] <= list[i - 1]) fail(c, "option -spectrum_steps: steps must increase");
      cfg->spectrum_steps[i] = list[i];
    }
  }
  opt_bool(PetscOptionsObject, c, "-kernel_distance", "Record ||Theta_t - Theta_0||_F / ||Theta_0||_F when the exact Gram matrix is affordable", true,
           &cfg->kernel_distance, NULL);
  opt_int(PetscOptionsObject, c, "-gram_max_rows", "Largest exact NTK Gram matrix (rows) built for spectra and kernel distances", 4000, 1, 10000000, &ival, NULL);
  cfg->gram_max_rows = (int)ival;

  /* ---- data */
  opt_choice(PetscOptionsObject, c, "-dataset", "Dataset", data_names, DATA_COUNT, DATA_FASHION_MNIST, &choice, NULL);
  cfg->data.kind = (DataKind)choice;
  opt_string(PetscOptionsObject, c, "-data_dir", "Directory of the dataset files (default: Debian's Fashion-MNIST)", DATA_FASHION_MNIST_DEFAULT_DIR, cfg->data.dir, sizeof cfg->data.dir, &dir_set);
  opt_int(PetscOptionsObject, c, "-n_train", "Training samples: the first n of the training split (0 = all)", 1000, 0, 100000000, &ival, NULL);
  cfg->data.n_train = (int)ival;
  opt_int(PetscOptionsObject, c, "-n_test", "Test samples: the first n of the test split (0 = all)", 1000, 0, 100000000, &ival, NULL);
  cfg->data.n_test = (int)ival;
  opt_bool(PetscOptionsObject, c, "-standardize", "Standardise inputs per feature with the training mean and std", true, &cfg->data.standardize, NULL);
  opt_bool(PetscOptionsObject, c, "-center_targets", "Centre one-hot targets (y - 1/k)", false, &cfg->data.center_targets, NULL);
  opt_int(PetscOptionsObject, c, "-teacher_dim", "Teacher-student: input dimension d", 32, 1, 1000000, &ival, &set);
  cfg->data.teacher_dim = (int)ival;
  teacher_set = (PetscBool)(teacher_set || set);
  opt_int(PetscOptionsObject, c, "-teacher_width", "Teacher-student: teacher hidden width", 64, 1, 10000000, &ival, &set);
  cfg->data.teacher_width = (int)ival;
  teacher_set = (PetscBool)(teacher_set || set);
  opt_int(PetscOptionsObject, c, "-teacher_outputs", "Teacher-student: outputs k", 1, 1, 100000, &ival, &set);
  cfg->data.teacher_outputs = (int)ival;
  teacher_set = (PetscBool)(teacher_set || set);
  opt_choice(PetscOptionsObject, c, "-teacher_activation", "Teacher-student: teacher activation", acts, ACT_COUNT, ACT_TANH, &choice, &set);
  cfg->data.teacher_act = (Activation)choice;
  teacher_set = (PetscBool)(teacher_set || set);
  opt_int(PetscOptionsObject, c, "-teacher_seed", "Teacher-student: seed of the teacher and its inputs", 1, 0, PETSC_MAX_INT, &ival, &set);
  cfg->data.teacher_seed = (uint64_t)ival;
  teacher_set = (PetscBool)(teacher_set || set);
  opt_real(PetscOptionsObject, c, "-teacher_noise", "Teacher-student: std of Gaussian label noise", 0.0, 0, 1e6, 0, &cfg->data.teacher_noise, &set);
  teacher_set = (PetscBool)(teacher_set || set);

  /* ---- training */
  opt_choice(PetscOptionsObject, c, "-optimizer", "gd (full batch) or sgd (minibatch, counter-based shuffling)", optimizer_names, 2, OPT_GD, &choice, NULL);
  cfg->optimizer = (OptimizerKind)choice;
  opt_int(PetscOptionsObject, c, "-batch_size", "SGD minibatch size", 128, 1, 100000000, &ival, &batch_set);
  cfg->batch_size = (int)ival;
  opt_int(PetscOptionsObject, c, "-steps", "Training steps per run", 100, 0, PETSC_MAX_INT, &ival, NULL);
  cfg->steps = ival;
  opt_real(PetscOptionsObject, c, "-momentum", "Heavy-ball momentum mu in [0,1)", 0.0, 0, 0.999999, 0, &cfg->momentum, NULL);
  opt_real(PetscOptionsObject, c, "-weight_decay", "L2 weight decay added to the gradient", 0.0, 0, 1e6, 0, &cfg->weight_decay, NULL);
  opt_choice(PetscOptionsObject, c, "-lr_schedule", "Learning-rate schedule", schedule_names, 3, LR_CONSTANT, &choice, NULL);
  cfg->lr_schedule = (LrSchedule)choice;
  opt_int(PetscOptionsObject, c, "-warmup_steps", "Linear warm-up steps (0 = none)", 0, 0, PETSC_MAX_INT, &ival, NULL);
  cfg->warmup_steps = ival;
  opt_int(PetscOptionsObject, c, "-lr_step_every", "Step schedule: decay every this many steps", 1000, 1, PETSC_MAX_INT, &ival, &step_every_set);
  cfg->lr_step_every = ival;
  opt_real(PetscOptionsObject, c, "-lr_step_gamma", "Step schedule: decay factor", 0.1, 0, 1, 1, &cfg->lr_step_gamma, &gamma_set);
  opt_real(PetscOptionsObject, c, "-lr_min_factor", "Cosine schedule: final lr as a fraction of eta", 0.0, 0, 1, 0, &cfg->lr_min_factor, &min_set);
  opt_int(PetscOptionsObject, c, "-record_every", "Record train loss/accuracy/norms every m steps", 1, 1, PETSC_MAX_INT, &ival, NULL);
  cfg->record_every = ival;
  opt_int(PetscOptionsObject, c, "-test_every", "Record test loss/accuracy every M steps (0 = start and end only)", 10, 0, PETSC_MAX_INT, &ival, NULL);
  cfg->test_every = ival;
  opt_int(PetscOptionsObject, c, "-eval_chunk", "Samples per forward pass (bounds activation memory)", 512, 1, 100000000, &ival, NULL);
  cfg->eval_chunk = (int)ival;
  opt_bool(PetscOptionsObject, c, "-augment", "Augment training batches: random crop with zero padding and horizontal flip (image data only)", false,
           &cfg->augment, NULL);
  opt_int(PetscOptionsObject, c, "-augment_pad", "Augmentation: zero padding p of the random crop (offsets uniform in [0, 2p])", 4, 0, AUGMENT_MAX_PAD, &ival,
          &augment_pad_set);
  cfg->augment_pad = (int)ival;

  /* ---- loss Hessian */
  opt_int(PetscOptionsObject, c, "-hess_batch", "Hessian batch: the first N training samples (default: the NTK batch)", 100, 1, 100000000, &ival,
          &hess_batch_set);
  cfg->hess_batch = (int)ival;
  opt_int(PetscOptionsObject, c, "-hess_every", "Sharpness (top Hessian eigenvalues) every this many steps (0 = never)", 0, 0, PETSC_MAX_INT, &ival, NULL);
  cfg->hess_every = ival;
  opt_int(PetscOptionsObject, c, "-hess_nev", "Top eigenvalues of the Hessian recorded", 1, 1, 1000, &ival, NULL);
  cfg->hess_nev = (int)ival;
  opt_bool(PetscOptionsObject, c, "-hess_min_eig", "Also record the most negative Hessian eigenvalue", true, &cfg->hess_min_eig, NULL);
  {
    PetscInt list[CONFIG_MAX_LIST], n = CONFIG_MAX_LIST;
    if (PetscOptionsIntArray("-density_steps", "Steps at which the Hessian trace (Hutchinson) and spectral density (SLQ) are stored", NULL, list, &n,
                             &set))
      fail(c, "option -density_steps: expected a comma-separated list of integers");
    cfg->n_density_steps = set ? (int)n : 0;
    for (PetscInt i = 0; set && i < n; i++) {
      if (list[i] < 0) fail(c, "option -density_steps: step %" PetscInt_FMT " must be >= 0", list[i]);
      if (i > 0 && list[i] <= list[i - 1]) fail(c, "option -density_steps: steps must increase");
      cfg->density_steps[i] = list[i];
    }
  }
  opt_int(PetscOptionsObject, c, "-trace_probes", "Rademacher probes of the Hutchinson trace", 30, 1, 100000, &ival, NULL);
  cfg->trace_probes = (int)ival;
  opt_int(PetscOptionsObject, c, "-slq_probes", "Random starts of stochastic Lanczos quadrature", 10, 1, 100000, &ival, NULL);
  cfg->slq_probes = (int)ival;
  opt_int(PetscOptionsObject, c, "-slq_lanczos", "Lanczos steps per SLQ start", 40, 2, 100000, &ival, NULL);
  cfg->slq_lanczos = (int)ival;

  /* ---- eta_max search */
  opt_bool(PetscOptionsObject, c, "-eta_max_search", "Bisect eta_factor per instance for the divergence boundary eta_max (short probe runs)", false,
           &cfg->eta_max_search, NULL);
  opt_real(PetscOptionsObject, c, "-eta_max_lo", "eta_max search: lower end of the initial bracket (units of 1/lambda_0)", 2.0, 0, 1e6, 1, &cfg->eta_max_lo, NULL);
  opt_real(PetscOptionsObject, c, "-eta_max_hi", "eta_max search: upper end of the initial bracket (units of 1/lambda_0)", 64.0, 0, 1e6, 1, &cfg->eta_max_hi, NULL);
  opt_real(PetscOptionsObject, c, "-eta_max_tol", "eta_max search: width of the final bracket (units of 1/lambda_0)", 0.1, 0, 1e6, 1, &cfg->eta_max_tol, NULL);
  opt_int(PetscOptionsObject, c, "-eta_max_steps", "eta_max search: steps of each probe run", 100, 1, PETSC_MAX_INT, &ival, NULL);
  cfg->eta_max_steps = ival;

  /* ---- phases */
  opt_real(PetscOptionsObject, c, "-diverge_factor", "Stop a run as divergent when loss > factor * L0 or non-finite", 1e6, 1, 1e300, 1, &cfg->diverge_factor, NULL);
  opt_real(PetscOptionsObject, c, "-catapult_factor", "Catapult when L_peak > factor * L0 early and L_T < L0", 1.5, 1, 1e300, 1, &cfg->catapult_factor, NULL);
  opt_int(PetscOptionsObject, c, "-catapult_window", "Steps in which the catapult spike must occur", 100, 1, PETSC_MAX_INT, &ival, NULL);
  cfg->catapult_window = ival;

  /* ---- parallel layout, output, progress */
  opt_int(PetscOptionsObject, c, "-ranks_per_run", "MPI ranks per run (data-parallel sub-communicator)", 1, 1, 1000000, &ival, NULL);
  cfg->ranks_per_run = (int)ival;
  opt_string(PetscOptionsObject, c, "-output", "Output HDF5 file", "ntkhpc.h5", cfg->output, sizeof cfg->output, NULL);
  opt_bool(PetscOptionsObject, c, "-overwrite", "Replace an existing output file", false, &cfg->overwrite, NULL);
  opt_real(PetscOptionsObject, c, "-flush_seconds", "Write buffered trajectory rows at least this often", 30.0, 0, 1e9, 1, &cfg->flush_seconds, NULL);
  opt_real(PetscOptionsObject, c, "-progress_seconds", "Print a progress summary at least this often", 10.0, 0, 1e9, 1, &cfg->progress_seconds, NULL);
  opt_bool(PetscOptionsObject, c, "-quiet", "Only errors and the final summary", false, &cfg->quiet, NULL);
  opt_string(PetscOptionsObject, c, "-checkpoint_dir", "Checkpoint directory (default: <output>.ckpt)", "", cfg->checkpoint_dir,
             sizeof cfg->checkpoint_dir, NULL);
  opt_int(PetscOptionsObject, c, "-checkpoint_every", "Checkpoint running runs every this many steps (0 = off)", 0, 0, PETSC_MAX_INT, &ival, NULL);
  cfg->checkpoint_every = ival;
  opt_real(PetscOptionsObject, c, "-checkpoint_minutes", "Checkpoint running runs at least this often, in minutes (0 = off)", 30.0, 0, 1e9, 0,
           &cfg->checkpoint_minutes, NULL);
  opt_bool(PetscOptionsObject, c, "-restart", "Continue from the checkpoints (finished runs are kept, the output is rebuilt)", false,
           &cfg->restart, NULL);
  opt_int(PetscOptionsObject, c, "-sweep_part", "Run only the deck's runs d with d % sweep_parts == sweep_part (Slurm array index)", 0, 0,
          PETSC_MAX_INT, &ival, NULL);
  cfg->sweep_part = (int)ival;
  opt_int(PetscOptionsObject, c, "-sweep_parts", "Number of parts the sweep is split into (Slurm array size)", 1, 1, PETSC_MAX_INT, &ival, NULL);
  cfg->sweep_parts = (int)ival;

  PetscOptionsEnd();

  /* ---- consistency between options */
  if (cfg->optimizer == OPT_GD && batch_set) fail(c, "option -batch_size: only used with -optimizer sgd (gd uses the whole training set)");
  if (cfg->lr_schedule != LR_STEP && (step_every_set || gamma_set)) fail(c, "option -lr_step_every/-lr_step_gamma: only used with -lr_schedule step");
  if (cfg->lr_schedule != LR_COSINE && min_set) fail(c, "option -lr_min_factor: only used with -lr_schedule cosine");
  if (cfg->data.kind != DATA_TEACHER && teacher_set) fail(c, "option -teacher_*: only used with -dataset teacher");
  if (cfg->augment && (cfg->data.kind == DATA_TEACHER || cfg->data.kind == DATA_UV))
    fail(c, "option -augment: needs an image dataset (fashion_mnist, mnist or cifar10), not %s", data_kind_name(cfg->data.kind));
  if (!cfg->augment && augment_pad_set) fail(c, "option -augment_pad: only used with -augment true");
  if (cfg->data.kind == DATA_TEACHER && cfg->data.n_train == 0) fail(c, "option -n_train: the teacher-student set needs an explicit size");
  if (cfg->optimizer == OPT_SGD && cfg->data.n_train > 0 && cfg->batch_size > cfg->data.n_train)
    fail(c, "option -batch_size: %d exceeds -n_train %d", cfg->batch_size, cfg->data.n_train);
  if (cfg->warmup_steps > cfg->steps && cfg->steps > 0) fail(c, "option -warmup_steps: %" PRId64 " exceeds -steps %" PRId64, cfg->warmup_steps, cfg->steps);
  if (!dir_set && cfg->data.kind != DATA_FASHION_MNIST && cfg->data.kind != DATA_TEACHER && cfg->data.kind != DATA_UV)
    fail(c, "option -data_dir: required for -dataset %s", data_kind_name(cfg->data.kind));
  if (!cfg->output[0]) fail(c, "option -output: empty file name");
  if (cfg->sweep_part >= cfg->sweep_parts) fail(c, "option -sweep_part: %d must be below -sweep_parts %d", cfg->sweep_part, cfg->sweep_parts);
  if (!cfg->checkpoint_dir[0]) snprintf(cfg->checkpoint_dir, sizeof cfg->checkpoint_dir, "%.4000s.ckpt", cfg->output);
  if (cfg->eta_max_lo >= cfg->eta_max_hi) fail(c, "option -eta_max_lo: %g must be below -eta_max_hi %g", cfg->eta_max_lo, cfg->eta_max_hi);
  if (cfg->model.arch == ARCH_UV && (cfg->n_params != 1 || cfg->params[0] != PARAM_NTK))
    fail(c, "option -params: the uv model is defined in the ntk parameterization only");
  if (cfg->model.arch == ARCH_WRN && (cfg->data.kind == DATA_TEACHER || cfg->data.kind == DATA_UV))
    fail(c, "option -arch: wrn needs an image dataset (fashion_mnist, mnist or cifar10), not %s", data_kind_name(cfg->data.kind));
  if (cfg->model.arch != ARCH_WRN && (wrn_depth_set || bn_set || bn_eps_set))
    fail(c, "option -%s: only used with -arch wrn", wrn_depth_set ? "wrn_depth" : bn_set ? "batch_norm" : "bn_eps");
  if (cfg->model.arch == ARCH_WRN && !cfg->model.batch_norm && bn_eps_set) fail(c, "option -bn_eps: only used with -batch_norm true");
  if (!ntk_batch_set && cfg->data.n_train > 0 && cfg->ntk_batch > cfg->data.n_train) cfg->ntk_batch = cfg->data.n_train;
  if (!hess_batch_set) cfg->hess_batch = cfg->ntk_batch; /* same samples unless the deck says otherwise */
  if (cfg->data.n_train > 0 && cfg->hess_batch > cfg->data.n_train)
    fail(c, "option -hess_batch: %d exceeds -n_train %d", cfg->hess_batch, cfg->data.n_train);
  if (cfg->n_density_steps > 0 && cfg->density_steps[cfg->n_density_steps - 1] > cfg->steps)
    fail(c, "option -density_steps: step %" PRId64 " is beyond -steps %" PRId64, cfg->density_steps[cfg->n_density_steps - 1], cfg->steps);
  if (cfg->data.n_train > 0 && cfg->ntk_batch > cfg->data.n_train)
    fail(c, "option -ntk_batch: %d exceeds -n_train %d", cfg->ntk_batch, cfg->data.n_train);
  if (cfg->n_spectrum_steps > 0 && cfg->spectrum_steps[cfg->n_spectrum_steps - 1] > cfg->steps)
    fail(c, "option -spectrum_steps: step %" PRId64 " is beyond -steps %" PRId64, cfg->spectrum_steps[cfg->n_spectrum_steps - 1], cfg->steps);
  {
    int size;
    MPI_Comm_size(c->comm, &size);
    if (cfg->ranks_per_run > size) fail(c, "option -ranks_per_run: %d exceeds the %d MPI ranks of this job", cfg->ranks_per_run, size);
  }
  return 0;
}

int config_read(Config *cfg, MPI_Comm comm)
{
  Checker c = {comm, 0};
  memset(cfg, 0, sizeof *cfg);
  PetscPushErrorHandler(PetscReturnErrorHandler, NULL);
  PetscErrorCode ierr = read_options(cfg, &c);
  PetscPopErrorHandler();
  if (ierr) fail(&c, "reading the options failed (PETSc error %d)", (int)ierr);
  return c.bad ? 1 : 0;
}

int config_check_unused(MPI_Comm comm)
{
  PetscInt n = 0;
  char **names = NULL, **values = NULL;
  int bad = 0, rank;
  MPI_Comm_rank(comm, &rank);
  if (PetscOptionsLeftGet(NULL, &n, &names, &values)) return 1;
  for (PetscInt i = 0; i < n; i++) {
    if (!bad && rank == 0) {
      fprintf(stderr, "ntkhpc: error: option -%s: unknown option (misspelt, or not used by this deck); -help lists every option\n", names[i]);
      fflush(stderr);
    }
    bad = 1;
  }
  PetscOptionsLeftRestore(NULL, &n, &names, &values);
  return bad;
}

/* ------------------------------------------------------------------ effective deck */

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < *cap - *len) {
      *len += (size_t)n;
      return;
    }
    *cap = 2 * *cap + (size_t)(n > 0 ? n : 256);
    *buf = realloc(*buf, *cap);
  }
}

char *config_deck_text(const Config *cfg)
{
  size_t len = 0, cap = 4096;
  char *b = malloc(cap);
  b[0] = 0;
  const ModelConfig *m = &cfg->model;
  append(&b, &len, &cap, "-arch %s\n-depth %d\n-activation %s\n-bias %s\n-sigma_w %.17g\n-sigma_b %.17g\n-base_width %d\n-mup_zero_readout %s\n",
         arch_name(m->arch), m->depth, act_name(m->act), m->bias ? "true" : "false", m->sigma_w, m->sigma_b, m->base_width,
         m->mup_zero_readout ? "true" : "false");
  if (m->arch == ARCH_WRN) {
    append(&b, &len, &cap, "-wrn_depth %d\n-batch_norm %s\n", m->wrn_depth, m->batch_norm ? "true" : "false");
    if (m->batch_norm) append(&b, &len, &cap, "-bn_eps %.17g\n", m->bn_eps);
  }
  append(&b, &len, &cap, "-widths ");
  for (int i = 0; i < cfg->n_widths; i++) append(&b, &len, &cap, "%s%d", i ? "," : "", cfg->widths[i]);
  append(&b, &len, &cap, "\n-seeds ");
  for (int i = 0; i < cfg->n_seeds; i++) append(&b, &len, &cap, "%s%" PRId64, i ? "," : "", cfg->seeds[i]);
  append(&b, &len, &cap, "\n-params ");
  for (int i = 0; i < cfg->n_params; i++) append(&b, &len, &cap, "%s%s", i ? "," : "", param_name(cfg->params[i]));
  append(&b, &len, &cap, cfg->eta_in_lambda0_units ? "\n-eta_factors " : "\n-etas ");
  for (int i = 0; i < cfg->n_etas; i++) append(&b, &len, &cap, "%s%.17g", i ? "," : "", cfg->etas[i]);
  append(&b, &len, &cap, "\n-ntk_batch %d\n-ntk_variant %s\n-ntk_method %s\n-ntk_nev %d\n-lambda_every %" PRId64 "\n-kernel_distance %s\n-gram_max_rows %d",
         cfg->ntk_batch, cfg->ntk_variant ? "traced" : "full", ntk_method_name(cfg->ntk_method), cfg->ntk_nev, cfg->lambda_every,
         cfg->kernel_distance ? "true" : "false", cfg->gram_max_rows);
  if (cfg->n_spectrum_steps) {
    append(&b, &len, &cap, "\n-spectrum_steps ");
    for (int i = 0; i < cfg->n_spectrum_steps; i++) append(&b, &len, &cap, "%s%" PRId64, i ? "," : "", cfg->spectrum_steps[i]);
  }
  const DataConfig *d = &cfg->data;
  append(&b, &len, &cap, "\n-dataset %s\n-data_dir %s\n-n_train %d\n-n_test %d\n-standardize %s\n-center_targets %s\n",
         data_kind_name(d->kind), d->dir, d->n_train, d->n_test, d->standardize ? "true" : "false", d->center_targets ? "true" : "false");
  if (d->kind == DATA_TEACHER)
    append(&b, &len, &cap, "-teacher_dim %d\n-teacher_width %d\n-teacher_outputs %d\n-teacher_activation %s\n-teacher_seed %" PRIu64 "\n-teacher_noise %.17g\n",
           d->teacher_dim, d->teacher_width, d->teacher_outputs, act_name(d->teacher_act), d->teacher_seed, d->teacher_noise);
  append(&b, &len, &cap, "-optimizer %s\n", optimizer_name(cfg->optimizer));
  if (cfg->optimizer == OPT_SGD) append(&b, &len, &cap, "-batch_size %d\n", cfg->batch_size);
  append(&b, &len, &cap, "-steps %" PRId64 "\n-momentum %.17g\n-weight_decay %.17g\n-lr_schedule %s\n-warmup_steps %" PRId64 "\n",
         cfg->steps, cfg->momentum, cfg->weight_decay, lr_schedule_name(cfg->lr_schedule), cfg->warmup_steps);
  if (cfg->lr_schedule == LR_STEP) append(&b, &len, &cap, "-lr_step_every %" PRId64 "\n-lr_step_gamma %.17g\n", cfg->lr_step_every, cfg->lr_step_gamma);
  if (cfg->lr_schedule == LR_COSINE) append(&b, &len, &cap, "-lr_min_factor %.17g\n", cfg->lr_min_factor);
  append(&b, &len, &cap, "-augment %s\n", cfg->augment ? "true" : "false");
  if (cfg->augment) append(&b, &len, &cap, "-augment_pad %d\n", cfg->augment_pad);
  append(&b, &len, &cap, "-record_every %" PRId64 "\n-test_every %" PRId64 "\n-eval_chunk %d\n-diverge_factor %.17g\n-catapult_factor %.17g\n-catapult_window %" PRId64 "\n",
         cfg->record_every, cfg->test_every, cfg->eval_chunk, cfg->diverge_factor, cfg->catapult_factor, cfg->catapult_window);
  append(&b, &len, &cap, "-hess_batch %d\n-hess_every %" PRId64 "\n-hess_nev %d\n-hess_min_eig %s\n", cfg->hess_batch, cfg->hess_every, cfg->hess_nev,
         cfg->hess_min_eig ? "true" : "false");
  if (cfg->n_density_steps) {
    append(&b, &len, &cap, "-density_steps ");
    for (int i = 0; i < cfg->n_density_steps; i++) append(&b, &len, &cap, "%s%" PRId64, i ? "," : "", cfg->density_steps[i]);
    append(&b, &len, &cap, "\n-trace_probes %d\n-slq_probes %d\n-slq_lanczos %d\n", cfg->trace_probes, cfg->slq_probes, cfg->slq_lanczos);
  }
  if (cfg->eta_max_search)
    append(&b, &len, &cap, "-eta_max_search true\n-eta_max_lo %.17g\n-eta_max_hi %.17g\n-eta_max_tol %.17g\n-eta_max_steps %" PRId64 "\n", cfg->eta_max_lo,
           cfg->eta_max_hi, cfg->eta_max_tol, cfg->eta_max_steps);
  append(&b, &len, &cap, "-ranks_per_run %d\n-output %s\n-flush_seconds %.17g\n-progress_seconds %.17g\n", cfg->ranks_per_run, cfg->output,
         cfg->flush_seconds, cfg->progress_seconds);
  append(&b, &len, &cap, "-sweep_part %d\n-sweep_parts %d\n-checkpoint_dir %s\n-checkpoint_every %" PRId64 "\n-checkpoint_minutes %.17g\n-restart %s\n",
         cfg->sweep_part, cfg->sweep_parts, cfg->checkpoint_dir, cfg->checkpoint_every, cfg->checkpoint_minutes, cfg->restart ? "true" : "false");
  return b;
}
