/* Driver of the infinite-width tests (tests/test_kernel_gram.sh, tests/kernel_regression_check.py):
 *
 *   gram OUT N M D TILE CKPT   assembles the 3-hidden-layer relu NTK (biases) of N + M synthetic
 *                              samples across the ranks (CKPT: tile checkpoint folder, or -) and
 *                              writes x, Theta(X, X) and Theta(X*, X) to OUT (rank 0). With
 *                              NTK_KILL_AFTER_TILES=n the last rank kills the job (SIGKILL) right
 *                              after its n-th tile is saved: a kill at an exact, observed event.
 *   kreg IN OUT                kernel regression (kernel_regression.h) on the Gram matrices, targets
 *                              and schedule in IN (written by kernel_regression_check.py); rank 0
 *                              writes the records, the spectrum and the converged predictor to OUT.
 * Prints one line "tiles T computed C loaded L" (gram) on rank 0. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "inf_kernels.h"
#include "kernel_gram.h"
#include "kernel_regression.h"
#include "runs.h"
#include "schema.h"

static int kill_after;
static void on_tile(void *ctx, int tile, int n_here)
{
  if (kill_after > 0 && n_here >= kill_after) raise(SIGKILL);
}

/* the rows of a dense matrix, gathered on rank 0 (row-major) */
static PetscErrorCode gather(Mat A, double *full /* rank 0: rows x cols */)
{
  PetscInt m, n, rs, re, lda;
  PetscCall(MatGetSize(A, &m, &n));
  PetscCall(MatGetOwnershipRange(A, &rs, &re));
  PetscCall(MatDenseGetLDA(A, &lda));
  const double *a;
  double *loc = malloc((size_t)((re - rs) * n + 1) * sizeof *loc);
  PetscCall(MatDenseGetArrayRead(A, &a));
  for (PetscInt i = 0; i < re - rs; i++)
    for (PetscInt j = 0; j < n; j++) loc[i * n + j] = a[i + j * lda];
  PetscCall(MatDenseRestoreArrayRead(A, &a));
  int size, rank;
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  const PetscInt *rg;
  PetscCall(MatGetOwnershipRanges(A, &rg));
  int *cnt = malloc(size * sizeof *cnt), *dsp = malloc(size * sizeof *dsp);
  for (int r = 0; r < size; r++) cnt[r] = (int)((rg[r + 1] - rg[r]) * n), dsp[r] = (int)(rg[r] * n);
  MPI_Gatherv(loc, cnt[rank], MPI_DOUBLE, full, cnt, dsp, MPI_DOUBLE, 0, PETSC_COMM_WORLD);
  free(loc), free(cnt), free(dsp);
  return 0;
}

static PetscErrorCode do_gram(char **argv)
{
  const int N = atoi(argv[3]), M = atoi(argv[4]), d = atoi(argv[5]), T = atoi(argv[6]);
  const char *ck = strcmp(argv[7], "-") ? argv[7] : NULL;
  const char *ka = getenv("NTK_KILL_AFTER_TILES");
  int rank, size;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  if (ka && rank == size - 1) kill_after = atoi(ka);
  double *x = malloc((size_t)(N + M) * d * sizeof *x);
  for (int i = 0; i < (N + M) * d; i++) x[i] = sin(0.7 * i + 0.3) + 0.25 * cos(1.9 * ((i * i) % 17)); /* deterministic, every rank */
  const InfKernelSpec spec = {.depth = 3, .act = ACT_RELU, .sigma_w = sqrt(2.0), .sigma_b = 0.1, .gh_points = 0};
  const KernelFn k = {"ntk_fc", kernel_block_ntk_fc, &spec, sizeof spec};
  const KernelGramOptions opt = {.tile = T, .ckpt_dir = ck, .tile_saved = on_tile};
  Mat G, C = NULL;
  KernelGramStats st;
  PetscCall(kernel_gram_assemble(PETSC_COMM_WORLD, &k, x, N, M, d, &opt, &G, M ? &C : NULL, &st));
  double *g = rank == 0 ? malloc((size_t)N * N * sizeof *g) : NULL, *c = rank == 0 ? malloc((size_t)(M * N + 1) * sizeof *c) : NULL;
  PetscCall(gather(G, g));
  if (C) PetscCall(gather(C, c));
  if (rank == 0) {
    FILE *f = fopen(argv[2], "wb");
    const int hdr[3] = {N, M, d};
    fwrite(hdr, sizeof hdr, 1, f);
    fwrite(x, sizeof *x, (size_t)(N + M) * d, f);
    fwrite(g, sizeof *g, (size_t)N * N, f);
    fwrite(c, sizeof *c, (size_t)M * N, f);
    fclose(f);
    printf("tiles %d computed %d loaded %d busy_max %.6f busy_mean %.6f seconds %.6f\n", st.n_tiles, st.computed, st.loaded, st.max_rank_busy,
           st.mean_rank_busy, st.seconds);
  }
  free(x), free(g), free(c);
  PetscCall(MatDestroy(&G));
  PetscCall(MatDestroy(&C));
  return 0;
}

/* a dense matrix over PETSC_COMM_WORLD from a replicated row-major array */
static PetscErrorCode dense_from(Mat *A, const double *v, int m, int n)
{
  PetscCall(MatCreateDense(PETSC_COMM_WORLD, PETSC_DECIDE, PETSC_DECIDE, m, n, NULL, A));
  PetscInt rs, re;
  PetscCall(MatGetOwnershipRange(*A, &rs, &re));
  PetscInt *ci = malloc((size_t)n * sizeof *ci);
  for (int j = 0; j < n; j++) ci[j] = j;
  for (PetscInt i = rs; i < re; i++) PetscCall(MatSetValues(*A, 1, &i, n, ci, v + (size_t)i * n, INSERT_VALUES));
  free(ci);
  PetscCall(MatAssemblyBegin(*A, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(*A, MAT_FINAL_ASSEMBLY));
  return 0;
}

static PetscErrorCode do_kreg(char **argv)
{
  FILE *f = fopen(argv[2], "rb");
  PetscCheck(f, PETSC_COMM_WORLD, PETSC_ERR_FILE_OPEN, "cannot open %s", argv[2]);
  int hdr[7]; /* N M k steps record_every test_every lr_schedule(0 constant, 1 step) */
  double par[3]; /* eta, lr_step_gamma, diverge_factor */
  PetscCheck(fread(hdr, sizeof hdr, 1, f) == 1 && fread(par, sizeof par, 1, f) == 1, PETSC_COMM_WORLD, PETSC_ERR_FILE_READ, "short header");
  const int N = hdr[0], M = hdr[1], k = hdr[2];
  double *g = malloc((size_t)N * N * 8), *c = malloc((size_t)M * N * 8), *y = malloc((size_t)N * k * 8), *yt = malloc((size_t)M * k * 8);
  int *lab = malloc(N * sizeof *lab), *labt = malloc(M * sizeof *labt);
  size_t ok = fread(g, 8, (size_t)N * N, f) + fread(c, 8, (size_t)M * N, f) + fread(y, 8, (size_t)N * k, f) + fread(yt, 8, (size_t)M * k, f) +
              fread(lab, sizeof *lab, N, f) + fread(labt, sizeof *labt, M, f);
  PetscCheck(ok == (size_t)N * N + (size_t)M * N + (size_t)(N + M) * k + N + M, PETSC_COMM_WORLD, PETSC_ERR_FILE_READ, "short file");
  /* optional: the prior's K (N x N), K(X*, X) (M x N) and tr K(X*, X*) */
  double *kk = malloc((size_t)N * N * 8), *kc = malloc((size_t)(M * N + 1) * 8), ktr = 0;
  const int prior = fread(kk, 8, (size_t)N * N, f) == (size_t)N * N && fread(kc, 8, (size_t)M * N, f) == (size_t)M * N && fread(&ktr, 8, 1, f) == 1;
  fclose(f);
  Dataset train = {.n = N, .d = 1, .k = k, .y = y, .label = lab}, test = {.n = M, .d = 1, .k = k, .y = yt, .label = labt};
  Config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.steps = hdr[3], cfg.record_every = hdr[4], cfg.test_every = hdr[5];
  cfg.lr_schedule = hdr[6] ? LR_STEP : LR_CONSTANT, cfg.lr_step_every = 3, cfg.lr_step_gamma = par[1];
  cfg.diverge_factor = par[2];
  Mat G, C;
  PetscCall(dense_from(&G, g, N, N));
  PetscCall(dense_from(&C, c, M, N));
  KernelRegression kr;
  PetscCall(kreg_setup(&kr, PETSC_COMM_WORLD, G, C, &train, &test));
  PetscCall(MatDestroy(&G));
  double *ptr = NULL, *pte = NULL;
  if (prior) {
    Mat K, Kc;
    PetscCall(dense_from(&K, kk, N, N));
    PetscCall(dense_from(&Kc, kc, M, N));
    PetscCall(kreg_setup_prior(&kr, K, Kc, ktr));
    PetscCall(MatDestroy(&K));
    PetscCall(MatDestroy(&Kc));
    ptr = malloc((size_t)(record_count(cfg.steps, cfg.record_every) + record_count(cfg.steps, cfg.test_every)) * sizeof *ptr);
    pte = ptr + record_count(cfg.steps, cfg.record_every);
  }
  Schema st = {.group = "train"}, se = {.group = "test"};
  st.n_records = record_count(cfg.steps, cfg.record_every), se.n_records = record_count(cfg.steps, cfg.test_every);
  schema_add(&st, "step", DS_INT64, SCALAR, "", ""), schema_add(&st, "loss", DS_FLOAT64, SCALAR, "", "");
  schema_add(&st, "accuracy", DS_FLOAT64, SCALAR, "", ""), schema_add(&st, "param_norm", DS_FLOAT64, SCALAR, "", "");
  schema_add(&st, "dist_init", DS_FLOAT64, SCALAR, "", ""), schema_add(&st, "lr", DS_FLOAT64, SCALAR, "", "");
  schema_add(&se, "step", DS_INT64, SCALAR, "", ""), schema_add(&se, "loss", DS_FLOAT64, SCALAR, "", "");
  schema_add(&se, "accuracy", DS_FLOAT64, SCALAR, "", "");
  RecordBuffer rt, re;
  records_init(&rt, &st), records_init(&re, &se);
  int diverged;
  int64_t done;
  PetscCall(kreg_trajectory(&kr, &cfg, par[0], &rt, &re, ptr, pte, &diverged, &done));
  int rank;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  if (rank == 0) {
    FILE *o = fopen(argv[3], "w");
    fprintf(o, "diverged %d steps_done %lld\n", diverged, (long long)done);
    for (int64_t i = 0; i < rt.n; i++) {
      const double *q = records_row(&rt, i);
      fprintf(o, "train %.0f %.17g %.17g %.17g\n", q[0], q[1], q[2], q[5]);
    }
    for (int64_t i = 0; i < re.n; i++) {
      const double *q = records_row(&re, i);
      fprintf(o, "test %.0f %.17g %.17g\n", q[0], q[1], q[2]);
    }
    for (int64_t i = 0; prior && i < rt.n; i++) fprintf(o, "prior_train %.0f %.17g\n", records_row(&rt, i)[0], ptr[i]);
    for (int64_t i = 0; prior && i < re.n; i++) fprintf(o, "prior_test %.0f %.17g\n", records_row(&re, i)[0], pte[i]);
    fprintf(o, "conv %.17g %.17g %.17g %.17g\n", kr.conv_train_loss, kr.conv_train_acc, kr.conv_test_loss, kr.conv_test_acc);
    fprintf(o, "spectrum");
    for (int i = 0; i < N; i++) fprintf(o, " %.17g", kr.spectrum[i]);
    fprintf(o, "\n");
    fclose(o);
  }
  records_free(&rt), records_free(&re);
  kreg_free(&kr);
  free(g), free(c), free(y), free(yt), free(lab), free(labt), free(kk), free(kc), free(ptr);
  return 0;
}

int main(int argc, char **argv)
{
  PetscCall(SlepcInitialize(&argc, &argv, NULL, NULL));
  if (argc >= 8 && strcmp(argv[1], "gram") == 0) PetscCall(do_gram(argv));
  else if (argc >= 4 && strcmp(argv[1], "kreg") == 0) PetscCall(do_kreg(argv));
  else SETERRQ(PETSC_COMM_WORLD, PETSC_ERR_ARG_WRONG, "usage: gram OUT N M D TILE CKPT | kreg IN OUT");
  PetscCall(SlepcFinalize());
  return 0;
}
