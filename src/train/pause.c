/* The -pause_at_step test hook (pause.h). */
#define _POSIX_C_SOURCE 200809L
#include "pause.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "checkpoint.h"

int train_pause(MPI_Comm group, const char *output, int run, int64_t step, int (*stop_requested)(void *), void *stop_ctx)
{
  int grank;
  MPI_Comm_rank(group, &grank);
  const size_t n = strlen(output) + 40;
  char *marker = malloc(n), *tmp = malloc(n);
  int ok = marker && tmp;
  if (ok) {
    snprintf(marker, n, "%s.paused_run_%06d", output, run);
    snprintf(tmp, n, "%s.paused_run_%06d.tmp", output, run);
  }
  if (grank == 0) {
    FILE *f = ok ? fopen(tmp, "w") : NULL;
    ok = f && fprintf(f, "run %d step %lld\n", run, (long long)step) > 0;
    if (f && fclose(f)) ok = 0;
    if (ok && rename(tmp, marker)) ok = 0;
    if (!ok) {
      fprintf(stderr, "ntkhpc: error: -pause_at_step: cannot write %s: %s\n", marker ? marker : output, strerror(errno));
      if (tmp) unlink(tmp);
    }
  }
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, group);
  int state = 0; /* 0 released, 1 paused, 2 a signal */
  double last_poll = MPI_Wtime();
  while (ok) {
    state = grank == 0 && access(marker, F_OK) == 0;
    if (ckpt_signal_received()) state = 2;
    if (grank == 0 && stop_requested && MPI_Wtime() - last_poll >= 1.0) {
      last_poll = MPI_Wtime();
      if (stop_requested(stop_ctx)) state = 2;
    }
    MPI_Allreduce(MPI_IN_PLACE, &state, 1, MPI_INT, MPI_MAX, group);
    if (state != 1) break;
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  if (state == 2 && grank == 0) unlink(marker);
  free(marker), free(tmp);
  return state == 2;
}
