/* Batch norm across data-parallel ranks at the model level: a tiny WRN with batch norm on a batch of
 * 3 samples split over the ranks (at 4 ranks one rank has none), statistics summed by a Reducer
 * over MPI_COMM_WORLD. Forward outputs, VJP gradient, JVP and HVP / Gauss-Newton products must equal
 * (to 1e-12) the one-process computation on the whole batch, which every rank also does locally. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"
#include "testutil.h"

enum { NB = 3, C_IN = 2, HH = 6, WW = 6, K_OUT = 3 };

static void allreduce(double *buf, int n, void *ctx) { MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx); }

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm comm = MPI_COMM_WORLD;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const Reducer red = {allreduce, &comm};
  const int lo = NB * rank / size, hi = NB * (rank + 1) / size, nl = hi - lo;
  for (int p = 0; p < PARAM_COUNT; p++) {
    if (p == PARAM_MF) continue; /* one hidden layer of a fully connected net only */
    ModelConfig c = {0};
    c.arch = ARCH_WRN, c.in_channels = C_IN, c.in_height = HH, c.in_width = WW, c.in_dim = C_IN * HH * WW;
    c.out_dim = K_OUT, c.width = 1, c.wrn_depth = 10, c.act = ACT_TANH, c.bias = true, c.sigma_w = 1.4, c.sigma_b = 0.2;
    c.param = (Parameterization)p, c.base_width = 1, c.batch_norm = true, c.bn_eps = 1e-5;
    Model m;
    Tape tf, tl;
    char err[256];
    if (model_build(&m, &c, err, sizeof err) || tape_create(&tf, &m, NB) || tape_create(&tl, &m, nl > 0 ? nl : 1)) {
      fprintf(stderr, "build: %s\n", err);
      MPI_Abort(comm, 1);
    }
    const size_t P = m.n_params, d = (size_t)c.in_dim;
    double *theta = malloc(P * 8), *v = malloc(P * 8), *g_ref = calloc(P, 8), *g = calloc(P, 8);
    double *h_ref = calloc(P, 8), *h = calloc(P, 8), *gn_ref = calloc(P, 8), *gn = calloc(P, 8);
    double x[NB * C_IN * HH * WW], y[NB * K_OUT], dout[NB * K_OUT], f_ref[NB * K_OUT], jv_ref[NB * K_OUT], jv[NB * K_OUT];
    model_init(&m, theta, 7 + p);
    rng_normal_fill(v, P, 8, RNG_STREAM_PROBE, 0);
    rng_normal_fill(x, NB * d, 9, RNG_STREAM_TEACHER_X, 0);
    rng_normal_fill(y, NB * K_OUT, 9, RNG_STREAM_TEACHER_X, 1u << 20);
    /* Reference: the whole batch in this process, no reduction. */
    memcpy(f_ref, model_forward(&m, theta, x, NB, &tf, NULL), sizeof f_ref);
    mse_loss(dout, f_ref, y, NB, K_OUT, 1.0 / NB);
    model_vjp(&m, theta, dout, NB, &tf, g_ref, NULL);
    model_jvp(&m, theta, v, NB, &tf, jv_ref, NULL);
    model_hvp(&m, theta, v, x, y, NB, NB, &tf, h_ref, NULL);
    model_gnvp(&m, theta, v, x, NB, NB, &tf, gn_ref, NULL);
    /* Distributed: this rank's slice, statistics through the Reducer, parameter products summed. */
    const double *f = model_forward(&m, theta, x + lo * d, nl, &tl, &red);
    double ef = nl ? tu_rel_err(f, f_ref + lo * K_OUT, (size_t)nl * K_OUT) : 0;
    mse_loss(dout, f, y + lo * K_OUT, nl, K_OUT, 1.0 / NB);
    model_vjp(&m, theta, dout, nl, &tl, g, &red);
    model_jvp(&m, theta, v, nl, &tl, jv, &red);
    double ej = nl ? tu_rel_err(jv, jv_ref + lo * K_OUT, (size_t)nl * K_OUT) : 0;
    model_hvp(&m, theta, v, x + lo * d, y + lo * K_OUT, nl, NB, &tl, h, &red);
    model_gnvp(&m, theta, v, x + lo * d, nl, NB, &tl, gn, &red);
    MPI_Allreduce(MPI_IN_PLACE, g, (int)P, MPI_DOUBLE, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, h, (int)P, MPI_DOUBLE, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, gn, (int)P, MPI_DOUBLE, MPI_SUM, comm);
    const double eg = tu_rel_err(g, g_ref, P), eh = tu_rel_err(h, h_ref, P), egn = tu_rel_err(gn, gn_ref, P);
    double worst[5] = {ef, ej, eg, eh, egn};
    MPI_Allreduce(MPI_IN_PLACE, worst, 5, MPI_DOUBLE, MPI_MAX, comm);
    if (rank == 0) {
      CHECK(worst[0] < 1e-12, "%s: outputs rel %.2e", param_name(c.param), worst[0]);
      CHECK(worst[1] < 1e-12, "%s: JVP rel %.2e", param_name(c.param), worst[1]);
      CHECK(worst[2] < 1e-12, "%s: gradient rel %.2e", param_name(c.param), worst[2]);
      CHECK(worst[3] < 1e-12, "%s: HVP rel %.2e", param_name(c.param), worst[3]);
      CHECK(worst[4] < 1e-12, "%s: Gauss-Newton rel %.2e", param_name(c.param), worst[4]);
      printf("%d ranks, %s: rel err f %.1e  jvp %.1e  grad %.1e  hvp %.1e  gnvp %.1e\n", size, param_name(c.param), worst[0],
             worst[1], worst[2], worst[3], worst[4]);
    }
    free(theta), free(v), free(g_ref), free(g), free(h_ref), free(h), free(gn_ref), free(gn);
    tape_destroy(&tf), tape_destroy(&tl);
    model_destroy(&m);
  }
  int rc = 0;
  if (rank == 0) rc = tu_report("test_wrn_mpi");
  MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
  MPI_Finalize();
  return rc;
}
