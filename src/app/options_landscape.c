/* Options of the loss landscapes (docs/landscape.md; options.h describes the table). -theta_every is
 * the theta measurement's own (src/measure/theta.c). None of these is recorded in the effective
 * deck: surfaces are evaluated from a finished sweep and do not change it; the landscape file
 * records its own specification. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "landscape.h"
#include "options.h"
#include "errbuf.h"

static const char *dir_choice(int i) { return landscape_dir_name(i); }

static const OptionDesc opts[] = {
  {.name = "-landscape_steps", .kind = KIND_STRING, .def = "",
   .meaning = "Centres of the surfaces: recorded steps of theta, 'end' or 'peak' (the record nearest the train-loss peak), comma-separated ('' = none)",
   OPTION_FIELD(landscape_steps_text)},
  {.name = "-landscape_runs", .kind = KIND_INT_LIST, .def = NULL, .lo = 0, .hi = 1e9, .flags = OPTION_UNIQUE, .entry = "run",
   .rule = "must be a run index", .meaning = "Runs that get surfaces (none given: every run)", OPTION_LIST(landscape_runs, n_landscape_runs)},
  {.name = "-landscape_dim", .kind = KIND_INT, .def = "2", .lo = 1, .hi = 2, .meaning = "1-D slices or 2-D surfaces", OPTION_FIELD(landscape_dim)},
  {.name = "-landscape_dir", .kind = KIND_CHOICE, .def = "random", .n_choices = LDIR_COUNT, .choice = dir_choice,
   .meaning = "Directions: random (Philox, filter-normalised), pca (top principal components of the recorded trajectory), hessian or ntk "
              "(top eigenvectors of the loss Hessian or of the Gauss-Newton matrix J^T J / N, whose eigenvectors are the NTK's, at the centre, on -landscape_hess_batch samples)",
   OPTION_FIELD(landscape_dir)},
  {.name = "-landscape_seed", .kind = KIND_INT64, .def = "1", .lo = 0, .hi = 9.2e18,
   .meaning = "Philox seed of random directions (stream 'landscape'; recorded in the file)", OPTION_FIELD(landscape_seed)},
  {.name = "-landscape_filter", .kind = KIND_BOOL, .def = "true",
   .meaning = "Filter-normalise random directions (per output unit / output channel, to the centre's norm)", OPTION_FIELD(landscape_filter)},
  {.name = "-landscape_bias", .kind = KIND_BOOL, .def = "false",
   .meaning = "Also perturb one-dimensional tensors (biases, batch norm); by default their direction is zero", OPTION_FIELD(landscape_bias)},
  {.name = "-landscape_tensors", .kind = KIND_STRING, .def = "",
   .meaning = "Random directions only in these tensors, by name (dense1.W,dense1.b; '' = all): a last-layer surface, for example",
   OPTION_FIELD(landscape_tensors)},
  {.name = "-landscape_alpha", .kind = KIND_REAL_LIST, .def = "-1,1,21", .lo = -1e12, .hi = 1e12, .entry = "value", .rule = "is out of range",
   .meaning = "First coordinate: lo,hi,points", OPTION_LIST(landscape_alpha, n_landscape_alpha)},
  {.name = "-landscape_beta", .kind = KIND_REAL_LIST, .def = "-1,1,21", .lo = -1e12, .hi = 1e12, .entry = "value", .rule = "is out of range",
   .meaning = "Second coordinate (2-D): lo,hi,points", OPTION_LIST(landscape_beta, n_landscape_beta)},
  {.name = "-landscape_train_samples", .kind = KIND_INT, .def = "0", .lo = 0, .hi = 1e9,
   .meaning = "Training samples evaluated per grid point: the first n of the subset (0 = all)", OPTION_FIELD(landscape_train_samples)},
  {.name = "-landscape_test_samples", .kind = KIND_INT, .def = "0", .lo = 0, .hi = 1e9,
   .meaning = "Test samples evaluated per grid point: the first n (0 = all)", OPTION_FIELD(landscape_test_samples)},
  {.name = "-landscape_paths", .kind = KIND_STRING, .def = "",
   .meaning = "Straight lines theta_A + t (theta_B - theta_A): pairs RUN[@STEP]:RUN[@STEP], comma-separated (step default: end)",
   OPTION_FIELD(landscape_paths)},
  {.name = "-landscape_path_t", .kind = KIND_REAL_LIST, .def = "-0.25,1.25,31", .lo = -1e6, .hi = 1e6, .entry = "value",
   .rule = "is out of range", .meaning = "Path parameter t: lo,hi,points", OPTION_LIST(landscape_path_t, n_landscape_path_t)},
  {.name = "-landscape_bezier_steps", .kind = KIND_INT, .def = "0", .lo = 0, .hi = 1e8,
   .meaning = "Also a quadratic Bezier curve per path (Garipov et al. 2018), its bend trained by this many gradient steps at a fresh t in [0, 1] each (0 = none)",
   OPTION_FIELD(landscape_bezier_steps)},
  {.name = "-landscape_bezier_lr", .kind = KIND_REAL, .def = "0", .def_shown = "run A's eta", .lo = 0, .hi = 1e12,
   .meaning = "Learning rate of the Bezier bend", OPTION_FIELD(landscape_bezier_lr)},
  {.name = "-landscape_ranks_per_point", .kind = KIND_INT, .def = "1", .lo = 1, .hi = 1e6,
   .meaning = "Ranks evaluating one grid point together (data-parallel; values then depend on this, not on the job's rank count)",
   OPTION_FIELD(landscape_ranks_per_point)},
  {.name = "-landscape_hess_every", .kind = KIND_INT, .def = "0", .lo = 0, .hi = 1e6,
   .meaning = "Also the gradient norm and the top Hessian eigenvalue (on -hess_batch) at every k-th grid point of each axis (0 = never)",
   OPTION_FIELD(landscape_hess_every)},
  {.name = "-landscape_hess_batch", .kind = KIND_INT, .def = "0", .def_shown = "-hess_batch", .lo = 0, .hi = 1e8,
   .meaning = "The Hessian of -landscape_hess_every on the first this many training samples", OPTION_FIELD(landscape_hess_batch)},
  {.name = "-landscape_affine_cache_mb", .kind = KIND_REAL, .def = "512", .lo = 0, .hi = 1e9,
   .meaning = "Per-rank memory (MB) for the first layer's outputs along the directions, precomputed once per slice so a grid point skips "
              "the first layer's GEMM (fc nets without batch norm; 0 = never; too small: the plain forward pass)",
   OPTION_FIELD(landscape_affine_cache_mb)},
  {.name = "-landscape_output", .kind = KIND_STRING, .def = "", .def_shown = "<output stem>.landscape.h5", .flags = OPTION_ALLOC,
   .meaning = "HDF5 file of the surfaces (resumed if it exists with the same specification)", OPTION_FIELD(landscape_output)},
  {.name = "-landscape_from", .kind = KIND_STRING, .def = "", .flags = OPTION_ALLOC,
   .meaning = "Evaluate the surfaces of this finished output of the same deck instead of training", OPTION_FIELD(landscape_from)},
};

/* "0,peak,end" -> centres; 0, or -1 with the bad token in r. */
static void parse_centres(Config *cfg, OptionReader *r)
{
  char buf[sizeof cfg->landscape_steps_text];
  snprintf(buf, sizeof buf, "%s", cfg->landscape_steps_text);
  cfg->n_landscape_centres = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    while (isspace((unsigned char)*tok)) tok++;
    int64_t v;
    char *end;
    if (!strcmp(tok, "end")) v = LANDSCAPE_END;
    else if (!strcmp(tok, "peak")) v = LANDSCAPE_PEAK;
    else {
      long long x = strtoll(tok, &end, 10);
      if (end == tok || *end || x < 0 || x > cfg->steps) {
        options_fail(r, "option -landscape_steps: '%s' is not a step in [0, %lld], 'end' or 'peak'", tok, (long long)cfg->steps);
        return;
      }
      v = x;
    }
    if (cfg->n_landscape_centres == (int)(sizeof cfg->landscape_centres / sizeof *cfg->landscape_centres)) {
      options_fail(r, "option -landscape_steps: at most %d centres", cfg->n_landscape_centres);
      return;
    }
    cfg->landscape_centres[cfg->n_landscape_centres++] = v;
  }
}

static void check_grid(OptionReader *r, const char *name, int n, const double *g)
{
  if (n != 3) options_fail(r, "option %s: expected lo,hi,points (3 values), got %d", name, n);
  else if (!(g[2] >= 1 && g[2] <= 1e6 && g[2] == (double)(int64_t)g[2])) options_fail(r, "option %s: points %g must be an integer in [1, 1e6]", name, g[2]);
  else if (g[2] > 1 && !(g[1] > g[0])) options_fail(r, "option %s: hi %g must exceed lo %g", name, g[1], g[0]);
}

static void check(Config *cfg, OptionReader *r)
{
  parse_centres(cfg, r);
  check_grid(r, "-landscape_alpha", cfg->n_landscape_alpha, cfg->landscape_alpha);
  if (cfg->landscape_dim == 2) check_grid(r, "-landscape_beta", cfg->n_landscape_beta, cfg->landscape_beta);
  check_grid(r, "-landscape_path_t", cfg->n_landscape_path_t, cfg->landscape_path_t);
  char buf[sizeof cfg->landscape_paths];
  snprintf(buf, sizeof buf, "%s", cfg->landscape_paths);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    int ra, rb;
    int64_t sa, sb;
    if (!colon) {
      options_fail(r, "option -landscape_paths: '%s' is not RUN[@STEP]:RUN[@STEP]", tok);
      break;
    }
    *colon = 0;
    if (landscape_parse_endpoint(tok, &ra, &sa) || landscape_parse_endpoint(colon + 1, &rb, &sb)) {
      options_fail(r, "option -landscape_paths: '%s:%s' is not RUN[@STEP]:RUN[@STEP]", tok, colon + 1);
      break;
    }
  }
  const bool on = cfg->n_landscape_centres > 0 || cfg->landscape_paths[0];
  if (!cfg->landscape_from || !cfg->landscape_output || !cfg->output) return; /* out of memory: reported */
  if ((on || cfg->landscape_from[0]) && cfg->theta_every <= 0)
    options_fail(r, "option -landscape_steps: surfaces and paths need theta recorded: give -theta_every");
  if (cfg->landscape_from[0] && !on) options_fail(r, "option -landscape_from: no -landscape_steps or -landscape_paths to evaluate");
  if (!cfg->landscape_output[0] && on) {
    const char *out = cfg->output, *dot = strrchr(out, '.');
    const int stem = dot && dot > strrchr(out, '/') ? (int)(dot - out) : (int)strlen(out);
    char *path = str_printf("%.*s.landscape.h5", stem, out);
    if (!path) options_fail(r, "option -landscape_output: out of memory");
    else free(cfg->landscape_output), cfg->landscape_output = path;
  }
}

const OptionModule options_landscape = {"Loss landscapes", "surfaces, trajectory projections and paths of a finished sweep (docs/landscape.md)",
                                        opts, sizeof opts / sizeof *opts, check, NULL, NULL};
