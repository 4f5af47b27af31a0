/* Unit tests for conv.c: conv2d, batch norm (train mode, split statistics), global average pooling
 * and the residual add.
 *
 *   conv2d: forward against a test-local direct convolution over an explicitly zero-padded copy of
 *           the input, for several shapes and chunk sizes; optimised == *_ref; accumulate /
 *           overwrite / NULL semantics; JVP and VJP against central differences; adjoint identity;
 *           R-VJP (HVP backward) against central differences of the VJP.
 *   batch norm: split kernels == textbook *_ref twins; output mean 0, variance 1 (eps = 0) before
 *           the affine map; statistics over two or three "ranks" (sample ranges whose partial sums
 *           are added) == whole batch, for forward, VJP, JVP and R-VJP; finite differences;
 *           adjoint identity.
 *   pooling, residual add: values, finite differences, adjoint identity, aliasing.
 *
 * Usage: test_conv                 run the tests ("N passed, N failed" last)
 *        test_conv --dump FILE     write cases for torch_conv_check.py
 *        test_conv --bench         time a WRN-16-4 middle layer (not run by ctest) */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "conv.h"
#include "testutil.h"

/* Test-local generator (splitmix64), independent of rng.c. */
static uint64_t prng_state = 0x243f6a8885a308d3ull;
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
static void fill_nan(double *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}
static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}
static double *dvec(size_t n) { /* zeroed; n = 0 gives a valid 1-element buffer */
  double *p = calloc(n ? n : 1, sizeof *p);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}
static double *dcopy(const double *src, size_t n) {
  double *p = dvec(n);
  memcpy(p, src, n * sizeof *p);
  return p;
}
/* x + h v (v may be NULL), into a new buffer. */
static double *shifted(const double *x, const double *v, double h, size_t n) {
  double *p = dcopy(x, n);
  if (v)
    for (size_t i = 0; i < n; i++) p[i] += h * v[i];
  return p;
}
/* |a - b| <= tol * max(|a|, |b|, floor): for scalars that may be legitimately small. */
static int rel_close(double a, double b, double tol, double floor) {
  return isfinite(a) && isfinite(b) && fabs(a - b) <= tol * fmax(floor, fmax(fabs(a), fabs(b)));
}

static const double FD_STEP = 1e-6;
static const double FD_TOL = 1e-7;
static const double REF_TOL = 1e-13;
static const double ADJ_TOL = 1e-12;

/* ================================================================== conv2d */

/* Direct convolution on an explicitly zero-padded copy (no bounds tests in the inner loops). */
static void naive_conv(double *out, const double *in, const double *W, const double *b, int B,
                       const ConvShape *s, double w_mult, double b_mult) {
  const int Hp = s->H + 2 * s->pad, Wp = s->W + 2 * s->pad;
  const int Ho = conv_out_h(s), Wo = conv_out_w(s);
  double *pad = dvec((size_t)B * s->C_in * Hp * Wp);
  for (int a = 0; a < B; a++)
    for (int ci = 0; ci < s->C_in; ci++)
      for (int y = 0; y < s->H; y++)
        for (int x = 0; x < s->W; x++)
          pad[(((size_t)a * s->C_in + ci) * Hp + y + s->pad) * Wp + x + s->pad] =
              in[(((size_t)a * s->C_in + ci) * s->H + y) * s->W + x];
  for (int a = 0; a < B; a++)
    for (int co = 0; co < s->C_out; co++)
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++) {
          double acc = 0.0;
          for (int ci = 0; ci < s->C_in; ci++)
            for (int i = 0; i < s->kh; i++)
              for (int j = 0; j < s->kw; j++)
                acc += W[(((size_t)co * s->C_in + ci) * s->kh + i) * s->kw + j] *
                       pad[(((size_t)a * s->C_in + ci) * Hp + oy * s->stride + i) * Wp +
                           ox * s->stride + j];
          out[(((size_t)a * s->C_out + co) * Ho + oy) * Wo + ox] =
              w_mult * acc + (b ? b_mult * b[co] : 0.0);
        }
  free(pad);
}

typedef struct {
  int B;
  ConvShape s;
  const char *what;
} ConvCase;

#define CC_FMT "[conv %s B=%d %dx%dx%d->%d k%dx%d s%d p%d bias=%d] "
#define CC_ARGS(c, bias) (c)->what, (c)->B, (c)->s.C_in, (c)->s.H, (c)->s.W, (c)->s.C_out, \
                         (c)->s.kh, (c)->s.kw, (c)->s.stride, (c)->s.pad, (bias)

/* The linear map v = (tin, tW, tb) -> J v at (in, W), through conv2d_jvp. */
static void conv_case(const ConvCase *c, int bias) {
  const ConvShape *s = &c->s;
  const int B = c->B;
  const size_t nx = (size_t)B * conv_in_size(s), nw = conv_w_size(s), nb = (size_t)s->C_out;
  const size_t ny = (size_t)B * conv_out_size(s);
  const double w_mult = 1.3 / sqrt((double)s->C_in * s->kh * s->kw), b_mult = 0.4;
  CHECK(conv_shape_check(s) == 0, CC_FMT "shape rejected", CC_ARGS(c, bias));

  double *in = dvec(nx), *W = dvec(nw), *b = bias ? dvec(nb) : NULL;
  fill_random(in, nx, 1.0), fill_random(W, nw, 1.0);
  if (b) fill_random(b, nb, 1.0);
  const size_t wl_full = conv2d_workspace_size(s, B), wl1 = conv2d_workspace_size(s, 1);
  const size_t wl2 = conv2d_workspace_size(s, 2) + wl1 / 2; /* chunk 2, with slack */
  double *work = dvec(wl_full);
  const size_t wls[3] = {wl_full, wl1, wl2};

  /* ---- forward vs the padded direct convolution, three chunk sizes, and *_ref */
  double *y_naive = dvec(ny), *y = dvec(ny);
  naive_conv(y_naive, in, W, b, B, s, w_mult, b_mult);
  for (int k = 0; k < 3; k++) {
    fill_nan(y, ny);
    int rc = conv2d_forward(y, in, W, b, B, s, w_mult, b_mult, work, wls[k]);
    double e = tu_rel_err(y, y_naive, ny);
    CHECK(rc == 0 && e < REF_TOL, CC_FMT "forward (work %zu) vs direct: rc %d err %.2e",
          CC_ARGS(c, bias), wls[k], rc, e);
  }
  fill_nan(y, ny);
  conv2d_forward_ref(y, in, W, b, B, s, w_mult, b_mult);
  CHECK(tu_rel_err(y, y_naive, ny) < REF_TOL, CC_FMT "forward_ref vs direct: %.2e", CC_ARGS(c, bias),
        tu_rel_err(y, y_naive, ny));
  CHECK(tu_all_finite(y_naive, ny), CC_FMT "non-finite output", CC_ARGS(c, bias));
  fill_random(y, ny, 1.0);
  double *y_keep = dcopy(y, ny);
  CHECK(conv2d_forward(y, in, W, b, B, s, w_mult, b_mult, work, wl1 - 1) == -1 &&
            memcmp(y, y_keep, ny * sizeof *y) == 0,
        CC_FMT "too small a workspace must return -1 and write nothing", CC_ARGS(c, bias));

  /* ---- VJP: optimised vs ref; dW, db accumulate (start random), din overwritten (start NaN) */
  double *dout = dvec(ny), *dW0 = dvec(nw), *db0 = dvec(nb);
  fill_random(dout, ny, 1.0), fill_random(dW0, nw, 1.0), fill_random(db0, nb, 1.0);
  double *din_ref = dvec(nx), *dW_ref = dcopy(dW0, nw), *db_ref = dcopy(db0, nb);
  fill_random(din_ref, nx, 3.0);
  conv2d_vjp_ref(din_ref, dW_ref, db_ref, dout, in, W, B, s, w_mult, b_mult);
  for (int k = 0; k < 3; k++) {
    double *din = dvec(nx), *dW = dcopy(dW0, nw), *db = dcopy(db0, nb);
    fill_nan(din, nx);
    int rc = conv2d_vjp(din, dW, db, dout, in, W, B, s, w_mult, b_mult, work, wls[k]);
    CHECK(rc == 0 && tu_rel_err(din, din_ref, nx) < REF_TOL, CC_FMT "vjp din vs ref (work %zu): %.2e",
          CC_ARGS(c, bias), wls[k], tu_rel_err(din, din_ref, nx));
    CHECK(tu_rel_err(dW, dW_ref, nw) < REF_TOL, CC_FMT "vjp dW (+=) vs ref: %.2e", CC_ARGS(c, bias),
          tu_rel_err(dW, dW_ref, nw));
    CHECK(tu_rel_err(db, db_ref, nb) < REF_TOL, CC_FMT "vjp db (+=) vs ref: %.2e", CC_ARGS(c, bias),
          tu_rel_err(db, db_ref, nb));
    free(din), free(dW), free(db);
  }
  /* increments from zero; a NULL output skips exactly its product */
  double *gx = dvec(nx), *gW = dvec(nw), *gb = dvec(nb);
  conv2d_vjp(gx, gW, gb, dout, in, W, B, s, w_mult, b_mult, work, wl_full);
  {
    int bad = 0;
    for (size_t i = 0; i < nw; i++) bad += !tu_close(dW_ref[i], dW0[i] + gW[i], 1e-14);
    for (size_t i = 0; i < nb; i++) bad += !tu_close(db_ref[i], db0[i] + gb[i], 1e-14);
    CHECK(bad == 0, CC_FMT "vjp does not accumulate (%d entries)", CC_ARGS(c, bias), bad);
    double *d1 = dvec(nx), *w1 = dvec(nw), *b1 = dvec(nb);
    fill_nan(d1, nx);
    conv2d_vjp(d1, NULL, NULL, dout, in, W, B, s, w_mult, b_mult, work, wl_full);
    conv2d_vjp(NULL, w1, NULL, dout, in, W, B, s, w_mult, b_mult, work, wl_full);
    conv2d_vjp(NULL, NULL, b1, dout, in, W, B, s, w_mult, b_mult, work, wl_full);
    CHECK(tu_rel_err(d1, gx, nx) < REF_TOL && tu_rel_err(w1, gW, nw) < REF_TOL &&
              tu_rel_err(b1, gb, nb) < REF_TOL,
          CC_FMT "vjp with NULL outputs", CC_ARGS(c, bias));
    free(d1), free(w1), free(b1);
  }

  /* ---- JVP: every NULL combination vs ref; tout overwritten */
  double *tin = dvec(nx), *tW = dvec(nw), *tb = dvec(nb);
  fill_random(tin, nx, 1.0), fill_random(tW, nw, 1.0), fill_random(tb, nb, 1.0);
  double *ty = dvec(ny), *ty_ref = dvec(ny);
  for (int mask = 0; mask < 8; mask++) {
    const double *t_in = (mask & 1) ? tin : NULL, *t_W = (mask & 2) ? tW : NULL,
                 *t_b = (mask & 4) ? tb : NULL;
    fill_nan(ty, ny), fill_random(ty_ref, ny, 3.0);
    int rc = conv2d_jvp(ty, t_in, in, W, t_W, t_b, B, s, w_mult, b_mult, work, wls[mask % 3]);
    conv2d_jvp_ref(ty_ref, t_in, in, W, t_W, t_b, B, s, w_mult, b_mult);
    double e = tu_rel_err(ty, ty_ref, ny);
    CHECK(rc == 0 && (mask ? e < REF_TOL : e == 0.0), CC_FMT "jvp mask %d vs ref: %.2e",
          CC_ARGS(c, bias), mask, e);
  }

  /* ---- finite differences. The map is bilinear, so central differences are exact up to
   * rounding: they still catch any wrong index or multiplier. */
  const double h = FD_STEP;
  const double *tbb = bias ? tb : NULL;
  conv2d_jvp(ty, tin, in, W, tW, tbb, B, s, w_mult, b_mult, work, wl_full);
  {
    double *inp = shifted(in, tin, h, nx), *inm = shifted(in, tin, -h, nx);
    double *Wp = shifted(W, tW, h, nw), *Wm = shifted(W, tW, -h, nw);
    double *bp = bias ? shifted(b, tb, h, nb) : NULL, *bm = bias ? shifted(b, tb, -h, nb) : NULL;
    double *yp = dvec(ny), *ym = dvec(ny), *fd = dvec(ny);
    conv2d_forward(yp, inp, Wp, bp, B, s, w_mult, b_mult, work, wl_full);
    conv2d_forward(ym, inm, Wm, bm, B, s, w_mult, b_mult, work, wl_full);
    for (size_t i = 0; i < ny; i++) fd[i] = (yp[i] - ym[i]) / (2 * h);
    CHECK(tu_rel_err(ty, fd, ny) < FD_TOL, CC_FMT "jvp vs central differences: %.2e",
          CC_ARGS(c, bias), tu_rel_err(ty, fd, ny));
    /* VJP by directions: d/dh <dout, y(in + h tin, ...)> one argument at a time */
    for (int arg = 0; arg < (bias ? 3 : 2); arg++) {
      conv2d_forward(yp, arg == 0 ? inp : in, arg == 1 ? Wp : W, arg == 2 ? bp : b, B, s, w_mult,
                     b_mult, work, wl_full);
      conv2d_forward(ym, arg == 0 ? inm : in, arg == 1 ? Wm : W, arg == 2 ? bm : b, B, s, w_mult,
                     b_mult, work, wl_full);
      double fdd = (dot(dout, yp, ny) - dot(dout, ym, ny)) / (2 * h);
      double an = arg == 0 ? dot(gx, tin, nx) : arg == 1 ? dot(gW, tW, nw) : dot(gb, tb, nb);
      CHECK(rel_close(an, fdd, FD_TOL, 1.0), CC_FMT "vjp %s vs central differences: %.15g vs %.15g",
            CC_ARGS(c, bias), arg == 0 ? "din" : arg == 1 ? "dW" : "db", an, fdd);
    }
    free(inp), free(inm), free(Wp), free(Wm), free(bp), free(bm), free(yp), free(ym), free(fd);
  }
  /* adjoint identity <J v, u> = <v, J^T u> */
  {
    double lhs = dot(ty, dout, ny);
    double rhs = dot(tin, gx, nx) + dot(tW, gW, nw) + (bias ? dot(tb, gb, nb) : 0.0);
    CHECK(rel_close(lhs, rhs, ADJ_TOL, 1.0), CC_FMT "adjoint identity: %.17g vs %.17g",
          CC_ARGS(c, bias), lhs, rhs);
  }

  /* ---- R-VJP vs ref and vs central differences of the VJP along (tin, tW, Rdout) */
  {
    double *Rdout = dvec(ny);
    fill_random(Rdout, ny, 1.0);
    double *Rx = dvec(nx), *RW = dcopy(dW0, nw), *Rb = dcopy(db0, nb);
    double *Rx_ref = dvec(nx), *RW_ref = dcopy(dW0, nw), *Rb_ref = dcopy(db0, nb);
    fill_nan(Rx, nx), fill_random(Rx_ref, nx, 2.0);
    int rc = conv2d_rvjp(Rx, RW, Rb, Rdout, dout, in, tin, W, tW, B, s, w_mult, b_mult, work, wl2);
    conv2d_rvjp_ref(Rx_ref, RW_ref, Rb_ref, Rdout, dout, in, tin, W, tW, B, s, w_mult, b_mult);
    CHECK(rc == 0 && tu_rel_err(Rx, Rx_ref, nx) < REF_TOL && tu_rel_err(RW, RW_ref, nw) < REF_TOL &&
              tu_rel_err(Rb, Rb_ref, nb) < REF_TOL,
          CC_FMT "rvjp vs ref: %.2e %.2e %.2e", CC_ARGS(c, bias), tu_rel_err(Rx, Rx_ref, nx),
          tu_rel_err(RW, RW_ref, nw), tu_rel_err(Rb, Rb_ref, nb));
    memset(RW, 0, nw * sizeof *RW), memset(Rb, 0, nb * sizeof *Rb);
    conv2d_rvjp(Rx, RW, Rb, Rdout, dout, in, tin, W, tW, B, s, w_mult, b_mult, work, wl_full);
    double *xs[2], *ws[2], *bs[2];
    for (int k = 0; k < 2; k++) {
      double sg = k ? -h : h;
      double *inh = shifted(in, tin, sg, nx), *Wh = shifted(W, tW, sg, nw);
      double *dh = shifted(dout, Rdout, sg, ny);
      xs[k] = dvec(nx), ws[k] = dvec(nw), bs[k] = dvec(nb);
      conv2d_vjp(xs[k], ws[k], bs[k], dh, inh, Wh, B, s, w_mult, b_mult, work, wl_full);
      free(inh), free(Wh), free(dh);
    }
    for (size_t i = 0; i < nx; i++) xs[0][i] = (xs[0][i] - xs[1][i]) / (2 * h);
    for (size_t i = 0; i < nw; i++) ws[0][i] = (ws[0][i] - ws[1][i]) / (2 * h);
    for (size_t i = 0; i < nb; i++) bs[0][i] = (bs[0][i] - bs[1][i]) / (2 * h);
    CHECK(tu_rel_err(Rx, xs[0], nx) < FD_TOL && tu_rel_err(RW, ws[0], nw) < FD_TOL &&
              tu_rel_err(Rb, bs[0], nb) < FD_TOL,
          CC_FMT "rvjp vs central differences of the vjp: %.2e %.2e %.2e", CC_ARGS(c, bias),
          tu_rel_err(Rx, xs[0], nx), tu_rel_err(RW, ws[0], nw), tu_rel_err(Rb, bs[0], nb));
    /* zero tangents, or no first-order cotangent (Gauss-Newton): the R-VJP is the VJP of Rdout */
    double *Rx0 = dvec(nx), *gx0 = dvec(nx), *RW0 = dvec(nw), *gW0 = dvec(nw);
    conv2d_vjp(gx0, gW0, NULL, Rdout, in, W, B, s, w_mult, b_mult, work, wl_full);
    fill_nan(Rx0, nx);
    conv2d_rvjp(Rx0, RW0, NULL, Rdout, dout, in, NULL, W, NULL, B, s, w_mult, b_mult, work, wl_full);
    CHECK(tu_rel_err(Rx0, gx0, nx) < REF_TOL && tu_rel_err(RW0, gW0, nw) < REF_TOL,
          CC_FMT "rvjp with zero tangents", CC_ARGS(c, bias));
    fill_nan(Rx0, nx), memset(RW0, 0, nw * sizeof *RW0);
    conv2d_rvjp(Rx0, RW0, NULL, Rdout, NULL, in, tin, W, tW, B, s, w_mult, b_mult, work, wl2);
    CHECK(tu_rel_err(Rx0, gx0, nx) < REF_TOL && tu_rel_err(RW0, gW0, nw) < REF_TOL,
          CC_FMT "rvjp with dout = NULL (Gauss-Newton)", CC_ARGS(c, bias));
    conv2d_rvjp_ref(Rx0, NULL, NULL, Rdout, NULL, in, tin, W, tW, B, s, w_mult, b_mult);
    CHECK(tu_rel_err(Rx0, gx0, nx) < REF_TOL, CC_FMT "rvjp_ref with dout = NULL", CC_ARGS(c, bias));
    /* in place: rdin overwrites rin */
    double *alias = dcopy(tin, nx), *RWa = dcopy(dW0, nw);
    conv2d_rvjp(alias, RWa, NULL, Rdout, dout, in, alias, W, tW, B, s, w_mult, b_mult, work, wl2);
    CHECK(tu_rel_err(alias, Rx_ref, nx) < REF_TOL && tu_rel_err(RWa, RW_ref, nw) < REF_TOL,
          CC_FMT "rvjp with rdin aliasing rin: %.2e %.2e", CC_ARGS(c, bias), tu_rel_err(alias, Rx_ref, nx),
          tu_rel_err(RWa, RW_ref, nw));
    free(alias), free(RWa), free(RW0), free(gW0);
    for (int k = 0; k < 2; k++) free(xs[k]), free(ws[k]), free(bs[k]);
    free(Rdout), free(Rx), free(RW), free(Rb), free(Rx_ref), free(RW_ref), free(Rb_ref), free(Rx0),
        free(gx0);
  }

  free(in), free(W), free(b), free(work), free(y_naive), free(y), free(y_keep), free(dout), free(dW0),
      free(db0), free(din_ref), free(dW_ref), free(db_ref), free(gx), free(gW), free(gb), free(tin),
      free(tW), free(tb), free(ty), free(ty_ref);
}

static const ConvCase conv_cases[] = {
    {3, {3, 6, 6, 4, 3, 3, 1, 1}, "3x3 s1 p1"},
    {2, {4, 8, 8, 5, 3, 3, 2, 1}, "3x3 s2 p1"},
    {3, {4, 7, 5, 6, 1, 1, 2, 0}, "1x1 s2 p0 odd"},
    {2, {5, 7, 9, 3, 3, 3, 2, 1}, "3x3 s2 p1 odd"},
    {2, {3, 5, 5, 3, 1, 1, 1, 0}, "1x1 s1 p0"},
    {4, {2, 6, 5, 3, 3, 3, 1, 0}, "3x3 s1 p0"},
    {2, {3, 5, 4, 2, 2, 3, 3, 2}, "2x3 s3 p2"},
    {1, {2, 3, 3, 2, 5, 5, 1, 1}, "5x5 on 3x3 p1"},
    {5, {16, 8, 8, 32, 3, 3, 1, 1}, "wider 3x3"},
    {3, {5, 7, 5, 4, 3, 3, 1, 1}, "3x3 s1 p1 odd (Winograd, partial tiles)"},
    {2, {3, 1, 2, 2, 3, 3, 1, 1}, "3x3 s1 p1 on 1x2 (Winograd, one partial tile)"},
};

static void test_conv_shapes(void) {
  ConvShape s = {3, 6, 6, 4, 3, 3, 1, 1};
  CHECK(conv_out_h(&s) == 6 && conv_out_w(&s) == 6, "3x3 s1 p1 keeps the size");
  s.stride = 2;
  CHECK(conv_out_h(&s) == 3 && conv_out_w(&s) == 3, "3x3 s2 p1 on 6x6 gives 3x3");
  ConvShape t = {4, 7, 5, 6, 1, 1, 2, 0};
  CHECK(conv_out_h(&t) == 4 && conv_out_w(&t) == 3, "1x1 s2 on 7x5 gives 4x3");
  CHECK(conv_flops(&s) == 2.0 * 4 * 27 * 9, "conv_flops");
  CHECK(conv2d_workspace_size(&s, 2) == 2 * (27 + 4) * 9, "workspace size");
  ConvShape bad = {3, 2, 2, 4, 5, 5, 1, 0};
  CHECK(conv_shape_check(&bad) == -1 && conv2d_workspace_size(&bad, 1) == 0, "kernel larger than input");
  bad = s, bad.stride = 0;
  CHECK(conv_shape_check(&bad) == -1, "stride 0 accepted");
  bad = s, bad.pad = -1;
  CHECK(conv_shape_check(&bad) == -1, "negative pad accepted");
  /* an empty local batch (a rank without samples still joins the reductions) */
  double part[BN_STATS_LEN(3)], vp[BN_VJP_STATS_LEN(3)], rp[BN_RVJP_STATS_LEN(3)], one[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  fill_nan(part, BN_STATS_LEN(3)), fill_nan(vp, 6), fill_nan(rp, 9);
  bn_stats(part, one, 0, 3, 4);
  bn_vjp_stats(vp, NULL, NULL, one, one, one, one, 0, 3, 4);
  bn_rvjp_stats(rp, NULL, NULL, one, one, one, one, one, one, one, 1.0, 0, 3, 4);
  int zeros = 1;
  for (int i = 0; i < 7; i++) zeros &= part[i] == 0.0;
  for (int i = 0; i < 6; i++) zeros &= vp[i] == 0.0;
  for (int i = 0; i < 9; i++) zeros &= rp[i] == 0.0;
  CHECK(zeros, "batch-norm partial sums of an empty batch are zero");
  double w[4 * 27] = {0}, work[64];
  CHECK(conv2d_forward(NULL, NULL, w, NULL, 0, &s, 1.0, 1.0, work, 64) == 0 &&
            conv2d_vjp(NULL, NULL, NULL, NULL, NULL, w, 0, &s, 1.0, 1.0, work, 64) == 0,
        "conv2d on an empty batch");
}

/* ================================================================== batch norm */

/* The split pipeline over R "ranks" = consecutive sample ranges [cut[r], cut[r+1]); the partial
 * sums of all ranks are added (what the Reducer does) before the second kernel. */
typedef struct {
  int B, C, HW, affine;
  double eps;
  double *x, *gamma, *beta, *dy, *tx, *tgamma, *tbeta, *Rdy;
} BnCase;

typedef struct {
  double *y, *dx, *dgamma, *dbeta, *ty, *Rdx, *Rdgamma, *Rdbeta, *mean, *rstd, *part;
} BnOut;

static size_t bn_n(const BnCase *c) { return (size_t)c->B * c->C * c->HW; }

static void bn_out_alloc(BnOut *o, const BnCase *c) {
  size_t n = bn_n(c), C = (size_t)c->C;
  o->y = dvec(n), o->dx = dvec(n), o->ty = dvec(n), o->Rdx = dvec(n);
  o->dgamma = dvec(C), o->dbeta = dvec(C), o->Rdgamma = dvec(C), o->Rdbeta = dvec(C);
  o->mean = dvec(C), o->rstd = dvec(C), o->part = dvec(BN_STATS_LEN(C));
  fill_nan(o->y, n), fill_nan(o->dx, n), fill_nan(o->ty, n), fill_nan(o->Rdx, n);
}
static void bn_out_free(BnOut *o) {
  free(o->y), free(o->dx), free(o->ty), free(o->Rdx), free(o->dgamma), free(o->dbeta),
      free(o->Rdgamma), free(o->Rdbeta), free(o->mean), free(o->rstd), free(o->part);
}

/* Runs forward, VJP (dgamma/dbeta from 0), JVP and R-VJP on R ranks. */
static void bn_pipeline(BnOut *o, const BnCase *c, int R) {
  const int C = c->C, HW = c->HW;
  const size_t sz = (size_t)C * HW, C2 = 2 * (size_t)C, C3 = 3 * (size_t)C;
  const double *g = c->affine ? c->gamma : NULL, *bt = c->affine ? c->beta : NULL;
  const double *tg = c->affine ? c->tgamma : NULL, *tbt = c->affine ? c->tbeta : NULL;
  int cut[4] = {0};
  for (int r = 0; r <= R; r++) cut[r] = (int)((long)c->B * r / R);
  double *part = dvec(BN_STATS_LEN(C)), *tmp = dvec(BN_STATS_LEN(C) + C3);
  double *vpart = dvec(C2), *jpart = dvec(C2), *rpart = dvec(C3);
#define RANKS(body)                                                        \
  for (int r = 0; r < R; r++) {                                            \
    const int a0 = cut[r], nb = cut[r + 1] - cut[r];                       \
    const size_t off = (size_t)a0 * sz;                                    \
    (void)off, (void)nb;                                                   \
    body                                                                   \
  }
  /* forward statistics */
  RANKS({
    bn_stats(tmp, c->x + off, nb, C, HW);
    if (r == 0) memset(part, 0, BN_STATS_LEN(C) * sizeof *part);
    add_inplace(part, tmp, BN_STATS_LEN(C));
  })
  memcpy(o->part, part, BN_STATS_LEN(C) * sizeof *part);
  bn_finalize(o->mean, o->rstd, NULL, part, C, c->eps);
  const double n = part[2 * C];
  RANKS({ bn_forward(o->y + off, c->x + off, o->mean, o->rstd, g, bt, nb, C, HW); })
  /* VJP */
  memset(vpart, 0, C2 * sizeof *vpart);
  RANKS({
    bn_vjp_stats(tmp, c->affine ? o->dgamma : NULL, c->affine ? o->dbeta : NULL, c->dy + off,
                 c->x + off, o->mean, o->rstd, nb, C, HW);
    add_inplace(vpart, tmp, C2);
  })
  RANKS({ bn_vjp(o->dx + off, c->dy + off, c->x + off, o->mean, o->rstd, g, vpart, n, nb, C, HW); })
  /* JVP */
  memset(jpart, 0, C2 * sizeof *jpart);
  RANKS({
    bn_jvp_stats(tmp, c->tx + off, c->x + off, o->mean, o->rstd, nb, C, HW);
    add_inplace(jpart, tmp, C2);
  })
  RANKS({
    bn_jvp(o->ty + off, c->tx + off, c->x + off, o->mean, o->rstd, g, tg, tbt, jpart, n, nb, C, HW);
  })
  /* R-VJP */
  memset(rpart, 0, C3 * sizeof *rpart);
  RANKS({
    bn_rvjp_stats(tmp, c->affine ? o->Rdgamma : NULL, c->affine ? o->Rdbeta : NULL, c->Rdy + off,
                  c->dy + off, c->tx + off, c->x + off, o->mean, o->rstd, jpart, n, nb, C, HW);
    add_inplace(rpart, tmp, C3);
  })
  RANKS({
    bn_rvjp(o->Rdx + off, c->Rdy + off, c->dy + off, c->tx + off, c->x + off, o->mean, o->rstd, g,
            tg, jpart, vpart, rpart, n, nb, C, HW);
  })
#undef RANKS
  free(part), free(tmp), free(vpart), free(jpart), free(rpart);
}

/* y = BN(x; gamma, beta) on one rank, through the split kernels. */
static void bn_apply(double *y, const double *x, const double *gamma, const double *beta, int B,
                     int C, int HW, double eps) {
  double *part = dvec(BN_STATS_LEN(C)), *mean = dvec(C), *rstd = dvec(C);
  bn_stats(part, x, B, C, HW);
  bn_finalize(mean, rstd, NULL, part, C, eps);
  bn_forward(y, x, mean, rstd, gamma, beta, B, C, HW);
  free(part), free(mean), free(rstd);
}
/* (dx, dgamma, dbeta) = VJP of BN at (x, gamma) on dy, one rank, dgamma/dbeta from 0. */
static void bn_grad(double *dx, double *dgamma, double *dbeta, const double *dy, const double *x,
                    const double *gamma, int B, int C, int HW, double eps) {
  double *part = dvec(BN_STATS_LEN(C)), *mean = dvec(C), *rstd = dvec(C), *vp = dvec(2 * (size_t)C);
  bn_stats(part, x, B, C, HW);
  bn_finalize(mean, rstd, NULL, part, C, eps);
  if (dgamma) memset(dgamma, 0, (size_t)C * sizeof *dgamma);
  if (dbeta) memset(dbeta, 0, (size_t)C * sizeof *dbeta);
  bn_vjp_stats(vp, dgamma, dbeta, dy, x, mean, rstd, B, C, HW);
  bn_vjp(dx, dy, x, mean, rstd, gamma, vp, part[2 * C], B, C, HW);
  free(part), free(mean), free(rstd), free(vp);
}

#define BC_FMT "[bn B=%d C=%d HW=%d affine=%d eps=%g] "
#define BC_ARGS(c) (c)->B, (c)->C, (c)->HW, (c)->affine, (c)->eps

static void bn_case(int B, int C, int HW, int affine, double eps) {
  BnCase cs = {.B = B, .C = C, .HW = HW, .affine = affine, .eps = eps}, *c = &cs;
  const size_t n = bn_n(c), Cz = (size_t)C;
  c->x = dvec(n), c->dy = dvec(n), c->tx = dvec(n), c->Rdy = dvec(n);
  c->gamma = dvec(Cz), c->beta = dvec(Cz), c->tgamma = dvec(Cz), c->tbeta = dvec(Cz);
  fill_random(c->x, n, 1.0);
  for (int a = 0; a < B; a++) /* per-channel offsets and scales */
    for (int ch = 0; ch < C; ch++)
      for (int p = 0; p < HW; p++) {
        double *v = &c->x[((size_t)a * C + ch) * HW + p];
        *v = (0.5 + ch) * *v + 0.7 * ch - 1.0;
      }
  fill_random(c->dy, n, 1.0), fill_random(c->tx, n, 1.0), fill_random(c->Rdy, n, 1.0);
  for (int ch = 0; ch < C; ch++) c->gamma[ch] = 1.0 + 0.5 * prng_uniform_pm1();
  fill_random(c->beta, Cz, 1.0), fill_random(c->tgamma, Cz, 1.0), fill_random(c->tbeta, Cz, 1.0);
  const double *g = affine ? c->gamma : NULL, *bt = affine ? c->beta : NULL;
  const double *tg = affine ? c->tgamma : NULL, *tbt = affine ? c->tbeta : NULL;

  BnOut one, two, three;
  bn_out_alloc(&one, c), bn_out_alloc(&two, c), bn_out_alloc(&three, c);
  bn_pipeline(&one, c, 1);
  CHECK(tu_all_finite(one.y, n) && tu_all_finite(one.dx, n) && tu_all_finite(one.ty, n) &&
            tu_all_finite(one.Rdx, n),
        BC_FMT "non-finite outputs", BC_ARGS(c));

  /* ---- split kernels on one rank == textbook twins */
  {
    double *y = dvec(n), *dx = dvec(n), *ty = dvec(n), *Rdx = dvec(n);
    double *dg = dvec(Cz), *db = dvec(Cz), *Rdg = dvec(Cz), *Rdb = dvec(Cz);
    bn_forward_ref(y, c->x, g, bt, B, C, HW, eps);
    bn_vjp_ref(dx, affine ? dg : NULL, affine ? db : NULL, c->dy, c->x, g, B, C, HW, eps);
    bn_jvp_ref(ty, c->tx, c->x, g, tg, tbt, B, C, HW, eps);
    bn_rvjp_ref(Rdx, affine ? Rdg : NULL, affine ? Rdb : NULL, c->Rdy, c->dy, c->tx, c->x, g, tg, B,
                C, HW, eps);
    CHECK(tu_rel_err(one.y, y, n) < REF_TOL, BC_FMT "forward vs ref: %.2e", BC_ARGS(c),
          tu_rel_err(one.y, y, n));
    CHECK(tu_rel_err(one.dx, dx, n) < REF_TOL, BC_FMT "vjp dx vs ref: %.2e", BC_ARGS(c),
          tu_rel_err(one.dx, dx, n));
    CHECK(tu_rel_err(one.ty, ty, n) < REF_TOL, BC_FMT "jvp vs ref: %.2e", BC_ARGS(c),
          tu_rel_err(one.ty, ty, n));
    CHECK(tu_rel_err(one.Rdx, Rdx, n) < REF_TOL, BC_FMT "rvjp Rdx vs ref: %.2e", BC_ARGS(c),
          tu_rel_err(one.Rdx, Rdx, n));
    if (affine) {
      CHECK(tu_rel_err(one.dgamma, dg, Cz) < REF_TOL && tu_rel_err(one.dbeta, db, Cz) < REF_TOL,
            BC_FMT "vjp dgamma/dbeta vs ref: %.2e %.2e", BC_ARGS(c), tu_rel_err(one.dgamma, dg, Cz),
            tu_rel_err(one.dbeta, db, Cz));
      CHECK(tu_rel_err(one.Rdgamma, Rdg, Cz) < REF_TOL && tu_rel_err(one.Rdbeta, Rdb, Cz) < REF_TOL,
            BC_FMT "rvjp Rdgamma/Rdbeta vs ref: %.2e %.2e", BC_ARGS(c),
            tu_rel_err(one.Rdgamma, Rdg, Cz), tu_rel_err(one.Rdbeta, Rdb, Cz));
    }
    /* JVP with a NULL input tangent: only the affine tangents remain */
    double *ty0 = dvec(n), *ty0_ref = dvec(n);
    fill_nan(ty0, n);
    bn_jvp(ty0, NULL, c->x, one.mean, one.rstd, g, tg, tbt, NULL, one.part[2 * C], B, C, HW);
    bn_jvp_ref(ty0_ref, NULL, c->x, g, tg, tbt, B, C, HW, eps);
    double e0 = tu_rel_err(ty0, ty0_ref, n);
    CHECK(affine ? e0 < REF_TOL : e0 == 0.0, BC_FMT "jvp with tx = NULL: %.2e", BC_ARGS(c), e0);
    free(y), free(dx), free(ty), free(Rdx), free(dg), free(db), free(Rdg), free(Rdb), free(ty0),
        free(ty0_ref);
  }

  /* ---- normalisation: per-channel mean 0, biased variance var/(var+eps) (1 for eps = 0) */
  {
    double *y = dvec(n), *var = dvec(Cz), *mean = dvec(Cz), *rstd = dvec(Cz);
    bn_apply(y, c->x, NULL, NULL, B, C, HW, eps);
    bn_finalize(mean, rstd, var, one.part, C, eps);
    int bad = 0;
    double worst_m = 0, worst_v = 0;
    for (int ch = 0; ch < C; ch++) {
      double s1 = 0, s2 = 0;
      for (int a = 0; a < B; a++)
        for (int p = 0; p < HW; p++) {
          double v = y[((size_t)a * C + ch) * HW + p];
          s1 += v, s2 += v * v;
        }
      double m = s1 / ((double)B * HW), v = s2 / ((double)B * HW) - m * m;
      double want = var[ch] / (var[ch] + eps);
      worst_m = fmax(worst_m, fabs(m)), worst_v = fmax(worst_v, fabs(v - want));
      bad += !(fabs(m) < 1e-13 && fabs(v - want) < 1e-12);
      if (eps == 0.0) bad += !(fabs(v - 1.0) < 1e-12);
    }
    CHECK(bad == 0, BC_FMT "normalised output: |mean| %.2e, |var - var/(var+eps)| %.2e", BC_ARGS(c),
          worst_m, worst_v);
    free(y), free(var), free(mean), free(rstd);
  }

  /* ---- two and three ranks (uneven sample ranges) == one rank */
  bn_pipeline(&two, c, 2);
  if (B >= 3) bn_pipeline(&three, c, 3);
  for (int k = 0; k < (B >= 3 ? 2 : 1); k++) {
    const BnOut *o = k ? &three : &two;
    const int R = k ? 3 : 2;
    CHECK(tu_rel_err(o->part, one.part, BN_STATS_LEN(C)) < REF_TOL && o->part[2 * C] == one.part[2 * C],
          BC_FMT "%d ranks: summed partial statistics vs whole batch: %.2e", BC_ARGS(c), R,
          tu_rel_err(o->part, one.part, BN_STATS_LEN(C)));
    double e[5] = {tu_rel_err(o->y, one.y, n), tu_rel_err(o->dx, one.dx, n), tu_rel_err(o->ty, one.ty, n),
                   tu_rel_err(o->Rdx, one.Rdx, n),
                   affine ? fmax(fmax(tu_rel_err(o->dgamma, one.dgamma, Cz), tu_rel_err(o->dbeta, one.dbeta, Cz)),
                                 fmax(tu_rel_err(o->Rdgamma, one.Rdgamma, Cz),
                                      tu_rel_err(o->Rdbeta, one.Rdbeta, Cz)))
                          : 0.0};
    const char *what[5] = {"forward", "vjp dx", "jvp", "rvjp Rdx", "parameter gradients"};
    for (int i = 0; i < 5; i++)
      CHECK(e[i] < REF_TOL, BC_FMT "%d ranks vs one: %s %.2e", BC_ARGS(c), R, what[i], e[i]);
  }

  /* ---- finite differences: JVP of the forward, VJP by directions, R-VJP of the VJP */
  const double h = FD_STEP;
  {
    double *xp = shifted(c->x, c->tx, h, n), *xm = shifted(c->x, c->tx, -h, n);
    double *gp = shifted(c->gamma, c->tgamma, h, Cz), *gm = shifted(c->gamma, c->tgamma, -h, Cz);
    double *bp = shifted(c->beta, c->tbeta, h, Cz), *bm = shifted(c->beta, c->tbeta, -h, Cz);
    double *yp = dvec(n), *ym = dvec(n), *fd = dvec(n);
    bn_apply(yp, xp, affine ? gp : NULL, affine ? bp : NULL, B, C, HW, eps);
    bn_apply(ym, xm, affine ? gm : NULL, affine ? bm : NULL, B, C, HW, eps);
    for (size_t i = 0; i < n; i++) fd[i] = (yp[i] - ym[i]) / (2 * h);
    CHECK(tu_rel_err(one.ty, fd, n) < FD_TOL, BC_FMT "jvp vs central differences: %.2e", BC_ARGS(c),
          tu_rel_err(one.ty, fd, n));
    for (int arg = 0; arg < (affine ? 3 : 1); arg++) {
      bn_apply(yp, arg == 0 ? xp : c->x, affine ? (arg == 1 ? gp : c->gamma) : NULL,
               affine ? (arg == 2 ? bp : c->beta) : NULL, B, C, HW, eps);
      bn_apply(ym, arg == 0 ? xm : c->x, affine ? (arg == 1 ? gm : c->gamma) : NULL,
               affine ? (arg == 2 ? bm : c->beta) : NULL, B, C, HW, eps);
      double fdd = (dot(c->dy, yp, n) - dot(c->dy, ym, n)) / (2 * h);
      double an = arg == 0 ? dot(one.dx, c->tx, n)
                           : arg == 1 ? dot(one.dgamma, c->tgamma, Cz) : dot(one.dbeta, c->tbeta, Cz);
      CHECK(rel_close(an, fdd, FD_TOL, 1.0), BC_FMT "vjp %s vs central differences: %.15g vs %.15g",
            BC_ARGS(c), arg == 0 ? "dx" : arg == 1 ? "dgamma" : "dbeta", an, fdd);
    }
    /* adjoint identity <J v, u> = <v, J^T u> with v = (tx, tgamma, tbeta), u = dy */
    double lhs = dot(one.ty, c->dy, n);
    double rhs = dot(c->tx, one.dx, n) +
                 (affine ? dot(c->tgamma, one.dgamma, Cz) + dot(c->tbeta, one.dbeta, Cz) : 0.0);
    CHECK(rel_close(lhs, rhs, ADJ_TOL, 1.0), BC_FMT "adjoint identity: %.17g vs %.17g", BC_ARGS(c),
          lhs, rhs);
    /* R-VJP: d/dh VJP(x + h tx, gamma + h tgamma; dy + h Rdy) */
    double *dyp = shifted(c->dy, c->Rdy, h, n), *dym = shifted(c->dy, c->Rdy, -h, n);
    double *dxp = dvec(n), *dxm = dvec(n), *dgp = dvec(Cz), *dgm = dvec(Cz), *dbp = dvec(Cz),
           *dbm = dvec(Cz);
    bn_grad(dxp, dgp, dbp, dyp, xp, affine ? gp : NULL, B, C, HW, eps);
    bn_grad(dxm, dgm, dbm, dym, xm, affine ? gm : NULL, B, C, HW, eps);
    for (size_t i = 0; i < n; i++) fd[i] = (dxp[i] - dxm[i]) / (2 * h);
    CHECK(tu_rel_err(one.Rdx, fd, n) < FD_TOL, BC_FMT "rvjp Rdx vs central differences: %.2e",
          BC_ARGS(c), tu_rel_err(one.Rdx, fd, n));
    if (affine) {
      double *fg = dvec(Cz), *fb = dvec(Cz);
      for (size_t i = 0; i < Cz; i++)
        fg[i] = (dgp[i] - dgm[i]) / (2 * h), fb[i] = (dbp[i] - dbm[i]) / (2 * h);
      CHECK(tu_rel_err(one.Rdgamma, fg, Cz) < FD_TOL && tu_rel_err(one.Rdbeta, fb, Cz) < FD_TOL,
            BC_FMT "rvjp Rdgamma/Rdbeta vs central differences: %.2e %.2e", BC_ARGS(c),
            tu_rel_err(one.Rdgamma, fg, Cz), tu_rel_err(one.Rdbeta, fb, Cz));
      free(fg), free(fb);
    }
    /* Symmetry of the Hessian of the scalar <u, BN(x)> (u = dy): the R-VJP with Rdy = 0 is H v,
     * and <H v1, v2> = <v1, H v2>. */
    {
      double *zero = dvec(n), *v2 = dvec(n), *Hv1 = dvec(n), *Hv2 = dvec(n);
      fill_random(v2, n, 1.0);
      double *mean = one.mean, *rstd = one.rstd, cnt = one.part[2 * C];
      double *vp = dvec(2 * Cz), *jp = dvec(2 * Cz), *rp = dvec(3 * Cz);
      bn_vjp_stats(vp, NULL, NULL, c->dy, c->x, mean, rstd, B, C, HW);
      const double *vs[2] = {c->tx, v2};
      double *Hs[2] = {Hv1, Hv2};
      for (int k = 0; k < 2; k++) {
        bn_jvp_stats(jp, vs[k], c->x, mean, rstd, B, C, HW);
        bn_rvjp_stats(rp, NULL, NULL, zero, c->dy, vs[k], c->x, mean, rstd, jp, cnt, B, C, HW);
        bn_rvjp(Hs[k], zero, c->dy, vs[k], c->x, mean, rstd, g, NULL, jp, vp, rp, cnt, B, C, HW);
      }
      double l = dot(Hv1, v2, n), r = dot(c->tx, Hv2, n);
      CHECK(rel_close(l, r, ADJ_TOL, 1.0), BC_FMT "Hessian symmetry <H v1, v2> = <v1, H v2>: %.17g vs %.17g",
            BC_ARGS(c), l, r);
      free(zero), free(v2), free(Hv1), free(Hv2), free(vp), free(jp), free(rp);
    }
    free(xp), free(xm), free(gp), free(gm), free(bp), free(bm), free(yp), free(ym), free(fd),
        free(dyp), free(dym), free(dxp), free(dxm), free(dgp), free(dgm), free(dbp), free(dbm);
  }

  /* ---- R-VJP without a first-order cotangent (Gauss-Newton) == VJP of rdy; rdx aliasing rx */
  {
    double *vp = dvec(2 * Cz), *jp = dvec(2 * Cz), *rp = dvec(3 * Cz), *ref = dvec(n), *out = dvec(n);
    double *rg = dvec(Cz), *rb = dvec(Cz), *gg = dvec(Cz), *gb = dvec(Cz);
    const double cnt = one.part[2 * C];
    bn_grad(ref, gg, gb, c->Rdy, c->x, g, B, C, HW, eps);
    bn_jvp_stats(jp, c->tx, c->x, one.mean, one.rstd, B, C, HW);
    fill_nan(out, n);
    bn_rvjp_stats(rp, rg, rb, c->Rdy, NULL, c->tx, c->x, one.mean, one.rstd, jp, cnt, B, C, HW);
    bn_rvjp(out, c->Rdy, NULL, c->tx, c->x, one.mean, one.rstd, g, tg, jp, NULL, rp, cnt, B, C, HW);
    CHECK(tu_rel_err(out, ref, n) < REF_TOL && tu_rel_err(rg, gg, Cz) < REF_TOL && tu_rel_err(rb, gb, Cz) < REF_TOL,
          BC_FMT "rvjp with dy = NULL (Gauss-Newton) vs vjp of rdy: %.2e", BC_ARGS(c), tu_rel_err(out, ref, n));
    bn_rvjp_ref(out, NULL, NULL, c->Rdy, NULL, c->tx, c->x, g, tg, B, C, HW, eps);
    CHECK(tu_rel_err(out, ref, n) < REF_TOL, BC_FMT "rvjp_ref with dy = NULL", BC_ARGS(c));
    double *alias = dcopy(c->tx, n);
    bn_vjp_stats(vp, NULL, NULL, c->dy, c->x, one.mean, one.rstd, B, C, HW);
    bn_rvjp_stats(rp, NULL, NULL, c->Rdy, c->dy, alias, c->x, one.mean, one.rstd, jp, cnt, B, C, HW);
    bn_rvjp(alias, c->Rdy, c->dy, alias, c->x, one.mean, one.rstd, g, tg, jp, vp, rp, cnt, B, C, HW);
    CHECK(tu_rel_err(alias, one.Rdx, n) < REF_TOL, BC_FMT "rvjp with rdx aliasing rx: %.2e", BC_ARGS(c),
          tu_rel_err(alias, one.Rdx, n));
    free(vp), free(jp), free(rp), free(ref), free(out), free(rg), free(rb), free(gg), free(gb), free(alias);
  }

  /* ---- aliasing promised by conv.h: y may alias x, dx may alias dy, ty may alias tx */
  {
    double *buf = dcopy(c->x, n);
    bn_forward(buf, buf, one.mean, one.rstd, g, bt, B, C, HW);
    int ok = tu_rel_err(buf, one.y, n) == 0.0;
    double vp[2 * 64], jp[2 * 64];
    if (C <= 64) {
      bn_vjp_stats(vp, NULL, NULL, c->dy, c->x, one.mean, one.rstd, B, C, HW);
      memcpy(buf, c->dy, n * sizeof *buf);
      bn_vjp(buf, buf, c->x, one.mean, one.rstd, g, vp, one.part[2 * C], B, C, HW);
      ok &= tu_rel_err(buf, one.dx, n) == 0.0;
      bn_jvp_stats(jp, c->tx, c->x, one.mean, one.rstd, B, C, HW);
      memcpy(buf, c->tx, n * sizeof *buf);
      bn_jvp(buf, buf, c->x, one.mean, one.rstd, g, tg, tbt, jp, one.part[2 * C], B, C, HW);
      ok &= tu_rel_err(buf, one.ty, n) == 0.0;
    }
    CHECK(ok, BC_FMT "in-place forward / vjp / jvp", BC_ARGS(c));
    free(buf);
  }

  bn_out_free(&one), bn_out_free(&two), bn_out_free(&three);
  free(c->x), free(c->dy), free(c->tx), free(c->Rdy), free(c->gamma), free(c->beta), free(c->tgamma),
      free(c->tbeta);
}

static void test_bn(void) {
  bn_case(4, 3, 5, 1, BN_EPS_DEFAULT);
  bn_case(4, 3, 5, 0, BN_EPS_DEFAULT);
  bn_case(5, 2, 9, 1, 0.1);
  bn_case(7, 4, 1, 1, BN_EPS_DEFAULT); /* HW = 1: batch norm of a dense layer */
  bn_case(3, 5, 16, 0, 0.0);           /* eps = 0: variance exactly 1 */
  bn_case(2, 6, 4, 1, 0.0);
}

/* ================================================================== pooling, residual add */

static void test_pool(void) {
  const int B = 3, C = 4, HW = 10;
  const size_t n = (size_t)B * C * HW, m = (size_t)B * C;
  double *x = dvec(n), *y = dvec(m), *u = dvec(m), *dx = dvec(n), *tx = dvec(n), *ty = dvec(m);
  fill_random(x, n, 1.0), fill_random(u, m, 1.0), fill_random(tx, n, 1.0);
  global_avgpool_forward(y, x, B, C, HW);
  int bad = 0;
  for (size_t ac = 0; ac < m; ac++) {
    double s = 0;
    for (int p = 0; p < HW; p++) s += x[ac * HW + p];
    bad += !tu_close(y[ac], s / HW, 1e-15);
  }
  CHECK(bad == 0, "avgpool forward: %d wrong", bad);
  fill_nan(dx, n), fill_nan(ty, m);
  global_avgpool_vjp(dx, u, B, C, HW);
  global_avgpool_jvp(ty, tx, B, C, HW);
  bad = 0;
  for (size_t i = 0; i < n; i++) bad += !tu_close(dx[i], u[i / HW] / HW, 1e-15);
  CHECK(bad == 0, "avgpool vjp: %d wrong", bad);
  const double h = FD_STEP;
  double *xp = shifted(x, tx, h, n), *xm = shifted(x, tx, -h, n), *yp = dvec(m), *ym = dvec(m),
         *fd = dvec(m);
  global_avgpool_forward(yp, xp, B, C, HW);
  global_avgpool_forward(ym, xm, B, C, HW);
  for (size_t i = 0; i < m; i++) fd[i] = (yp[i] - ym[i]) / (2 * h);
  CHECK(tu_rel_err(ty, fd, m) < FD_TOL, "avgpool jvp vs central differences: %.2e", tu_rel_err(ty, fd, m));
  double fdd = (dot(u, yp, m) - dot(u, ym, m)) / (2 * h);
  CHECK(rel_close(dot(dx, tx, n), fdd, FD_TOL, 1.0), "avgpool vjp vs central differences");
  CHECK(rel_close(dot(ty, u, m), dot(tx, dx, n), ADJ_TOL, 1.0), "avgpool adjoint identity: %.17g vs %.17g",
        dot(ty, u, m), dot(tx, dx, n));
  free(x), free(y), free(u), free(dx), free(tx), free(ty), free(xp), free(xm), free(yp), free(ym), free(fd);
}

static void test_residual(void) {
  const size_t n = 37;
  double *a = dvec(n), *b = dvec(n), *y = dvec(n), *u = dvec(n), *da = dvec(n), *db = dvec(n);
  double *ta = dvec(n), *tb = dvec(n), *ty = dvec(n);
  fill_random(a, n, 1.0), fill_random(b, n, 1.0), fill_random(u, n, 1.0);
  fill_random(ta, n, 1.0), fill_random(tb, n, 1.0);
  residual_add_forward(y, a, b, n);
  int bad = 0;
  for (size_t i = 0; i < n; i++) bad += y[i] != a[i] + b[i];
  CHECK(bad == 0, "residual forward");
  fill_nan(da, n), fill_nan(db, n);
  residual_add_vjp(da, db, u, n);
  CHECK(memcmp(da, u, n * sizeof *u) == 0 && memcmp(db, u, n * sizeof *u) == 0, "residual vjp fan-out");
  double *al = dcopy(u, n);
  residual_add_vjp(al, NULL, al, n);
  CHECK(memcmp(al, u, n * sizeof *u) == 0, "residual vjp aliasing dout");
  fill_nan(ty, n);
  residual_add_jvp(ty, ta, tb, n);
  const double h = FD_STEP;
  double *ap = shifted(a, ta, h, n), *am = shifted(a, ta, -h, n), *bp = shifted(b, tb, h, n),
         *bm = shifted(b, tb, -h, n), *yp = dvec(n), *ym = dvec(n), *fd = dvec(n);
  residual_add_forward(yp, ap, bp, n);
  residual_add_forward(ym, am, bm, n);
  for (size_t i = 0; i < n; i++) fd[i] = (yp[i] - ym[i]) / (2 * h);
  CHECK(tu_rel_err(ty, fd, n) < FD_TOL, "residual jvp vs central differences: %.2e", tu_rel_err(ty, fd, n));
  double fdd = (dot(u, yp, n) - dot(u, ym, n)) / (2 * h);
  CHECK(rel_close(dot(da, ta, n) + dot(db, tb, n), fdd, FD_TOL, 1.0), "residual vjp vs central differences");
  CHECK(rel_close(dot(ty, u, n), dot(ta, da, n) + dot(tb, db, n), ADJ_TOL, 1.0), "residual adjoint identity");
  residual_add_jvp(ty, NULL, tb, n);
  CHECK(memcmp(ty, tb, n * sizeof *tb) == 0, "residual jvp with a NULL tangent");
  residual_add_jvp(ty, NULL, NULL, n);
  bad = 0;
  for (size_t i = 0; i < n; i++) bad += ty[i] != 0.0;
  CHECK(bad == 0, "residual jvp with two NULL tangents");
  memcpy(al, a, n * sizeof *a);
  add_inplace(al, b, n);
  CHECK(memcmp(al, y, n * sizeof *y) == 0, "add_inplace");
  free(a), free(b), free(y), free(u), free(da), free(db), free(ta), free(tb), free(ty), free(al),
      free(ap), free(am), free(bp), free(bm), free(yp), free(ym), free(fd);
}

/* ================================================================== --dump for torch */

static void put(FILE *fp, const char *name, const double *v, size_t n) {
  fprintf(fp, "%s %zu", name, n);
  for (size_t i = 0; i < n; i++) fprintf(fp, " %.17g", v[i]);
  fputc('\n', fp);
}

/* Format: "case conv B C_in H W C_out kh kw stride pad w_mult b_mult bias" then arrays
 * in W b tin tW tb dout Rdout y dx dW db ty Rdx RdW Rdb (b/tb/db/Rdb empty without bias);
 * "case bn B C H W affine eps" then x gamma beta tx tgamma tbeta dy Rdy y dx dgamma dbeta ty Rdx
 * Rdgamma Rdbeta; "case pool B C H W" then x dout y dx. Last line "end". */
static int dump(const char *path) {
  FILE *fp = fopen(path, "w");
  if (!fp) {
    perror(path);
    return 2;
  }
  const ConvCase cc[] = {{3, {3, 6, 6, 4, 3, 3, 1, 1}, ""}, {2, {5, 7, 9, 3, 3, 3, 2, 1}, ""},
                         {3, {4, 7, 5, 6, 1, 1, 2, 0}, ""}, {2, {3, 5, 4, 2, 2, 3, 3, 2}, ""}};
  for (int k = 0; k < 4; k++) {
    const ConvShape *s = &cc[k].s;
    const int B = cc[k].B, bias = k != 2;
    const size_t nx = (size_t)B * conv_in_size(s), nw = conv_w_size(s), nb = bias ? (size_t)s->C_out : 0,
                 ny = (size_t)B * conv_out_size(s);
    const double w_mult = 1.3 / sqrt((double)s->C_in * s->kh * s->kw), b_mult = 0.4;
    double *in = dvec(nx), *W = dvec(nw), *b = dvec(nb), *tin = dvec(nx), *tW = dvec(nw), *tb = dvec(nb);
    double *dout = dvec(ny), *Rdout = dvec(ny), *y = dvec(ny), *dx = dvec(nx), *dW = dvec(nw),
           *db = dvec(nb), *ty = dvec(ny), *Rdx = dvec(nx), *RdW = dvec(nw), *Rdb = dvec(nb);
    fill_random(in, nx, 1), fill_random(W, nw, 1), fill_random(b, nb, 1), fill_random(tin, nx, 1);
    fill_random(tW, nw, 1), fill_random(tb, nb, 1), fill_random(dout, ny, 1), fill_random(Rdout, ny, 1);
    size_t wl = conv2d_workspace_size(s, 2);
    double *work = dvec(wl);
    const double *bb = bias ? b : NULL;
    conv2d_forward(y, in, W, bb, B, s, w_mult, b_mult, work, wl);
    conv2d_vjp(dx, dW, bias ? db : NULL, dout, in, W, B, s, w_mult, b_mult, work, wl);
    conv2d_jvp(ty, tin, in, W, tW, bias ? tb : NULL, B, s, w_mult, b_mult, work, wl);
    conv2d_rvjp(Rdx, RdW, bias ? Rdb : NULL, Rdout, dout, in, tin, W, tW, B, s, w_mult, b_mult, work, wl);
    fprintf(fp, "case conv %d %d %d %d %d %d %d %d %d %.17g %.17g %d\n", B, s->C_in, s->H, s->W,
            s->C_out, s->kh, s->kw, s->stride, s->pad, w_mult, b_mult, bias);
    put(fp, "in", in, nx), put(fp, "W", W, nw), put(fp, "b", b, nb), put(fp, "tin", tin, nx);
    put(fp, "tW", tW, nw), put(fp, "tb", tb, nb), put(fp, "dout", dout, ny), put(fp, "Rdout", Rdout, ny);
    put(fp, "y", y, ny), put(fp, "dx", dx, nx), put(fp, "dW", dW, nw), put(fp, "db", db, nb);
    put(fp, "ty", ty, ny), put(fp, "Rdx", Rdx, nx), put(fp, "RdW", RdW, nw), put(fp, "Rdb", Rdb, nb);
    free(in), free(W), free(b), free(tin), free(tW), free(tb), free(dout), free(Rdout), free(y),
        free(dx), free(dW), free(db), free(ty), free(Rdx), free(RdW), free(Rdb), free(work);
  }
  const int bns[3][5] = {{4, 3, 3, 5, 1}, {5, 2, 3, 3, 0}, {6, 4, 1, 1, 1}};
  for (int k = 0; k < 3; k++) {
    const int B = bns[k][0], C = bns[k][1], H = bns[k][2], Wd = bns[k][3], affine = bns[k][4];
    const double eps = k == 1 ? 0.01 : BN_EPS_DEFAULT;
    BnCase cs = {.B = B, .C = C, .HW = H * Wd, .affine = affine, .eps = eps}, *c = &cs;
    const size_t n = bn_n(c), Cz = (size_t)C;
    c->x = dvec(n), c->dy = dvec(n), c->tx = dvec(n), c->Rdy = dvec(n);
    c->gamma = dvec(Cz), c->beta = dvec(Cz), c->tgamma = dvec(Cz), c->tbeta = dvec(Cz);
    fill_random(c->x, n, 2.0);
    for (size_t i = 0; i < n; i++) c->x[i] += 0.5;
    fill_random(c->dy, n, 1), fill_random(c->tx, n, 1), fill_random(c->Rdy, n, 1);
    for (int ch = 0; ch < C; ch++) c->gamma[ch] = 1.0 + 0.5 * prng_uniform_pm1();
    fill_random(c->beta, Cz, 1), fill_random(c->tgamma, Cz, 1), fill_random(c->tbeta, Cz, 1);
    BnOut o;
    bn_out_alloc(&o, c);
    bn_pipeline(&o, c, 2); /* two "ranks" */
    fprintf(fp, "case bn %d %d %d %d %d %.17g\n", B, C, H, Wd, affine, eps);
    put(fp, "x", c->x, n), put(fp, "gamma", c->gamma, Cz), put(fp, "beta", c->beta, Cz);
    put(fp, "tx", c->tx, n), put(fp, "tgamma", c->tgamma, Cz), put(fp, "tbeta", c->tbeta, Cz);
    put(fp, "dy", c->dy, n), put(fp, "Rdy", c->Rdy, n), put(fp, "y", o.y, n), put(fp, "dx", o.dx, n);
    put(fp, "dgamma", o.dgamma, Cz), put(fp, "dbeta", o.dbeta, Cz), put(fp, "ty", o.ty, n);
    put(fp, "Rdx", o.Rdx, n), put(fp, "Rdgamma", o.Rdgamma, Cz), put(fp, "Rdbeta", o.Rdbeta, Cz);
    bn_out_free(&o);
    free(c->x), free(c->dy), free(c->tx), free(c->Rdy), free(c->gamma), free(c->beta),
        free(c->tgamma), free(c->tbeta);
  }
  {
    const int B = 3, C = 4, H = 5, Wd = 3;
    const size_t n = (size_t)B * C * H * Wd, m = (size_t)B * C;
    double *x = dvec(n), *u = dvec(m), *y = dvec(m), *dx = dvec(n);
    fill_random(x, n, 1), fill_random(u, m, 1);
    global_avgpool_forward(y, x, B, C, H * Wd);
    global_avgpool_vjp(dx, u, B, C, H * Wd);
    fprintf(fp, "case pool %d %d %d %d\n", B, C, H, Wd);
    put(fp, "x", x, n), put(fp, "dout", u, m), put(fp, "y", y, m), put(fp, "dx", dx, n);
    free(x), free(u), free(y), free(dx);
  }
  fprintf(fp, "end\n");
  return fclose(fp) ? 2 : 0;
}

/* ================================================================== --bench */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* forward + VJP (din, dW, db) of one layer at several chunk sizes; returns nothing, prints. */
static void bench_layer(const ConvShape *s, int B, const char *name) {
  const size_t nx = (size_t)B * conv_in_size(s), nw = conv_w_size(s), ny = (size_t)B * conv_out_size(s);
  const size_t nb = (size_t)s->C_out;
  double *in = dvec(nx), *W = dvec(nw), *b = dvec(nb), *y = dvec(ny), *dout = dvec(ny), *dx = dvec(nx),
         *dW = dvec(nw), *db = dvec(nb);
  fill_random(in, nx, 1), fill_random(W, nw, 1), fill_random(b, nb, 1), fill_random(dout, ny, 1);
  const double wm = 1.0 / sqrt((double)s->C_in * s->kh * s->kw), flops = 3.0 * conv_flops(s) * B;
  printf("conv2d %s: B=%d %d->%d %dx%d %dx%d s%d p%d: forward %.3f GFLOP, forward+vjp %.3f GFLOP\n",
         name, B, s->C_in, s->C_out, s->H, s->W, s->kh, s->kw, s->stride, s->pad,
         conv_flops(s) * B * 1e-9, flops * 1e-9);
  const int chunks[] = {1, 2, 4, 8, 16, 32};
  for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
    size_t wl = conv2d_workspace_size(s, chunks[k]);
    double *work = dvec(wl);
    double best = 1e30, bf = 1e30;
    for (int rep = 0; rep < 3; rep++) {
      double t0 = now();
      conv2d_forward(y, in, W, b, B, s, wm, 1.0, work, wl);
      double t1 = now();
      conv2d_vjp(dx, dW, db, dout, in, W, B, s, wm, 1.0, work, wl);
      double t2 = now();
      best = fmin(best, t2 - t0), bf = fmin(bf, t1 - t0);
    }
    printf("  chunk %3d (work %6.1f MB): forward %.3f s %.1f GFLOP/s | forward+vjp %.3f s %.1f GFLOP/s\n",
           chunks[k], wl * 8e-6, bf, conv_flops(s) * B / bf * 1e-9, best, flops / best * 1e-9);
    free(work);
  }
  free(in), free(W), free(b), free(y), free(dout), free(dx), free(dW), free(db);
}

static int bench(void) {
  const ConvShape mid = {64, 16, 16, 64, 3, 3, 1, 1};   /* WRN-16-4 group 1 (16 x 16) */
  const ConvShape last = {256, 8, 8, 256, 3, 3, 1, 1};  /* WRN-16-4 group 3 (8 x 8) */
  bench_layer(&mid, 128, "WRN-16-4 middle");
  bench_layer(&last, 32, "WRN-16-4 last group");
  /* dgemm peak: the middle layer's GEMM shape at chunk 1 and 8, and a square one */
  const int shapes[3][3] = {{64, 256, 576}, {64, 8 * 256, 576}, {1024, 1024, 1024}};
  for (int k = 0; k < 3; k++) {
    int M = shapes[k][0], N = shapes[k][1], K = shapes[k][2];
    double *A = dvec((size_t)M * K), *Bm = dvec((size_t)K * N), *Cm = dvec((size_t)M * N);
    fill_random(A, (size_t)M * K, 1), fill_random(Bm, (size_t)K * N, 1);
    double best = 1e30;
    int reps = k == 2 ? 3 : 20;
    for (int rep = 0; rep < reps; rep++) {
      double t0 = now();
      for (int r = 0; r < (k == 0 ? 8 : 1); r++)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0, A, K, Bm, N, 0.0, Cm, N);
      best = fmin(best, (now() - t0) / (k == 0 ? 8 : 1));
    }
    printf("  cblas_dgemm %dx%dx%d: %.1f GFLOP/s\n", M, N, K, 2.0 * M * N * K / best * 1e-9);
    free(A), free(Bm), free(Cm);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--dump") == 0) return dump(argv[2]);
  if (argc == 2 && strcmp(argv[1], "--bench") == 0) return bench();
  if (argc != 1) {
    fprintf(stderr, "usage: %s [--dump FILE | --bench]\n", argv[0]);
    return 2;
  }
  test_conv_shapes();
  for (size_t k = 0; k < sizeof conv_cases / sizeof conv_cases[0]; k++)
    for (int bias = 0; bias < 2; bias++) conv_case(&conv_cases[k], bias);
  test_bn();
  test_pool();
  test_residual();
  return tu_report("test_conv");
}
