/* The infinite-width runs of a sweep (kernel_run.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cntk.h"
#include "inf_kernels.h"
#include "kernel_run.h"
#include "train.h"

enum { EXIT_RUNTIME = 1 }; /* app.c's code for a runtime failure */

/* The kernel instance: the one of the runs of width MODEL_WIDTH_INF (there is at most one). */
static int kernel_instance(const Config *cfg, const Sweep *sw)
{
  for (int i = 0; i < sw->n_runs && cfg->kernel_regression; i++)
    if (sw->runs[i].width == MODEL_WIDTH_INF) return sw->runs[i].instance;
  return -1;
}

/* The deck's kernel: the fc net's (spec) or the CNTK's (cspec), by cfg->kernel_net. */
static void kernel_specs(const Config *cfg, const Dataset *train, InfKernelSpec *spec, CntkSpec *cspec)
{
  const ModelConfig *m = &cfg->model;
  *spec = (InfKernelSpec){.depth = m->depth, .act = m->act, .sigma_w = m->sigma_w, .sigma_b = m->bias ? m->sigma_b : 0.0, .gh_points = 0};
  *cspec = (CntkSpec){.depth = m->depth, .C = train->channels, .H = train->height, .W = train->width, .sigma_w = m->sigma_w,
                      .sigma_b = m->bias ? m->sigma_b : 0.0};
}

double kernel_runs_flops(const Config *cfg, const Dataset *train, const Dataset *test)
{
  if (!cfg->kernel_regression) return 0.0;
  InfKernelSpec spec;
  CntkSpec cspec;
  kernel_specs(cfg, train, &spec, &cspec);
  const double N = train->n, M = test->n;
  const double entry = cfg->kernel_net == 1 ? cntk_pair_flops(&cspec) : inf_kernel_pair_flops(train->d, &spec);
  const double gram = (N * (N + 1) / 2 + M * N) * entry * (cfg->kernel_prior ? 2.0 : 1.0);
  return gram + (10.0 + 1.0 / 3.0) * N * N * N; /* the eigendecomposition with vectors and the Cholesky solve */
}

int kernel_runs_prepare(KernelRuns *kp, const Config *cfg, const Dataset *train, const Dataset *test, const Sweep *sw, MPI_Comm world,
                        InstanceRow *rows, int32_t *measured, int *stopped)
{
  memset(kp, 0, sizeof *kp);
  const int inst = kernel_instance(cfg, sw);
  if (inst < 0) return 0; /* off, or no kernel run in this -sweep_part */
  int rank;
  MPI_Comm_rank(world, &rank);
  InfKernelSpec spec;
  CntkSpec cspec;
  kernel_specs(cfg, train, &spec, &cspec);
  const KernelFn k = cfg->kernel_net == 1 ? (KernelFn){"cntk", kernel_block_cntk, &cspec, sizeof cspec}
                                          : (KernelFn){"ntk_fc", kernel_block_ntk_fc, &spec, sizeof spec};
  const KernelFn kp_fn = cfg->kernel_net == 1 ? (KernelFn){"cnngp", kernel_block_cnngp, &cspec, sizeof cspec}
                                              : (KernelFn){"nngp_fc", kernel_block_nngp_fc, &spec, sizeof spec};
  const int N = train->n, M = test->n, d = train->d;
  /* the inputs as one (N + M) x d array: the node's shared window holds them so (shared_data.c);
   * private copies are joined here */
  const double *x = train->x;
  double *joined = NULL;
  if (M && test->x != train->x + (size_t)N * d) {
    joined = malloc((size_t)(N + M) * d * sizeof *joined);
    if (!joined) return EXIT_RUNTIME;
    memcpy(joined, train->x, (size_t)N * d * sizeof *joined);
    memcpy(joined + (size_t)N * d, test->x, (size_t)M * d * sizeof *joined);
    x = joined;
  }
  const KernelGramOptions opt = {.tile = cfg->kernel_tile, .ckpt_dir = cfg->checkpoint_dir,
                                 .progress_seconds = cfg->quiet ? 0.0 : cfg->progress_seconds};
  Mat G = NULL, C = NULL, K = NULL, Kc = NULL;
  KernelGramStats prior_gram = {0};
  PetscErrorCode ierr = kernel_gram_assemble(world, &k, x, N, M, d, &opt, &G, M ? &C : NULL, &kp->gram);
  if (!ierr && !kp->gram.stopped && cfg->kernel_prior) /* the NNGP, tiled and checkpointed the same way */
    ierr = kernel_gram_assemble(world, &kp_fn, x, N, M, d, &opt, &K, M ? &Kc : NULL, &prior_gram);
  double k_test_trace = 0; /* tr K(X*, X*): this rank's share of the test samples, then summed */
  if (!ierr && K) {
    int size;
    MPI_Comm_size(world, &size);
    for (int i = (int)((int64_t)M * rank / size); i < (int)((int64_t)M * (rank + 1) / size); i++) {
      double kii;
      const double *xi = x + (size_t)(N + i) * d;
      kp_fn.block(&kii, xi, 1, xi, 1, d, kp_fn.spec);
      k_test_trace += kii;
    }
    MPI_Allreduce(MPI_IN_PLACE, &k_test_trace, 1, MPI_DOUBLE, MPI_SUM, world);
  }
  free(joined);
  if (ierr || kp->gram.stopped || prior_gram.stopped) {
    MatDestroy(&G), MatDestroy(&C), MatDestroy(&K), MatDestroy(&Kc);
    if (ierr) return EXIT_RUNTIME;
    *stopped = 1;
    return 0;
  }
  kp->gram.seconds += prior_gram.seconds, kp->gram.n_tiles += prior_gram.n_tiles;
  kp->gram.computed += prior_gram.computed, kp->gram.loaded += prior_gram.loaded;
  const double t0 = MPI_Wtime();
  ierr = kreg_setup(&kp->kr, world, G, C, train, test);
  MatDestroy(&G);
  if (!ierr && K) ierr = kreg_setup_prior(&kp->kr, K, Kc, k_test_trace);
  MatDestroy(&K), MatDestroy(&Kc);
  if (ierr) {
    if (!kp->kr.C) MatDestroy(&C);
    kreg_free(&kp->kr);
    return EXIT_RUNTIME;
  }
  kp->active = 1;
  const RunSpec *r = NULL;
  for (int i = 0; i < sw->n_runs && !r; i++)
    if (sw->runs[i].instance == inst) r = &sw->runs[i];
  rows[inst] = (InstanceRow){inst, MODEL_WIDTH_INF, PARAM_NTK, r->seed, 0, kp->kr.lambda0, 0.0, 2, kp->gram.seconds + MPI_Wtime() - t0,
                             NAN, NAN, 0};
  measured[inst] = 1;
  if (rank == 0 && !cfg->quiet) {
    printf("[ntkhpc] infinite width: %s %d x %d kernel Gram matrix (+ %d test rows) in %d tiles (%d computed, %d from checkpoints) in "
           "%.2f s; lambda_0(inf) %.6g\n",
           k.name, N, N, M, kp->gram.n_tiles, kp->gram.computed, kp->gram.loaded, kp->gram.seconds, kp->kr.lambda0);
    fflush(stdout);
  }
  return 0;
}

int kernel_runs_write(KernelRuns *kp, const Config *cfg, const Sweep *sw, OutputFile *out, int32_t *status, SummaryRow *done_rows,
                      MPI_Comm world)
{
  if (!kp->active) return 0;
  int rank, rc = 0;
  MPI_Comm_rank(world, &rank);
  const int itr = output_schema_index(out, "train"), ite = output_schema_index(out, "test"), ik = output_schema_index(out, "kernel");
  for (int i = 0; i < sw->n_runs; i++) {
    const RunSpec *run = &sw->runs[i];
    if (run->width != MODEL_WIDTH_INF) continue;
    const double t0 = MPI_Wtime();
    RecordBuffer tr = {0}, te = {0}, kr = {0};
    if ((itr >= 0 && records_init(&tr, &out->schema[itr])) || (ite >= 0 && records_init(&te, &out->schema[ite])) ||
        (ik >= 0 && records_init(&kr, &out->schema[ik])))
      return EXIT_RUNTIME;
    int diverged = 0;
    int64_t steps = 0;
    const int64_t n_ptr = record_count(cfg->steps, cfg->record_every), n_pte = record_count(cfg->steps, cfg->test_every);
    double *prior_train = NULL, *prior_test = NULL;
    if (kp->kr.prior) {
      prior_train = malloc((size_t)(n_ptr + n_pte + 1) * sizeof *prior_train), prior_test = prior_train + n_ptr;
      if (!prior_train) return EXIT_RUNTIME;
      for (int64_t j = 0; j < n_ptr + n_pte; j++) prior_train[j] = NAN;
    }
    if (kreg_trajectory(&kp->kr, cfg, run->eta, itr >= 0 ? &tr : NULL, ite >= 0 ? &te : NULL, prior_train, prior_test, &diverged, &steps)) {
      free(prior_train);
      return EXIT_RUNTIME;
    }
    SummaryRow row = summary_row_pending(run, diverged ? RUN_DIVERGED : RUN_DONE);
    row.steps_done = steps;
    row.n_train_records = (int32_t)tr.n, row.n_test_records = (int32_t)te.n;
    double peak = -INFINITY, peak_window = -INFINITY;
    for (int64_t j = 0; j < tr.n; j++) {
      const double *q = records_row(&tr, j);
      if (q[1] > peak || !isfinite(q[1])) peak = q[1];
      if (q[0] <= cfg->catapult_window && q[1] > peak_window) peak_window = q[1], row.peak_step = (int64_t)q[0];
    }
    if (tr.n) {
      row.loss0 = records_row(&tr, 0)[1], row.loss_final = records_row(&tr, tr.n - 1)[1], row.acc_final = records_row(&tr, tr.n - 1)[2];
      row.loss_peak = peak, row.peak_ratio = peak_window / row.loss0;
    }
    if (te.n) row.test_loss_final = records_row(&te, te.n - 1)[1], row.test_acc_final = records_row(&te, te.n - 1)[2];
    row.lambda0 = kp->kr.lambda0;
    row.lambda_final = diverged ? NAN : kp->kr.lambda0; /* the kernel does not move */
    row.eta_lambda0 = run->eta * row.lambda0, row.eta_lambda_final = run->eta * row.lambda_final;
    row.lambda_ratio = row.lambda_final / row.lambda0;
    unsigned measured = MEASURED_LAMBDA0 | (diverged ? 0u : (unsigned)MEASURED_LAMBDA_FINAL);
    if (tr.n) measured |= MEASURED_LOSS0 | MEASURED_LOSS_PEAK | MEASURED_LOSS_FINAL | (isfinite(row.acc_final) ? (unsigned)MEASURED_ACC_FINAL : 0u);
    if (tr.n && row.peak_step >= 0) measured |= MEASURED_PEAK_WINDOW;
    if (te.n) measured |= MEASURED_TEST_FINAL;
    row.measured = (int32_t)measured;
    row.phase = phase_classify(cfg, row.loss0, peak_window, row.loss_peak, row.loss_final, row.eta_lambda0, row.eta_lambda_final, measured,
                               diverged);
    if (ik >= 0) {
      double *q = records_append(&kr, 0);
      const Schema *s = kr.schema;
      q[schema_offset(s, schema_find(s, "step"))] = (double)steps;
      q[schema_offset(s, schema_find(s, "lambda0"))] = kp->kr.lambda0;
      memcpy(q + schema_offset(s, schema_find(s, "spectrum")), kp->kr.spectrum, (size_t)kp->kr.N * sizeof(double));
      q[schema_offset(s, schema_find(s, "conv_train_loss"))] = kp->kr.conv_train_loss;
      q[schema_offset(s, schema_find(s, "conv_train_accuracy"))] = kp->kr.conv_train_acc;
      q[schema_offset(s, schema_find(s, "conv_test_loss"))] = kp->kr.conv_test_loss;
      q[schema_offset(s, schema_find(s, "conv_test_accuracy"))] = kp->kr.conv_test_acc;
      q[schema_offset(s, schema_find(s, "assembly_seconds"))] = kp->gram.seconds;
      if (prior_train && schema_find(s, "prior_train_loss") >= 0) {
        memcpy(q + schema_offset(s, schema_find(s, "prior_train_loss")), prior_train, (size_t)n_ptr * sizeof(double));
        memcpy(q + schema_offset(s, schema_find(s, "prior_test_loss")), prior_test, (size_t)n_pte * sizeof(double));
      }
    }
    free(prior_train);
    row.wall_seconds = MPI_Wtime() - t0 + kp->gram.seconds;
    if (rank == 0) {
      if (tr.n && output_write_records(out, i, &tr, 0, tr.n)) rc = EXIT_RUNTIME;
      if (te.n && output_write_records(out, i, &te, 0, te.n)) rc = EXIT_RUNTIME;
      if (kr.n && output_write_records(out, i, &kr, 0, kr.n)) rc = EXIT_RUNTIME;
      if (output_write_summary(out, &row)) rc = EXIT_RUNTIME;
      done_rows[i] = row;
    }
    status[i] = row.status;
    records_free(&tr), records_free(&te), records_free(&kr);
  }
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, world);
  return rc;
}

void kernel_runs_free(KernelRuns *kp)
{
  if (kp->active) kreg_free(&kp->kr);
  memset(kp, 0, sizeof *kp);
}
