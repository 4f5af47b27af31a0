/* The test hook -pause_at_step (train/pause.c; docs/robustness.md "Test hooks"): a run stops at a
 * chosen step until a test releases it or a signal arrives, so signal and kill tests act on an
 * observed event instead of a guessed moment. Not for normal use (-help does not list it). */
#ifndef NTK_PAUSE_H
#define NTK_PAUSE_H
#include <stdint.h>
#include <mpi.h>

/* Collective over group. The group's rank 0 writes the marker file <output>.paused_run_%06d
 * (atomically, text "run R step T\n"); then the group waits, polling every 10 ms, until the marker
 * is removed (released: returns 0), or a signal (ckpt_signal_received) reaches any of its ranks or
 * stop_requested(stop_ctx) says another group saw one (rank 0 removes the marker; returns 1).
 * stop_requested may be NULL. A marker that cannot be written: one line, no pause, returns 0. */
int train_pause(MPI_Comm group, const char *output, int run, int64_t step, int (*stop_requested)(void *), void *stop_ctx);

#endif
