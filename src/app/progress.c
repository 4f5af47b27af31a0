/* Progress reports gathered on rank 0 (see progress.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "progress.h"

enum { TAG_BEAT = 7301, TAG_DONE = 7302, TAG_LEFT = 7303 };

typedef struct {
  int32_t kind; /* TAG_BEAT or TAG_DONE */
  int32_t run;
  int64_t step, steps;
  double loss, lambda;
  SummaryRow row; /* TAG_DONE only */
  int32_t ranks;  /* TAG_LEFT: the leaver's group size */
  double left;    /* TAG_LEFT: when it left, seconds from its own progress_init (a collective: the
                     clocks of different nodes need not agree, their differences do) */
} Message;

void progress_format_duration(char *buf, size_t len, double s)
{
  if (!isfinite(s) || s < 0) snprintf(buf, len, "?");
  else if (s < 60) snprintf(buf, len, "%.0fs", s);
  else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static const char *status_word(int status)
{
  return status == RUN_DIVERGED ? "DIVERGED" : status == RUN_DONE ? "done" : "stopped";
}

void progress_init(Progress *p, MPI_Comm world, const Sweep *sw, double interval, bool quiet)
{
  memset(p, 0, sizeof *p);
  MPI_Comm_dup(world, &p->world); /* a private channel: nothing else can match our receives */
  MPI_Comm_rank(world, &p->rank);
  MPI_Comm_size(world, &p->size);
  p->sweep = sw;
  p->interval = interval;
  p->quiet = quiet;
  for (int i = 0; i < sw->n_runs; i++) p->total_cost += sw->runs[i].cost;
  p->t_start = p->t_last_print = p->t_last_beat = MPI_Wtime();
  if (p->rank == 0) {
    p->running = calloc((size_t)p->size, sizeof *p->running);
    for (int i = 0; i < p->size; i++) p->running[i].run = -1;
  }
}

static void print_summary(Progress *p, double now)
{
  char el[32], left[32];
  double elapsed = now - p->t_start;
  /* Work done: finished runs plus the finished fraction of running ones (their last heartbeat). */
  double done = p->done_cost;
  for (int i = 0; i < p->size; i++) {
    const RunningRun *r = &p->running[i];
    if (r->run >= 0 && r->steps > 0) done += p->sweep->runs[r->run].cost * (double)r->step / (double)r->steps;
  }
  double remaining = done > 0 ? elapsed * (p->total_cost - done) / done : NAN;
  progress_format_duration(el, sizeof el, elapsed);
  progress_format_duration(left, sizeof left, remaining);
  printf("[ntkhpc] %d/%d runs done (%d diverged), %s elapsed, ~%s left, idle %.1f%% (%d/%d ranks idle)", p->n_done, p->sweep->n_runs,
         p->n_diverged, el, left, 100.0 * progress_idle_fraction(p, elapsed), p->idle_ranks, p->size);
  int shown = 0;
  for (int i = 0; i < p->size && shown < 4; i++) {
    const RunningRun *r = &p->running[i];
    if (r->run < 0) continue;
    printf("%s run %d: step %lld/%lld loss %.4g lambda %.4g", shown ? ";" : " |", r->run, (long long)r->step, (long long)r->steps, r->loss,
           r->lambda);
    shown++;
  }
  printf("\n");
  fflush(stdout);
  p->t_last_print = now;
}

static void handle(Progress *p, int source, const Message *m)
{
  if (m->kind == TAG_LEFT) {
    p->n_left++;
    p->idle_ranks += m->ranks;
    p->idle_since += m->ranks * m->left;
    if (m->left > p->last_left) p->last_left = m->left;
    return;
  }
  if (m->kind == TAG_BEAT) {
    p->running[source] = (RunningRun){m->run, m->step, m->steps, m->loss, m->lambda, MPI_Wtime()};
    return;
  }
  const SummaryRow *row = &m->row;
  const RunSpec *run = &p->sweep->runs[row->run];
  p->n_done++;
  p->done_cost += run->cost;
  if (row->status == RUN_DIVERGED) p->n_diverged++;
  if (p->running[source].run == row->run) p->running[source].run = -1;
  if (!p->quiet) {
    static const char *const phases[] = {"lazy", "catapult", "divergent"};
    printf("[ntkhpc] run %d %s [%d/%d]: width %d seed %lld %s eta %.4g (eta*lambda0 %.3g) | %lld steps, loss %.4g -> %.4g "
           "(peak %.4g), lambda %.4g -> %.4g, train acc %.4f, test acc %.4f, %s, %.1f s\n",
           row->run, status_word(row->status), p->n_done, p->sweep->n_runs, row->width, (long long)row->seed,
           param_name((Parameterization)row->param), row->eta, row->eta_lambda0, (long long)row->steps_done, row->loss0, row->loss_final,
           row->loss_peak, row->lambda0, row->lambda_final, row->acc_final, row->test_acc_final,
           row->phase >= 0 && row->phase <= 2 ? phases[row->phase] : "?", row->wall_seconds);
    fflush(stdout);
  }
}

static void send(Progress *p, const Message *m)
{
  if (p->rank == 0) handle(p, 0, m);
  else MPI_Send(m, (int)sizeof *m, MPI_BYTE, 0, m->kind, p->world);
}

void progress_run_done(Progress *p, const SummaryRow *row)
{
  Message m;
  memset(&m, 0, sizeof m);
  m.kind = TAG_DONE;
  m.run = row->run;
  m.row = *row;
  send(p, &m);
  progress_poll(p);
}

void progress_heartbeat(Progress *p, int run, int64_t step, int64_t steps, double loss, double lambda)
{
  double now = MPI_Wtime();
  if (now - p->t_last_beat < p->interval && step > 0) return;
  p->t_last_beat = now;
  Message m;
  memset(&m, 0, sizeof m);
  m.kind = TAG_BEAT;
  m.run = run;
  m.step = step;
  m.steps = steps;
  m.loss = loss;
  m.lambda = lambda;
  send(p, &m);
  progress_poll(p);
}

/* Receives every message that has arrived; returns how many. */
static int drain(Progress *p)
{
  int n = 0, flag = 1;
  while (flag) {
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, p->world, &flag, &st);
    if (!flag || (st.MPI_TAG != TAG_BEAT && st.MPI_TAG != TAG_DONE && st.MPI_TAG != TAG_LEFT)) break;
    Message m;
    MPI_Recv(&m, (int)sizeof m, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, p->world, MPI_STATUS_IGNORE);
    handle(p, st.MPI_SOURCE, &m);
    n++;
  }
  return n;
}

void progress_poll(Progress *p)
{
  if (p->rank != 0) return;
  drain(p);
  double now = MPI_Wtime();
  if (!p->quiet && now - p->t_last_print >= p->interval) print_summary(p, now);
}

void progress_preload(Progress *p, const SummaryRow *row)
{
  if (p->rank != 0) return;
  p->n_done++;
  p->total_cost -= p->sweep->runs[row->run].cost; /* time left: from this job's own pace */
  if (row->status == RUN_DIVERGED) p->n_diverged++;
}

double progress_idle_fraction(const Progress *p, double now)
{
  if (p->n_left == 0 || !(now > 0)) return 0.0;
  return fmax(0.0, (p->idle_ranks * now - p->idle_since) / (p->size * now));
}

void progress_finish(Progress *p, bool leader, int group_size)
{
  int is_leader = leader, n_leaders = 0;
  if (leader) { /* before the collective: the time this group ran out of runs */
    Message m;
    memset(&m, 0, sizeof m);
    m.kind = TAG_LEFT;
    m.ranks = group_size;
    m.left = MPI_Wtime() - p->t_start;
    send(p, &m);
  }
  MPI_Allreduce(&is_leader, &n_leaders, 1, MPI_INT, MPI_SUM, p->world);
  if (p->rank == 0) {
    while (p->n_left < n_leaders) { /* a leader's reports arrive before it leaves (MPI message order) */
      MPI_Status st;
      Message m;
      MPI_Recv(&m, (int)sizeof m, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, p->world, &st);
      handle(p, st.MPI_SOURCE, &m);
      double now = MPI_Wtime();
      if (!p->quiet && now - p->t_last_print >= p->interval) print_summary(p, now);
    }
    p->quiet = false;
    print_summary(p, MPI_Wtime());
    /* the end of training is when the last group left: the idle fraction up to then */
    printf("[ntkhpc] idle fraction of the ranks: %.4f (%d ranks, training %.1f s)\n", progress_idle_fraction(p, p->last_left), p->size,
           p->last_left);
    fflush(stdout);
  }
  MPI_Barrier(p->world);
}

void progress_free(Progress *p)
{
  free(p->running);
  p->running = NULL;
  MPI_Comm_free(&p->world);
}
