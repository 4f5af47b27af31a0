/* Training of one run on its sub-communicator (train/train.c): the step loop. Each step evaluates
 * what is due, asks every active measurement (measure.h) whether it is due and lets it record,
 * checks for divergence, and takes one optimizer step on the step's batch; rows are flushed to the
 * output and the run is checkpointed on a schedule, and stops cleanly after a signal. */
#ifndef NTK_TRAIN_H
#define NTK_TRAIN_H
#include <stdbool.h>
#include <mpi.h>
#include "config.h"
#include "data.h"
#include "output.h"
#include "runs.h"

/* What the sweep around a run offers it (app/): progress reports and a job-wide stop flag. Any of
 * the functions may be NULL. Called on the group's rank 0 only. */
typedef struct {
  void *ctx;
  void (*heartbeat)(void *ctx, int run, int64_t step, int64_t steps, double loss, double lambda);
  void (*run_done)(void *ctx, const SummaryRow *row);
  int (*stop_requested)(void *ctx);   /* has another group seen a signal? */
  void (*request_stop)(void *ctx);    /* tell the other groups this one saw a signal */
} SweepHooks;

typedef struct {
  MPI_Comm group;       /* the run's sub-communicator */
  const Config *cfg;
  const Dataset *train, *test;
  OutputFile *out;      /* written by the group's rank 0 only; NULL: nothing written (probe runs) */
  SweepHooks hooks;
  /* checkpoints (docs/checkpoint.md); ckpt_dir NULL: none (probe runs) */
  const char *ckpt_dir;
  const char *deck;     /* effective deck text, stored in each checkpoint */
  int *stopped;         /* set to 1 when the run stopped after a signal, checkpointed, unfinished */
} TrainContext;

/* Registers the PetscLogEvents of training (visible in -log_view). Call once after init. */
int train_register_events(void);

/* Phase of a finished run from its raw numbers (docs/conventions.md "Learning rates and phases"):
 * divergent if it blew up (diverged, a non-finite loss, L_peak > diverge_factor L_0, or L_T > L_0);
 * else lazy if eta lambda_0 <= 2; else catapult if eta lambda_T < 2 (and, when -catapult_factor > 1,
 * the loss spiked above catapult_factor L_0 within the catapult window: peak_window); else
 * unresolved (eta lambda_T >= 2, or lambda not measured: its bit in `measured` clear). */
Phase phase_classify(const Config *cfg, double loss0, double peak_window, double loss_peak, double loss_final, double eta_lambda0,
                     double eta_lambda_final, unsigned measured /* SummaryMeasured bits */, bool diverged);

/* Trains run `run` to the end or to divergence, writing its trajectory and summary row. With
 * ctx->ckpt_dir it resumes from the run's checkpoint if there is one, checkpoints every
 * -checkpoint_every steps / -checkpoint_minutes and at the end, and after a signal (SIGTERM,
 * SIGUSR1/2) checkpoints and stops at the end of the current step (*ctx->stopped = 1).
 * Collective over ctx->group. Returns 0, or non-zero on an internal error. */
int train_run(const TrainContext *ctx, const RunSpec *run, SummaryRow *result);

#endif
