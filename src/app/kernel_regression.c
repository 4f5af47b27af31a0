/* Kernel regression in discrete time (kernel_regression.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <petsc/private/petscscalapack.h> /* the block-cyclic array of a MATSCALAPACK matrix */
#include "kernel_regression.h"
#include "lr_schedule.h"
#include "runs.h"

/* U (nloc x k, row-major) = A_loc (nloc x N, column-major with leading dimension lda) * B (N x k, row-major). */
static void rows_times(double *U, const double *A, PetscInt lda, PetscInt nloc, const double *B, int N, int k)
{
  if (nloc <= 0) return;
  cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, k, (int)nloc, N, 1.0, B, k, A, (int)lda, 0.0, U, k);
}

/* Sum over local rows of (f - y)^2 and the number of rows whose argmax is the label. */
static void score(const double *f /* n x k */, const double *y /* n x k */, const int *label /* n */, PetscInt n, int k, double *sq, double *hits)
{
  for (PetscInt i = 0; i < n; i++) {
    int best = 0;
    for (int o = 0; o < k; o++) {
      const double e = f[i * k + o] - y[i * k + o];
      *sq += e * e;
      if (f[i * k + o] > f[i * k + best]) best = o;
    }
    if (label && label[i] >= 0) *hits += best == label[i];
  }
}

/* The full N x k matrix from each rank's rows (the layout of mat's rows). */
static PetscErrorCode gather_rows(Mat mat, const double *loc, double *full, int k, MPI_Comm comm)
{
  const PetscInt *ranges;
  int size;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(MatGetOwnershipRanges(mat, &ranges));
  int *cnt = malloc((size_t)size * sizeof *cnt), *dsp = malloc((size_t)size * sizeof *dsp);
  for (int r = 0; r < size; r++) cnt[r] = (int)(ranges[r + 1] - ranges[r]) * k, dsp[r] = (int)ranges[r] * k;
  int rank;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Allgatherv(loc, cnt[rank], MPI_DOUBLE, full, cnt, dsp, MPI_DOUBLE, comm));
  free(cnt), free(dsp);
  return 0;
}

static PetscLogEvent ev_eig, ev_chol, ev_traj;

/* ScaLAPACK's symmetric eigensolver, divide and conquer (Fortran) */
extern void pdsyevd_(const char *jobz, const char *uplo, const PetscBLASInt *n, double *a, const PetscBLASInt *ia, const PetscBLASInt *ja,
                     const PetscBLASInt *desca, double *w, double *z, const PetscBLASInt *iz, const PetscBLASInt *jz, const PetscBLASInt *descz,
                     double *work, const PetscBLASInt *lwork, PetscBLASInt *iwork, const PetscBLASInt *liwork, PetscBLASInt *info);

/* The same by SLEPc's EPSSCALAPACK (pdsyev) on Gs (G's MATSCALAPACK copy). */
static PetscErrorCode eig_all_eps(KernelRegression *kr, MPI_Comm comm, Mat G, Mat Gs, PetscInt N)
{
  PetscFunctionBeginUser;
  EPS eps;
  PetscCall(EPSCreate(comm, &eps));
  PetscCall(EPSSetOperators(eps, Gs, NULL));
  PetscCall(EPSSetProblemType(eps, EPS_HEP));
  PetscCall(EPSSetType(eps, EPSSCALAPACK));
  PetscCall(EPSSetDimensions(eps, N, PETSC_DEFAULT, PETSC_DEFAULT));
  PetscCall(EPSSetWhichEigenpairs(eps, EPS_LARGEST_REAL));
  PetscCall(EPSSolve(eps));
  PetscInt nconv;
  PetscCall(EPSGetConverged(eps, &nconv));
  PetscCheck(nconv >= N, comm, PETSC_ERR_LIB, "ScaLAPACK returned %d of the %d eigenpairs of the kernel matrix", (int)nconv, (int)N);
  PetscCall(MatDuplicate(G, MAT_DO_NOT_COPY_VALUES, &kr->V));
  kr->spectrum = malloc((size_t)N * sizeof *kr->spectrum);
  Vec ev;
  PetscCall(MatCreateVecs(Gs, &ev, NULL));
  VecScatter to_dense = NULL;
  {
    Vec col;
    PetscCall(MatDenseGetColumnVecWrite(kr->V, 0, &col));
    PetscInt es, ee;
    IS is;
    PetscCall(VecGetOwnershipRange(ev, &es, &ee));
    PetscCall(ISCreateStride(PETSC_COMM_SELF, ee - es, es, 1, &is));
    PetscCall(VecScatterCreate(ev, is, col, is, &to_dense)); /* ScaLAPACK's vector layout -> the dense matrix's rows */
    PetscCall(ISDestroy(&is));
    PetscCall(MatDenseRestoreColumnVecWrite(kr->V, 0, &col));
  }
  for (PetscInt i = 0; i < N; i++) {
    Vec col;
    PetscScalar mu;
    PetscCall(EPSGetEigenpair(eps, i, &mu, NULL, ev, NULL));
    PetscCall(MatDenseGetColumnVecWrite(kr->V, i, &col));
    PetscCall(VecScatterBegin(to_dense, ev, col, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecScatterEnd(to_dense, ev, col, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(MatDenseRestoreColumnVecWrite(kr->V, i, &col));
    kr->spectrum[i] = PetscRealPart(mu) / (double)N;
  }
  PetscCall(VecScatterDestroy(&to_dense));
  PetscCall(VecDestroy(&ev));
  PetscCall(EPSDestroy(&eps));
  PetscFunctionReturn(0);
}

/* Every eigenpair of G by ScaLAPACK's divide-and-conquer pdsyevd on the block-cyclic copy
 * (MATSCALAPACK); kr->V (MATDENSE, columns largest first) and kr->spectrum. SLEPc's EPSSCALAPACK
 * calls pdsyev (the QR algorithm, several times slower for all the vectors): it is used only when
 * some process of the grid would hold no block (N below block size x grid side), where Debian's
 * ScaLAPACK 2.2 pdsyevd returns wrong eigenvectors (tests/kernel_regression_check.py, N = 24 on 4
 * ranks). */
static PetscErrorCode eig_all(KernelRegression *kr, MPI_Comm comm, Mat G, PetscInt N)
{
  PetscFunctionBeginUser;
  Mat Gs;
  PetscCall(MatConvert(G, MATSCALAPACK, MAT_INITIAL_MATRIX, &Gs));
  {
    Mat_ScaLAPACK *a = (Mat_ScaLAPACK *)Gs->data;
    const PetscInt side = a->grid->nprow > a->grid->npcol ? a->grid->nprow : a->grid->npcol;
    if (N < (PetscInt)a->nb * side) {
      PetscCall(eig_all_eps(kr, comm, G, Gs, N));
      PetscCall(MatDestroy(&Gs));
      PetscFunctionReturn(0);
    }
  }
  Mat Z;
  PetscCall(MatDuplicate(Gs, MAT_DO_NOT_COPY_VALUES, &Z));
  {
    Mat_ScaLAPACK *a = (Mat_ScaLAPACK *)Gs->data, *z = (Mat_ScaLAPACK *)Z->data;
    const PetscBLASInt one = 1, n = (PetscBLASInt)N;
    PetscBLASInt lwork = -1, liwork = -1, info = 0, iq;
    double wq, *w = malloc((size_t)N * sizeof *w);
    pdsyevd_("V", "L", &n, a->loc, &one, &one, a->desc, w, z->loc, &one, &one, z->desc, &wq, &lwork, &iq, &liwork, &info);
    PetscCheck(!info, comm, PETSC_ERR_LIB, "ScaLAPACK pdsyevd workspace query: info %d", (int)info);
    /* the query's answer is too small for PDORMTR inside Debian's ScaLAPACK 2.2 when N is below the
     * block size ("parameter 16 had an illegal value"): add the documented minima's local terms */
    const PetscBLASInt nb = a->nb, lr = a->locr > nb ? a->locr : nb, lc = a->locc > nb ? a->locc : nb;
    lwork = 2 * (PetscBLASInt)wq + 1 + 8 * n + 2 * lr * lc + 3 * nb * nb + 2 * (lr + lc) * nb + 4 * n * nb, liwork = iq; /* PDORMTR's terms too */
    double *work = malloc((size_t)lwork * sizeof *work);
    PetscBLASInt *iwork = malloc((size_t)liwork * sizeof *iwork);
    pdsyevd_("V", "L", &n, a->loc, &one, &one, a->desc, w, z->loc, &one, &one, z->desc, work, &lwork, iwork, &liwork, &info);
    free(work), free(iwork);
    PetscCheck(!info, comm, PETSC_ERR_LIB, "ScaLAPACK pdsyevd failed on the kernel matrix: info %d", (int)info);
    PetscCall(PetscObjectStateIncrease((PetscObject)Z));
    kr->spectrum = malloc((size_t)N * sizeof *kr->spectrum);
    for (PetscInt i = 0; i < N; i++) kr->spectrum[i] = w[N - 1 - i] / (double)N; /* largest first */
    free(w);
  }
  PetscCall(MatDestroy(&Gs));
  PetscCall(MatConvert(Z, MATDENSE, MAT_INITIAL_MATRIX, &kr->V));
  PetscCall(MatDestroy(&Z));
  { /* columns in the spectrum's order: largest first */
    PetscInt vs, ve, ldv;
    double *v;
    PetscCall(MatGetOwnershipRange(kr->V, &vs, &ve));
    PetscCall(MatDenseGetLDA(kr->V, &ldv));
    PetscCall(MatDenseGetArray(kr->V, &v));
    for (PetscInt j = 0; j < N / 2; j++)
      for (PetscInt i = 0; i < ve - vs; i++) {
        const double t = v[i + j * ldv];
        v[i + j * ldv] = v[i + (N - 1 - j) * ldv], v[i + (N - 1 - j) * ldv] = t;
      }
    PetscCall(MatDenseRestoreArray(kr->V, &v));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode kreg_setup(KernelRegression *kr, MPI_Comm comm, Mat G, Mat C, const Dataset *train, const Dataset *test)
{
  PetscFunctionBeginUser;
  if (!ev_eig) {
    PetscClassId id;
    PetscCall(PetscClassIdRegister("KernelRegression", &id));
    PetscCall(PetscLogEventRegister("KernelEigen", id, &ev_eig));
    PetscCall(PetscLogEventRegister("KernelCholesky", id, &ev_chol));
    PetscCall(PetscLogEventRegister("KernelTrajectory", id, &ev_traj));
  }
  memset(kr, 0, sizeof *kr);
  PetscInt N;
  PetscCall(MatGetSize(G, &N, NULL));
  kr->comm = comm, kr->N = (int)N, kr->M = C ? test->n : 0, kr->k = train->k, kr->train = train, kr->test = test, kr->C = C;
  const int k = kr->k;
  /* all eigenpairs of the symmetric Theta(X, X) with ScaLAPACK */
  PetscCall(PetscLogEventBegin(ev_eig, 0, 0, 0, 0));
  PetscCall(eig_all(kr, comm, G, N));
  PetscCall(PetscLogEventEnd(ev_eig, 0, 0, 0, 0));
  kr->lambda0 = kr->spectrum[0];
  /* c = V^T Y */
  PetscInt rs, re, lda;
  PetscCall(MatGetOwnershipRange(kr->V, &rs, &re));
  PetscCall(MatDenseGetLDA(kr->V, &lda));
  const double *va;
  kr->c = calloc((size_t)N * k, sizeof *kr->c);
  PetscCall(MatDenseGetArrayRead(kr->V, &va));
  if (re > rs) cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, k, (int)N, (int)(re - rs), 1.0, train->y + rs * k, k, va, (int)lda, 0.0, kr->c, k);
  PetscCall(MatDenseRestoreArrayRead(kr->V, &va));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, kr->c, (int)N * k, MPI_DOUBLE, MPI_SUM, comm));

  /* the converged predictor: alpha = Theta^{-1} Y by Cholesky (ScaLAPACK), f = Theta(., X) alpha */
  kr->conv_train_loss = kr->conv_train_acc = kr->conv_test_loss = kr->conv_test_acc = NAN;
  if (kr->spectrum[N - 1] > 0) {
    PetscCall(PetscLogEventBegin(ev_chol, 0, 0, 0, 0));
    Mat Gs, B, X, Bs, Xs;
    PetscCall(MatConvert(G, MATSCALAPACK, MAT_INITIAL_MATRIX, &Gs));
    PetscCall(MatCholeskyFactor(Gs, NULL, NULL));
    PetscCall(MatCreateDense(comm, re - rs, PETSC_DECIDE, N, k, NULL, &B));
    double *ba;
    PetscCall(MatDenseGetArrayWrite(B, &ba));
    PetscInt ldb;
    PetscCall(MatDenseGetLDA(B, &ldb));
    for (PetscInt i = rs; i < re; i++)
      for (int o = 0; o < k; o++) ba[(i - rs) + o * ldb] = train->y[i * k + o];
    PetscCall(MatDenseRestoreArrayWrite(B, &ba));
    PetscCall(MatConvert(B, MATSCALAPACK, MAT_INITIAL_MATRIX, &Bs));
    PetscCall(MatDuplicate(Bs, MAT_DO_NOT_COPY_VALUES, &Xs));
    PetscCall(MatMatSolve(Gs, Bs, Xs));
    PetscCall(MatConvert(Xs, MATDENSE, MAT_INITIAL_MATRIX, &X));
    /* alpha on every rank from X's own rows: the layout ScaLAPACK's matrix converts back to need not
     * be G's (6 rows on 4 ranks: 2 2 1 1 against 2 1 2 1) */
    PetscInt xs, xe, ldx;
    PetscCall(MatGetOwnershipRange(X, &xs, &xe));
    double *aloc = malloc((size_t)((xe - xs) * k + 1) * sizeof *aloc), *alpha = malloc((size_t)N * k * sizeof *alpha);
    const double *xa;
    PetscCall(MatDenseGetLDA(X, &ldx));
    PetscCall(MatDenseGetArrayRead(X, &xa));
    for (PetscInt i = 0; i < xe - xs; i++)
      for (int o = 0; o < k; o++) aloc[i * k + o] = xa[i + o * ldx];
    PetscCall(MatDenseRestoreArrayRead(X, &xa));
    PetscCall(gather_rows(X, aloc, alpha, k, comm));
    /* train: Theta(X, X) alpha (Y up to the solve's round-off); test: Theta(X*, X) alpha */
    double acc[4] = {0, 0, 0, 0};
    const double *ga;
    PetscInt ldg;
    PetscCall(MatDenseGetLDA(G, &ldg));
    PetscCall(MatDenseGetArrayRead(G, &ga));
    double *f = malloc((size_t)((re - rs) * k + 1) * sizeof *f);
    rows_times(f, ga, ldg, re - rs, alpha, (int)N, k);
    PetscCall(MatDenseRestoreArrayRead(G, &ga));
    score(f, train->y + rs * k, train->label + rs, re - rs, k, &acc[0], &acc[1]);
    free(f);
    if (kr->C) {
      PetscInt cs, ce, ldc;
      PetscCall(MatGetOwnershipRange(kr->C, &cs, &ce));
      PetscCall(MatDenseGetLDA(kr->C, &ldc));
      PetscCall(MatDenseGetArrayRead(kr->C, &ga));
      f = malloc((size_t)((ce - cs) * k + 1) * sizeof *f);
      rows_times(f, ga, ldc, ce - cs, alpha, (int)N, k);
      PetscCall(MatDenseRestoreArrayRead(kr->C, &ga));
      score(f, test->y + cs * k, test->label + cs, ce - cs, k, &acc[2], &acc[3]);
      free(f);
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, acc, 4, MPI_DOUBLE, MPI_SUM, comm));
    const int labelled = train->label && train->label[0] >= 0;
    kr->conv_train_loss = acc[0] / (2.0 * N), kr->conv_train_acc = labelled ? acc[1] / N : NAN;
    if (kr->C) kr->conv_test_loss = acc[2] / (2.0 * kr->M), kr->conv_test_acc = labelled ? acc[3] / kr->M : NAN;
    free(aloc), free(alpha);
    PetscCall(MatDestroy(&Gs));
    PetscCall(MatDestroy(&B));
    PetscCall(MatDestroy(&Bs));
    PetscCall(MatDestroy(&Xs));
    PetscCall(MatDestroy(&X));
    PetscCall(PetscLogEventEnd(ev_chol, 0, 0, 0, 0));
  }
  PetscFunctionReturn(0);
}

/* sum over the local rows of A and B (same layout, n columns, column-major) of A o B, column by
 * column, summed over comm into out (n). */
static PetscErrorCode column_dots(Mat A, Mat B, int n, double *out, MPI_Comm comm)
{
  PetscFunctionBeginUser;
  PetscInt rs, re, as, ae, lda, ldb;
  PetscCall(MatGetOwnershipRange(A, &rs, &re));
  PetscCall(MatGetOwnershipRange(B, &as, &ae));
  PetscCheck(rs == as && re == ae, PETSC_COMM_SELF, PETSC_ERR_PLIB, "kernel prior: row layouts differ");
  PetscCall(MatDenseGetLDA(A, &lda));
  PetscCall(MatDenseGetLDA(B, &ldb));
  const double *a, *b;
  PetscCall(MatDenseGetArrayRead(A, &a));
  PetscCall(MatDenseGetArrayRead(B, &b));
  for (int j = 0; j < n; j++) {
    double sum = 0;
    for (PetscInt i = 0; i < re - rs; i++) sum += a[i + j * lda] * b[i + j * ldb];
    out[j] = sum;
  }
  PetscCall(MatDenseRestoreArrayRead(A, &a));
  PetscCall(MatDenseRestoreArrayRead(B, &b));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, out, n, MPI_DOUBLE, MPI_SUM, comm));
  PetscFunctionReturn(0);
}

/* MPIDense products that need no Elemental: A^T B and A B^T (MatProduct AtB, ABt). */
PetscErrorCode kreg_setup_prior(KernelRegression *kr, Mat K, Mat Kc, double k_test_trace)
{
  PetscFunctionBeginUser;
  const int N = kr->N;
  Mat KV, Vt = NULL, P = NULL, R = NULL, S = NULL, Q = NULL;
  kr->q = malloc((size_t)N * sizeof *kr->q);
  PetscCall(MatTransposeMatMult(K, kr->V, MAT_INITIAL_MATRIX, PETSC_DEFAULT, &KV)); /* K^T V = K V: K is symmetric */
  PetscCall(column_dots(kr->V, KV, N, kr->q, kr->comm));
  if (kr->C) {
    PetscCheck(Kc, kr->comm, PETSC_ERR_ARG_NULL, "kernel prior: test rows of K missing");
    kr->k_test_trace = k_test_trace;
    kr->s = malloc((size_t)N * sizeof *kr->s);
    PetscCall(MatTranspose(kr->V, MAT_INITIAL_MATRIX, &Vt));
    PetscCall(MatMatTransposeMult(kr->C, Vt, MAT_INITIAL_MATRIX, PETSC_DEFAULT, &P)); /* C V, M x N */
    PetscCall(MatMatTransposeMult(Kc, Vt, MAT_INITIAL_MATRIX, PETSC_DEFAULT, &R));    /* K(X*, X) V */
    PetscCall(column_dots(R, P, N, kr->s, kr->comm));
    PetscCall(MatTransposeMatMult(P, P, MAT_INITIAL_MATRIX, PETSC_DEFAULT, &S));      /* V^T C^T C V */
    PetscCall(MatTransposeMatMult(kr->V, KV, MAT_INITIAL_MATRIX, PETSC_DEFAULT, &Q)); /* V^T K V */
    PetscInt rs, re, ss, se, ldq, lds;
    PetscCall(MatGetOwnershipRange(Q, &rs, &re));
    PetscCall(MatGetOwnershipRange(S, &ss, &se));
    PetscCheck(rs == ss && re == se, PETSC_COMM_SELF, PETSC_ERR_PLIB, "kernel prior: row layouts differ");
    PetscCall(MatDenseGetLDA(Q, &ldq));
    PetscCall(MatDenseGetLDA(S, &lds));
    const double *qa, *sa;
    PetscCall(MatDenseGetArrayRead(Q, &qa));
    PetscCall(MatDenseGetArrayRead(S, &sa));
    kr->H_first = rs, kr->H_rows = re - rs;
    kr->H = malloc((size_t)((re - rs) * N + 1) * sizeof *kr->H);
    for (PetscInt i = 0; i < re - rs; i++)
      for (int j = 0; j < N; j++) kr->H[i * N + j] = qa[i + j * ldq] * sa[i + j * lds];
    PetscCall(MatDenseRestoreArrayRead(Q, &qa));
    PetscCall(MatDenseRestoreArrayRead(S, &sa));
  }
  PetscCall(MatDestroy(&KV));
  PetscCall(MatDestroy(&Vt));
  PetscCall(MatDestroy(&P));
  PetscCall(MatDestroy(&R));
  PetscCall(MatDestroy(&S));
  PetscCall(MatDestroy(&Q));
  kr->prior = 1;
  PetscFunctionReturn(0);
}

PetscErrorCode kreg_prior_terms(KernelRegression *kr, const double *d, const double *omd, double *train_extra, double *test_extra)
{
  PetscFunctionBeginUser;
  const int N = kr->N, k = kr->k;
  double tr = 0;
  for (int i = 0; i < N; i++) tr += d[i] * d[i] * kr->q[i];
  *train_extra = k * tr / (2.0 * N);
  *test_extra = NAN;
  if (kr->C) {
    double *g = malloc((size_t)N * sizeof *g), cross = 0, quad = 0;
    for (int i = 0; i < N; i++) {
      const double mu = kr->spectrum[i] * N;
      g[i] = mu != 0 ? omd[i] / mu : 0.0; /* as kreg_evaluate's test predictor */
      cross += g[i] * kr->s[i];
    }
    for (PetscInt i = 0; i < kr->H_rows; i++) {
      double row = 0;
      for (int j = 0; j < N; j++) row += kr->H[i * N + j] * g[j];
      quad += g[kr->H_first + i] * row;
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &quad, 1, MPI_DOUBLE, MPI_SUM, kr->comm));
    *test_extra = k * (kr->k_test_trace - 2 * cross + quad) / (2.0 * kr->M);
    free(g);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode kreg_evaluate(KernelRegression *kr, const double *omd, double *train_loss, double *train_acc, double *test_loss,
                             double *test_acc)
{
  PetscFunctionBeginUser;
  const int N = kr->N, k = kr->k;
  PetscInt rs, re, lda;
  PetscCall(MatGetOwnershipRange(kr->V, &rs, &re));
  PetscCall(MatDenseGetLDA(kr->V, &lda));
  const PetscInt nloc = re - rs;
  double *coef = malloc((size_t)N * k * sizeof *coef), *u = malloc((size_t)(nloc * k + 1) * sizeof *u);
  double acc[4] = {0, 0, 0, 0};
  const double *va;
  PetscCall(MatDenseGetArrayRead(kr->V, &va));
  /* train: f = Y - V (d c) = V ((1 - d) c), in the second form: exactly f_0 = 0 at t = 0 */
  for (int i = 0; i < N; i++)
    for (int o = 0; o < k; o++) coef[i * k + o] = omd[i] * kr->c[i * k + o];
  rows_times(u, va, lda, nloc, coef, N, k);
  score(u, kr->train->y + rs * k, kr->train->label + rs, nloc, k, &acc[0], &acc[1]);
  /* test: f* = C V ((1 - d) / (N lambda) c), the factor t eta_mean / N where lambda = 0 */
  if (kr->C && test_loss) {
    for (int i = 0; i < N; i++) {
      const double mu = kr->spectrum[i] * N;
      const double g = mu != 0 ? omd[i] / mu : 0.0;
      for (int o = 0; o < k; o++) coef[i * k + o] = g * kr->c[i * k + o];
    }
    rows_times(u, va, lda, nloc, coef, N, k);
    double *w = malloc((size_t)N * k * sizeof *w);
    PetscCall(gather_rows(kr->V, u, w, k, kr->comm));
    PetscInt cs, ce, ldc;
    const double *ca;
    PetscCall(MatGetOwnershipRange(kr->C, &cs, &ce));
    PetscCall(MatDenseGetLDA(kr->C, &ldc));
    PetscCall(MatDenseGetArrayRead(kr->C, &ca));
    double *f = malloc((size_t)((ce - cs) * k + 1) * sizeof *f);
    rows_times(f, ca, ldc, ce - cs, w, N, k);
    PetscCall(MatDenseRestoreArrayRead(kr->C, &ca));
    score(f, kr->test->y + cs * k, kr->test->label + cs, ce - cs, k, &acc[2], &acc[3]);
    free(f), free(w);
  }
  PetscCall(MatDenseRestoreArrayRead(kr->V, &va));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, acc, 4, MPI_DOUBLE, MPI_SUM, kr->comm));
  const int labelled = kr->train->label && kr->train->label[0] >= 0;
  *train_loss = acc[0] / (2.0 * N);
  if (train_acc) *train_acc = labelled ? acc[1] / N : NAN;
  if (test_loss) *test_loss = kr->C ? acc[2] / (2.0 * kr->M) : NAN;
  if (test_acc) *test_acc = kr->C && labelled ? acc[3] / kr->M : NAN;
  free(coef), free(u);
  PetscFunctionReturn(0);
}

PetscErrorCode kreg_trajectory(KernelRegression *kr, const Config *cfg, double eta, RecordBuffer *train_rows, RecordBuffer *test_rows,
                               double *prior_train, double *prior_test, int *diverged, int64_t *steps_done)
{
  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(ev_traj, 0, 0, 0, 0));
  const int N = kr->N;
  const int64_t T = cfg->steps;
  /* per eigenvalue: log d_t while every factor 1 - eta_s lambda is positive (then 1 - d_t =
   * -expm1(log d_t) is accurate for small eta lambda t), else d_t itself */
  double *logd = calloc((size_t)N, sizeof *logd), *omd = malloc((size_t)N * sizeof *omd);
  int *neg = calloc((size_t)N, sizeof *neg);
  double *dprod = malloc((size_t)N * sizeof *dprod), *dt = malloc((size_t)N * sizeof *dt);
  int64_t n_train = 0, n_test = 0;
  for (int i = 0; i < N; i++) dprod[i] = 1.0;
  double loss0 = NAN;
  *diverged = 0;
  int64_t t = 0;
  for (;; t++) {
    const int final = t == T;
    const int rec_train = final || t % cfg->record_every == 0, rec_test = final || record_due(T, cfg->test_every, t);
    if (rec_train || rec_test) {
      for (int i = 0; i < N; i++) {
        omd[i] = neg[i] ? 1.0 - dprod[i] : -expm1(logd[i]);
      }
      double tl, ta, el = NAN, ea = NAN;
      PetscCall(kreg_evaluate(kr, omd, &tl, &ta, rec_test ? &el : NULL, rec_test ? &ea : NULL));
      if (kr->prior && (prior_train || prior_test)) {
        double ptr, pte;
        for (int i = 0; i < N; i++) dt[i] = neg[i] ? dprod[i] : exp(logd[i]);
        PetscCall(kreg_prior_terms(kr, dt, omd, &ptr, &pte));
        if (rec_train && prior_train) prior_train[n_train] = tl + ptr;
        if (rec_test && prior_test) prior_test[n_test] = el + pte;
      }
      n_train += rec_train, n_test += rec_test;
      if (t == 0) loss0 = tl;
      const double lr = lr_schedule_at(cfg, eta, t);
      if (rec_train && train_rows) {
        double *row = records_append(train_rows, train_rows->n);
        PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "train records full at step %lld", (long long)t);
        row[0] = (double)t, row[1] = tl, row[2] = ta, row[3] = NAN, row[4] = NAN, row[5] = lr;
      }
      if (rec_test && test_rows) {
        double *row = records_append(test_rows, test_rows->n);
        PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "test records full at step %lld", (long long)t);
        row[0] = (double)t, row[1] = el, row[2] = ea;
      }
      if (!isfinite(tl) || tl > cfg->diverge_factor * loss0) {
        *diverged = 1;
        break;
      }
    }
    if (final) break;
    const double lr = lr_schedule_at(cfg, eta, t);
    for (int i = 0; i < N; i++) {
      const double f = 1.0 - lr * kr->spectrum[i];
      dprod[i] *= f;
      if (!neg[i] && f > 0) logd[i] += log1p(-lr * kr->spectrum[i]);
      else neg[i] = 1;
    }
  }
  *steps_done = t;
  free(logd), free(omd), free(neg), free(dprod), free(dt);
  PetscCall(PetscLogEventEnd(ev_traj, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

void kreg_free(KernelRegression *kr)
{
  MatDestroy(&kr->V);
  MatDestroy(&kr->C);
  free(kr->spectrum);
  free(kr->c);
  free(kr->q), free(kr->s), free(kr->H);
  memset(kr, 0, sizeof *kr);
}
