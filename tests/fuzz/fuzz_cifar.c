/* libFuzzer harness: CIFAR-10 binary batch reader (src/data.c), raw and gzip, appending to empty
 * and to already-filled arrays. Build and run: tests/fuzz/build.sh. */
#include "data.h"
#include "fuzz_common.h"

#define REC 3073

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_paths_init("cifar");
  return 0;
}

static void one_file(const char *path, uint8_t sel)
{
  char err[512];
  int limits[4] = {0, 1, 2, 7};
  int max_n = limits[sel & 3];
  int n0 = (sel >> 2) & 1; /* 0: empty arrays; 1: one record already there */
  uint8_t *pix = NULL, *lab = NULL;
  if (n0) {
    pix = calloc(3072, 1);
    lab = calloc(1, 1);
    if (!pix || !lab) abort();
  }
  int n = n0;
  err[0] = 0;
  int rc = cifar10_read_batch(path, max_n, &pix, &lab, &n, err, sizeof err);
  fuzz_check_err(rc, err);
  if (rc == 0) {
    if (n < n0 || (max_n && n > (max_n > n0 ? max_n : n0))) abort();
    size_t sum = 0;
    for (size_t i = 0; i < (size_t)n * 3072; i++) sum += pix[i];
    for (int i = 0; i < n; i++)
      if (lab[i] >= 10) abort();
    (void)sum;
  } else if (n != n0) {
    abort(); /* *n must be unchanged on failure */
  }
  /* on failure the arrays are still owned by the caller and valid for n records */
  for (int i = 0; i < n; i++) (void)lab[i];
  free(pix);
  free(lab);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t sel = size ? data[0] : 0; /* the first byte is also the first label */
  fuzz_write_raw(data, size);
  one_file(fuzz_raw_path, sel);
  fuzz_write_gz(data, size);
  one_file(fuzz_gz_path, sel);
  return 0;
}
