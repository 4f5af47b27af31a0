/* Shared helpers of the libFuzzer harnesses: the input goes to a per-process temp file, once as
 * is (raw, or whatever gzip header the fuzzer invented) and once gzip-compressed by zlib, so both
 * the direct and the inflate paths of the readers see every input. */
#ifndef NTK_FUZZ_COMMON_H
#define NTK_FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char fuzz_raw_path[256], fuzz_gz_path[256];

static void fuzz_paths_init(const char *tag)
{
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  snprintf(fuzz_raw_path, sizeof fuzz_raw_path, "%s/ntk-fuzz-%s-%ld.bin", dir, tag, (long)getpid());
  snprintf(fuzz_gz_path, sizeof fuzz_gz_path, "%s/ntk-fuzz-%s-%ld.bin.gz", dir, tag, (long)getpid());
}

static void fuzz_write_raw(const uint8_t *data, size_t size)
{
  FILE *f = fopen(fuzz_raw_path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  if (fclose(f)) abort();
}

static void fuzz_write_gz(const uint8_t *data, size_t size)
{
  gzFile g = gzopen(fuzz_gz_path, "wb1");
  if (!g) abort();
  if (size && gzwrite(g, data, (unsigned)size) != (int)size) abort();
  if (gzclose(g) != Z_OK) abort();
}

/* Every error message must be one non-empty line. */
static void fuzz_check_err(int rc, const char *err)
{
  if (rc == 0) return;
  if (!err[0] || strchr(err, '\n')) {
    fprintf(stderr, "bad error message: '%s'\n", err);
    abort();
  }
}
#endif
