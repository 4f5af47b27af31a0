/* features/: feature-learning measures (docs/conventions.md "Feature learning") on the probe batch,
 * the NTK batch (first -ntk_batch training samples, cut in contiguous slices over the group as the
 * NTK operator cuts it), every -features_every steps and at the last step (0 = off):
 *   - per dense layer l = 1..L+1 (z_{L+1} = f): |z_l| = RMS(z_l(t)), |dz_l| = RMS(z_l(t) - z_l(0));
 *   - per layer, of the effective weights mult W: |W(t) - W(0)|_F / |W(0)|_F and |W(t) - W(0)|_2
 *     (Lanczos, warm-started from the last record's vector, which checkpoints keep);
 *   - Fort's kernel distance S(Theta_0, Theta_t) and the centred kernel-target alignment of the NTK
 *     (logit-traced N x N form of a full Gram matrix), when the exact Gram matrix is affordable;
 *   - the alignment of the last hidden layer's feature kernel Phi = h_L h_L^T / n, and linear CKA
 *     between h_L(0) and h_L(t).
 * Reductions over the group are sums of per-rank parts; N x N kernels are gathered rows, computed by
 * the same dot products whatever the rank count. z_l(0) and h_L(0) come from theta_0 at setup, so a
 * restarted run needs only the spectral-norm warm starts back. Nets with other than dense and
 * activation ops (the WRN) are not covered: their rows are NaN.
 * Memory per rank: z_l(0) of the slice, h_L of the whole batch (N x n), six N x N matrices, and one
 * copy of the largest weight matrix (the Lanczos operand D = mult (W_t - W_0)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "feature_kernels.h"
#include "measure.h"
#include "rng.h"

#define SPEC_MAX_ITER 1000 /* products D^T D v per record and layer (Lanczos: ~10 with a warm start) */
#define SPEC_TOL 1e-15

static bool features_on(const Config *c) { return c->features_every > 0; }

static const OptionDesc options[] = {
  {.name = "-features_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT, .in_deck = features_on,
   .meaning = "Feature-learning measures on the NTK batch every this many steps and at the last (0 = never)",
   OPTION_FIELD(features_every)},
};

/* Dense layers L+1 of the deck's net (1 for the WRN, whose row is NaN). */
static int n_layers(const Config *cfg)
{
  return cfg->model.arch == ARCH_FC ? cfg->model.depth + 1 : cfg->model.arch == ARCH_UV ? 2 : 1;
}

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  const int L1 = n_layers(cfg);
  s->description = "feature-learning measures on the NTK batch, every -features_every steps and at the last step (fc nets; NaN for the WRN)";
  s->n_records = cfg->features_every > 0 ? record_count(cfg->steps, cfg->features_every) : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step t of the record");
  schema_add(s, "z_rms", DS_FLOAT64, L1, "1", "|z_l| = RMS over samples and units of the pre-activations z_l of dense layer l = 1..L+1 (z_{L+1} = f)");
  schema_add(s, "dz_rms", DS_FLOAT64, L1, "1", "|dz_l| = RMS(z_l(t) - z_l(0)) per dense layer l = 1..L+1");
  schema_add(s, "w_change_rel", DS_FLOAT64, L1, "1", "|W_l(t) - W_l(0)|_F / |W_l(0)|_F of the effective weights mult W_l, per dense layer");
  schema_add(s, "w_change_spec", DS_FLOAT64, L1, "1", "spectral norm |W_l(t) - W_l(0)|_2 of the effective weights mult W_l, per dense layer");
  schema_add(s, "kernel_fort", DS_FLOAT64, SCALAR, "1",
             "S = 1 - <Theta_0, Theta_t>_F / (|Theta_0|_F |Theta_t|_F) of the NTK Gram matrices (NaN when the exact Gram matrix is not affordable)");
  schema_add(s, "ntk_alignment", DS_FLOAT64, SCALAR, "1",
             "centred kernel-target alignment A(Theta_t) of the (logit-traced) NTK with Y Y^T (NaN when the exact Gram matrix is not affordable)");
  schema_add(s, "feature_alignment", DS_FLOAT64, SCALAR, "1", "centred kernel-target alignment A(Phi_t) of Phi = h_L h_L^T / n, h_L the last hidden layer's post-activations");
  schema_add(s, "cka", DS_FLOAT64, SCALAR, "1", "linear CKA between h_L(0) and h_L(t)");
}

typedef struct {
  bool ok;                /* a dense net: measured; else rows of NaN */
  int L1;                 /* dense layers */
  const Op **op;          /* [L1] */
  int hbuf, nh;           /* h_L: the input buffer of the last dense layer, and its width */
  int N, lo, nloc, kk;    /* probe batch, this rank's slice; kk: Gram rows per sample */
  int *cnt, *dsp;         /* per rank: samples of the slice and the first one (Allgatherv) */
  int *vcnt, *vdsp;       /* scratch counts for Allgatherv in doubles */
  Tape tape;
  double **z0;            /* [L1] nloc x n_out: z_l(0) */
  double *Hloc, *Hall;    /* nloc x nh, N x nh */
  double *Kh0, *Kh, *Yk, *Kntk, *rows, *work;
  double *v;              /* spectral-norm warm starts of every layer, side by side (n_in each) */
  size_t nv;
  double *spec_work;      /* feat_spectral_work of the largest layer */
  double *sums;           /* 2 L1 */
  bool have_v;
} FeatState;

/* Per-rank counts and offsets of n-wide sample rows in st->vcnt, st->vdsp. */
static PetscErrorCode row_counts(FeatState *st, int gsize, int width)
{
  for (int q = 0; q < gsize; q++) {
    const double c = (double)st->cnt[q] * width, d = (double)st->dsp[q] * width;
    PetscCheck(c + d < 2147483647.0, PETSC_COMM_SELF, PETSC_ERR_SUP, "features: probe batch x width too large to gather");
    st->vcnt[q] = (int)c, st->vdsp[q] = (int)d;
  }
  return 0;
}

/* Gathers the sample rows `local` (nloc x width) of every rank into `all` (N x width). */
static PetscErrorCode gather_rows(MeasureRun *r, FeatState *st, const double *local, int width, double *all)
{
  PetscCall(row_counts(st, r->gsize, width));
  PetscCallMPI(MPI_Allgatherv(local, st->nloc * width, MPI_DOUBLE, all, st->vcnt, st->vdsp, MPI_DOUBLE, r->group));
  return 0;
}

/* K = scale H H^T (N x N, on every rank) from this rank's rows of H (Hloc) via the gathered Hall. */
static PetscErrorCode gram_of(MeasureRun *r, FeatState *st, double scale, double *K)
{
  PetscCall(gather_rows(r, st, st->Hloc, st->nh, st->Hall));
  feat_gram_rows(st->Hloc, st->nloc, st->Hall, st->N, st->nh, scale, st->rows);
  PetscCall(gather_rows(r, st, st->rows, st->N, K));
  return 0;
}

/* Forward pass at theta over this rank's slice, chunk by chunk: h_L into Hloc; z_l into z0 when
 * sums is NULL, else per layer sums[l] += z^2 and sums[L1 + l] += (z - z0)^2. */
static void forward(MeasureRun *r, FeatState *st, const double *theta, double *sums)
{
  const Dataset *tr = r->train;
  const int cap = st->tape.capacity;
  for (int c0 = 0; c0 < st->nloc; c0 += cap) {
    const int B = st->nloc - c0 < cap ? st->nloc - c0 : cap;
    model_forward(r->model, theta, tr->x + (size_t)(st->lo + c0) * tr->d, B, &st->tape, NULL);
    for (int l = 0; l < st->L1; l++) {
      const int n = st->op[l]->n_out;
      const double *z = st->tape.act[st->op[l]->out], *z0 = st->z0[l] + (size_t)c0 * n;
      if (!sums) {
        memcpy(st->z0[l] + (size_t)c0 * n, z, (size_t)B * n * sizeof(double));
        continue;
      }
      double a = 0, b = 0;
      for (size_t i = 0; i < (size_t)B * n; i++) a += z[i] * z[i], b += (z[i] - z0[i]) * (z[i] - z0[i]);
      sums[l] += a, sums[st->L1 + l] += b;
    }
    memcpy(st->Hloc + (size_t)c0 * st->nh, st->tape.act[st->hbuf], (size_t)B * st->nh * sizeof(double));
  }
}

static PetscErrorCode setup(MeasureRun *r, void **state)
{
  const Model *m = r->model;
  const Config *cfg = r->cfg;
  FeatState *st;
  PetscCall(PetscCalloc1(1, &st));
  *state = st;
  st->L1 = n_layers(cfg);
  int dense = 0, others = 0;
  for (int i = 0; i < m->n_ops; i++) dense += m->ops[i].kind == OP_DENSE, others += m->ops[i].kind != OP_DENSE && m->ops[i].kind != OP_ACT;
  st->ok = !others && dense == st->L1;
  if (!st->ok) return 0;
  PetscCall(PetscCalloc3(st->L1, &st->op, st->L1, &st->z0, 2 * st->L1, &st->sums));
  for (int i = 0, l = 0; i < m->n_ops; i++)
    if (m->ops[i].kind == OP_DENSE) st->op[l++] = &m->ops[i];
  const Op *last = st->op[st->L1 - 1];
  st->hbuf = last->in, st->nh = last->n_in;
  st->N = cfg->ntk_batch;
  st->kk = cfg->ntk_variant ? 1 : r->train->k;
  PetscCall(PetscMalloc4(r->gsize, &st->cnt, r->gsize, &st->dsp, r->gsize, &st->vcnt, r->gsize, &st->vdsp));
  for (int q = 0; q < r->gsize; q++) { /* the NTK operator's slices (ntk_probe_get) */
    const int64_t lo = (int64_t)st->N * q / r->gsize, hi = (int64_t)st->N * (q + 1) / r->gsize;
    st->dsp[q] = (int)lo, st->cnt[q] = (int)(hi - lo);
  }
  st->lo = st->dsp[r->grank], st->nloc = st->cnt[r->grank];
  const int chunk = st->nloc < cfg->eval_chunk ? st->nloc : cfg->eval_chunk;
  PetscCheck(!tape_create(&st->tape, m, chunk > 0 ? chunk : 1), PETSC_COMM_SELF, PETSC_ERR_MEM, "features: tape");
  size_t spec_work = 1;
  for (int l = 0; l < st->L1; l++) {
    PetscCall(PetscMalloc1((size_t)st->nloc * st->op[l]->n_out + 1, &st->z0[l]));
    st->nv += (size_t)st->op[l]->n_in;
    const size_t sw = feat_spectral_work(st->op[l]->n_out, st->op[l]->n_in);
    if (sw > spec_work) spec_work = sw;
  }
  const size_t NN = (size_t)st->N * st->N;
  PetscCall(PetscMalloc4((size_t)st->nloc * st->nh + 1, &st->Hloc, (size_t)st->N * st->nh, &st->Hall, NN, &st->Kh0, NN, &st->Kh));
  PetscCall(PetscMalloc5(NN, &st->Yk, NN, &st->Kntk, (size_t)st->nloc * st->N + 1, &st->rows, 2 * NN + st->N, &st->work, spec_work, &st->spec_work));
  PetscCall(PetscMalloc1(st->nv, &st->v));
  /* The target kernel Y Y^T of the probe batch (every rank holds the training set). */
  const Dataset *tr = r->train;
  for (int a = 0; a < st->N; a++)
    for (int b = 0; b < st->N; b++) {
      double s = 0;
      for (int j = 0; j < tr->k; j++) s += tr->y[(size_t)a * tr->k + j] * tr->y[(size_t)b * tr->k + j];
      st->Yk[(size_t)a * st->N + b] = s;
    }
  /* What derives from theta_0: z_l(0) and the Gram matrix of h_L(0), the same after a restart. */
  forward(r, st, r->theta0, NULL);
  PetscCall(gram_of(r, st, 1.0 / st->nh, st->Kh0));
  if (ntk_gram_supported(m)) PetscCall(ntk_probe_keep_grams(r));
  return 0;
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return record_due(r->cfg->steps, r->cfg->features_every, st->t) || st->final; }

/* S(Theta_0, Theta_t) and the alignment of the traced Theta_t, from the assembled Gram matrices. */
static PetscErrorCode ntk_measures(MeasureRun *r, FeatState *st, int64_t t, double *fort, double *align)
{
  Mat G0, Gt;
  PetscCall(ntk_probe_grams(r, t, &G0, &Gt));
  if (!G0 || !Gt) return 0;
  PetscInt rs, re, lda0, ldat, ncols;
  const PetscScalar *a0, *at;
  PetscCall(MatGetOwnershipRange(Gt, &rs, &re));
  PetscCall(MatGetSize(Gt, NULL, &ncols));
  PetscCheck(rs == (PetscInt)st->lo * st->kk && re == (PetscInt)(st->lo + st->nloc) * st->kk && ncols == (PetscInt)st->N * st->kk, PETSC_COMM_SELF,
             PETSC_ERR_PLIB, "features: the Gram matrix's rows are not the probe slice");
  PetscCall(MatDenseGetLDA(G0, &lda0));
  PetscCall(MatDenseGetLDA(Gt, &ldat));
  PetscCall(MatDenseGetArrayRead(G0, &a0));
  PetscCall(MatDenseGetArrayRead(Gt, &at));
  /* S = 1 - cos = |G0/|G0| - Gt/|Gt||^2 / 2, free of the cancellation of 1 - cos when S is small */
  double s[3] = {0, 0, 0}; /* |G0|^2, |Gt|^2, then the squared distance of the unit matrices */
  for (PetscInt j = 0; j < ncols; j++)
    for (PetscInt i = 0; i < re - rs; i++) s[0] += a0[i + j * lda0] * a0[i + j * lda0], s[1] += at[i + j * ldat] * at[i + j * ldat];
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, s, 2, MPI_DOUBLE, MPI_SUM, r->group));
  const double n0 = sqrt(s[0]), nt = sqrt(s[1]);
  for (PetscInt j = 0; j < ncols; j++)
    for (PetscInt i = 0; i < re - rs; i++) {
      const double d = a0[i + j * lda0] / n0 - at[i + j * ldat] / nt;
      s[2] += d * d;
    }
  const int kk = st->kk; /* traced: K_ab = (1/k) sum_i Theta_(a,i),(b,i) */
  for (int a = 0; a < st->nloc; a++)
    for (int b = 0; b < st->N; b++) {
      double k = 0;
      for (int i = 0; i < kk; i++) k += at[(a * kk + i) + (PetscInt)(b * kk + i) * ldat];
      st->rows[(size_t)a * st->N + b] = k / kk;
    }
  PetscCall(MatDenseRestoreArrayRead(G0, &a0));
  PetscCall(MatDenseRestoreArrayRead(Gt, &at));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &s[2], 1, MPI_DOUBLE, MPI_SUM, r->group));
  *fort = 0.5 * s[2];
  PetscCall(gather_rows(r, st, st->rows, st->N, st->Kntk));
  *align = feat_centered_alignment(st->Kntk, st->Yk, st->N, st->work);
  return 0;
}

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *info, RecordBuffer *out)
{
  FeatState *st = state;
  double *row = records_append(out, out->n);
  PetscCheck(row, PETSC_COMM_SELF, PETSC_ERR_PLIB, "features records full at step %lld", (long long)info->t);
  row[0] = (double)info->t;
  if (!st->ok) return 0; /* NaN: not a dense net */
  const int L1 = st->L1;
  double *zr = row + 1, *dz = zr + L1, *wrel = dz + L1, *wspec = wrel + L1, *tail = wspec + L1;
  /* coordinate sizes and changes: sums over the slice, added over the group */
  double *sums = st->sums;
  memset(sums, 0, 2 * (size_t)L1 * sizeof(double));
  forward(r, st, r->theta, sums);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, 2 * L1, MPI_DOUBLE, MPI_SUM, r->group));
  for (int l = 0; l < L1; l++) {
    const double cnt = (double)st->N * st->op[l]->n_out;
    zr[l] = sqrt(sums[l] / cnt), dz[l] = sqrt(sums[L1 + l] / cnt);
  }
  /* weight changes: theta is replicated, so every rank computes them alike */
  size_t off = 0;
  for (int l = 0; l < L1; l++) {
    const ParamTensor *w = &r->model->tensors[st->op[l]->w];
    const double *W = r->theta + w->offset, *W0 = r->theta0 + w->offset;
    double a = 0, b = 0;
    for (size_t i = 0; i < w->size; i++) a += (W[i] - W0[i]) * (W[i] - W0[i]), b += W0[i] * W0[i];
    wrel[l] = fabs(w->mult) * sqrt(a) / (fabs(w->mult) * sqrt(b));
    double *v = st->v + off;
    const int n_in = st->op[l]->n_in;
    if (!st->have_v) { /* a fixed random start (not orthogonal to the top vector, almost surely) */
      double nrm = 0;
      rng_normal_fill(v, (size_t)n_in, (uint64_t)r->run->seed, RNG_STREAM_PROBE + ((uint64_t)(1000 + l) << 32), 0);
      for (int j = 0; j < n_in; j++) nrm += v[j] * v[j];
      for (int j = 0; j < n_in; j++) v[j] /= sqrt(nrm);
    }
    wspec[l] = feat_spectral_norm(W, W0, w->mult, st->op[l]->n_out, n_in, v, st->spec_work, SPEC_MAX_ITER, SPEC_TOL, NULL);
    off += (size_t)n_in;
  }
  st->have_v = true;
  /* kernels */
  PetscCall(ntk_measures(r, st, info->t, &tail[0], &tail[1]));
  PetscCall(gram_of(r, st, 1.0 / st->nh, st->Kh));
  tail[2] = feat_centered_alignment(st->Kh, st->Yk, st->N, st->work);
  tail[3] = feat_centered_alignment(st->Kh0, st->Kh, st->N, st->work);
  return 0;
}

/* The spectral-norm warm starts: the next record starts where the uninterrupted run's would. */
static PetscErrorCode state_get(MeasureRun *r, void *state, StateArray *a)
{
  FeatState *st = state;
  a[0].n = st->ok && st->have_v ? (int64_t)st->nv : 0;
  a[0].data = NULL;
  if (a[0].n && r->grank == 0) {
    a[0].data = malloc(st->nv * sizeof(double));
    PetscCheck(a[0].data, PETSC_COMM_SELF, PETSC_ERR_MEM, "features: warm start");
    memcpy(a[0].data, st->v, st->nv * sizeof(double));
  }
  return 0;
}

static PetscErrorCode state_set(MeasureRun *r, void *state, const StateArray *a)
{
  FeatState *st = state;
  if (!st->ok || a[0].n != (int64_t)st->nv || !a[0].data) return 0;
  memcpy(st->v, a[0].data, st->nv * sizeof(double));
  st->have_v = true;
  return 0;
}

/* Theta_0 for the kernel distance: z_l(0) and h_L(0) were recomputed from theta_0 at setup. */
static PetscErrorCode resume(MeasureRun *r, void *state) { return ((FeatState *)state)->ok ? ntk_probe_resume(r) : 0; }

static void destroy(void *state)
{
  FeatState *st = state;
  if (st->ok) {
    for (int l = 0; l < st->L1; l++) PetscFree(st->z0[l]);
    PetscFree3(st->op, st->z0, st->sums);
    PetscFree4(st->cnt, st->dsp, st->vcnt, st->vdsp);
    tape_destroy(&st->tape);
    PetscFree4(st->Hloc, st->Hall, st->Kh0, st->Kh);
    PetscFree5(st->Yk, st->Kntk, st->rows, st->work, st->spec_work);
    PetscFree(st->v);
  }
  PetscFree(st);
}

const MeasurementClass measure_features = {
  .name = "features", .option_heading = "Feature learning", .options = options, .n_options = sizeof options / sizeof *options,
  .declare = declare, .setup = setup, .due = due, .measure = measure,
  .n_state = 1, .state_names = {"warm_spec"}, .state_get = state_get, .state_set = state_set, .resume = resume, .destroy = destroy,
};
