/* The collective side of the test harness, for C tests run on several ranks: a check passes only
 * if it holds on every rank of tu_comm, so the counts are the same everywhere and rank 0's
 * summary line is the verdict. A test sets tu_comm and tu_rank once, after MPI starts. */
#ifndef NTK_TESTUTIL_MPI_H
#define NTK_TESTUTIL_MPI_H
#include <mpi.h>

#include "testutil.h"

static MPI_Comm tu_comm;
static int tu_rank;

#define MCHECK(cond, ...)                                                       \
  do {                                                                          \
    int ok_ = (cond) ? 1 : 0, all_ = 0;                                         \
    MPI_Allreduce(&ok_, &all_, 1, MPI_INT, MPI_LAND, tu_comm);                  \
    if (all_) {                                                                 \
      tu_passed++;                                                              \
    } else {                                                                    \
      tu_failed++;                                                              \
      if (!ok_) {                                                               \
        fprintf(stderr, "FAIL [rank %d] %s:%d: ", tu_rank, __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                           \
        fprintf(stderr, "\n");                                                  \
      }                                                                         \
    }                                                                           \
  } while (0)

/* Rank r's slice of N samples over np ranks: balanced, or (skew) none on rank 0 and the rest
 * balanced over the others, so that uneven and empty slices are both exercised. */
static inline void tu_slice_of(int N, int r, int np, int skew, int *first, int *n)
{
  int lo = 0, cnt = 0;
  for (int q = 0; q <= r; q++) {
    lo += cnt;
    if (skew && np > 1) cnt = q == 0 ? 0 : N / (np - 1) + ((q - 1) < N % (np - 1));
    else cnt = N / np + (q < N % np);
  }
  *first = lo;
  *n = cnt;
}

#endif
