/* The loss landscape's affine first layer (src/landscape/landscape_eval.c) against the plain
 * forward pass (landscape_affine_eval_ref: model_forward on the complete parameters, each set on
 * its own): fc nets (relu, tanh; with and without biases; mse and xent), surfaces (1, a, b),
 * paths (1, t) and Bezier curves ((1-t)^2, 2t(1-t), t^2), rank slices that start inside the sets,
 * tape capacities that cut chunks across the train/test boundary. The cached path must not read
 * the first layer's parameters (they are poisoned with NaN). Eligibility: a WRN (first op a
 * convolution) and an fc net with batch norm are refused with a reason. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "landscape_eval.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"

static Dataset make_set(int n, int d, int k, uint64_t seed)
{
  Dataset s = {.n = n, .d = d, .k = k, .channels = 1, .height = 1, .width = d};
  s.x = malloc((size_t)n * d * sizeof(double)), s.y = malloc((size_t)n * k * sizeof(double)), s.label = malloc((size_t)n * sizeof(int));
  rng_normal_fill(s.x, (size_t)n * d, seed, 1, 0);
  for (int a = 0; a < n; a++) {
    s.label[a] = (int)((a * 7 + seed) % k);
    for (int j = 0; j < k; j++) s.y[a * k + j] = j == s.label[a] ? 1.0 : 0.0;
  }
  return s;
}

static void check_net(Activation act, bool bias, LossKind loss, const char *tag)
{
  ModelConfig mc = {.arch = ARCH_FC, .in_dim = 11, .in_channels = 1, .in_height = 1, .in_width = 11, .out_dim = 4, .depth = 2,
                    .width = 17, .act = act, .bias = bias, .sigma_w = 1.4, .sigma_b = 0.3, .param = PARAM_NTK, .base_width = 17, .loss = loss};
  Model m;
  char err[256];
  CHECK(model_build(&m, &mc, err, sizeof err) == 0, "%s: build: %s", tag, err);
  CHECK(landscape_affine_eligible(&m, err, sizeof err), "%s: eligible (%s)", tag, err);
  const size_t P = m.n_params;
  double *v[3], *th = malloc(P * sizeof(double)), *thp = malloc(P * sizeof(double));
  for (int q = 0; q < 3; q++) v[q] = malloc(P * sizeof(double)), rng_normal_fill(v[q], P, 30 + q, 2, 0);
  Dataset tr = make_set(29, 11, 4, 5), te = make_set(13, 11, 4, 6);
  const Dataset *const sets[2] = {&tr, &te};
  const int64_t lo[2] = {4, 2}, rows[2] = {19, 9}; /* a rank's slices, not at the start */
  for (int cap = 1; cap <= 40; cap += 13) { /* chunks across the boundary (cap 14, 27) and all at once (40) */
    Tape t;
    CHECK(tape_create_train(&t, &m, cap) == 0, "tape");
    for (int kind = 0; kind < 3; kind++) { /* surface 2-D, path (1-D), bezier */
      const int nvec = kind == 1 ? 2 : 3;
      LandscapeAffine c = {0};
      const double *const vecs[3] = {v[0], v[1], v[2]};
      CHECK(landscape_affine_build(&c, &m, vecs, nvec, sets, lo, rows) == 0, "build");
      CHECK(landscape_affine_bytes(&m, rows[0] + rows[1], nvec) == nvec * 28.0 * 17 * sizeof(double), "%s: bytes", tag);
      const double pts[3][2] = {{0, 0}, {-0.7, 0.4}, {1.3, -2.1}};
      for (int p = 0; p < 3; p++) {
        double coef[3];
        const double a = pts[p][0], b = pts[p][1];
        if (kind == 2) coef[0] = (1 - a) * (1 - a), coef[1] = 2 * a * (1 - a), coef[2] = a * a;
        else coef[0] = 1, coef[1] = a, coef[2] = kind == 0 ? b : 0;
        for (size_t q = 0; q < P; q++) th[q] = coef[0] * v[0][q] + coef[1] * v[1][q] + (nvec > 2 ? coef[2] * v[2][q] : 0);
        memcpy(thp, th, P * sizeof(double));
        const ParamTensor *W = &m.tensors[m.ops[0].w];
        for (size_t q = 0; q < W->size; q++) thp[W->offset + q] = NAN; /* the cached path must not read them */
        if (m.ops[0].b >= 0)
          for (size_t q = 0; q < m.tensors[m.ops[0].b].size; q++) thp[m.tensors[m.ops[0].b].offset + q] = NAN;
        double s[4], r[4];
        landscape_affine_eval(s, &c, &m, thp, coef, sets, &t);
        landscape_affine_eval_ref(r, &m, th, sets, lo, rows, &t);
        for (int q = 0; q < 4; q++)
          CHECK(isfinite(s[q]) && tu_close(s[q], r[q], 1e-13), "%s cap %d kind %d point %d: sum %d %.17g vs plain %.17g", tag, cap, kind, p, q, s[q], r[q]);
      }
      landscape_affine_free(&c);
    }
    tape_destroy(&t);
  }
  for (int q = 0; q < 3; q++) free(v[q]);
  free(th), free(thp), data_free(&tr), data_free(&te);
  model_destroy(&m);
}

int main(void)
{
  check_net(ACT_RELU, true, LOSS_MSE, "relu mse");
  check_net(ACT_TANH, false, LOSS_MSE, "tanh no bias");
  check_net(ACT_RELU, true, LOSS_XENT, "relu xent");
  char why[200];
  Model m;
  ModelConfig wrn = {.arch = ARCH_WRN, .in_dim = 3 * 8 * 8, .in_channels = 3, .in_height = 8, .in_width = 8, .out_dim = 10, .width = 1,
                     .wrn_depth = 10, .act = ACT_RELU, .sigma_w = 1.4, .param = PARAM_NTK, .batch_norm = false, .base_width = 1};
  CHECK(model_build(&m, &wrn, why, sizeof why) == 0, "wrn build: %s", why);
  CHECK(!landscape_affine_eligible(&m, why, sizeof why) && strstr(why, "convolution") && landscape_affine_bytes(&m, 10, 2) == 0,
        "wrn refused: %s", why);
  model_destroy(&m);
  ModelConfig bn = {.arch = ARCH_FC, .in_dim = 5, .in_channels = 1, .in_height = 1, .in_width = 5, .out_dim = 3, .depth = 2, .width = 8,
                    .act = ACT_RELU, .bias = true, .sigma_w = 1.4, .param = PARAM_NTK, .base_width = 8, .fc_batch_norm = true, .bn_eps = 1e-5};
  CHECK(model_build(&m, &bn, why, sizeof why) == 0, "bn build: %s", why);
  CHECK(!landscape_affine_eligible(&m, why, sizeof why) && strstr(why, "batch norm"), "fc batch norm refused: %s", why);
  model_destroy(&m);
  return tu_report("test_landscape_eval");
}
