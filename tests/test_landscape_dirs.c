/* Landscape kernels (src/core/landscape_dirs.c) against their _ref twins and the definitions:
 * filter normalisation of a WRN (convolutions per output channel, batch norm and biases 1-D) and of
 * an fc net (rows of dense weights), every slice's norm checked from scratch; the grid point; the
 * least-squares projection (residual orthogonal to both directions, exact for a point in their
 * span); the Jacobi eigensolver on a matrix with known eigenpairs; PCA of a synthetic trajectory
 * whose principal directions are known. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "landscape_dirs.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"

static double norm(const double *x, size_t n)
{
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i] * x[i];
  return sqrt(s);
}

static void check_model(const ModelConfig *mc, const char *tag)
{
  Model m;
  char err[256];
  CHECK(model_build(&m, mc, err, sizeof err) == 0, "%s: build: %s", tag, err);
  const size_t P = m.n_params;
  double *th = malloc(P * sizeof *th), *d = malloc(P * sizeof *d), *dr = malloc(P * sizeof *dr);
  model_init(&m, th, 7);
  for (int with_1d = 0; with_1d < 2; with_1d++) {
    landscape_random_direction(d, &m, th, 11, 0, false, true);
    memcpy(dr, d, P * sizeof *d);
    landscape_filter_normalize(d, &m, th, with_1d);
    landscape_filter_normalize_ref(dr, &m, th, with_1d);
    CHECK(tu_rel_err(d, dr, P) < 1e-14, "%s: optimised vs ref rel err %g", tag, tu_rel_err(d, dr, P));
    int slices = 0, bad = 0, convs = 0;
    for (int o = 0; o < m.n_ops; o++) {
      const Op *op = &m.ops[o];
      if (op->w >= 0 && (op->kind == OP_DENSE || op->kind == OP_CONV)) {
        const ParamTensor *t = &m.tensors[op->w];
        const int R = op->kind == OP_DENSE ? op->n_out : op->conv.C_out;
        const size_t len = t->size / (size_t)R;
        convs += op->kind == OP_CONV;
        for (int r = 0; r < R; r++, slices++) {
          const double a = norm(d + t->offset + r * len, len), b = norm(th + t->offset + r * len, len);
          if (fabs(a - b) > 1e-9 * b) bad++;
        }
      }
      const int one_d[2] = {op->kind == OP_BN ? op->w : -1, op->b};
      for (int q = 0; q < 2; q++) {
        if (one_d[q] < 0) continue;
        const ParamTensor *t = &m.tensors[one_d[q]];
        if (!with_1d) {
          for (size_t i = 0; i < t->size; i++) bad += d[t->offset + i] != 0;
        } else {
          const double a = norm(d + t->offset, t->size), b = norm(th + t->offset, t->size);
          bad += fabs(a - b) > 1e-9 * (b > 0 ? b : 1) + (b == 0 ? 1e-9 : 0);
        }
      }
    }
    CHECK(bad == 0 && slices > 10, "%s with_1d %d: %d of %d slices off their centre's norm", tag, with_1d, bad, slices);
    if (mc->arch == ARCH_WRN) CHECK(convs > 3, "%s: convolutions seen", tag);
  }
  /* the direction is a pure function of (seed, which): the same draw twice, another for which = 1 */
  landscape_random_direction(d, &m, th, 5, 0, true, false);
  landscape_random_direction(dr, &m, th, 5, 0, true, false);
  CHECK(memcmp(d, dr, P * sizeof *d) == 0, "%s: reproducible", tag);
  landscape_random_direction(dr, &m, th, 5, 1, true, false);
  CHECK(tu_rel_err(d, dr, P) > 0.5, "%s: directions 0 and 1 differ", tag);
  free(th), free(d), free(dr);
  model_destroy(&m);
}

int main(void)
{
  ModelConfig fc = {0};
  fc.arch = ARCH_FC, fc.in_dim = 13, fc.out_dim = 4, fc.depth = 3, fc.width = 17, fc.act = ACT_RELU, fc.bias = true;
  fc.sigma_w = 1.4, fc.sigma_b = 0.2, fc.param = PARAM_NTK, fc.base_width = 1;
  check_model(&fc, "fc");
  ModelConfig w = {0};
  w.arch = ARCH_WRN, w.in_channels = 3, w.in_height = 8, w.in_width = 8, w.in_dim = 192, w.out_dim = 10, w.width = 1, w.wrn_depth = 10;
  w.depth = 1, w.act = ACT_RELU, w.bias = true, w.sigma_w = 1.4, w.sigma_b = 0.3, w.param = PARAM_NTK, w.base_width = 1;
  w.batch_norm = true, w.bn_eps = 1e-5;
  check_model(&w, "wrn");

  /* -wrn_residual false: the same blocks without shortcut adds or projection convs */
  {
    Model a, b;
    char err[256];
    ModelConfig pl = w;
    pl.wrn_plain = true;
    CHECK(model_build(&a, &w, err, sizeof err) == 0 && model_build(&b, &pl, err, sizeof err) == 0, "wrn plain: build");
    int adds_a = 0, adds_b = 0, sc_b = 0;
    for (int o = 0; o < a.n_ops; o++) adds_a += a.ops[o].kind == OP_ADD;
    for (int o = 0; o < b.n_ops; o++) adds_b += b.ops[o].kind == OP_ADD;
    for (int t = 0; t < b.n_tensors; t++) sc_b += strstr(b.tensors[t].name, "shortcut") != NULL;
    size_t shortcut = 0;
    for (int t = 0; t < a.n_tensors; t++)
      if (strstr(a.tensors[t].name, "shortcut")) shortcut += a.tensors[t].size;
    CHECK(adds_a == 3 && adds_b == 0 && sc_b == 0 && b.n_params + shortcut == a.n_params, "wrn plain: %d/%d adds, P %zu + %zu vs %zu", adds_a,
          adds_b, b.n_params, shortcut, a.n_params);
    Tape tp;
    double *th = malloc(b.n_params * sizeof *th), x[2 * 192];
    model_init(&b, th, 3);
    rng_normal_fill(x, 2 * 192, 1, 5, 0);
    CHECK(tape_create(&tp, &b, 2) == 0, "tape");
    const double *f = model_forward(&b, th, x, 2, &tp, NULL);
    int fin = 1;
    for (int i = 0; i < 20; i++) fin &= isfinite(f[i]);
    CHECK(fin, "wrn plain: finite outputs");
    tape_destroy(&tp);
    free(th);
    model_destroy(&a), model_destroy(&b);
  }

  /* grid point, projection */
  enum { P = 257 };
  double c[P], d1[P], d2[P], x[P], y[P], ab[2], res, dist;
  rng_normal_fill(c, P, 1, 99, 0), rng_normal_fill(d1, P, 2, 99, 0), rng_normal_fill(d2, P, 3, 99, 0);
  landscape_point(x, c, d1, d2, 0.3, -1.7, P);
  landscape_point_ref(y, c, d1, d2, 0.3, -1.7, P);
  CHECK(tu_rel_err(x, y, P) < 1e-15, "point vs ref");
  landscape_bezier_point(x, c, d1, d2, 0.37, P);
  landscape_bezier_point_ref(y, c, d1, d2, 0.37, P);
  CHECK(tu_rel_err(x, y, P) < 1e-14, "bezier point vs de Casteljau");
  landscape_bezier_point(x, c, d1, d2, 0, P);
  CHECK(memcmp(x, c, sizeof x) == 0, "bezier(0) = a");
  landscape_bezier_point(x, c, d1, d2, 1, P);
  CHECK(memcmp(x, d2, sizeof x) == 0, "bezier(1) = b");
  landscape_point(x, c, d1, d2, 0.3, -1.7, P);
  CHECK(landscape_project(ab, &res, &dist, x, c, d1, d2, P) == 0 && fabs(ab[0] - 0.3) < 1e-12 && fabs(ab[1] + 1.7) < 1e-12 && res < 1e-10,
        "a point in the span projects exactly: %g %g res %g", ab[0], ab[1], res);
  double e[P];
  rng_normal_fill(e, P, 4, 99, 0);
  for (int p = 0; p < P; p++) x[p] += e[p];
  CHECK(landscape_project(ab, &res, &dist, x, c, d1, d2, P) == 0, "projection");
  double r1 = 0, r2 = 0, rr = 0;
  for (int p = 0; p < P; p++) {
    const double r = x[p] - c[p] - ab[0] * d1[p] - ab[1] * d2[p];
    r1 += r * d1[p], r2 += r * d2[p], rr += r * r;
  }
  CHECK(fabs(r1) < 1e-9 && fabs(r2) < 1e-9 && fabs(sqrt(rr) - res) < 1e-12, "residual orthogonal to the directions");
  CHECK(landscape_project(ab, &res, &dist, x, c, d1, d1, P) == -1, "dependent directions refused");

  /* Jacobi: A = Q diag(5, 2, -1, 0.5) Q^T with Q a rotation */
  enum { N = 4 };
  const double lam[N] = {5, 2, -1, 0.5};
  double Q[N * N], A[N * N] = {0}, wv[N], V[N * N];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) Q[i * N + j] = (i == j) ? 1 : 0;
  const double cs = cos(0.7), sn = sin(0.7), cs2 = cos(-0.3), sn2 = sin(-0.3);
  double R1[N * N] = {cs, -sn, 0, 0, sn, cs, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, R2[N * N] = {1, 0, 0, 0, 0, cs2, 0, -sn2, 0, 0, 1, 0, 0, sn2, 0, cs2};
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      Q[i * N + j] = 0;
      for (int k = 0; k < N; k++) Q[i * N + j] += R1[i * N + k] * R2[k * N + j];
    }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++)
      for (int k = 0; k < N; k++) A[i * N + j] += Q[i * N + k] * lam[k] * Q[j * N + k];
  landscape_sym_eig(wv, V, A, N);
  CHECK(fabs(wv[0] - 5) < 1e-12 && fabs(wv[1] - 2) < 1e-12 && fabs(wv[2] - 0.5) < 1e-12 && fabs(wv[3] + 1) < 1e-12, "eigenvalues %g %g %g %g",
        wv[0], wv[1], wv[2], wv[3]);
  double dot = 0;
  for (int i = 0; i < N; i++) dot += V[i * N + 0] * Q[i * N + 0];
  CHECK(fabs(fabs(dot) - 1) < 1e-12, "top eigenvector");

  /* PCA: theta_t = T + a_t u + b_t v (u, v orthonormal, sum_t a_t b_t = 0, a_t the larger) */
  enum { NT = 9 };
  double rows[NT * P], u[P], v[P], pc[2 * P], sv[2];
  rng_normal_fill(u, P, 5, 99, 0), rng_normal_fill(v, P, 6, 99, 0);
  double nu = norm(u, P), uv = 0;
  for (int p = 0; p < P; p++) u[p] /= nu;
  for (int p = 0; p < P; p++) uv += u[p] * v[p];
  for (int p = 0; p < P; p++) v[p] -= uv * u[p];
  double nv = norm(v, P);
  for (int p = 0; p < P; p++) v[p] /= nv;
  for (int t = 0; t < NT; t++)
    for (int p = 0; p < P; p++) rows[t * P + p] = c[p] + (t < NT - 1 ? 10.0 * (t - 3.5) * u[p] + (t == 0 || t == 7 ? 1.0 : t == 3 || t == 4 ? -1.0 : 0.0) * v[p] : 0);
  CHECK(landscape_pca(pc, sv, rows, NT, P, 2) == 0, "pca");
  double du = 0, dv = 0;
  for (int p = 0; p < P; p++) du += pc[p] * u[p], dv += pc[P + p] * v[p];
  CHECK(fabs(fabs(du) - 1) < 1e-10 && fabs(fabs(dv) - 1) < 1e-10 && sv[0] > sv[1], "pca recovers u, v: %g %g", du, dv);
  return tu_report("test_landscape_dirs");
}
