/* Minimal test harness shared by the C unit tests: counts checks, prints failures, and ends with
 * the plain line "N passed, N failed" that CI reads. */
#ifndef NTK_TESTUTIL_H
#define NTK_TESTUTIL_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int tu_passed = 0, tu_failed = 0;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (cond) {                                                                 \
      tu_passed++;                                                              \
    } else {                                                                    \
      tu_failed++;                                                              \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                      \
      fprintf(stderr, __VA_ARGS__);                                             \
      fprintf(stderr, "\n");                                                    \
    }                                                                           \
  } while (0)

/* |a - b| <= tol * max(1, |a|, |b|), and both finite. */
static inline int tu_close(double a, double b, double tol) {
  if (!isfinite(a) || !isfinite(b)) return 0;
  double s = fmax(1.0, fmax(fabs(a), fabs(b)));
  return fabs(a - b) <= tol * s;
}

/* Relative error ||a - b|| / max(||a||, ||b||, tiny) over n entries; inf if any is non-finite. */
static inline double tu_rel_err(const double *a, const double *b, size_t n) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
    d += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  double s = sqrt(fmax(na, nb));
  return s > 1e-300 ? sqrt(d) / s : sqrt(d);
}

/* All n entries finite. */
static inline int tu_all_finite(const double *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(a[i])) return 0;
  return 1;
}

static inline int tu_report(const char *name) {
  printf("%s: %d passed, %d failed\n", name, tu_passed, tu_failed);
  return tu_failed ? 1 : 0;
}

#endif
