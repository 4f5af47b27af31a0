/* The generic side of ntkhpc's options (options.h): the reader, the effective-deck writer and the
 * -help printer, driven by the modules' descriptor tables (options_<module>.c).
 *
 * Values are read with PetscOptionsGet* outside any PetscOptionsBegin block: PETSc then neither
 * lists our options in its own help (with "(None)" for a manual page, and whatever the output
 * variable held as the default) nor prints a trace for a bad value. A given scalar and a default
 * go through the same PETSc parser; a given list through PETSc's list parser (which knows ranges
 * such as 0-4), a default list through the same per-entry parsers. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <petscsys.h>
#include "measure.h"
#include "options.h"
#include "petsc_compat.h"

static const OptionModule *const app_modules[] = {&options_model, &options_data,    &options_training, &options_sweep,
                                                  &options_ntk,   &options_hessian, &options_output,   &options_checkpoint,
                                                  &options_landscape};
enum { N_APP_MODULES = sizeof app_modules / sizeof *app_modules, MAX_MODULES = N_APP_MODULES + MEASURE_MAX, MAX_OPTIONS = 256, MAX_CHOICES = 16 };

/* Every table in reading and -help order: each app module, then the registered measurements'
 * tables under its heading; measurements with a heading of their own last. Built on first use,
 * after any measure_register(). */
static const OptionModule *modules[MAX_MODULES];
static int n_modules;

static void build_module_list(void)
{
  static OptionModule from_measurements[MEASURE_MAX];
  static bool placed[MEASURE_MAX];
  if (n_modules) return;
  const int nm = measure_count();
  for (int i = 0; i < nm; i++) {
    const MeasurementClass *c = measure_get(i);
    from_measurements[i] = (OptionModule){c->option_heading ? c->option_heading : c->name, NULL, c->options, c->n_options, NULL, NULL, NULL};
  }
  for (int m = 0; m < N_APP_MODULES; m++) {
    modules[n_modules++] = app_modules[m];
    for (int i = 0; i < nm; i++)
      if (!placed[i] && from_measurements[i].n_opts && strcmp(from_measurements[i].heading, app_modules[m]->heading) == 0)
        modules[n_modules++] = &from_measurements[i], placed[i] = true;
  }
  for (int i = 0; i < nm; i++)
    if (!placed[i] && from_measurements[i].n_opts) modules[n_modules++] = &from_measurements[i], placed[i] = true;
}

/* The order of the effective deck. It is stored in every output and checkpoint and compared byte
 * for byte on restart, so it never changes; an option that is not listed (-overwrite, -quiet, the
 * solvers' tuning) is not recorded. Each option's in_deck says when it is. */
static const char *const deck_order[] = {
  "-arch", "-depth", "-activation", "-bias", "-sigma_w", "-sigma_b", "-base_width", "-mup_zero_readout", "-mup_limit", "-abc_input",
  "-abc_hidden", "-abc_output", "-abc_bias", "-wrn_depth",
  "-batch_norm", "-bn_eps", "-widths", "-seeds", "-params", "-etas", "-eta_factors", "-ntk_batch", "-ntk_variant",
  "-ntk_method", "-ntk_nev", "-ntk_weighting", "-lambda_every", "-lambda_dense_steps", "-kernel_distance", "-gram_max_rows",
  "-spectrum_steps", "-features_every", "-dataset",
  "-data_dir", "-n_train", "-n_test", "-standardize", "-center_targets", "-teacher_dim", "-teacher_width",
  "-teacher_outputs", "-teacher_activation", "-teacher_seed", "-teacher_noise", "-optimizer", "-batch_size", "-steps",
  "-momentum", "-weight_decay", "-lr_schedule", "-warmup_steps", "-lr_step_every", "-lr_step_gamma", "-lr_min_factor",
  "-augment", "-augment_pad", "-record_every", "-test_every", "-outputs_every", "-outputs_batch", "-eval_chunk", "-diverge_factor", "-catapult_factor",
  "-catapult_window", "-hess_batch", "-hess_every", "-hess_nev", "-hess_min_eig", "-density_steps", "-trace_probes",
  "-slq_probes", "-slq_lanczos", "-eta_max_search", "-eta_max_lo", "-eta_max_hi", "-eta_max_tol", "-eta_max_steps",
  "-ranks_per_run", "-output", "-flush_seconds", "-progress_seconds", "-sweep_part", "-sweep_parts", "-checkpoint_dir",
  "-checkpoint_every", "-checkpoint_minutes", "-restart",
  "-linearized", "-linearized_every", "-ntk_analytic",
  "-kernel_regression", "-kernel_net", "-kernel_tile", "-kernel_prior",
  "-loss", "-fc_batch_norm", "-bn_no_affine", "-lr_exp_factor", "-onecycle_pct", "-onecycle_div", "-onecycle_final_div", "-freeze",
  "-momentum_init", "-align_every", "-loss_peak", "-scale_inv_every",
  "-theta_every", "-wrn_residual", "-theta_dense_steps",
  "-grad_overlap", "-grad_bucket_mb", "-grad_sum", "-grad_node_ranks", "-data_shared"};

/* ------------------------------------------------------------------ errors and lookups */

struct OptionReader {
  MPI_Comm comm;
  int bad;                  /* errors so far; only the first is printed */
  bool given[MAX_OPTIONS];  /* per option, in table order: set in the deck or on the command line */
};

void options_fail(OptionReader *r, const char *fmt, ...)
{
  int rank;
  MPI_Comm_rank(r->comm, &rank);
  if (!r->bad && rank == 0) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ntkhpc: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    va_end(ap);
  }
  r->bad++;
}

MPI_Comm options_comm(const OptionReader *r) { return r->comm; }

/* The option's index in table order (module by module), or -1. */
static int option_index(const char *name, const OptionDesc **out)
{
  int k = 0;
  build_module_list();
  for (int m = 0; m < n_modules; m++)
    for (int i = 0; i < modules[m]->n_opts; i++, k++)
      if (strcmp(modules[m]->opts[i].name, name) == 0) {
        if (out) *out = &modules[m]->opts[i];
        return k;
      }
  return -1;
}

bool options_given(const OptionReader *r, const char *name)
{
  const int k = option_index(name, NULL);
  return k >= 0 && r->given[k];
}

/* The choices' names, for PetscEListFind and messages. */
static int choice_names(const OptionDesc *d, const char *names[MAX_CHOICES])
{
  for (int i = 0; i < d->n_choices && i < MAX_CHOICES; i++) names[i] = d->choice(i);
  return d->n_choices < MAX_CHOICES ? d->n_choices : MAX_CHOICES;
}

/* "a, b or c" (last_sep " or ") or "a, b, c" (last_sep ", "). */
static const char *choice_text(const OptionDesc *d, const char *last_sep, char *buf, size_t len)
{
  buf[0] = 0;
  for (int i = 0; i < d->n_choices; i++) {
    const char *sep = i == 0 ? "" : i + 1 == d->n_choices ? last_sep : ", ";
    snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", sep, d->choice(i));
  }
  return buf;
}

static size_t entry_size(OptionKind k)
{
  switch (k) {
  case KIND_INT: case KIND_CHOICE: case KIND_INT_LIST: case KIND_CHOICE_LIST: return sizeof(int);
  case KIND_INT64: case KIND_INT64_LIST: return sizeof(int64_t);
  case KIND_REAL: case KIND_REAL_LIST: return sizeof(double);
  case KIND_BOOL: return sizeof(bool);
  case KIND_STRING: return 1;
  }
  return 1;
}

static bool is_list(OptionKind k) { return k >= KIND_INT_LIST; }

/* ------------------------------------------------------------------ reading one value */

/* A number's range check; ints are compared exactly as doubles (|v| < 2^53). */
static bool in_range(const OptionDesc *d, double v)
{
  return isfinite(v) && v >= d->lo && v <= d->hi && !((d->flags & OPTION_OPEN_LO) && v == d->lo);
}

/* Parses one scalar from text (the given value or the default): 0, or 1 when it is not of the kind.
 * Empty text keeps PETSc's meaning: a bool given alone is true, a choice is unknown. */
static int parse_scalar(const OptionDesc *d, const char *text, double *num, int *choice, bool *b)
{
  PetscInt i;
  PetscReal x;
  PetscBool pb, found;
  const char *names[MAX_CHOICES];
  switch (d->kind) {
  case KIND_INT:
  case KIND_INT64:
    if (PetscOptionsStringToInt(text, &i)) return 1;
    *num = (double)i;
    return 0;
  case KIND_REAL:
    if (PetscOptionsStringToReal(text, &x)) return 1;
    *num = x;
    return 0;
  case KIND_BOOL:
    if (!text[0]) pb = PETSC_TRUE;
    else if (PetscOptionsStringToBool(text, &pb)) return 1;
    *b = pb == PETSC_TRUE;
    return 0;
  case KIND_CHOICE:
    /* Any case, as PETSc's own lists: a stored value is written back by its name. An option that
     * its module reads itself (no field) must be spelt as the module compares it. */
    if (!d->size) {
      for (int c = 0; c < d->n_choices; c++)
        if (strcmp(text, d->choice(c)) == 0) return *choice = c, 0;
      return 1;
    }
    if (PetscEListFind(choice_names(d, names), names, text, &i, &found) || !found) return 1;
    *choice = (int)i;
    return 0;
  default: return 1;
  }
}

/* An integer as typed: 0 and *v when text is a plain decimal integer that fits a long long, 1 when
 * it is another form PETSc accepts (left to PETSc), 2 when it does not fit (it would wrap). */
static int exact_integer(const char *text, long long *v)
{
  const char *p = text + (text[0] == '+' || text[0] == '-');
  if (!*p || strspn(p, "0123456789") != strlen(p)) return 1;
  errno = 0;
  *v = strtoll(text, NULL, 10);
  return errno == ERANGE ? 2 : 0;
}

/* An integer entry (or scalar) as typed, within the range of its field and of PETSc's int: 0, or 1
 * (reported) when it would wrap around. */
static int check_integer_text(OptionReader *r, const OptionDesc *d, const char *text, const char *noun)
{
  long long v;
  const int e = exact_integer(text, &v);
  if (e == 1) return 0;
  if (e == 2 || v < (long long)PETSC_MIN_INT || v > (long long)PETSC_MAX_INT) { /* in range: the caller's own check */
    options_fail(r, "option %s: %s%s%s is outside [%.0f, %.0f]", d->name, noun ? noun : "", noun ? " " : "", text, d->lo,
                 d->hi < PETSC_MAX_INT ? d->hi : (double)PETSC_MAX_INT);
    return 1;
  }
  return 0;
}

static void put(Config *cfg, const OptionDesc *d, size_t offset, const void *v, size_t n)
{
  if (d->size) memcpy((char *)cfg + d->at + offset, v, n);
}

/* The PETSc calls below fail on what the user wrote: the reader reports that in one line itself. */
static void read_scalar(OptionReader *r, const OptionDesc *d, Config *cfg, bool *given)
{
  const char *raw = NULL; /* PETSc's own copy, whole: no buffer that could cut a long value */
  PetscBool set = PETSC_FALSE;
  if (PetscOptionsFindPair(NULL, NULL, d->name, &raw, &set)) set = PETSC_FALSE;
  if (!raw) raw = "";
  /* A number given with no value keeps the default, as PETSc's getters have it. */
  if (set && !raw[0] && (d->kind == KIND_INT || d->kind == KIND_INT64 || d->kind == KIND_REAL)) set = PETSC_FALSE;
  *given = set;
  if (d->kind == KIND_STRING) {
    const char *s = set ? raw : d->def ? d->def : "";
    if (d->flags & OPTION_ALLOC) {
      char *copy = strdup(s);
      if (!copy) options_fail(r, "option %s: out of memory for %zu characters", d->name, strlen(s));
      else put(cfg, d, 0, &copy, sizeof copy);
    } else if (strlen(s) >= d->size) options_fail(r, "option %s: %zu characters, longer than the %zu allowed", d->name, strlen(s), d->size - 1);
    else put(cfg, d, 0, s, strlen(s) + 1);
    return;
  }
  if (!set && !d->def) return; /* no default: the field stays 0 and the module derives it */
  const char *text = set ? raw : d->def;
  if ((d->flags & OPTION_AUTO) && d->kind == KIND_INT && strcasecmp(text, "auto") == 0) {
    const int zero = 0; /* the module decides */
    put(cfg, d, 0, &zero, sizeof zero);
    return;
  }
  double num = 0;
  int choice = 0;
  bool b = false;
  char buf[512];
  if (parse_scalar(d, text, &num, &choice, &b)) {
    if (d->kind == KIND_CHOICE) options_fail(r, "option %s: unknown value '%s' (%s)", d->name, text, choice_text(d, " or ", buf, sizeof buf));
    else if (d->kind == KIND_BOOL) options_fail(r, "option %s: expected true or false, got '%s'", d->name, text);
    else options_fail(r, "option %s: expected %s, got '%s'", d->name,
                      d->kind == KIND_REAL ? "a number" : (d->flags & OPTION_AUTO) ? "an integer or auto" : "an integer", text);
    return;
  }
  switch (d->kind) {
  case KIND_INT: case KIND_INT64:
    if (check_integer_text(r, d, text, NULL)) break;
    if (!in_range(d, num)) options_fail(r, "option %s: %.0f is outside [%.0f, %.0f]", d->name, num, d->lo, d->hi);
    if (d->kind == KIND_INT) {
      const int v = (int)num;
      put(cfg, d, 0, &v, sizeof v);
    } else {
      const int64_t v = (int64_t)num;
      put(cfg, d, 0, &v, sizeof v);
    }
    break;
  case KIND_REAL:
    if (!in_range(d, num)) options_fail(r, "option %s: %g is outside %s%g, %g]", d->name, num, d->flags & OPTION_OPEN_LO ? "(" : "[", d->lo, d->hi);
    put(cfg, d, 0, &num, sizeof num);
    break;
  case KIND_BOOL: put(cfg, d, 0, &b, sizeof b); break;
  case KIND_CHOICE: put(cfg, d, 0, &choice, sizeof choice); break;
  default: break;
  }
}

/* A list's entries: read by PETSc when given, else split from the default text. n_out is the
 * number of entries found, at most cap + 1 (one more than fits tells that there are too many). */
static int list_entries(const OptionDesc *d, int cap, PetscInt *ints, PetscReal *reals, char **strs, PetscInt *n_out,
                        PetscBool *set)
{
  PetscInt n = cap + 1;
  *set = PETSC_FALSE;
  PetscErrorCode ierr = 0;
  if (d->kind == KIND_REAL_LIST) ierr = PetscOptionsGetRealArray(NULL, NULL, d->name, reals, &n, set);
  else if (d->kind == KIND_CHOICE_LIST) ierr = PetscOptionsGetStringArray(NULL, NULL, d->name, strs, &n, set);
  else ierr = PetscOptionsGetIntArray(NULL, NULL, d->name, ints, &n, set);
  if (ierr) return 1;
  if (*set) {
    *n_out = n;
    return 0;
  }
  n = 0;
  char text[256];
  snprintf(text, sizeof text, "%s", d->def ? d->def : "");
  for (char *save = NULL, *tok = strtok_r(text, ",", &save); tok && n <= cap; tok = strtok_r(NULL, ",", &save), n++) {
    if (d->kind == KIND_REAL_LIST) ierr = PetscOptionsStringToReal(tok, &reals[n]);
    else if (d->kind == KIND_CHOICE_LIST) ierr = PetscStrallocpy(tok, &strs[n]);
    else ierr = PetscOptionsStringToInt(tok, &ints[n]);
    if (ierr) return 1;
  }
  *n_out = n;
  return 0;
}

/* The list as typed, before PETSc's parser (which skips empty entries and wraps large integers):
 * 0, or 1 (reported) for an empty entry, more entries than fit, or an integer that would wrap. */
static int check_list_text(OptionReader *r, const OptionDesc *d, int cap)
{
  const char *raw = NULL;
  PetscBool set = PETSC_FALSE;
  if (PetscOptionsFindPair(NULL, NULL, d->name, &raw, &set) || !set || !raw || !raw[0]) return 0;
  int n = 0;
  for (const char *p = raw;; n++) {
    const size_t l = strcspn(p, ",");
    char item[64];
    size_t a = 0, b = l;
    while (a < b && (p[a] == ' ' || p[a] == '\t')) a++;
    while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t')) b--;
    if (a == b) {
      options_fail(r, "option %s: empty entry %d in '%.200s'", d->name, n + 1, raw);
      return 1;
    }
    if ((d->kind == KIND_INT_LIST || d->kind == KIND_INT64_LIST) && b - a < sizeof item) {
      memcpy(item, p + a, b - a);
      item[b - a] = 0;
      char *dash = strchr(item + 1, '-'); /* PETSc's range "lo-hi" */
      if (dash) *dash = 0;
      if (check_integer_text(r, d, item, d->entry) || (dash && check_integer_text(r, d, dash + 1, d->entry))) return 1;
    } else if ((d->kind == KIND_INT_LIST || d->kind == KIND_INT64_LIST) && strspn(p + a, "+-0123456789") >= b - a) {
      options_fail(r, "option %s: %s %.*s... is outside [%.0f, %.0f]", d->name, d->entry, 30, p + a, d->lo, d->hi);
      return 1;
    }
    if (!p[l]) break;
    p += l + 1;
  }
  if (n + 1 > cap) {
    options_fail(r, "option %s: at most %d entries, %d given", d->name, cap, n + 1);
    return 1;
  }
  return 0;
}

static void read_list(OptionReader *r, const OptionDesc *d, Config *cfg, bool *given)
{
  const int cap = (int)(d->size / entry_size(d->kind));
  PetscInt ints[CONFIG_MAX_LIST + 1], n = 0;
  PetscReal reals[CONFIG_MAX_LIST + 1];
  char *strs[CONFIG_MAX_LIST + 1] = {NULL}, buf[512];
  PetscBool set, named = PETSC_FALSE;
  const char *what = d->kind == KIND_REAL_LIST ? "real numbers" : "integers";
  if (check_list_text(r, d, cap)) goto done;
  if (list_entries(d, cap, ints, reals, strs, &n, &set)) {
    if (d->kind == KIND_CHOICE_LIST) options_fail(r, "option %s: cannot read the list", d->name);
    else options_fail(r, "option %s: expected a comma-separated list of %s", d->name, what);
    goto done;
  }
  /* PETSc reports a list given with no value ("-widths" alone, or "") as not set. */
  if (PetscOptionsHasName(NULL, NULL, d->name, &named)) named = PETSC_FALSE;
  *given = set;
  if ((d->flags & OPTION_NONEMPTY) && named && (!set || n == 0)) {
    options_fail(r, "option %s: the list is empty", d->name);
    goto done;
  }
  if (!set && !d->def && !named) goto done; /* no default: the field is left alone */
  if (n > cap) {
    if (d->kind == KIND_CHOICE_LIST) options_fail(r, "option %s: at most %d entries (%s), each once", d->name, cap, choice_text(d, ", ", buf, sizeof buf));
    else options_fail(r, "option %s: at most %d entries", d->name, cap);
    goto done;
  }
  for (PetscInt i = 0; i < n; i++) {
    if (d->kind == KIND_CHOICE_LIST) {
      int v = -1;
      for (int c = 0; c < d->n_choices; c++)
        if (strcmp(strs[i], d->choice(c)) == 0) v = c;
      if (v < 0) {
        options_fail(r, "option %s: unknown %s '%s' (choose from %s)", d->name, d->entry, strs[i], choice_text(d, ", ", buf, sizeof buf));
        continue;
      }
      put(cfg, d, (size_t)i * sizeof v, &v, sizeof v);
      for (PetscInt j = 0; j < i && (d->flags & OPTION_UNIQUE); j++)
        if (strcmp(strs[j], strs[i]) == 0) options_fail(r, "option %s: '%s' is listed twice", d->name, strs[i]);
      continue;
    }
    const double v = d->kind == KIND_REAL_LIST ? reals[i] : (double)ints[i];
    if (!in_range(d, v)) {
      if (d->kind == KIND_REAL_LIST) options_fail(r, "option %s: %s %g %s", d->name, d->entry, v, d->rule);
      else options_fail(r, "option %s: %s %.0f %s", d->name, d->entry, v, d->rule);
    }
    if (d->flags & OPTION_INCREASING && i > 0 && v <= (d->kind == KIND_REAL_LIST ? reals[i - 1] : (double)ints[i - 1]))
      options_fail(r, "option %s: %ss must increase", d->name, d->entry);
    for (PetscInt j = 0; j < i && (d->flags & OPTION_UNIQUE); j++)
      if ((d->kind == KIND_REAL_LIST ? reals[j] : (double)ints[j]) == v) {
        if (d->kind == KIND_REAL_LIST) options_fail(r, "option %s: %g is listed twice", d->name, v);
        else options_fail(r, "option %s: %.0f is listed twice", d->name, v);
      }
    if (d->kind == KIND_REAL_LIST) put(cfg, d, (size_t)i * sizeof(double), &v, sizeof v);
    else if (d->kind == KIND_INT64_LIST) {
      const int64_t e = ints[i];
      put(cfg, d, (size_t)i * sizeof e, &e, sizeof e);
    } else {
      const int e = (int)ints[i];
      put(cfg, d, (size_t)i * sizeof e, &e, sizeof e);
    }
  }
  if (d->size) {
    const int count = (int)n;
    memcpy((char *)cfg + d->count_at, &count, sizeof count);
  }
done:
  for (PetscInt i = 0; i <= cap && i < CONFIG_MAX_LIST + 1; i++) PetscCallVoid(PetscFree(strs[i]));
}

/* The tables' own consistency, checked on every read (cheap): a mistake in a table is a bug, found
 * by the first run rather than by a wrong value. */
static void check_tables(OptionReader *r)
{
  int total = 0;
  build_module_list();
  for (int m = 0; m < n_modules; m++)
    for (int i = 0; i < modules[m]->n_opts; i++, total++) {
      const OptionDesc *d = &modules[m]->opts[i];
      const size_t es = entry_size(d->kind);
      if (option_index(d->name, NULL) != total) options_fail(r, "internal: option %s: described twice", d->name);
      if ((d->flags & OPTION_ALLOC) && (d->kind != KIND_STRING || d->size != sizeof(char *)))
        options_fail(r, "internal: option %s: an allocated string needs a char * field", d->name);
      if (is_list(d->kind) ? !d->size || d->size % es || d->size / es > CONFIG_MAX_LIST : d->size && d->kind != KIND_STRING && d->size != es)
        options_fail(r, "internal: option %s: its Config field does not fit its kind", d->name);
      if ((d->kind == KIND_CHOICE || d->kind == KIND_CHOICE_LIST) && (!d->choice || d->n_choices < 1 || d->n_choices > MAX_CHOICES))
        options_fail(r, "internal: option %s: no choices", d->name);
    }
  if (total > MAX_OPTIONS) options_fail(r, "internal: more than %d options", MAX_OPTIONS);
  for (size_t i = 0; i < sizeof deck_order / sizeof *deck_order; i++) {
    const OptionDesc *d = NULL;
    if (option_index(deck_order[i], &d) < 0 || !d->size) options_fail(r, "internal: option %s: in the deck but not in a table", deck_order[i]);
  }
}

static void read_all(Config *cfg, OptionReader *r)
{
  int k = 0;
  check_tables(r);
  if (r->bad) return;
  for (int m = 0; m < n_modules; m++)
    for (int i = 0; i < modules[m]->n_opts; i++, k++) {
      const OptionDesc *d = &modules[m]->opts[i];
      if (is_list(d->kind)) read_list(r, d, cfg, &r->given[k]);
      else read_scalar(r, d, cfg, &r->given[k]);
    }
  for (int m = 0; m < n_modules; m++)
    if (modules[m]->check) modules[m]->check(cfg, r);
  char err[512];
  if (measure_set_validate(cfg, err, sizeof err)) options_fail(r, "%s", err);
}

void config_free(Config *cfg)
{
  build_module_list();
  for (int m = 0; m < n_modules; m++)
    for (int i = 0; i < modules[m]->n_opts; i++) {
      const OptionDesc *d = &modules[m]->opts[i];
      if (d->kind != KIND_STRING || !(d->flags & OPTION_ALLOC) || !d->size) continue;
      char *s;
      memcpy(&s, (char *)cfg + d->at, sizeof s);
      free(s);
      s = NULL;
      memcpy((char *)cfg + d->at, &s, sizeof s);
    }
}

int config_read(Config *cfg, MPI_Comm comm)
{
  OptionReader r = {.comm = comm};
  memset(cfg, 0, sizeof *cfg); /* the deck text and checkpoints compare whole fields: no stale bytes */
  /* A parse error is ours to report in one line: PETSc's handler would print a trace. */
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  read_all(cfg, &r);
  PetscCall(PetscPopErrorHandler());
  return r.bad != 0;
}

/* Keeps PETSc's first error message, to name the problem in our one line. */
static PetscErrorCode keep_message(MPI_Comm comm, int line, const char *func, const char *file, PetscErrorCode n, PetscErrorType p,
                                   const char *mess, void *ctx)
{
  char *msg = ctx;
  if (!msg[0] && mess) snprintf(msg, 512, "%s", mess);
  return n;
}

int options_register_solvers(MPI_Comm comm)
{
  OptionReader r = {.comm = comm};
  build_module_list();
  for (int m = 0; m < n_modules && !r.bad; m++) {
    if (!modules[m]->register_solvers) continue;
    char msg[512] = "";
    PetscCall(PetscPushErrorHandler(keep_message, msg));
    const PetscErrorCode ierr = modules[m]->register_solvers(comm); /* an error is the user's: reported below */
    PetscCall(PetscPopErrorHandler());
    for (char *c = msg; *c; c++)
      if (*c == '\n') *c = ' ';
    if (ierr) options_fail(&r, "option %s: %s", modules[m]->solver_options, msg[0] ? msg : "cannot be read");
  }
  return r.bad != 0;
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
  PetscCall(PetscOptionsLeftRestore(NULL, &n, &names, &values));
  return bad;
}

/* ------------------------------------------------------------------ effective deck */

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
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

/* One value of the field as the deck writes it: ints plain, reals with 17 digits (exact). */
static void append_value(char **b, size_t *len, size_t *cap, const OptionDesc *d, const char *p)
{
  int i;
  int64_t l;
  double x;
  bool t;
  switch (d->kind) {
  case KIND_INT: case KIND_INT_LIST:
    memcpy(&i, p, sizeof i);
    if (d->kind == KIND_INT && (d->flags & OPTION_AUTO) && i == 0) append(b, len, cap, "auto");
    else append(b, len, cap, "%d", i);
    break;
  case KIND_INT64: case KIND_INT64_LIST: memcpy(&l, p, sizeof l); append(b, len, cap, "%" PRId64, l); break;
  case KIND_REAL: case KIND_REAL_LIST: memcpy(&x, p, sizeof x); append(b, len, cap, "%.17g", x); break;
  case KIND_BOOL: memcpy(&t, p, sizeof t); append(b, len, cap, "%s", t ? "true" : "false"); break;
  case KIND_CHOICE: case KIND_CHOICE_LIST: memcpy(&i, p, sizeof i); append(b, len, cap, "%s", d->choice(i)); break;
  case KIND_STRING: {
    const char *s = p;
    if (d->flags & OPTION_ALLOC) memcpy(&s, p, sizeof s);
    append(b, len, cap, "%s", s ? s : "");
    break;
  }
  }
}

char *config_deck_text(const Config *cfg)
{
  size_t len = 0, cap = 4096;
  char *b = malloc(cap);
  b[0] = 0;
  for (size_t k = 0; k < sizeof deck_order / sizeof *deck_order; k++) {
    const OptionDesc *d = NULL;
    if (option_index(deck_order[k], &d) < 0 || !d->size || (d->in_deck && !d->in_deck(cfg))) continue;
    const char *p = (const char *)cfg + d->at;
    append(&b, &len, &cap, "%s ", d->name);
    if (is_list(d->kind)) {
      int n;
      memcpy(&n, (const char *)cfg + d->count_at, sizeof n);
      for (int i = 0; i < n; i++) {
        if (i) append(&b, &len, &cap, ",");
        append_value(&b, &len, &cap, d, p + (size_t)i * entry_size(d->kind));
      }
    } else {
      append_value(&b, &len, &cap, d, p);
    }
    append(&b, &len, &cap, "\n");
  }
  return b;
}

/* ------------------------------------------------------------------ -help */

/* "<int >= 0>", "<real in (0, 1]>", "<fc|uv|wrn>", "<int,...>": what a value may be. */
static const char *value_form(const OptionDesc *d, char *buf, size_t len)
{
  char range[128] = "";
  const bool open = d->flags & OPTION_OPEN_LO;
  switch (d->kind) {
  case KIND_INT: case KIND_INT64:
    if (d->hi >= PETSC_MAX_INT) snprintf(range, sizeof range, " >= %.0f", d->lo);
    else snprintf(range, sizeof range, " in [%.0f, %.0f]", d->lo, d->hi);
    snprintf(buf, len, "<int%s%s>", range, (d->flags & OPTION_AUTO) ? "|auto" : "");
    break;
  case KIND_REAL:
    if (d->hi >= 1e300) snprintf(range, sizeof range, " %s %g", open ? ">" : ">=", d->lo);
    else snprintf(range, sizeof range, " in %s%g, %g]", open ? "(" : "[", d->lo, d->hi);
    snprintf(buf, len, "<real%s>", range);
    break;
  case KIND_BOOL: snprintf(buf, len, "<true|false>"); break;
  case KIND_STRING: snprintf(buf, len, "<text>"); break;
  case KIND_INT_LIST: case KIND_INT64_LIST: snprintf(buf, len, "<int,...>"); break;
  case KIND_REAL_LIST: snprintf(buf, len, "<real,...>"); break;
  case KIND_CHOICE: case KIND_CHOICE_LIST:
    snprintf(buf, len, "<");
    for (int i = 0; i < d->n_choices; i++) snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "|" : "", d->choice(i));
    snprintf(buf + strlen(buf), len - strlen(buf), "%s>", d->kind == KIND_CHOICE_LIST ? ",..." : "");
    break;
  }
  return buf;
}

void options_print_help(FILE *f)
{
  fprintf(f, "ntkhpc %s: trains sweeps of wide networks (widths x seeds x parameterizations x learning rates)\n"
             "and records their trajectories in one parallel HDF5 file.\n\n"
             "Usage: mpirun -n R ntkhpc deck.in [-key value ...]   (deck: a PETSc options file, one -key value a line;\n"
             "       the command line overrides it)\n"
             "       ntkhpc -version | -help [petsc|all]   (petsc, all: PETSc's and the eigensolvers' options too)\n\n"
             "Options of ntkhpc, with their defaults:\n",
          NTK_VERSION);
  char form[512];
  build_module_list();
  for (int m = 0; m < n_modules; m++) {
    const OptionModule *mod = modules[m];
    if (m == 0 || strcmp(mod->heading, modules[m - 1]->heading) != 0) fprintf(f, "\n%s:\n", mod->heading);
    if (mod->note) fprintf(f, "  (%s)\n", mod->note);
    for (int i = 0; i < mod->n_opts; i++) {
      const OptionDesc *d = &mod->opts[i];
      if (d->flags & OPTION_HIDDEN) continue;
      const char *def = d->def_shown ? d->def_shown : d->def && d->def[0] ? d->def : "none";
      fprintf(f, "  %s %s: %s (default: %s)\n", d->name, value_form(d, form, sizeof form), d->meaning, def);
    }
  }
  fprintf(f, "\n");
  fflush(f);
}
