/* The step loop of one run (train.h).
 *
 * A step t: the train loss at theta_t when something needs it (for full-batch gd the gradient
 * pass gives it for free); the measurements recorded even at a divergent step (train and test
 * metrics); the divergence check; the other measurements; then, unless t is the last step, the
 * gradient on step t's batch and the optimizer's update. Rows are flushed to the output at least
 * every -flush_seconds and at the end; the run is checkpointed on its schedule and at the end, and
 * after a signal it checkpoints and stops at the end of the step. */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <petscsys.h>
#include "checkpoint.h"
#include "errbuf.h"
#include "measure.h"
#include "petsc_compat.h"
#include "lr_schedule.h"
#include "pause.h"
#include "run_state.h"

static PetscLogEvent EV_UPDATE, EV_OUTPUT;

int train_register_events(void)
{
  PetscClassId cls;
  PetscCall(PetscClassIdRegister("ntkhpc training", &cls));
  PetscCall(run_state_register_events(cls));
  PetscCall(PetscLogEventRegister("NtkUpdate", cls, &EV_UPDATE));
  PetscCall(PetscLogEventRegister("NtkOutput", cls, &EV_OUTPUT));
  return 0;
}

Phase phase_classify(const Config *cfg, double loss0, double peak_window, double loss_peak, double loss_final, double eta_lambda0,
                     double eta_lambda_final, unsigned measured, bool diverged)
{
  if (diverged || !isfinite(loss_final) || !isfinite(loss_peak) || loss_peak > cfg->diverge_factor * loss0 || loss_final > loss0)
    return PHASE_DIVERGENT;
  if (!(measured & MEASURED_LAMBDA0) || !isfinite(eta_lambda0)) return PHASE_UNRESOLVED; /* a solver that did not converge: NaN */
  if (eta_lambda0 <= 2.0) return PHASE_LAZY;
  const bool spike = cfg->catapult_factor <= 1.0 || peak_window > cfg->catapult_factor * loss0; /* 1: no spike required */
  return (measured & MEASURED_LAMBDA_FINAL) && eta_lambda_final < 2.0 && spike ? PHASE_CATAPULT : PHASE_UNRESOLVED;
}

/* The run's measurements: the active ones, their per-run state and their buffered rows. */
typedef struct {
  MeasureSet set;
  void *state[MEASURE_MAX];
  RecordBuffer rec[MEASURE_MAX];
  bool due[MEASURE_MAX];
  double last_flush;
} Measurements;

static int measurements_init(Measurements *M, RunState *s)
{
  char err[256];
  memset(M, 0, sizeof *M);
  if (measure_set_declare(&M->set, s->cfg, s->train, err, sizeof err)) {
    fprintf(stderr, "ntkhpc: error: %s\n", err);
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < M->set.n; i++) {
    rc |= records_init(&M->rec[i], &M->set.schema[i]);
    if (M->set.cls[i]->setup) rc |= M->set.cls[i]->setup(&s->mrun, &M->state[i]) != 0;
  }
  M->last_flush = MPI_Wtime();
  return rc ? -1 : 0;
}

static void measurements_free(Measurements *M)
{
  for (int i = 0; i < M->set.n; i++) {
    if (M->set.cls[i]->destroy && M->state[i]) M->set.cls[i]->destroy(M->state[i]);
    records_free(&M->rec[i]);
  }
}

/* The due measurements of one kind (recorded at a divergent step or not), in registry order. */
static PetscErrorCode measure_due(RunState *s, Measurements *M, StepInfo *st, bool at_divergent_step)
{
  for (int i = 0; i < M->set.n; i++)
    if (M->due[i] && M->set.cls[i]->at_divergent_step == at_divergent_step) PetscCall(M->set.cls[i]->measure(&s->mrun, M->state[i], st, &M->rec[i]));
  return 0;
}

/* Buffered rows to the output (the group leader; probe runs write nothing). */
static int flush_records(RunState *s, Measurements *M, OutputFile *out)
{
  if (s->grank != 0 || !out) return 0;
  int err = 0;
  PetscLogEventBegin(EV_OUTPUT, 0, 0, 0, 0);
  for (int i = 0; i < M->set.n; i++) {
    RecordBuffer *b = &M->rec[i];
    if (b->n > b->flushed) err |= output_write_records(out, s->run->index, b, b->flushed, b->n - b->flushed);
    b->flushed = b->n;
  }
  M->last_flush = MPI_Wtime();
  PetscLogEventEnd(EV_OUTPUT, 0, 0, 0, 0);
  return err;
}

/* ------------------------------------------------------------------ checkpoints */

/* Writes the run's checkpoint: theta, the optimizer's state and the measurements' warm starts for
 * a running run (status RUN_RUNNING, to resume at step next), or a finished run's summary row;
 * both with every record so far. Collective (the warm starts are gathered on the leader, who
 * writes). */
static int save_checkpoint(RunState *s, Measurements *M, const TrainContext *ctx, int32_t status, int64_t next, const double *stats,
                           const SummaryRow *row)
{
  RunCheckpoint *c = calloc(1, sizeof *c);
  int rc = c ? 0 : -1;
  if (c) {
    c->run = s->run->index, c->status = status, c->next_step = next, c->n_params = (int64_t)s->P;
    memcpy(c->stats, stats, sizeof c->stats);
    if (row) c->summary = *row;
    for (int i = 0; i < M->set.n; i++) {
      CkptRecords *r = &c->records[c->n_records++];
      snprintf(r->group, sizeof r->group, "%s", M->set.schema[i].group);
      r->width = M->rec[i].width, r->n = M->rec[i].n, r->index = M->rec[i].index, r->rows = M->rec[i].rows;
    }
  }
  int first_gathered = 0; /* c->arrays[first_gathered..] are the gathered warm starts: ours to free */
  if (status == RUN_RUNNING) {
    if (c) c->arrays[c->n_arrays++] = (CkptArray){"theta", (int64_t)s->P, s->theta};
    for (int j = 0; j < s->opt->n_state && c; j++) {
      CkptArray *a = &c->arrays[c->n_arrays++];
      snprintf(a->name, sizeof a->name, "opt.%s", s->opt->state_names[j]);
      a->n = (int64_t)s->P, a->data = s->opt_state[j];
    }
    first_gathered = c ? c->n_arrays : 0;
    for (int i = 0; i < M->set.n; i++) { /* collective: every rank takes part, even without c */
      const MeasurementClass *m = M->set.cls[i];
      if (!m->state_get) continue;
      StateArray st[MEASURE_MAX_STATE] = {{0}};
      rc |= m->state_get(&s->mrun, M->state[i], st) != 0;
      for (int j = 0; j < m->n_state; j++) {
        if (!c || c->n_arrays == CKPT_MAX_ARRAYS) { /* out of memory, or more state than a checkpoint holds */
          free(st[j].data);
          rc = -1;
          continue;
        }
        CkptArray *a = &c->arrays[c->n_arrays++];
        snprintf(a->name, sizeof a->name, "%s.%s", m->name, m->state_names[j]);
        a->n = st[j].n, a->data = st[j].data;
      }
    }
  }
  if (s->grank == 0 && c && rc == 0) {
    char err[ERRBUF_LEN];
    if (ckpt_write_run(ctx->ckpt_dir, ctx->deck, c, err, sizeof err)) {
      fprintf(stderr, "ntkhpc: error: %s\n", err);
      rc = -1;
    }
  }
  for (int k = first_gathered; c && k < c->n_arrays; k++) free(c->arrays[k].data);
  free(c);
  if (s->gsize > 1) MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, s->group); /* the whole group knows (rc is 0 or -1) */
  return rc;
}

/* Restores a running run from its checkpoint, if it has one: theta, the optimizer's state, the
 * records, the statistics and the measurements' warm starts; *next is the step to resume at (0:
 * nothing restored). Every rank of the group reads the file. Collective: 0 or -1. */
static int restore_checkpoint(RunState *s, Measurements *M, const TrainContext *ctx, double *stats, int64_t *next)
{
  RunCheckpoint *c = calloc(1, sizeof *c);
  char err[ERRBUF_LEN] = "";
  int got = c ? ckpt_read_run(ctx->ckpt_dir, ctx->deck, s->run->index, c, err, sizeof err) : -1;
  int bad = got < 0;
  if (got == 0) {
    const CkptArray *th = ckpt_array(c, "theta");
    bad = c->status != RUN_RUNNING || c->n_params != (int64_t)s->P || !th || th->n != (int64_t)s->P;
    for (int j = 0; j < s->opt->n_state && !bad; j++) {
      char name[CKPT_NAME_LEN];
      snprintf(name, sizeof name, "opt.%s", s->opt->state_names[j]);
      const CkptArray *a = ckpt_array(c, name);
      bad = !a || a->n != (int64_t)s->P;
    }
    for (int i = 0; i < M->set.n && !bad; i++) {
      const CkptRecords *r = ckpt_records(c, M->set.schema[i].group);
      bad = !r || ckpt_records_restore(&M->rec[i], r) != 0;
    }
    if (bad) snprintf(err, sizeof err, "checkpoint of run %d in %s does not fit this deck's run", s->run->index, ctx->ckpt_dir);
  }
  int lo, hi;
  MPI_Allreduce(&got, &lo, 1, MPI_INT, MPI_MIN, s->group);
  MPI_Allreduce(&got, &hi, 1, MPI_INT, MPI_MAX, s->group);
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, s->group);
  if (bad || lo != hi) {
    if (s->grank == 0) fprintf(stderr, "ntkhpc: error: %s\n", err[0] ? err : "checkpoint: the group's ranks see different files");
    if (got == 0) ckpt_run_free(c);
    free(c);
    return -1;
  }
  if (got == 1) {
    free(c);
    return 0;
  }
  memcpy(s->theta, ckpt_array(c, "theta")->data, s->P * sizeof(double));
  for (int j = 0; j < s->opt->n_state; j++) {
    char name[CKPT_NAME_LEN];
    snprintf(name, sizeof name, "opt.%s", s->opt->state_names[j]);
    memcpy(s->opt_state[j], ckpt_array(c, name)->data, s->P * sizeof(double));
  }
  memcpy(stats, c->stats, sizeof c->stats);
  *next = c->next_step;
  int rc = 0; /* the solvers start where the uninterrupted run's would (every rank read the same file) */
  for (int i = 0; i < M->set.n; i++) {
    const MeasurementClass *m = M->set.cls[i];
    if (!m->state_set) continue;
    StateArray st[MEASURE_MAX_STATE] = {{0}};
    for (int j = 0; j < m->n_state; j++) {
      char name[CKPT_NAME_LEN];
      snprintf(name, sizeof name, "%s.%s", m->name, m->state_names[j]);
      const CkptArray *a = ckpt_array(c, name);
      if (a) st[j] = (StateArray){a->n, a->data};
    }
    rc |= m->state_set(&s->mrun, M->state[i], st) != 0;
  }
  ckpt_run_free(c);
  free(c);
  for (int i = 0; i < M->set.n; i++)
    if (M->set.cls[i]->resume) rc |= M->set.cls[i]->resume(&s->mrun, M->state[i]) != 0;
  return rc ? -1 : 0;
}

/* After a step: what the group does, agreed by all its ranks (one small allreduce per step, cheap
 * next to a step): bit 0 write a checkpoint, bit 1 then stop (a signal here or in another group). */
static int checkpoint_action(const RunState *s, const TrainContext *ctx, int64_t next, double last_ckpt, double *last_poll, int io_error)
{
  const Config *cfg = s->cfg;
  int act = ckpt_signal_received() ? 3 : 0;
  if (io_error) act |= 4; /* the leader could not write the output: the group stops (train_run) */
  if (cfg->checkpoint_every > 0 && next % cfg->checkpoint_every == 0) act |= 1;
  if (s->grank == 0) { /* the leader's clock decides for the group */
    const double now = MPI_Wtime();
    if (cfg->checkpoint_minutes > 0 && now - last_ckpt >= 60.0 * cfg->checkpoint_minutes) act |= 1;
    if (ctx->hooks.stop_requested && now - *last_poll >= 1.0) {
      *last_poll = now;
      if (ctx->hooks.stop_requested(ctx->hooks.ctx)) act |= 3;
    }
  }
  if (s->gsize > 1) MPI_Allreduce(MPI_IN_PLACE, &act, 1, MPI_INT, MPI_BOR, s->group);
  if ((act & 2) && s->grank == 0 && ctx->hooks.request_stop) ctx->hooks.request_stop(ctx->hooks.ctx); /* stop the other groups too */
  return act;
}

/* ------------------------------------------------------------------ the loop */

int train_run(const TrainContext *ctx, const RunSpec *run, SummaryRow *row)
{
  const Config *cfg = ctx->cfg;
  RunState s;
  Measurements *M = calloc(1, sizeof *M);
  double t_start = MPI_Wtime();
  int rc = run_state_setup(&s, ctx->group, cfg, run, ctx->train, ctx->test);
  if (!rc) rc = !M || measurements_init(M, &s);
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, ctx->group);
  if (rc) {
    if (M) measurements_free(M);
    free(M);
    run_state_teardown(&s);
    return -1;
  }

  *row = summary_row_pending(run, RUN_RUNNING);
  const bool writer = s.grank == 0 && ctx->out; /* probe runs have no output and no progress */
  int wfail = writer && output_write_summary(ctx->out, row); /* the output's failures: agreed at the end */

  const int64_t T = cfg->steps;
  double loss0 = NAN, peak = -INFINITY, peak_window = -INFINITY, last_loss = NAN, last_acc = NAN;
  int64_t peak_step = -1; /* the step of peak_window */
  double lambda_first = NAN, lambda_last = NAN;
  int diverged = 0;
  /* SummaryMeasured bits of what this run has measured so far: a value is known by its bit, never
   * by being finite (a measured loss may be NaN or inf; MEASURED_LAMBDA0 here: lambda at step 0) */
  unsigned measured = 0;
  const unsigned acc_bit = ctx->train->label[0] >= 0 ? MEASURED_ACC_FINAL : 0; /* unlabelled data: no accuracy */
  const bool grad_is_train_loss = cfg->optimizer == OPT_GD && !cfg->augment;
  int64_t t = 0, t_first = 0;
  double stats[CKPT_NSTATS] = {0}, wall_before = 0, last_ckpt = MPI_Wtime(), last_poll = last_ckpt;
  int stopped = 0, io_failed = 0, flush_failed = 0;
  if (ctx->ckpt_dir) { /* resume where the checkpoint left off */
    rc = restore_checkpoint(&s, M, ctx, stats, &t_first);
    MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, ctx->group);
    if (rc) goto cleanup;
    if (t_first > 0) {
      loss0 = stats[CKPT_LOSS0], peak = stats[CKPT_PEAK], peak_window = stats[CKPT_PEAK_WINDOW];
      last_loss = stats[CKPT_LAST_LOSS], last_acc = stats[CKPT_LAST_ACC];
      lambda_first = stats[CKPT_LAMBDA_FIRST], lambda_last = stats[CKPT_LAMBDA_LAST];
      peak_step = (int64_t)stats[CKPT_PEAK_STEP];
      measured = (unsigned)stats[CKPT_MEASURED];
      row->test_loss_final = stats[CKPT_TEST_LOSS_FINAL], row->test_acc_final = stats[CKPT_TEST_ACC_FINAL];
      wall_before = stats[CKPT_WALL_SECONDS];
      if (writer) rc |= flush_records(&s, M, ctx->out); /* the output was rebuilt: rows so far go back in */
    }
  }
#define FILL_STATS()                                                                                                       \
  do {                                                                                                                      \
    const double st_[CKPT_NSTATS] = {loss0,    peak,         peak_window, last_loss, last_acc, lambda_first, lambda_last,   \
                                     row->test_loss_final, row->test_acc_final, wall_before + MPI_Wtime() - t_start,        \
                                     (double)peak_step, (double)measured};                                                   \
    memcpy(stats, st_, sizeof stats);                                                                                       \
  } while (0)
  bool paused = false; /* -pause_at_step: once per run and process */
  for (t = t_first;; t++) {
    if (cfg->pause_at_step >= 0 && !paused && t >= cfg->pause_at_step && ctx->ckpt_dir) {
      paused = true;
      train_pause(s.group, cfg->output, run->index, t, s.grank == 0 ? ctx->hooks.stop_requested : NULL, ctx->hooks.ctx);
    }
    StepInfo st = {.t = t, .final = t == T, .lr = lr_schedule_at(cfg, run->eta, t), .loss = NAN, .acc = NAN, .lambda = NAN, .test_loss = NAN,
                   .test_acc = NAN};
    bool need_loss = t == 0;
    for (int i = 0; i < M->set.n; i++) {
      M->due[i] = M->set.cls[i]->due(&s.mrun, M->state[i], &st);
      need_loss = need_loss || (M->due[i] && M->set.cls[i]->needs_loss);
    }
    /* For gd the gradient pass already evaluates the train loss at theta_t (not when it sees
     * augmented inputs: the train loss is always on the data as they are). */
    double batch_acc;
    if (grad_is_train_loss && !st.final) {
      st.loss = run_state_gradient(&s, t, &batch_acc);
      st.acc = batch_acc;
      st.loss_measured = true;
    } else if (need_loss) {
      run_state_evaluate(&s, ctx->train, &st.loss, &st.acc);
      st.loss_measured = true;
    }
    if (st.loss_measured) { /* the same value on every rank of the group (summed with the gradient) */
      if (t == 0) loss0 = st.loss, measured |= MEASURED_LOSS0;
      last_loss = st.loss, last_acc = st.acc;
      measured |= MEASURED_LOSS_PEAK | MEASURED_LOSS_FINAL | acc_bit;
      const double l = isfinite(st.loss) ? st.loss : INFINITY; /* NaN and inf alike: a blow-up */
      if (l > peak) peak = l;
      if (t <= cfg->catapult_window && l > peak_window) peak_window = l, peak_step = t, measured |= MEASURED_PEAK_WINDOW;
    }
    if (measure_due(&s, M, &st, true)) {
      rc = -1;
      break;
    }
    if (st.test_recorded) row->test_loss_final = st.test_loss, row->test_acc_final = st.test_acc, measured |= MEASURED_TEST_FINAL;
    /* A run whose loss blows up (NaN, inf, or above diverge_factor L_0) stops here; its rows so far
     * are kept. */
    if (st.loss_measured && (!isfinite(st.loss) || st.loss > cfg->diverge_factor * loss0)) {
      diverged = 1;
      break;
    }
    if (measure_due(&s, M, &st, false)) {
      rc = -1;
      break;
    }
    if (st.lambda_recorded) {
      if (t == 0) lambda_first = st.lambda, measured |= MEASURED_LAMBDA0;
      lambda_last = st.lambda, measured |= MEASURED_LAMBDA_FINAL;
    }
    if (st.final) break;
    if (!grad_is_train_loss) {
      double bl = run_state_gradient(&s, t, &batch_acc);
      if (!isfinite(bl) || bl > cfg->diverge_factor * loss0) { /* the batch's loss blew up: it is the last loss */
        last_loss = bl, measured |= MEASURED_LOSS_FINAL;
        if (!isfinite(bl)) peak = INFINITY, measured |= MEASURED_LOSS_PEAK;
        diverged = 1;
        break;
      }
    }
    PetscLogEventBegin(EV_UPDATE, 0, 0, 0, 0);
    s.opt->update(s.theta, s.opt_state, s.grad, s.lr_scale, s.P, st.lr, cfg);
    PetscLogEventEnd(EV_UPDATE, 0, 0, 0, 0);
    if (writer) {
      if (MPI_Wtime() - M->last_flush >= cfg->flush_seconds && flush_records(&s, M, ctx->out)) flush_failed = 1;
      if (ctx->hooks.heartbeat) ctx->hooks.heartbeat(ctx->hooks.ctx, run->index, t + 1, T, last_loss, lambda_last);
    }
    if (ctx->ckpt_dir) {
      const int act = checkpoint_action(&s, ctx, t + 1, last_ckpt, &last_poll, flush_failed);
      if (act & 4) { /* rows that cannot be written (a full disk): the message is printed; stop, as below */
        rc = -1;
        io_failed = 1;
        if (s.grank == 0 && ctx->hooks.request_stop) ctx->hooks.request_stop(ctx->hooks.ctx);
        break;
      }
      if (act & 1) {
        FILL_STATS();
        if (save_checkpoint(&s, M, ctx, RUN_RUNNING, t + 1, stats, NULL)) {
          /* A checkpoint that cannot be written (a full disk): the message is printed; no more
           * work that could not be saved. The other groups stop too, as after a signal. */
          rc = -1;
          io_failed = 1;
          if (s.grank == 0 && ctx->hooks.request_stop) ctx->hooks.request_stop(ctx->hooks.ctx);
          break;
        }
        last_ckpt = MPI_Wtime();
      }
      if (act & 2) { /* signal: the state is saved; leave the run unfinished */
        stopped = 1;
        t++;
        break;
      }
    }
  }

  if (!io_failed && flush_records(&s, M, ctx->out)) wfail = 1;
  if (stopped && ctx->stopped) *ctx->stopped = 1;
  if (stopped || io_failed) goto cleanup;
  row->status = diverged ? RUN_DIVERGED : RUN_DONE;
  row->steps_done = t;
  const int itr = measure_set_index(&M->set, "train"), ite = measure_set_index(&M->set, "test");
  row->n_train_records = itr >= 0 ? (int32_t)M->rec[itr].n : 0;
  row->n_test_records = ite >= 0 ? (int32_t)M->rec[ite].n : 0;
  row->loss0 = (measured & MEASURED_LOSS0) ? loss0 : NAN;
  row->loss_peak = (measured & MEASURED_LOSS_PEAK) ? peak : NAN;
  row->loss_final = (measured & MEASURED_LOSS_FINAL) ? last_loss : NAN;
  row->acc_final = (measured & MEASURED_ACC_FINAL) ? last_acc : NAN;
  row->wall_seconds = wall_before + MPI_Wtime() - t_start;
  /* Phase and the raw numbers behind it: lambda_0 is the instance's (shared by its runs; the
   * instance's lambda_0 is NaN in the RunSpec until measured). A value not measured keeps the
   * pending row's NaN filler and its bit clear. */
  unsigned m = measured & ~(MEASURED_LAMBDA0 | MEASURED_LAMBDA_FINAL);
  if (isfinite(run->lambda0)) row->lambda0 = run->lambda0, m |= MEASURED_LAMBDA0;
  else if (measured & MEASURED_LAMBDA0) row->lambda0 = lambda_first, m |= MEASURED_LAMBDA0;
  if (!diverged && (measured & MEASURED_LAMBDA_FINAL)) row->lambda_final = lambda_last, m |= MEASURED_LAMBDA_FINAL;
  if (m & MEASURED_PEAK_WINDOW) row->peak_ratio = peak_window / loss0, row->peak_step = peak_step;
  if (m & MEASURED_LAMBDA0) row->eta_lambda0 = run->eta * row->lambda0;
  if (m & MEASURED_LAMBDA_FINAL) row->eta_lambda_final = run->eta * row->lambda_final;
  if ((m & MEASURED_LAMBDA0) && (m & MEASURED_LAMBDA_FINAL)) row->lambda_ratio = row->lambda_final / row->lambda0;
  if (!(m & MEASURED_TEST_FINAL)) row->test_loss_final = row->test_acc_final = NAN;
  row->measured = (int32_t)m;
  row->phase = phase_classify(cfg, loss0, peak_window, peak, last_loss, row->eta_lambda0, row->eta_lambda_final, m, diverged);
  if (ctx->ckpt_dir) { /* before the output: a finished run is never redone */
    FILL_STATS();
    rc |= save_checkpoint(&s, M, ctx, row->status, t, stats, row);
  }
#undef FILL_STATS
  if (writer) {
    if (output_write_summary(ctx->out, row)) wfail = 1;
    if (ctx->hooks.run_done) ctx->hooks.run_done(ctx->hooks.ctx, row);
  }
cleanup:
  /* The leader's output writes are independent; their failure (a full disk, its line printed) is
   * agreed by the group, which then takes no further run (*ctx->stopped, as after a signal, and
   * the other groups are asked to stop), so no rank is left waiting in a collective call. */
  MPI_Allreduce(MPI_IN_PLACE, &wfail, 1, MPI_INT, MPI_MAX, s.group);
  if (wfail) {
    rc = -1;
    if (ctx->stopped) *ctx->stopped = 1;
    if (s.grank == 0 && ctx->hooks.request_stop) ctx->hooks.request_stop(ctx->hooks.ctx);
  }
  measurements_free(M);
  free(M);
  run_state_teardown(&s);
  return rc;
}
