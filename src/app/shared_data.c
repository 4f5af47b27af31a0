/* One copy of the data per node (shared_data.h). */
#define _POSIX_C_SOURCE 200809L
#include "shared_data.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static PetscLogEvent EV_LOAD, EV_SHARE;

/* The loader's buffers (the files' bytes, a private copy) are freed, but glibc keeps freed heap
 * below its mmap threshold for reuse: give it back, so a rank holds only what it uses. */
static void give_back(void)
{
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static PetscErrorCode register_events(void)
{
  static int registered = 0;
  PetscClassId cls;
  PetscFunctionBegin;
  if (!registered) {
    PetscCall(PetscClassIdRegister("ntkhpc data", &cls));
    PetscCall(PetscLogEventRegister("DataLoad", cls, &EV_LOAD));
    PetscCall(PetscLogEventRegister("DataShare", cls, &EV_SHARE));
    registered = 1;
  }
  PetscFunctionReturn(PETSC_SUCCESS);
}

enum { SHAPE = 6 }; /* n, d, k, channels, height, width of a split */

static void shape_get(const Dataset *ds, long long m[SHAPE])
{
  m[0] = ds->n, m[1] = ds->d, m[2] = ds->k, m[3] = ds->channels, m[4] = ds->height, m[5] = ds->width;
}

static size_t round_up(size_t b) { return (b + 63) / 64 * 64; }

/* The byte offsets of x (n x d doubles), y (n x k doubles) and label (n ints) of both splits in the
 * window: the test inputs right after the training inputs, so that the two are one (N + M) x d
 * array (the infinite-width kernel's Gram assembly reads them so, kernel_run.c); returns the
 * window's size. data_load checked that each array fits. */
static size_t layout(const long long tr[SHAPE], const long long te[SHAPE], size_t off[2][3])
{
  off[0][0] = 0;
  off[1][0] = (size_t)tr[0] * (size_t)tr[1] * sizeof(double);
  off[0][1] = round_up(off[1][0] + (size_t)te[0] * (size_t)te[1] * sizeof(double));
  off[1][1] = round_up(off[0][1] + (size_t)tr[0] * (size_t)tr[2] * sizeof(double));
  off[0][2] = round_up(off[1][1] + (size_t)te[0] * (size_t)te[2] * sizeof(double));
  off[1][2] = round_up(off[0][2] + (size_t)tr[0] * sizeof(int));
  return round_up(off[1][2] + (size_t)te[0] * sizeof(int));
}

/* Copies a private array into the window and frees it at once (given back to the system, even from
 * the middle of the heap): the loader holds at most its own copy and the largest array again. */
static void move_in(char *dst, void **src, size_t bytes)
{
  if (bytes) memcpy(dst, *src, bytes);
  free(*src);
  *src = NULL;
  give_back();
}

/* A dataset of shape m whose arrays are the window's, at off. */
static void view(Dataset *ds, const long long m[SHAPE], char *base, const size_t off[3])
{
  memset(ds, 0, sizeof *ds);
  ds->n = (int)m[0], ds->d = (int)m[1], ds->k = (int)m[2];
  ds->channels = (int)m[3], ds->height = (int)m[4], ds->width = (int)m[5];
  ds->x = (double *)(void *)(base + off[0]);
  ds->y = (double *)(void *)(base + off[1]);
  ds->label = (int *)(void *)(base + off[2]);
  ds->borrowed = true;
}

/* The whole pages of [base, base + bytes): mprotect works on pages, and the window's first and last
 * pages may hold the MPI library's own data. */
static void protect(char *base, size_t bytes, int prot)
{
  const long ps = sysconf(_SC_PAGESIZE);
  if (ps <= 0 || !base || !bytes) return;
  const uintptr_t lo = ((uintptr_t)base + (uintptr_t)ps - 1) / (uintptr_t)ps * (uintptr_t)ps;
  const uintptr_t hi = ((uintptr_t)base + bytes) / (uintptr_t)ps * (uintptr_t)ps;
  if (hi > lo) (void)mprotect((void *)lo, hi - lo, prot); /* a guard only: nothing depends on it succeeding */
}

PetscErrorCode shared_data_load(SharedData *sd, Dataset *train, Dataset *test, const Config *cfg, MPI_Comm world, int *bad, char *err,
                                size_t errlen)
{
  PetscFunctionBegin;
  memset(sd, 0, sizeof *sd);
  sd->node = MPI_COMM_NULL, sd->win = MPI_WIN_NULL, sd->node_size = 1;
  memset(train, 0, sizeof *train);
  memset(test, 0, sizeof *test);
  *bad = 0;
  PetscCall(register_events());
  if (!cfg->data_shared) { /* a copy per rank */
    PetscCall(PetscLogEventBegin(EV_LOAD, 0, 0, 0, 0));
    *bad = data_load(train, test, &cfg->data, err, errlen) != 0;
    give_back();
    PetscCall(PetscLogEventEnd(EV_LOAD, 0, 0, 0, 0));
    PetscFunctionReturn(PETSC_SUCCESS);
  }

  /* The node's loader (its lowest world rank) reads and standardises the data. */
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &sd->node);
  MPI_Comm_set_errhandler(sd->node, MPI_ERRORS_RETURN); /* a window that cannot be made is reported, not fatal */
  int nr;
  MPI_Comm_rank(sd->node, &nr);
  MPI_Comm_size(sd->node, &sd->node_size);
  Dataset own[2] = {{0}, {0}};
  long long meta[1 + 2 * SHAPE] = {0}; /* failed, the train split's shape, the test split's */
  if (nr == 0) {
    PetscCall(PetscLogEventBegin(EV_LOAD, 0, 0, 0, 0));
    meta[0] = data_load(&own[0], &own[1], &cfg->data, err, errlen) != 0;
    PetscCall(PetscLogEventEnd(EV_LOAD, 0, 0, 0, 0));
    if (!meta[0]) shape_get(&own[0], meta + 1), shape_get(&own[1], meta + 1 + SHAPE);
  }
  MPI_Bcast(meta, 1 + 2 * SHAPE, MPI_LONG_LONG, 0, sd->node);
  if (meta[0]) {
    if (nr != 0) snprintf(err, errlen, "data: loading failed on this node's loading rank");
    *bad = 1;
    PetscFunctionReturn(PETSC_SUCCESS);
  }

  /* The window: all of it on the loader, nothing on the others (they map the loader's part). */
  PetscCall(PetscLogEventBegin(EV_SHARE, 0, 0, 0, 0));
  size_t off[2][3];
  sd->bytes = layout(meta + 1, meta + 1 + SHAPE, off);
  void *mine = NULL;
  int rc = MPI_Win_allocate_shared(nr == 0 ? (MPI_Aint)sd->bytes : 0, 1, MPI_INFO_NULL, sd->node, &mine, &sd->win);
  const int allocated = rc == MPI_SUCCESS; /* else MPI need not have set the handle */
  int failed = !allocated;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, sd->node);
  if (!failed) {
    MPI_Aint qsize = 0;
    int unit = 0;
    rc = MPI_Win_shared_query(sd->win, 0, &qsize, &unit, &sd->base);
    failed = rc != MPI_SUCCESS || (size_t)qsize < sd->bytes || !sd->base;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, sd->node);
  }
  if (failed) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (rc != MPI_SUCCESS) MPI_Error_string(rc, msg, &len);
    snprintf(err, errlen,
             "option -data_shared: cannot allocate this node's shared-memory window of %zu bytes for the data%s%s%s "
             "(-data_shared false loads a copy per rank)",
             sd->bytes, len ? " (MPI: " : "", msg, len ? ")" : "");
    if (allocated) MPI_Win_free(&sd->win);
    sd->win = MPI_WIN_NULL, sd->base = NULL, sd->bytes = 0;
    data_free(&own[0]), data_free(&own[1]);
    *bad = 1;
    PetscCall(PetscLogEventEnd(EV_SHARE, 0, 0, 0, 0));
    PetscFunctionReturn(PETSC_SUCCESS);
  }
  /* The loader writes; the others read once its stores are visible (the unified model's
   * sync-barrier-sync). Nobody writes afterwards. */
  MPI_Win_lock_all(MPI_MODE_NOCHECK, sd->win);
  if (nr == 0)
    for (int s = 0; s < 2; s++) {
      const size_t n = (size_t)own[s].n;
      move_in(sd->base + off[s][0], (void **)&own[s].x, n * (size_t)own[s].d * sizeof(double));
      move_in(sd->base + off[s][1], (void **)&own[s].y, n * (size_t)own[s].k * sizeof(double));
      move_in(sd->base + off[s][2], (void **)&own[s].label, n * sizeof(int));
      data_free(&own[s]);
    }
  MPI_Win_sync(sd->win);
  MPI_Barrier(sd->node);
  MPI_Win_sync(sd->win);
  MPI_Win_unlock_all(sd->win);
  protect(sd->base, sd->bytes, PROT_READ);
  view(train, meta + 1, sd->base, off[0]);
  view(test, meta + 1 + SHAPE, sd->base, off[1]);
  PetscCall(PetscLogEventEnd(EV_SHARE, 0, 0, 0, 0));
  PetscFunctionReturn(PETSC_SUCCESS);
}

void shared_data_free(SharedData *sd, Dataset *train, Dataset *test)
{
  data_free(train);
  data_free(test);
  if (sd->win != MPI_WIN_NULL) {
    protect(sd->base, sd->bytes, PROT_READ | PROT_WRITE);
    MPI_Win_free(&sd->win);
  }
  if (sd->node != MPI_COMM_NULL) MPI_Comm_free(&sd->node);
  memset(sd, 0, sizeof *sd);
  sd->node = MPI_COMM_NULL, sd->win = MPI_WIN_NULL;
}
