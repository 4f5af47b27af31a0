/* Datasets: Fashion-MNIST / MNIST IDX files (gzip or raw), CIFAR-10 binary batches, and a
 * synthetic teacher-student set. Plain C (zlib), no PETSc or MPI, so the readers can be fuzzed.
 *
 * Every function that can fail returns 0 on success or -1 with a one-line message in err that
 * names the file or setting and says what is wrong (e.g. "data file /x/train-images-idx3-ubyte.gz:
 * truncated: expected 47040000 bytes of pixels, found 1200").
 */
#ifndef NTK_DATA_H
#define NTK_DATA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "layers.h"

/* DATA_UV: the uv model's single sample (x, y) = (1, 0) (docs/conventions.md), never
 * standardised. */
typedef enum { DATA_FASHION_MNIST = 0, DATA_MNIST, DATA_CIFAR10, DATA_TEACHER, DATA_UV, DATA_COUNT } DataKind;
const char *data_kind_name(DataKind k);   /* "fashion_mnist", "mnist", "cifar10", "teacher", "uv" */
int data_kind_from_name(const char *name); /* -1 if unknown */

/* Default directory of the Debian package dataset-fashion-mnist. */
#define DATA_FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
  DataKind kind;
  const char *dir;        /* directory holding the files (IDX: the four standard names, with or
                             without .gz; CIFAR-10: data_batch_1..5.bin and test_batch.bin); any
                             length, NULL or "" for none (the caller owns it) */
  int n_train, n_test;    /* subset sizes: the first n of each split; 0 = all */
  bool standardize;       /* per-feature mean/std of the TRAINING subset, applied to both splits */
  bool center_targets;    /* one-hot minus 1/k */
  /* teacher-student only */
  int teacher_dim;        /* input dimension d */
  int teacher_width;      /* hidden width of the 1-hidden-layer teacher */
  int teacher_outputs;    /* k */
  Activation teacher_act;
  uint64_t teacher_seed;
  double teacher_noise;   /* std of Gaussian label noise */
} DataConfig;

typedef struct {
  int n;                  /* samples */
  int d;                  /* features per sample = channels * height * width */
  int k;                  /* target dimension (classes) */
  int channels, height, width; /* image shape; vectors are 1 x 1 x d */
  double *x;              /* n x d */
  double *y;              /* n x k targets */
  int *label;             /* n: class index, or -1 for regression targets */
  bool borrowed;          /* x, y and label point at memory the dataset does not own (a node's
                             shared window, src/app/shared_data.c): data_free leaves them */
} Dataset;

/* Loads train and test splits per cfg (subsets, standardisation, targets). */
int data_load(Dataset *train, Dataset *test, const DataConfig *cfg, char *err, size_t errlen);
/* Frees what the dataset owns (not borrowed arrays) and zeroes it. */
void data_free(Dataset *ds);
/* The shapes (n, d, k, image shape) data_load would give, x, y and label NULL: no file is read. */
int data_shape(Dataset *train, Dataset *test, const DataConfig *cfg, char *err, size_t errlen);

/* Low-level readers, exposed for tests and fuzzing. Both accept gzip or raw files (zlib detects).
 * IDX images: magic 0x00000803, dims n x rows x cols, unsigned bytes. Reads the first max_n
 * (0 = all) images into *pixels (malloc'd, n x rows*cols bytes). */
int idx_read_images(const char *path, int max_n, uint8_t **pixels, int *n, int *rows, int *cols,
                    char *err, size_t errlen);
/* IDX labels: magic 0x00000801, dim n, bytes in [0, 9] (checked against n_classes). */
int idx_read_labels(const char *path, int max_n, int n_classes, uint8_t **labels, int *n,
                    char *err, size_t errlen);
/* One CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (3x32x32, channel-major).
 * Appends up to max_n - *n records (max_n = 0: all) to the growing arrays. */
int cifar10_read_batch(const char *path, int max_n, uint8_t **pixels, uint8_t **labels, int *n,
                       char *err, size_t errlen);

#endif
