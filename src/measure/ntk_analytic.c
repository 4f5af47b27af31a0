/* ntk_analytic/: the empirical NTK at initialisation against the infinite-width one, for every run
 * whose network has an analytic kernel in closed form (a fully connected net in the ntk
 * parameterization with identity, relu or erf; src/core/inf_kernels.h), at step 0 (-ntk_analytic, on by default):
 *
 *   Theta_inf = Theta_{L+1}(X, X) (x) I_k / N   on the NTK batch X (traced variant: Theta_{L+1} / N),
 *   lambda_0(inf) = lambda_max(Theta_{L+1}(X, X)) / N,
 *   |lambda_0(n) / lambda_0(inf) - 1|  and  |Theta_n - Theta_inf|_F / |Theta_inf|_F,
 *
 * which fall like n^(-1/2) with the width (docs/conventions.md "The linearised model and the
 * infinite-width limit"). lambda_0(n) is the instance's lambda_0; Theta_n the exact Gram matrix the
 * NTK probe assembles at step 0 (the kernel error is NaN where that is not affordable). Theta_inf's
 * rows are computed where the Gram matrix's rows live, and its top eigenvalue by a Krylov-Schur
 * solve on the distributed dense matrix (options prefix -ntk_inf_). Runs without an analytic kernel
 * record NaN. */
#include <math.h>
#include <slepceps.h>
#include <string.h>
#include "inf_kernels.h"
#include "measure.h"

static bool on(const Config *c) { return c->ntk_analytic; }
static bool off(const Config *c) { return !c->ntk_analytic; }

static const OptionDesc options[] = {
  {.name = "-ntk_analytic", .kind = KIND_BOOL, .def = "true", .in_deck = off,
   .meaning = "At step 0, compare the empirical NTK with the analytic infinite-width one (fc nets, ntk parameterization)",
   OPTION_FIELD(ntk_analytic)},
};

/* The analytic kernel of a model, if it has one (with batch norm it has none). */
static bool analytic_spec(const ModelConfig *m, Parameterization param, bool batch_norm, InfKernelSpec *spec)
{
  /* tanh has no closed form: its quadrature (about 1e4 evaluations per pair and layer) would cost a
   * small sweep minutes at every instance, so the measurement covers the closed forms only */
  if (m->arch != ARCH_FC || param != PARAM_NTK || batch_norm || m->act == ACT_TANH || !inf_kernel_activation_supported(m->act))
    return false;
  *spec = (InfKernelSpec){.depth = m->depth, .act = m->act, .sigma_w = m->sigma_w, .sigma_b = m->bias ? m->sigma_b : 0.0};
  return true;
}

static bool deck_has_analytic(const Config *cfg)
{
  InfKernelSpec spec;
  for (int i = 0; i < cfg->n_params; i++)
    if (analytic_spec(&cfg->model, cfg->params[i], cfg->model.fc_batch_norm, &spec)) return true;
  return false;
}

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "the empirical NTK at initialisation against the analytic infinite-width NTK on the NTK batch (NaN: no analytic kernel)";
  s->n_records = on(cfg) && deck_has_analytic(cfg) ? 1 : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step of the record (0)");
  schema_add(s, "lambda0", DS_FLOAT64, SCALAR, "1", "lambda_0(n): top eigenvalue of the empirical NTK J J^T / N at initialisation");
  schema_add(s, "lambda0_inf", DS_FLOAT64, SCALAR, "1", "lambda_0(inf) = lambda_max(Theta_{L+1}(X, X)) / N, the analytic infinite-width NTK");
  schema_add(s, "lambda0_rel_err", DS_FLOAT64, SCALAR, "1", "|lambda_0(n) / lambda_0(inf) - 1|");
  schema_add(s, "kernel_rel_err", DS_FLOAT64, SCALAR, "1",
             "|Theta_n - Theta_inf|_F / |Theta_inf|_F over the NTK batch, in the deck's variant (NaN when the exact Gram matrix is not affordable)");
}

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  InfKernelSpec spec;
  if (analytic_spec(&r->model->cfg, r->run->param, model_has_batch_norm(r->model), &spec)) PetscCall(ntk_probe_keep_grams(r)); /* Theta_0 from the probe */
  *state = NULL;
  return 0;
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return st->t == 0; }

/* The top eigenvalue of the analytic Theta_{L+1}(X, X) / N, held as rows [r0, r1) of a dense matrix. */
static PetscErrorCode top_eig(MPI_Comm comm, const double *rows /* (r1 - r0) x N */, int r0, int r1, int N, double *lam)
{
  Mat A;
  EPS eps;
  PetscScalar *a;
  PetscInt nconv, lda;
  PetscCall(MatCreateDense(comm, r1 - r0, r1 - r0, N, N, NULL, &A));
  PetscCall(MatDenseGetLDA(A, &lda));
  PetscCall(MatDenseGetArrayWrite(A, &a));
  for (int i = 0; i < r1 - r0; i++)
    for (int j = 0; j < N; j++) a[i + (PetscInt)j * lda] = rows[(size_t)i * N + j];
  PetscCall(MatDenseRestoreArrayWrite(A, &a));
  PetscCall(MatAssemblyBegin(A, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(A, MAT_FINAL_ASSEMBLY));
  PetscCall(EPSCreate(comm, &eps));
  PetscCall(EPSSetOptionsPrefix(eps, "ntk_inf_"));
  PetscCall(EPSSetOperators(eps, A, NULL));
  PetscCall(EPSSetProblemType(eps, EPS_HEP));
  PetscCall(EPSSetWhichEigenpairs(eps, EPS_LARGEST_REAL));
  PetscCall(EPSSetDimensions(eps, 1, PETSC_DEFAULT, PETSC_DEFAULT));
  PetscCall(EPSSetTolerances(eps, 1e-13, 1000));
  PetscCall(EPSSetFromOptions(eps));
  PetscCall(EPSSolve(eps));
  PetscCall(EPSGetConverged(eps, &nconv));
  *lam = NAN;
  if (nconv > 0) {
    PetscScalar kr;
    PetscCall(EPSGetEigenvalue(eps, 0, &kr, NULL));
    *lam = PetscRealPart(kr);
  }
  PetscCall(EPSDestroy(&eps));
  PetscCall(MatDestroy(&A));
  return 0;
}

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out)
{
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "ntk_analytic records full at step %lld", (long long)st->t);
  row[0] = (double)st->t;
  for (int j = 1; j < 5; j++) row[j] = NAN;
  InfKernelSpec spec;
  if (!analytic_spec(&r->model->cfg, r->run->param, model_has_batch_norm(r->model), &spec)) return 0;
  const Dataset *tr = r->train;
  const int N = r->cfg->ntk_batch < tr->n ? r->cfg->ntk_batch : (int)tr->n, k = tr->k, d = tr->d;

  /* The empirical Gram matrix at step 0 and the samples its local rows hold (else an even slice) */
  Mat G0 = NULL, Gt = NULL;
  PetscInt rs = 0, re = 0, lda = 0, ncols = 0;
  int kk = r->cfg->ntk_variant ? 1 : k, s0, s1;
  PetscCall(ntk_probe_grams(r, 0, &G0, &Gt));
  if (G0) {
    PetscCall(MatGetOwnershipRange(G0, &rs, &re));
    PetscCall(MatGetSize(G0, NULL, &ncols));
    PetscCheck(rs % kk == 0 && re % kk == 0 && ncols == (PetscInt)N * kk, PETSC_COMM_SELF, PETSC_ERR_PLIB, "ntk_analytic: unexpected Gram layout");
    s0 = (int)(rs / kk), s1 = (int)(re / kk);
  } else {
    s0 = (int)((int64_t)N * r->grank / r->gsize), s1 = (int)((int64_t)N * (r->grank + 1) / r->gsize);
  }
  double *th;
  PetscCall(PetscMalloc1((size_t)(s1 > s0 ? s1 - s0 : 1) * N, &th));
  inf_kernel_block(NULL, th, tr->x + (size_t)s0 * d, s1 - s0, tr->x, N, d, &spec);
  for (size_t q = 0; q < (size_t)(s1 - s0) * N; q++) th[q] /= N;
  double lam_inf = NAN;
  PetscCall(top_eig(r->group, th, s0, s1, N, &lam_inf));

  double lam = r->run->lambda0;
  if (!isfinite(lam)) { /* absolute learning rates: the instance did not measure it */
    NtkResult res;
    PetscCall(ntk_probe_measure(r, 0, false, false, &res));
    lam = res.lambda;
  }
  row[1] = lam, row[2] = lam_inf, row[3] = fabs(lam / lam_inf - 1.0);

  if (G0) { /* |Theta_n - Theta_inf|_F^2 and |Theta_inf|_F^2 over the local rows, then summed */
    const PetscScalar *g;
    double s[2] = {0, 0};
    PetscCall(MatDenseGetLDA(G0, &lda));
    PetscCall(MatDenseGetArrayRead(G0, &g));
    for (PetscInt i = 0; i < re - rs; i++) {
      const int a = (int)(i / kk), ia = (int)(i % kk);
      for (PetscInt j = 0; j < ncols; j++) {
        const int b = (int)(j / kk), jb = (int)(j % kk);
        const double ref = ia == jb ? th[(size_t)a * N + b] : 0.0, e = g[i + j * lda] - ref;
        s[0] += e * e, s[1] += ref * ref;
      }
    }
    PetscCall(MatDenseRestoreArrayRead(G0, &g));
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, s, 2, MPI_DOUBLE, MPI_SUM, r->group));
    row[4] = sqrt(s[0] / s[1]);
  }
  PetscCall(PetscFree(th));
  return 0;
}

const MeasurementClass measure_ntk_analytic = {
  .name = "ntk_analytic", .option_heading = "NTK", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .setup = setup, .due = due, .measure = measure,
};
