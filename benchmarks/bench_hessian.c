/* Sharpness (top eigenvalue of the loss Hessian, docs/conventions.md "Hessian") of the
 * 784-2048-2048-2048-10 ReLU net (ntk parameterization, biases, sigma_w = sqrt 2, sigma_b = 0.1,
 * float64) on N samples, by hessian.c's shell operator and Krylov-Schur. Driven by
 * bench_hessian.py, which compares against PyTorch; not part of CI.
 *
 *   bench_hessian -theta_out FILE                 write theta (model_init, seed 1) and exit
 *   bench_hessian -x X -y Y -n N -method M [-reps R] [PETSc/SLEPc options, e.g. -hess_eps_tol 1e-3]
 *     X: N x 784 float64 inputs, Y: N x 10 float64 targets (raw, row-major); each rank reads its
 *     contiguous slice. M: product (one H v with a Philox vector: prints ||H v||), top (with -nev K
 *     the top K, all printed as eigs=...), min.
 *     Prints one line "hess method=M lambda=... s=... s_setup=... s_eig=... matvecs=... its=...
 *     resid=..." with the fastest of R repetitions (each: create, set_params, solve, destroy).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slepceps.h>

#include "hessian.h"
#include "model.h"
#include "rng.h"

#define D 784
#define K 10

static ModelConfig bench_cfg(void)
{
  ModelConfig c = {0};
  c.arch = ARCH_FC;
  c.in_dim = D;
  c.out_dim = K;
  c.depth = 3;
  c.width = 2048;
  c.act = ACT_RELU;
  c.bias = true;
  c.sigma_w = sqrt(2.0);
  c.sigma_b = 0.1;
  c.param = PARAM_NTK;
  c.base_width = 2048;
  return c;
}

/* rows [first, first+n) of a raw float64 file with `cols` columns. */
static PetscErrorCode read_rows(const char *path, int first, int n, int cols, double *out)
{
  FILE *fp;

  PetscFunctionBeginUser;
  fp = fopen(path, "rb");
  PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot open %s", path);
  PetscCheck(fseek(fp, (long)first * cols * (long)sizeof(double), SEEK_SET) == 0, PETSC_COMM_SELF, PETSC_ERR_FILE_READ, "seek %s", path);
  PetscCheck(fread(out, sizeof(double), (size_t)n * cols, fp) == (size_t)n * cols, PETSC_COMM_SELF, PETSC_ERR_FILE_READ,
             "%s: short read", path);
  fclose(fp);
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  char xfile[PETSC_MAX_PATH_LEN] = "", yfile[PETSC_MAX_PATH_LEN] = "", tout[PETSC_MAX_PATH_LEN] = "", method[32] = "top";
  PetscInt N = 1000, reps = 1, nev = 1;
  PetscBool has_t;
  Model m;
  char err[256];
  int rank, size;

  PetscCall(SlepcInitialize(&argc, &argv, NULL, NULL));
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  ModelConfig c = bench_cfg();
  PetscCheck(model_build(&m, &c, err, sizeof err) == 0, PETSC_COMM_WORLD, PETSC_ERR_ARG_WRONG, "%s", err);
  const size_t P = m.n_params;
  double *theta = malloc(P * sizeof *theta);
  model_init(&m, theta, 1);

  PetscCall(PetscOptionsGetString(NULL, NULL, "-theta_out", tout, sizeof tout, &has_t));
  if (has_t) {
    if (rank == 0) {
      FILE *fp = fopen(tout, "wb");
      PetscCheck(fp && fwrite(theta, sizeof *theta, P, fp) == P, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s", tout);
      fclose(fp);
    }
    free(theta);
    model_destroy(&m);
    PetscCall(SlepcFinalize());
    return 0;
  }
  PetscCall(PetscOptionsGetString(NULL, NULL, "-x", xfile, sizeof xfile, NULL));
  PetscCall(PetscOptionsGetString(NULL, NULL, "-y", yfile, sizeof yfile, NULL));
  PetscCall(PetscOptionsGetString(NULL, NULL, "-method", method, sizeof method, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-n", &N, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-reps", &reps, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-nev", &nev, NULL));
  double *eigs = malloc((size_t)nev * sizeof *eigs), *rss = malloc((size_t)nev * sizeof *rss);
  const int first = (int)(N / size * rank + (rank < N % size ? rank : N % size));
  const int nl = (int)(N / size + (rank < N % size));
  double *x = malloc(((size_t)nl * D + 1) * sizeof *x), *y = malloc(((size_t)nl * K + 1) * sizeof *y);
  PetscCall(read_rows(xfile, first, nl, D, x));
  PetscCall(read_rows(yfile, first, nl, K, y));
  PetscCall(hessian_register_events());

  double best = INFINITY, best_setup = 0, best_eig = 0, lam = NAN, resid = NAN;
  long matvecs = 0, coarse_mv = 0;
  double coarse_work = 0;
  int its = 0;
  for (PetscInt r = 0; r < reps; r++) {
    HessianOperator *op;
    int nconv = 0;
    PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
    const double t0 = MPI_Wtime();
    PetscCall(hessian_operator_create(&op, PETSC_COMM_WORLD, &m, x, y, nl, first, (int)N));
    PetscCall(hessian_set_params(op, theta));
    PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
    const double t1 = MPI_Wtime();
    if (!strcmp(method, "product")) {
      Mat H;
      Vec v, hv;
      PetscInt lo, hi;
      PetscScalar *a;
      PetscReal nrm;
      PetscCall(hessian_operator_mat(op, &H));
      PetscCall(MatCreateVecs(H, &v, &hv));
      PetscCall(VecGetOwnershipRange(v, &lo, &hi));
      PetscCall(VecGetArray(v, &a));
      rng_normal_fill(a, (size_t)(hi - lo), 7, RNG_STREAM_PROBE, (uint64_t)lo);
      PetscCall(VecRestoreArray(v, &a));
      PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
      const double t2 = MPI_Wtime();
      PetscCall(MatMult(H, v, hv));
      PetscCall(VecNorm(hv, NORM_2, &nrm));
      if (MPI_Wtime() - t2 < best_eig || r == 0) best_eig = MPI_Wtime() - t2;
      lam = nrm;
      matvecs = 1;
      PetscCall(VecDestroy(&v));
      PetscCall(VecDestroy(&hv));
      best = best_eig;
      best_setup = t1 - t0;
    } else {
      if (!strcmp(method, "min")) PetscCall(hessian_min_eig(op, eigs, rss, &nconv));
      else PetscCall(hessian_top_eigs(op, (int)nev, eigs, rss, &nconv));
      const double e = eigs[0], rs = rss[0];
      PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
      const double t2 = MPI_Wtime();
      if (t2 - t0 < best) {
        best = t2 - t0;
        best_setup = t1 - t0;
        best_eig = t2 - t1;
        PetscCall(hessian_last_solve_stats(op, &its, &matvecs));
        PetscCall(hessian_last_solve_coarse(op, &coarse_mv, &coarse_work));
        lam = nconv ? e : NAN;
        resid = rs;
      }
    }
    PetscCall(hessian_operator_destroy(&op));
  }
  if (rank == 0) {
    printf("hess method=%s lambda=%.17g s=%.4f s_setup=%.4f s_eig=%.4f matvecs=%ld its=%d resid=%.3e ranks=%d coarse_matvecs=%ld "
           "coarse_work=%.3f",
           method, lam, best, best_setup, best_eig, matvecs, its, resid, size, coarse_mv, coarse_work);
    if (nev > 1 && strcmp(method, "product"))
      for (PetscInt i = 0; i < nev; i++) printf("%s%.12g", i ? "," : " eigs=", eigs[i]);
    printf("\n");
  }
  free(eigs);
  free(rss);
  free(x);
  free(y);
  free(theta);
  model_destroy(&m);
  PetscCall(SlepcFinalize());
  return 0;
}
