/* Unit tests for layers.c: activations, the dense layer (optimised vs *_ref, finite differences,
 * adjoint identity, accumulate/overwrite semantics), mse_loss and count_correct.
 *
 * The dense checks run on the composite g(x, W, b) = phi(w_mult x W^T + b_mult b) for every
 * activation, with multipliers mimicking the parameterizations (ntk: sigma_w/sqrt(fan_in), sigma_b;
 * sp/mup: 1, 1), with and without bias, on small shapes. */
#include <stdint.h>
#include <string.h>

#include "layers.h"
#include "testutil.h"

/* Test-local generator (splitmix64), independent of rng.c. */
static uint64_t prng_state = 0x9e3779b97f4a7c15ull;
static double prng_uniform_pm1(void) { /* uniform in [-1, 1) */
  uint64_t z = (prng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1p-52 - 1.0;
}
static void fill_random(double *x, size_t n, double scale) {
  for (size_t i = 0; i < n; i++) x[i] = scale * prng_uniform_pm1();
}
static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}
static double norm2(const double *a, size_t n) { return sqrt(dot(a, a, n)); }
static void fill_nan(double *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static const double FD_STEP = 1e-6;
static const double FD_TOL = 1e-7;
static const double REF_TOL = 1e-13;
static const double ADJ_TOL = 1e-12;

/* ------------------------------------------------------------------ activations */

static void test_activation_names(void) {
  for (int a = 0; a < ACT_COUNT; a++)
    CHECK(act_from_name(act_name((Activation)a)) == a, "name round trip for %d", a);
  CHECK(strcmp(act_name(ACT_RELU), "relu") == 0 && strcmp(act_name(ACT_ERF), "erf") == 0 &&
            strcmp(act_name(ACT_TANH), "tanh") == 0 && strcmp(act_name(ACT_IDENTITY), "identity") == 0,
        "activation names");
  CHECK(act_from_name("softplus") == -1, "unknown activation name accepted");
}

static void test_activation_pointwise(void) {
  const double xs[] = {-3.1, -1.7, -0.9, -0.35, -0.05, 0.05, 0.2, 0.75, 1.3, 2.6};
  const int nx = (int)(sizeof xs / sizeof xs[0]);
  for (int a = 0; a < ACT_COUNT; a++) {
    for (int t = 0; t < nx; t++) {
      double x = xs[t], h = FD_STEP;
      double fd1 = (act_value(x + h, a) - act_value(x - h, a)) / (2 * h);
      CHECK(tu_close(act_deriv(x, a), fd1, FD_TOL), "%s' at %g: %.12g vs fd %.12g", act_name(a), x,
            act_deriv(x, a), fd1);
      double fd2_of_deriv = (act_deriv(x + h, a) - act_deriv(x - h, a)) / (2 * h);
      CHECK(tu_close(act_deriv2(x, a), fd2_of_deriv, FD_TOL), "%s'' at %g vs fd of ': %.12g vs %.12g",
            act_name(a), x, act_deriv2(x, a), fd2_of_deriv);
      double h2 = 1e-4; /* second difference: larger step balances rounding eps/h^2 and h^2 */
      double fd2 = (act_value(x + h2, a) - 2 * act_value(x, a) + act_value(x - h2, a)) / (h2 * h2);
      CHECK(tu_close(act_deriv2(x, a), fd2, 1e-6), "%s'' at %g vs second difference: %.12g vs %.12g",
            act_name(a), x, act_deriv2(x, a), fd2);
    }
  }
  /* Fixed values that finite differences cannot see. */
  CHECK(act_value(0.0, ACT_RELU) == 0.0 && act_deriv(0.0, ACT_RELU) == 0.0 &&
            act_deriv2(0.0, ACT_RELU) == 0.0,
        "relu(0), relu'(0), relu''(0) must be 0");
  CHECK(act_value(-2.0, ACT_RELU) == 0.0 && act_value(2.0, ACT_RELU) == 2.0, "relu values");
  CHECK(act_value(-1.5, ACT_IDENTITY) == -1.5 && act_deriv(-1.5, ACT_IDENTITY) == 1.0, "identity");
  CHECK(tu_close(act_value(0.5, ACT_TANH), 0.46211715726000974, 1e-15), "tanh(0.5)");
  CHECK(tu_close(act_value(0.5, ACT_ERF), 0.5204998778130465, 1e-15), "erf(0.5)");
  CHECK(tu_close(act_deriv(0.0, ACT_ERF), 2 / sqrt(3.14159265358979323846), 1e-15), "erf'(0)");
  /* swish, gelu (exact), mish at 0.5 and -2: torch 1.13 float64 silu, gelu(approximate='none'), mish. */
  const double torch_vals[3][2] = {{0.3112296656009273, -0.2384058440442351},
                                   {0.34573123063700656, -0.04550026389635842},
                                   {0.3752452113048951, -0.2525014826957089}};
  for (int a = 0; a < 3; a++)
    for (int i = 0; i < 2; i++)
      CHECK(tu_close(act_value(i ? -2.0 : 0.5, (Activation)(ACT_SWISH + a)), torch_vals[a][i], 1e-15), "%s(%g) vs torch",
            act_name((Activation)(ACT_SWISH + a)), i ? -2.0 : 0.5);
  /* far tails: finite, and the right limits (x for x >> 0, 0 for x << 0) */
  for (int a = ACT_SWISH; a <= ACT_MISH; a++) {
    CHECK(tu_close(act_value(40.0, (Activation)a), 40.0, 1e-14) && fabs(act_value(-40.0, (Activation)a)) < 1e-12 &&
              isfinite(act_deriv2(-700.0, (Activation)a)) && isfinite(act_deriv2(700.0, (Activation)a)),
          "%s tails", act_name((Activation)a));
  }
}

/* Array kernels equal the pointwise functions, also in place (din = dout, tout = tin). */
static void test_activation_arrays(void) {
  enum { N = 41 };
  double in[N], v[N], out[N], inplace[N];
  fill_random(in, N, 3.0);
  fill_random(v, N, 2.0);
  in[0] = 0.0; /* relu kink: derivative 0 by convention */
  for (int a = 0; a < ACT_COUNT; a++) {
    int bad_fwd = 0, bad_vjp = 0, bad_jvp = 0, bad_alias = 0;
    act_forward(out, in, N, a);
    for (int i = 0; i < N; i++) bad_fwd += !tu_close(out[i], act_value(in[i], a), 1e-15);
    act_vjp(out, v, in, N, a);
    for (int i = 0; i < N; i++) bad_vjp += !tu_close(out[i], v[i] * act_deriv(in[i], a), 1e-14);
    act_jvp(out, v, in, N, a);
    for (int i = 0; i < N; i++) bad_jvp += !tu_close(out[i], v[i] * act_deriv(in[i], a), 1e-14);
    memcpy(inplace, v, sizeof v);
    act_vjp(inplace, inplace, in, N, a);
    for (int i = 0; i < N; i++) bad_alias += !tu_close(inplace[i], v[i] * act_deriv(in[i], a), 1e-14);
    memcpy(inplace, v, sizeof v);
    act_jvp(inplace, inplace, in, N, a);
    for (int i = 0; i < N; i++) bad_alias += !tu_close(inplace[i], v[i] * act_deriv(in[i], a), 1e-14);
    memcpy(inplace, in, sizeof in);
    act_forward(inplace, inplace, N, a);
    for (int i = 0; i < N; i++) bad_alias += !tu_close(inplace[i], act_value(in[i], a), 1e-15);
    CHECK(bad_fwd == 0, "act_forward %s: %d wrong", act_name(a), bad_fwd);
    CHECK(bad_vjp == 0, "act_vjp %s: %d wrong", act_name(a), bad_vjp);
    CHECK(bad_jvp == 0, "act_jvp %s: %d wrong", act_name(a), bad_jvp);
    CHECK(bad_alias == 0, "in-place activation kernels %s: %d wrong", act_name(a), bad_alias);
  }
}

/* ------------------------------------------------------------------ dense layer */

typedef struct {
  int B, n_in, n_out;
  double w_mult, b_mult;
  const char *param;
  Activation act;
  double *x /* B x n_in */, *W /* n_out x n_in */, *b /* n_out or NULL */;
} DenseCase;

static size_t nx_of(const DenseCase *c) { return (size_t)c->B * c->n_in; }
static size_t nw_of(const DenseCase *c) { return (size_t)c->n_out * c->n_in; }
static size_t ny_of(const DenseCase *c) { return (size_t)c->B * c->n_out; }

#define CASE_FMT "[%s %s bias=%d B=%d %dx%d] "
#define CASE_ARGS(c) act_name((c)->act), (c)->param, (c)->b != NULL, (c)->B, (c)->n_out, (c)->n_in

/* g = phi(dense(x, W, b)) with the optimised kernel; pre (B x n_out) receives the preactivation. */
static void composite_forward(double *g, double *pre, const DenseCase *c, const double *x,
                              const double *W, const double *b) {
  dense_forward(pre, x, W, b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  act_forward(g, pre, ny_of(c), c->act);
}

/* Optimised vs reference kernels, and the accumulate / overwrite / NULL semantics. */
static void check_dense_vs_ref(const DenseCase *c) {
  size_t nx = nx_of(c), nw = nw_of(c), ny = ny_of(c), nb = (size_t)c->n_out;
  double *out = malloc(ny * sizeof *out), *out_ref = malloc(ny * sizeof *out);
  fill_nan(out, ny); /* forward overwrites, even with beta = 0 and no bias */
  dense_forward(out, c->x, c->W, c->b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  dense_forward_ref(out_ref, c->x, c->W, c->b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  CHECK(tu_rel_err(out, out_ref, ny) < REF_TOL, CASE_FMT "forward vs ref: %.2e", CASE_ARGS(c),
        tu_rel_err(out, out_ref, ny));

  /* VJP: dW, db start from nonzero values (accumulated), din from NaN (overwritten). */
  double *dout = malloc(ny * sizeof *dout);
  double *din = malloc(nx * sizeof *din), *din_ref = malloc(nx * sizeof *din);
  double *dW = malloc(nw * sizeof *dW), *dW_ref = malloc(nw * sizeof *dW), *dW0 = malloc(nw * sizeof *dW);
  double *db = malloc(nb * sizeof *db), *db_ref = malloc(nb * sizeof *db), *db0 = malloc(nb * sizeof *db);
  fill_random(dout, ny, 1.0);
  fill_random(dW0, nw, 1.0);
  fill_random(db0, nb, 1.0);
  memcpy(dW, dW0, nw * sizeof *dW), memcpy(dW_ref, dW0, nw * sizeof *dW);
  memcpy(db, db0, nb * sizeof *db), memcpy(db_ref, db0, nb * sizeof *db);
  fill_nan(din, nx);
  fill_random(din_ref, nx, 5.0);
  dense_vjp(din, dW, db, dout, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  dense_vjp_ref(din_ref, dW_ref, db_ref, dout, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  CHECK(tu_rel_err(din, din_ref, nx) < REF_TOL, CASE_FMT "vjp din vs ref: %.2e", CASE_ARGS(c),
        tu_rel_err(din, din_ref, nx));
  CHECK(tu_rel_err(dW, dW_ref, nw) < REF_TOL, CASE_FMT "vjp dW (+=) vs ref: %.2e", CASE_ARGS(c),
        tu_rel_err(dW, dW_ref, nw));
  CHECK(tu_rel_err(db, db_ref, nb) < REF_TOL, CASE_FMT "vjp db (+=) vs ref: %.2e", CASE_ARGS(c),
        tu_rel_err(db, db_ref, nb));

  /* Accumulation: from zero gives the increment; a second call adds it again. */
  double *dW_fresh = calloc(nw, sizeof *dW), *db_fresh = calloc(nb, sizeof *db);
  dense_vjp(NULL, dW_fresh, db_fresh, dout, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  int bad_acc = 0;
  for (size_t i = 0; i < nw; i++) bad_acc += !tu_close(dW[i], dW0[i] + dW_fresh[i], 1e-14);
  for (size_t i = 0; i < nb; i++) bad_acc += !tu_close(db[i], db0[i] + db_fresh[i], 1e-14);
  dense_vjp(NULL, dW, db, dout, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  for (size_t i = 0; i < nw; i++) bad_acc += !tu_close(dW[i], dW0[i] + 2 * dW_fresh[i], 1e-14);
  for (size_t i = 0; i < nb; i++) bad_acc += !tu_close(db[i], db0[i] + 2 * db_fresh[i], 1e-14);
  CHECK(bad_acc == 0, CASE_FMT "vjp does not accumulate dW/db (%d entries)", CASE_ARGS(c), bad_acc);

  /* NULL outputs skip exactly their product; din alone still overwrites. */
  double *din_only = malloc(nx * sizeof *din);
  fill_nan(din_only, nx);
  dense_vjp(din_only, NULL, NULL, dout, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  CHECK(tu_rel_err(din_only, din_ref, nx) < REF_TOL, CASE_FMT "vjp din-only", CASE_ARGS(c));
  double *dW_only = calloc(nw, sizeof *dW), *db_only = calloc(nb, sizeof *db);
  dense_vjp(NULL, dW_only, NULL, dout, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  dense_vjp(NULL, NULL, db_only, dout, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  CHECK(tu_rel_err(dW_only, dW_fresh, nw) < REF_TOL && tu_rel_err(db_only, db_fresh, nb) < REF_TOL,
        CASE_FMT "vjp dW-only / db-only", CASE_ARGS(c));

  /* JVP: every combination of NULL tangents, vs ref; tout starts as NaN (overwritten). */
  double *tin = malloc(nx * sizeof *tin), *tW = malloc(nw * sizeof *tW), *tb = malloc(nb * sizeof *tb);
  fill_random(tin, nx, 1.0);
  fill_random(tW, nw, 1.0);
  fill_random(tb, nb, 1.0);
  for (int mask = 0; mask < 8; mask++) {
    const double *t_in = (mask & 1) ? tin : NULL, *t_W = (mask & 2) ? tW : NULL,
                 *t_b = (mask & 4) ? tb : NULL;
    fill_nan(out, ny);
    fill_random(out_ref, ny, 5.0);
    dense_jvp(out, t_in, c->x, c->W, t_W, t_b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
    dense_jvp_ref(out_ref, t_in, c->x, c->W, t_W, t_b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
    double err = tu_rel_err(out, out_ref, ny);
    CHECK(err < REF_TOL, CASE_FMT "jvp vs ref (tin %d, tW %d, tb %d): %.2e", CASE_ARGS(c), !!t_in,
          !!t_W, !!t_b, err);
    if (mask == 0) CHECK(norm2(out, ny) == 0.0, CASE_FMT "jvp with no tangent is not 0", CASE_ARGS(c));
  }
  free(out), free(out_ref), free(dout), free(din), free(din_ref), free(dW), free(dW_ref), free(dW0);
  free(db), free(db_ref), free(db0), free(dW_fresh), free(db_fresh), free(din_only), free(dW_only);
  free(db_only), free(tin), free(tW), free(tb);
}

/* Composite JVP (dense_jvp then act_jvp) and VJP (act_vjp then dense_vjp) against central finite
 * differences, and the adjoint identity <J v, u> = <v, J^T u>. */
static void check_dense_derivatives(const DenseCase *c) {
  size_t nx = nx_of(c), nw = nw_of(c), ny = ny_of(c), nb = (size_t)c->n_out;
  const double h = FD_STEP;
  double *pre = malloc(ny * sizeof *pre), *g_plus = malloc(ny * sizeof *pre),
         *g_minus = malloc(ny * sizeof *pre), *scratch = malloc(ny * sizeof *pre);
  double *xp = malloc(nx * sizeof *xp), *Wp = malloc(nw * sizeof *Wp), *bp = malloc(nb * sizeof *bp);
  double *tin = malloc(nx * sizeof *tin), *tW = malloc(nw * sizeof *tW), *tb = malloc(nb * sizeof *tb);
  double *tout = malloc(ny * sizeof *tout), *fd = malloc(ny * sizeof *fd), *tpre = malloc(ny * sizeof *tpre);
  fill_random(tin, nx, 1.0);
  fill_random(tW, nw, 1.0);
  fill_random(tb, nb, 1.0);
  dense_forward(pre, c->x, c->W, c->b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);

  /* JVP in three directions: inputs and parameters together, inputs only, parameters only. */
  const char *which[3] = {"inputs+params", "inputs", "params"};
  for (int dir = 0; dir < 3; dir++) {
    const double *t_in = dir != 2 ? tin : NULL;
    const double *t_W = dir != 1 ? tW : NULL;
    const double *t_b = (dir != 1 && c->b) ? tb : NULL;
    dense_jvp(tpre, t_in, c->x, c->W, t_W, t_b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
    act_jvp(tout, tpre, pre, ny, c->act);
    for (int sign = -1; sign <= 1; sign += 2) {
      for (size_t i = 0; i < nx; i++) xp[i] = c->x[i] + (t_in ? sign * h * t_in[i] : 0.0);
      for (size_t i = 0; i < nw; i++) Wp[i] = c->W[i] + (t_W ? sign * h * t_W[i] : 0.0);
      for (size_t i = 0; i < nb; i++) bp[i] = c->b ? c->b[i] + (t_b ? sign * h * t_b[i] : 0.0) : 0.0;
      composite_forward(sign > 0 ? g_plus : g_minus, scratch, c, xp, Wp, c->b ? bp : NULL);
    }
    for (size_t i = 0; i < ny; i++) fd[i] = (g_plus[i] - g_minus[i]) / (2 * h);
    double err = tu_rel_err(tout, fd, ny);
    CHECK(err < FD_TOL, CASE_FMT "jvp (%s) vs finite differences: %.2e", CASE_ARGS(c), which[dir], err);
  }

  /* VJP of s = <u, g> against per-coordinate central differences of s. */
  double *u = malloc(ny * sizeof *u), *upre = malloc(ny * sizeof *upre);
  double *din = malloc(nx * sizeof *din), *dW = calloc(nw, sizeof *dW), *db = calloc(nb, sizeof *db);
  double *fd_x = malloc(nx * sizeof *fd_x), *fd_W = malloc(nw * sizeof *fd_W), *fd_b = malloc(nb * sizeof *fd_b);
  fill_random(u, ny, 1.0);
  act_vjp(upre, u, pre, ny, c->act);
  dense_vjp(din, dW, c->b ? db : NULL, upre, c->x, c->W, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  memcpy(xp, c->x, nx * sizeof *xp);
  memcpy(Wp, c->W, nw * sizeof *Wp);
  if (c->b) memcpy(bp, c->b, nb * sizeof *bp);
  struct {
    double *param, *fd;
    size_t n;
  } blocks[3] = {{xp, fd_x, nx}, {Wp, fd_W, nw}, {bp, fd_b, c->b ? nb : 0}};
  for (int blk = 0; blk < 3; blk++)
    for (size_t i = 0; i < blocks[blk].n; i++) {
      double saved = blocks[blk].param[i];
      blocks[blk].param[i] = saved + h;
      composite_forward(g_plus, scratch, c, xp, Wp, c->b ? bp : NULL);
      blocks[blk].param[i] = saved - h;
      composite_forward(g_minus, scratch, c, xp, Wp, c->b ? bp : NULL);
      blocks[blk].param[i] = saved;
      blocks[blk].fd[i] = (dot(u, g_plus, ny) - dot(u, g_minus, ny)) / (2 * h);
    }
  double err_x = tu_rel_err(din, fd_x, nx), err_W = tu_rel_err(dW, fd_W, nw);
  CHECK(err_x < FD_TOL, CASE_FMT "vjp din vs finite differences: %.2e", CASE_ARGS(c), err_x);
  CHECK(err_W < FD_TOL, CASE_FMT "vjp dW vs finite differences: %.2e", CASE_ARGS(c), err_W);
  if (c->b) {
    double err_b = tu_rel_err(db, fd_b, nb);
    CHECK(err_b < FD_TOL, CASE_FMT "vjp db vs finite differences: %.2e", CASE_ARGS(c), err_b);
  }

  /* Adjoint identity with the full tangent; scale by Cauchy-Schwarz bounds of both sides. */
  const double *t_b = c->b ? tb : NULL;
  dense_jvp(tpre, tin, c->x, c->W, tW, t_b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  act_jvp(tout, tpre, pre, ny, c->act);
  double lhs = dot(tout, u, ny);
  double rhs = dot(tin, din, nx) + dot(tW, dW, nw) + (c->b ? dot(tb, db, nb) : 0.0);
  double scale = norm2(tout, ny) * norm2(u, ny) + norm2(tin, nx) * norm2(din, nx) +
                 norm2(tW, nw) * norm2(dW, nw) + (c->b ? norm2(tb, nb) * norm2(db, nb) : 0.0);
  CHECK(isfinite(lhs) && isfinite(rhs) && fabs(lhs - rhs) <= ADJ_TOL * scale,
        CASE_FMT "adjoint: <Jv,u> = %.17g, <v,J^T u> = %.17g", CASE_ARGS(c), lhs, rhs);

  free(pre), free(g_plus), free(g_minus), free(scratch), free(xp), free(Wp), free(bp), free(tin);
  free(tW), free(tb), free(tout), free(fd), free(tpre), free(u), free(upre), free(din), free(dW);
  free(db), free(fd_x), free(fd_W), free(fd_b);
}

/* Smallest |preactivation|: relu's finite differences need every entry away from the kink. */
static double min_abs_preactivation(const DenseCase *c) {
  size_t ny = ny_of(c);
  double *pre = malloc(ny * sizeof *pre), m = INFINITY;
  dense_forward_ref(pre, c->x, c->W, c->b, c->B, c->n_in, c->n_out, c->w_mult, c->b_mult);
  for (size_t i = 0; i < ny; i++) m = fmin(m, fabs(pre[i]));
  free(pre);
  return m;
}

static void test_dense(void) {
  const int shapes[][3] = {{1, 1, 1}, {3, 5, 4}, {4, 7, 2}, {2, 3, 9}, {5, 8, 6}, {7, 2, 3}};
  const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
  const double sigma_w = 1.4, sigma_b = 0.3;
  int cases = 0;
  for (int a = 0; a < ACT_COUNT; a++)
    for (int s = 0; s < n_shapes; s++)
      for (int p = 0; p < 3; p++)
        for (int with_bias = 0; with_bias <= 1; with_bias++) {
          DenseCase c = {.B = shapes[s][0], .n_in = shapes[s][1], .n_out = shapes[s][2], .act = a};
          double w_scale; /* of the stored W: N(0,1)-like for ntk, sigma_w/sqrt(fan_in) for sp */
          if (p == 0) {
            c.param = "ntk", c.w_mult = sigma_w / sqrt(c.n_in), c.b_mult = sigma_b, w_scale = 1.0;
          } else if (p == 1) {
            c.param = "ntk(2,1)", c.w_mult = 2.0 / sqrt(c.n_in), c.b_mult = 1.0, w_scale = 1.0;
          } else {
            c.param = "sp/mup", c.w_mult = 1.0, c.b_mult = 1.0, w_scale = sigma_w / sqrt(c.n_in);
          }
          c.x = malloc(nx_of(&c) * sizeof(double));
          c.W = malloc(nw_of(&c) * sizeof(double));
          c.b = with_bias ? malloc((size_t)c.n_out * sizeof(double)) : NULL;
          /* Draw until every preactivation is at least 0.05 from relu's kink (for all activations,
           * so each sees the same kind of data). */
          int tries = 0;
          do {
            fill_random(c.x, nx_of(&c), 1.5);
            fill_random(c.W, nw_of(&c), w_scale * sqrt(3.0));
            if (c.b) fill_random(c.b, (size_t)c.n_out, sqrt(3.0));
          } while (min_abs_preactivation(&c) < 0.05 && ++tries < 10000);
          CHECK(min_abs_preactivation(&c) >= 0.05, CASE_FMT "could not avoid relu kink", CASE_ARGS(&c));
          check_dense_vs_ref(&c);
          check_dense_derivatives(&c);
          free(c.x), free(c.W), free(c.b);
          cases++;
        }
  CHECK(cases == ACT_COUNT * n_shapes * 3 * 2, "ran %d dense cases", cases);
}

/* ------------------------------------------------------------------ loss and accuracy */

/* Softmax cross-entropy: hand value, the plain-loop twin, central differences of the loss (gradient)
 * and of the gradient (the loss's Hessian in output space), large logits. */
static void test_xent_loss(void) {
  CHECK(loss_from_name("xent") == LOSS_XENT && loss_from_name("mse") == LOSS_MSE && loss_from_name("ce") == -1 &&
            strcmp(loss_name(LOSS_XENT), "xent") == 0, "loss names");
  const double f1[2] = {0, 0}, y1[2] = {1, 0};
  double d1[2];
  CHECK(tu_close(xent_loss(d1, f1, y1, 1, 2, 1.0), log(2.0), 1e-15) && d1[0] == -0.5 && d1[1] == 0.5, "xent hand case");
  enum { B = 4, K = 5, N = B * K };
  double f[N], y[N], d[N], dr[N], fp[N], gp[N], gm[N];
  fill_random(f, N, 3.0);
  memset(y, 0, sizeof y);
  for (int a = 0; a < B; a++) y[a * K + (2 * a + 1) % K] = 1.0;
  const double scale = 1.0 / 3.0, l = xent_loss(d, f, y, B, K, scale), lr = xent_loss_ref(dr, f, y, B, K, scale);
  CHECK(tu_close(l, lr, 1e-14) && tu_rel_err(d, dr, N) < 1e-14, "xent vs _ref: %.17g %.17g", l, lr);
  CHECK(xent_loss(NULL, f, y, B, K, scale) == l && loss_eval(LOSS_XENT, NULL, f, y, B, K, 1.0) == l, "xent value paths");
  double fd[N], h = 1e-6;
  for (int i = 0; i < N; i++) {
    memcpy(fp, f, sizeof f);
    fp[i] = f[i] + h;
    double lp = xent_loss(NULL, fp, y, B, K, 1.0);
    fp[i] = f[i] - h;
    fd[i] = scale * (lp - xent_loss(NULL, fp, y, B, K, 1.0)) / (2 * h);
  }
  CHECK(tu_rel_err(d, fd, N) < 1e-8, "xent gradient vs central differences %.3g", tu_rel_err(d, fd, N));
  /* H r against central differences of the gradient along r (per sample: the blocks are separate) */
  double r[N], hr[N], hr_ref[N];
  fill_random(r, N, 1.0);
  memcpy(hr, r, sizeof r);
  memcpy(hr_ref, r, sizeof r);
  xent_hess_apply(hr, f, B, K);
  xent_hess_apply_ref(hr_ref, f, B, K);
  for (int i = 0; i < N; i++) fp[i] = f[i] + h * r[i];
  xent_loss(gp, fp, y, B, K, 1.0);
  for (int i = 0; i < N; i++) fp[i] = f[i] - h * r[i];
  xent_loss(gm, fp, y, B, K, 1.0);
  for (int i = 0; i < N; i++) fd[i] = (gp[i] - gm[i]) / (2 * h);
  CHECK(tu_rel_err(hr, fd, N) < 1e-8 && tu_rel_err(hr, hr_ref, N) < 1e-14, "xent Hessian vs central differences %.3g, vs _ref %.3g",
        tu_rel_err(hr, fd, N), tu_rel_err(hr, hr_ref, N));
  memcpy(hr_ref, r, sizeof r);
  loss_hess_apply(LOSS_MSE, hr_ref, f, B, K);
  CHECK(memcmp(hr_ref, r, sizeof r) == 0, "mse's output-space Hessian is the identity");
  /* logits of 1000: finite loss and gradient (the row maximum is subtracted) */
  const double big[3] = {1000, 998, -1000}, yb[3] = {0, 1, 0};
  double db[3];
  const double lb = xent_loss(db, big, yb, 1, 3, 1.0);
  CHECK(tu_close(lb, 2.0 + log1p(exp(-2.0) + exp(-2000.0)), 1e-12) && isfinite(db[0]) && isfinite(db[2]), "xent at large logits %.17g", lb);
}

static void test_mse_loss(void) {
  /* Hand case: f = (1, 2, 0), y = (0, 0, 0.5): (1 + 4 + 0.25) / 2. */
  const double f1[3] = {1, 2, 0}, y1[3] = {0, 0, 0.5};
  double d1[3];
  CHECK(mse_loss(d1, f1, y1, 1, 3, 2.0) == 2.625, "mse hand value %.17g", mse_loss(NULL, f1, y1, 1, 3, 2.0));
  CHECK(d1[0] == 2.0 && d1[1] == 4.0 && d1[2] == -1.0, "mse hand gradient (%g %g %g)", d1[0], d1[1], d1[2]);

  enum { B = 5, K = 3, N = B * K };
  double f[N], y[N], dout[N], fp[N];
  fill_random(f, N, 2.0);
  fill_random(y, N, 1.0);
  const double scale = 1.0 / 7.0;
  double direct = 0;
  for (int a = 0; a < B; a++)
    for (int i = 0; i < K; i++) direct += (f[a * K + i] - y[a * K + i]) * (f[a * K + i] - y[a * K + i]);
  direct /= 2;
  fill_nan(dout, N);
  double loss = mse_loss(dout, f, y, B, K, scale);
  CHECK(tu_close(loss, direct, 1e-14), "mse value %.17g vs direct %.17g", loss, direct);
  CHECK(mse_loss(NULL, f, y, B, K, scale) == loss, "mse value depends on dout == NULL");
  int bad = 0;
  for (int i = 0; i < N; i++) bad += !tu_close(dout[i], scale * (f[i] - y[i]), 1e-15);
  CHECK(bad == 0, "mse gradient vs direct loop: %d wrong", bad);
  /* dout = gradient of scale * loss. */
  double fd[N];
  memcpy(fp, f, sizeof f);
  for (int i = 0; i < N; i++) {
    fp[i] = f[i] + FD_STEP;
    double lp = mse_loss(NULL, fp, y, B, K, scale);
    fp[i] = f[i] - FD_STEP;
    double lm = mse_loss(NULL, fp, y, B, K, scale);
    fp[i] = f[i];
    fd[i] = scale * (lp - lm) / (2 * FD_STEP);
  }
  CHECK(tu_rel_err(dout, fd, N) < FD_TOL, "mse gradient vs finite differences: %.2e",
        tu_rel_err(dout, fd, N));
}

static void test_count_correct(void) {
  const double f[4 * 3] = {
      0.1, 0.2, 0.9,   /* argmax 2, label 2: correct */
      3.0, -1.0, 2.5,  /* argmax 0, label 0: correct */
      0.0, 5.0, 4.0,   /* argmax 1, label 0: wrong */
      -2.0, 1.0, -3.0, /* argmax 1, label -1: skipped */
  };
  const int labels[4] = {2, 0, 0, -1};
  CHECK(count_correct(f, labels, 4, 3) == 2, "count_correct = %d, want 2", count_correct(f, labels, 4, 3));
  const int all_right[4] = {2, 0, 1, 1};
  CHECK(count_correct(f, all_right, 4, 3) == 4, "count_correct all right = %d",
        count_correct(f, all_right, 4, 3));
  const int all_skipped[4] = {-1, -1, -1, -1};
  CHECK(count_correct(f, all_skipped, 4, 3) == 0, "count_correct all skipped");
  CHECK(count_correct(f, labels, 2, 3) == 2 && count_correct(f + 6, labels + 2, 2, 3) == 0,
        "count_correct on sub-batches");
}

int main(void) {
  test_activation_names();
  test_activation_pointwise();
  test_activation_arrays();
  test_dense();
  test_mse_loss();
  test_xent_loss();
  test_count_correct();
  return tu_report("test_kernels");
}
