/* The error convention of the core layer (docs/architecture.md): a function that can fail on input
 * returns int (0 success, non-zero failure) and writes one line, without a trailing newline, into
 * a caller's buffer err[errlen]; the caller decides whether and where to print it. Above core,
 * functions return PetscErrorCode and are called through PetscCall. */
#ifndef NTK_ERRBUF_H
#define NTK_ERRBUF_H
#include <stddef.h>

/* The length of a message buffer: a line naming up to four paths as long as the system allows
 * (PATH_MAX, 4096 on Linux), so that the reason after them is never cut off. Paths themselves are
 * malloc'd strings of any length (str_printf). */
#define ERRBUF_LEN (4 * 4096 + 1024)

/* Formats the message into err (when err is not NULL) and returns -1, so that a failing path is
 * `return errbuf_set(err, errlen, "...", ...);`. */
int errbuf_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A malloc'd string of any length formatted as by printf (paths: no fixed-size buffers), or NULL
 * when out of memory. The caller frees it. */
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
