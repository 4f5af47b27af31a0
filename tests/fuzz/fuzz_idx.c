/* libFuzzer harness: IDX images and labels readers (src/data.c), raw and gzip.
 * Build and run: tests/fuzz/build.sh (see docs/robustness.md). */
#include "data.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  fuzz_paths_init("idx");
  return 0;
}

static void one_file(const char *path, uint8_t sel)
{
  char err[512];
  int limits[4] = {0, 1, 3, 100000};
  int max_n = limits[sel & 3];
  uint8_t *pix = NULL;
  int n = -1, rows = -1, cols = -1;
  err[0] = 0;
  int rc = idx_read_images(path, max_n, &pix, &n, &rows, &cols, err, sizeof err);
  fuzz_check_err(rc, err);
  if (rc == 0) {
    if (n < 1 || rows < 1 || cols < 1 || (max_n && n > max_n)) abort();
    /* touch every byte: ASan catches a short buffer */
    size_t total = (size_t)n * rows * cols, sum = 0;
    for (size_t i = 0; i < total; i++) sum += pix[i];
    (void)sum;
  } else if (pix || n != 0) {
    abort(); /* outputs must be reset on failure */
  }
  free(pix);

  uint8_t *lab = NULL;
  int n_classes = (sel >> 2) & 1 ? 10 : 256;
  err[0] = 0;
  rc = idx_read_labels(path, max_n, n_classes, &lab, &n, err, sizeof err);
  fuzz_check_err(rc, err);
  if (rc == 0) {
    if (n < 1 || (max_n && n > max_n)) abort();
    for (int i = 0; i < n; i++)
      if (lab[i] >= n_classes) abort();
  } else if (lab || n != 0) {
    abort();
  }
  free(lab);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t sel = size ? data[size - 1] : 0; /* the last byte also picks the limits */
  fuzz_write_raw(data, size);
  one_file(fuzz_raw_path, sel);
  fuzz_write_gz(data, size);
  one_file(fuzz_gz_path, sel);
  return 0;
}
