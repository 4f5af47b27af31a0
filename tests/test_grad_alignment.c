/* hessian_alignment (src/ops/hessian.c, the grad_alignment measurement) against an independent
 * reference: g = grad L from model_vjp on all samples in one process, H (D g) by central differences
 * of that gradient along D g, and align = (D g)^T H (D g) / (g^T D g), which is
 * g'^T (D^1/2 H D^1/2) g' / |g'|^2 with g' = D^1/2 g (docs/conventions.md). For mse and xent, ntk
 * and mup (D != I), with and without fc batch norm, the batch split over the ranks (one rank may
 * hold none). Also |g'| against the reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <slepceps.h>

#include "hessian.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"

enum { N = 9, D = 4, K = 3 };

static double loss_grad(const Model *m, const double *th, const double *x, const double *y, Tape *t, double *g)
{
  double dout[N * K];
  const double *f = model_forward(m, th, x, N, t, NULL);
  const double l = model_loss(m, dout, f, y, N, 1.0 / N) / N;
  memset(g, 0, m->n_params * sizeof *g);
  model_vjp(m, th, dout, N, t, g, NULL);
  return l;
}

int main(int argc, char **argv)
{
  PetscCall(SlepcInitialize(&argc, &argv, NULL, NULL));
  int rank, size;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  int idx = 0;
  double worst = 0;
  for (int loss = 0; loss < LOSS_COUNT; loss++)
    for (int p = 0; p < 2; p++)
      for (int bn = 0; bn <= 1; bn++, idx++) {
        ModelConfig c = {0};
        c.arch = ARCH_FC, c.in_dim = D, c.out_dim = K, c.depth = 2, c.width = 10, c.act = ACT_GELU, c.bias = true;
        c.sigma_w = 1.5, c.sigma_b = 0.2, c.param = p ? PARAM_MUP : PARAM_NTK, c.base_width = 5, c.loss = (LossKind)loss;
        c.fc_batch_norm = bn, c.bn_eps = 1e-5;
        Model m;
        Tape t;
        char err[256];
        if (model_build(&m, &c, err, sizeof err) || tape_create(&t, &m, N)) {
          fprintf(stderr, "build: %s\n", err);
          return 1;
        }
        const size_t P = m.n_params;
        double *th = malloc(P * 8), *g = malloc(P * 8), *dg = malloc(P * 8), *tp = malloc(P * 8), *gp = malloc(P * 8), *gm = malloc(P * 8);
        double *lr = malloc(P * 8), x[N * D], y[N * K];
        model_init(&m, th, 60 + (uint64_t)idx);
        model_lr_scales(&m, lr);
        rng_normal_fill(x, N * D, 61, RNG_STREAM_TEACHER_X, 0);
        if (loss == LOSS_XENT) {
          memset(y, 0, sizeof y);
          for (int a = 0; a < N; a++) y[a * K + a % K] = 1;
        } else {
          rng_normal_fill(y, N * K, 62, RNG_STREAM_TEACHER_X, 0);
        }
        loss_grad(&m, th, x, y, &t, g);
        double gdg = 0, dgn = 0;
        for (size_t i = 0; i < P; i++) dg[i] = lr[i] * g[i], gdg += g[i] * dg[i], dgn += dg[i] * dg[i];
        const double h = 1e-5 / sqrt(dgn);
        for (size_t i = 0; i < P; i++) tp[i] = th[i] + h * dg[i];
        loss_grad(&m, tp, x, y, &t, gp);
        for (size_t i = 0; i < P; i++) tp[i] = th[i] - h * dg[i];
        loss_grad(&m, tp, x, y, &t, gm);
        double q = 0;
        for (size_t i = 0; i < P; i++) q += dg[i] * (gp[i] - gm[i]) / (2 * h);
        const double ref = q / gdg, ref_norm = sqrt(gdg);
        /* the operator over the ranks: rank r holds [first, first + nl); at 3 ranks the first is empty */
        const int first = size > 1 ? (rank == 0 ? 0 : N * (rank - 1) / (size - 1)) : 0;
        const int nl = size > 1 ? (rank == 0 ? 0 : N * rank / (size - 1) - first) : N;
        HessianOperator *op;
        double align, gnorm;
        PetscCall(hessian_operator_create(&op, PETSC_COMM_WORLD, &m, x + (size_t)first * D, y + (size_t)first * K, nl, first, N));
        PetscCall(hessian_set_params(op, th));
        PetscCall(hessian_alignment(op, &align, &gnorm));
        PetscCall(hessian_operator_destroy(&op));
        const double e = fabs(align - ref) / fabs(ref), en = fabs(gnorm - ref_norm) / ref_norm;
        worst = fmax(worst, fmax(e, en));
        CHECK(e < 1e-7 && en < 1e-12, "case %d (%s %s bn %d): alignment %.15g vs reference %.15g (%.3g), |g| rel err %.3g", idx,
              loss_name(c.loss), param_name(c.param), bn, align, ref, e, en);
        free(th), free(g), free(dg), free(tp), free(gp), free(gm), free(lr);
        tape_destroy(&t);
        model_destroy(&m);
      }
  int rc = 0;
  if (rank == 0) {
    printf("%d ranks: 8 cases, worst rel err of the alignment vs central differences %.2e\n", size, worst);
    rc = tu_report("test_grad_alignment");
  }
  MPI_Bcast(&rc, 1, MPI_INT, 0, PETSC_COMM_WORLD);
  PetscCall(SlepcFinalize());
  return rc;
}
