/* Dataset readers: IDX (gzip and raw), CIFAR-10 batches, subsets, targets, standardisation, the
 * teacher-student set, and one error message per kind of malformed input. All files are written
 * here into a fresh temporary directory; the real Fashion-MNIST is checked only if installed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "layers.h"
#include "rng.h"
#include "testutil.h"

#define R 28
#define D (R * R)
#define NTR 50 /* train images in the synthetic IDX set */
#define NTE 20 /* test images */

static char tmp[256];
static char err[1024];

/* ------------------------------------------------------------------ file writers */

static void path_of(char *out, size_t len, const char *dir, const char *name) {
  snprintf(out, len, "%s/%s", dir, name);
}

static void make_dir(const char *dir) {
  if (mkdir(dir, 0700) != 0) {
    perror(dir);
    exit(2);
  }
}

static void write_raw(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
    perror(path);
    exit(2);
  }
}

static void write_gz(const char *path, const void *buf, size_t len) {
  gzFile f = gzopen(path, "wb");
  if (!f || (len && gzwrite(f, buf, (unsigned)len) != (int)len) || gzclose(f) != Z_OK) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(2);
  }
}

static void write_file(const char *dir, const char *name, const void *buf, size_t len, int gz) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s%s", dir, name, gz ? ".gz" : "");
  (gz ? write_gz : write_raw)(p, buf, len);
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Pixel j of image a of a split (split 0 train, 1 test, 2 alternative content). The first image
 * row (j < 28) is constant within a split: 0 in train, 7 in test, exercising constant features. */
static unsigned char pix(int split, int a, int j) {
  if (j < R) return split == 1 ? 7 : 0;
  return (unsigned char)((a * 31 + j * 7 + a * j + split * 101) % 256);
}
static unsigned char lab(int split, int a) { return (unsigned char)((a * 3 + split) % 10); }

/* IDX images file content: header (magic, n_hdr, rows, cols) + n_data images. */
static unsigned char *idx_images(int split, uint32_t magic, uint32_t n_hdr, int n_data, int rows,
                                 int cols, size_t *len) {
  size_t d = (size_t)rows * cols;
  *len = 16 + (size_t)n_data * d;
  unsigned char *b = malloc(*len);
  put_be32(b, magic), put_be32(b + 4, n_hdr), put_be32(b + 8, (uint32_t)rows);
  put_be32(b + 12, (uint32_t)cols);
  for (int a = 0; a < n_data; a++)
    for (size_t j = 0; j < d; j++) b[16 + a * d + j] = pix(split, a, (int)j);
  return b;
}

static unsigned char *idx_labels(int split, uint32_t n_hdr, int n_data, size_t *len) {
  *len = 8 + (size_t)n_data;
  unsigned char *b = malloc(*len);
  put_be32(b, 0x801), put_be32(b + 4, n_hdr);
  for (int a = 0; a < n_data; a++) b[8 + a] = lab(split, a);
  return b;
}

/* A complete MNIST-style directory: 4 files, gzip or raw, split contents offset by alt. */
static void make_idx_dir(const char *dir, int gz, int alt) {
  size_t len;
  unsigned char *b;
  b = idx_images(0 + alt, 0x803, NTR, NTR, R, R, &len);
  write_file(dir, "train-images-idx3-ubyte", b, len, gz), free(b);
  b = idx_labels(0 + alt, NTR, NTR, &len);
  write_file(dir, "train-labels-idx1-ubyte", b, len, gz), free(b);
  b = idx_images(1 + alt, 0x803, NTE, NTE, R, R, &len);
  write_file(dir, "t10k-images-idx3-ubyte", b, len, gz), free(b);
  b = idx_labels(1 + alt, NTE, NTE, &len);
  write_file(dir, "t10k-labels-idx1-ubyte", b, len, gz), free(b);
}

/* CIFAR-10 record r of file f: label (f + r) % 10, pixels from a hash of (f, r, j). */
static unsigned char cpix(int f, int r, int j) { return (unsigned char)((f * 53 + r * 17 + j * 3 + (j >> 8)) % 256); }
static unsigned char clab(int f, int r) { return (unsigned char)((f + r) % 10); }

static void write_cifar(const char *dir, const char *name, int f, int nrec) {
  size_t len = (size_t)nrec * 3073;
  unsigned char *b = malloc(len ? len : 1);
  for (int r = 0; r < nrec; r++) {
    b[r * 3073] = clab(f, r);
    for (int j = 0; j < 3072; j++) b[r * 3073 + 1 + j] = cpix(f, r, j);
  }
  char p[1024];
  path_of(p, sizeof p, dir, name);
  write_raw(p, b, len);
  free(b);
}

static const int cifar_counts[6] = {3, 4, 2, 5, 1, 4}; /* data_batch_1..5, test_batch */

static void make_cifar_dir(const char *dir, int nbatches) {
  char name[64];
  for (int f = 0; f < nbatches; f++) {
    snprintf(name, sizeof name, "data_batch_%d.bin", f + 1);
    write_cifar(dir, name, f, cifar_counts[f]);
  }
  write_cifar(dir, "test_batch.bin", 5, cifar_counts[5]);
}

/* ------------------------------------------------------------------ helpers for checks */

static DataConfig base_cfg(DataKind kind, const char *dir) {
  DataConfig c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.dir = dir; /* the callers' strings outlive the configs */
  return c;
}

/* Expect failure: rc == -1 and err mentions both `name` and `phrase`. */
#define CHECK_ERR(rc, name, phrase)                                                          \
  CHECK((rc) == -1 && strstr(err, (name)) && strstr(err, (phrase)),                          \
        "expected error with '%s' and '%s', got rc=%d err='%s'", (name), (phrase), (rc), err)

/* ------------------------------------------------------------------ tests */

static void test_names(void) {
  for (int k = 0; k < DATA_COUNT; k++)
    CHECK(data_kind_from_name(data_kind_name((DataKind)k)) == k, "kind %d round trip", k);
  CHECK(strcmp(data_kind_name(DATA_FASHION_MNIST), "fashion_mnist") == 0, "fashion name");
  CHECK(strcmp(data_kind_name(DATA_CIFAR10), "cifar10") == 0, "cifar name");
  CHECK(data_kind_from_name("imagenet") == -1, "unknown kind");
  CHECK(data_kind_from_name(NULL) == -1, "NULL kind");
}

static void test_idx_readers(const char *dir, int gz) {
  char p[1024];
  uint8_t *px = NULL, *lb = NULL;
  int n = -1, rows = -1, cols = -1;
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
  int rc = idx_read_images(p, 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK(rc == 0 && n == NTR && rows == R && cols == R, "images %s: rc=%d n=%d %dx%d %s", p, rc, n,
        rows, cols, err);
  int bad = 0;
  for (int a = 0; rc == 0 && a < NTR; a++)
    for (int j = 0; j < D; j++) bad += px[a * D + j] != pix(0, a, j);
  CHECK(rc == 0 && bad == 0, "images %s: %d pixels differ", p, bad);
  free(px), px = NULL;

  rc = idx_read_images(p, 7, &px, &n, &rows, &cols, err, sizeof err);
  bad = 0;
  for (int a = 0; rc == 0 && a < 7; a++)
    for (int j = 0; j < D; j++) bad += px[a * D + j] != pix(0, a, j);
  CHECK(rc == 0 && n == 7 && bad == 0, "images subset of 7: rc=%d n=%d bad=%d", rc, n, bad);
  free(px), px = NULL;

  rc = idx_read_images(p, NTR + 10, &px, &n, &rows, &cols, err, sizeof err);
  CHECK(rc == 0 && n == NTR, "images max_n above header: capped to header, n=%d", n);
  free(px), px = NULL;

  snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte%s", dir, gz ? ".gz" : "");
  rc = idx_read_labels(p, 0, 10, &lb, &n, err, sizeof err);
  bad = 0;
  for (int a = 0; rc == 0 && a < NTE; a++) bad += lb[a] != lab(1, a);
  CHECK(rc == 0 && n == NTE && bad == 0, "labels %s: rc=%d n=%d bad=%d %s", p, rc, n, bad, err);
  free(lb), lb = NULL;
  rc = idx_read_labels(p, 5, 10, &lb, &n, err, sizeof err);
  CHECK(rc == 0 && n == 5 && lb[4] == lab(1, 4), "labels subset of 5: rc=%d n=%d", rc, n);
  free(lb), lb = NULL;
}

/* Checks that ds holds split `split` (content variant) samples 0..n-1, one-hot (minus shift). */
static void check_idx_dataset(const Dataset *ds, int split, int n, double shift, const char *what) {
  CHECK(ds->n == n && ds->d == D && ds->k == 10 && ds->channels == 1 && ds->height == R &&
            ds->width == R,
        "%s: shape n=%d d=%d k=%d %dx%dx%d", what, ds->n, ds->d, ds->k, ds->channels, ds->height,
        ds->width);
  if (ds->n != n || ds->d != D || ds->k != 10) return;
  int badx = 0, bady = 0, badl = 0;
  for (int a = 0; a < n; a++) {
    for (int j = 0; j < D; j++) badx += ds->x[a * D + j] != pix(split, a, j) / 255.0;
    badl += ds->label[a] != lab(split, a);
    for (int i = 0; i < 10; i++)
      bady += ds->y[a * 10 + i] != (i == lab(split, a) ? 1.0 : 0.0) - shift;
  }
  CHECK(badx == 0, "%s: %d pixels differ from byte/255", what, badx);
  CHECK(badl == 0, "%s: %d labels differ", what, badl);
  CHECK(bady == 0, "%s: %d targets differ (shift %g)", what, bady, shift);
}

static void test_idx_load(const char *dir, const char *what) {
  Dataset tr, te;
  DataConfig c = base_cfg(DATA_MNIST, dir);
  int rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0, "%s: data_load: %s", what, err);
  if (rc == 0) {
    check_idx_dataset(&tr, 0, NTR, 0.0, what);
    check_idx_dataset(&te, 1, NTE, 0.0, what);
  }
  data_free(&tr), data_free(&te);
  CHECK(tr.x == NULL && tr.n == 0, "data_free clears the dataset");

  c.n_train = 7, c.n_test = 3, c.center_targets = true;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0, "%s subset: %s", what, err);
  if (rc == 0) {
    check_idx_dataset(&tr, 0, 7, 0.1, "subset/centred train");
    check_idx_dataset(&te, 1, 3, 0.1, "subset/centred test");
  }
  data_free(&tr), data_free(&te);
}

static void test_standardize(const char *dir) {
  Dataset tr, te;
  DataConfig c = base_cfg(DATA_MNIST, dir);
  c.n_train = 30, c.n_test = 10, c.standardize = true;
  int rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0, "standardised load: %s", err);
  if (rc) return;
  CHECK(tu_all_finite(tr.x, (size_t)tr.n * D) && tu_all_finite(te.x, (size_t)te.n * D),
        "standardised data is finite (constant features do not become NaN)");
  double worst_m = 0, worst_s = 0, worst_test = 0, worst_const = 0;
  int n_nonconst = 0;
  for (int j = 0; j < D; j++) {
    /* independent train statistics from the raw bytes */
    double m = 0, v = 0;
    for (int a = 0; a < 30; a++) m += pix(0, a, j) / 255.0;
    m /= 30;
    for (int a = 0; a < 30; a++) v += (pix(0, a, j) / 255.0 - m) * (pix(0, a, j) / 255.0 - m);
    double sd = sqrt(v / 30);
    double mm = 0, vv = 0;
    for (int a = 0; a < 30; a++) mm += tr.x[a * D + j];
    mm /= 30;
    for (int a = 0; a < 30; a++) vv += (tr.x[a * D + j] - mm) * (tr.x[a * D + j] - mm);
    worst_m = fmax(worst_m, fabs(mm));
    if (sd >= 1e-8) {
      n_nonconst++;
      worst_s = fmax(worst_s, fabs(sqrt(vv / 30) - 1));
    }
    double scale = sd < 1e-8 ? 1.0 : sd;
    for (int a = 0; a < 10; a++) {
      double want = (pix(1, a, j) / 255.0 - m) / scale;
      worst_test = fmax(worst_test, fabs(te.x[a * D + j] - want));
      if (j < R) worst_const = fmax(worst_const, fabs(te.x[a * D + j] - 7 / 255.0));
    }
  }
  /* the pattern is constant in row 0 and where 31 + j == 0 mod 256 (j = 225, 481, 737) */
  CHECK(n_nonconst == D - R - 3, "non-constant features: %d (expected %d)", n_nonconst, D - R - 3);
  CHECK(worst_m < 1e-12, "train feature means 0: worst %g", worst_m);
  CHECK(worst_s < 1e-12, "train feature stds 1: worst %g", worst_s);
  CHECK(worst_test < 1e-12, "test standardised with train stats: worst %g", worst_test);
  /* constant train feature (0) is only centred: test value 7/255 - 0 stays 7/255 */
  CHECK(worst_const < 1e-15, "constant feature only centred on test: worst %g", worst_const);
  data_free(&tr), data_free(&te);
}

static void test_gz_preferred(const char *dir) {
  /* dir holds gzip files with content 0/1 and raw files with alternative content 2/3 */
  Dataset tr, te;
  DataConfig c = base_cfg(DATA_MNIST, dir);
  int rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0 && tr.n == NTR && tr.x[R] == pix(0, 0, R) / 255.0 &&
            tr.x[R] != pix(2, 0, R) / 255.0,
        ".gz preferred over raw when both exist (rc=%d %s)", rc, err);
  data_free(&tr), data_free(&te);
}

static void test_cifar(const char *dir, const char *dir_partial) {
  Dataset tr, te;
  DataConfig c = base_cfg(DATA_CIFAR10, dir);
  int rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0, "cifar load: %s", err);
  if (rc == 0) {
    CHECK(tr.n == 15 && te.n == 4 && tr.d == 3072 && tr.k == 10 && tr.channels == 3 &&
              tr.height == 32 && tr.width == 32,
          "cifar shape n=%d/%d d=%d k=%d %dx%dx%d", tr.n, te.n, tr.d, tr.k, tr.channels,
          tr.height, tr.width);
    int bad = 0, a = 0;
    for (int f = 0; f < 5 && tr.n == 15; f++)
      for (int r = 0; r < cifar_counts[f]; r++, a++) {
        bad += tr.label[a] != clab(f, r) || tr.y[a * 10 + clab(f, r)] != 1.0;
        for (int j = 0; j < 3072; j++) bad += tr.x[(size_t)a * 3072 + j] != cpix(f, r, j) / 255.0;
      }
    CHECK(tr.n == 15 && bad == 0, "cifar train records in batch order: %d differ", bad);
    bad = 0;
    for (int r = 0; r < 4 && te.n == 4; r++) {
      bad += te.label[r] != clab(5, r);
      for (int j = 0; j < 3072; j++) bad += te.x[(size_t)r * 3072 + j] != cpix(5, r, j) / 255.0;
    }
    CHECK(te.n == 4 && bad == 0, "cifar test records: %d differ", bad);
  }
  data_free(&tr), data_free(&te);

  /* subset spanning batches 1 and 2 (3 + 4 records) from a directory with only those batches:
   * the reader must stop before looking for data_batch_3.bin */
  c = base_cfg(DATA_CIFAR10, dir_partial);
  c.n_train = 7, c.n_test = 2;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0 && tr.n == 7 && te.n == 2 && tr.label[6] == clab(1, 3) && te.label[1] == clab(5, 1),
        "cifar subset stops early: rc=%d n=%d/%d %s", rc, tr.n, te.n, err);
  data_free(&tr), data_free(&te);
  c.n_train = 8; /* needs data_batch_3.bin, which is absent */
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "data_batch_3.bin", "not found");

  /* appending reader */
  char p[1024];
  uint8_t *px = NULL, *lb = NULL;
  int n = 0;
  path_of(p, sizeof p, dir, "data_batch_4.bin");
  rc = cifar10_read_batch(p, 0, &px, &lb, &n, err, sizeof err);
  CHECK(rc == 0 && n == 5, "cifar batch 4 read: rc=%d n=%d", rc, n);
  path_of(p, sizeof p, dir, "data_batch_2.bin");
  rc = cifar10_read_batch(p, 7, &px, &lb, &n, err, sizeof err);
  CHECK(rc == 0 && n == 7 && lb[4] == clab(3, 4) && lb[5] == clab(1, 0) && lb[6] == clab(1, 1) &&
            px[6 * 3072 + 100] == cpix(1, 1, 100),
        "cifar append up to max_n: rc=%d n=%d", rc, n);
  rc = cifar10_read_batch("/nonexistent/never.bin", 7, &px, &lb, &n, err, sizeof err);
  CHECK(rc == 0 && n == 7, "cifar append with *n == max_n reads nothing");
  free(px), free(lb);
}

/* Independent recomputation of the teacher for sample g (global index) of a split. */
static double teacher_ref(const DataConfig *c, const double *x, int g, int o) {
  int d = c->teacher_dim, w = c->teacher_width, k = c->teacher_outputs;
  const uint64_t sU = RNG_STREAM_TEACHER_W, sV = RNG_STREAM_TEACHER_W + (1ull << 32),
                 sN = RNG_STREAM_TEACHER_X + (1ull << 32);
  double out = 0;
  for (int i = 0; i < w; i++) {
    double h = 0;
    for (int j = 0; j < d; j++) h += rng_normal(c->teacher_seed, sU, (uint64_t)i * d + j) * x[j];
    out += rng_normal(c->teacher_seed, sV, (uint64_t)o * w + i) * act_value(h / sqrt(d), c->teacher_act);
  }
  out /= sqrt(w);
  return out + c->teacher_noise * rng_normal(c->teacher_seed, sN, (uint64_t)g * k + o);
}

static void test_teacher(void) {
  DataConfig c = base_cfg(DATA_TEACHER, "");
  c.teacher_dim = 9, c.teacher_width = 300, c.teacher_outputs = 3;
  c.teacher_act = ACT_TANH, c.teacher_seed = 42, c.teacher_noise = 0.1;
  c.n_train = 260, c.n_test = 5; /* > one 256-sample block */
  Dataset tr, te, tr2, te2;
  int rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0, "teacher load: %s", err);
  if (rc) return;
  CHECK(tr.n == 260 && te.n == 5 && tr.d == 9 && tr.k == 3 && te.d == 9 && te.k == 3 &&
            tr.channels == 1 && tr.height == 1 && tr.width == 9,
        "teacher shapes n=%d/%d d=%d k=%d %dx%dx%d", tr.n, te.n, tr.d, tr.k, tr.channels,
        tr.height, tr.width);
  int badl = 0, badx = 0;
  for (int a = 0; a < tr.n; a++) badl += tr.label[a] != -1;
  for (int a = 0; a < te.n; a++) badl += te.label[a] != -1;
  for (int a = 0; a < 260; a++)
    for (int j = 0; j < 9; j++)
      badx += tr.x[a * 9 + j] != rng_normal(42, RNG_STREAM_TEACHER_X, (uint64_t)a * 9 + j);
  for (int a = 0; a < 5; a++)
    for (int j = 0; j < 9; j++)
      badx += te.x[a * 9 + j] != rng_normal(42, RNG_STREAM_TEACHER_X, (uint64_t)(260 + a) * 9 + j);
  CHECK(badl == 0, "teacher labels are -1: %d differ", badl);
  CHECK(badx == 0, "teacher inputs from stream TEACHER_X, train then test: %d differ", badx);
  double worst = 0;
  int samples[] = {0, 1, 255, 256, 259};
  for (int s = 0; s < 5; s++)
    for (int o = 0; o < 3; o++)
      worst = fmax(worst, fabs(tr.y[samples[s] * 3 + o] - teacher_ref(&c, tr.x + samples[s] * 9, samples[s], o)));
  for (int a = 0; a < 5; a++)
    for (int o = 0; o < 3; o++)
      worst = fmax(worst, fabs(te.y[a * 3 + o] - teacher_ref(&c, te.x + a * 9, 260 + a, o)));
  CHECK(worst < 1e-12, "teacher targets equal the recomputation: worst %g", worst);
  double ysd = 0;
  for (int i = 0; i < 260 * 3; i++) ysd += tr.y[i] * tr.y[i];
  CHECK(sqrt(ysd / 780) > 0.1, "teacher targets are not trivially small: rms %g", sqrt(ysd / 780));

  rc = data_load(&tr2, &te2, &c, err, sizeof err);
  CHECK(rc == 0 && memcmp(tr.x, tr2.x, sizeof(double) * 260 * 9) == 0 &&
            memcmp(tr.y, tr2.y, sizeof(double) * 260 * 3) == 0 &&
            memcmp(te.y, te2.y, sizeof(double) * 5 * 3) == 0,
        "teacher deterministic in the seed");
  data_free(&tr2), data_free(&te2);
  c.teacher_seed = 43;
  rc = data_load(&tr2, &te2, &c, err, sizeof err);
  CHECK(rc == 0 && tr2.y[0] != tr.y[0] && tr2.x[0] != tr.x[0], "another seed, other data");
  data_free(&tr2), data_free(&te2);

  /* relu, no noise, standardised inputs: targets come from the raw inputs */
  c.teacher_seed = 42, c.teacher_noise = 0, c.teacher_act = ACT_RELU, c.standardize = true;
  rc = data_load(&tr2, &te2, &c, err, sizeof err);
  if (rc == 0) {
    double w2 = 0;
    for (int o = 0; o < 3; o++) {
      double x0[9];
      for (int j = 0; j < 9; j++) x0[j] = rng_normal(42, RNG_STREAM_TEACHER_X, (uint64_t)j);
      w2 = fmax(w2, fabs(tr2.y[o] - teacher_ref(&c, x0, 0, o)));
    }
    CHECK(w2 < 1e-12 && tr2.x[0] != tr.x[0], "relu teacher without noise: worst %g", w2);
  } else {
    CHECK(0, "relu teacher load: %s", err);
  }
  data_free(&tr2), data_free(&te2);
  data_free(&tr), data_free(&te);

  c.teacher_dim = 0;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "teacher_dim", "positive");
  c.teacher_dim = 9, c.teacher_width = -1;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "teacher_width", "positive");
  c.teacher_width = 5, c.teacher_outputs = 0;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "teacher_outputs", "positive");
  c.teacher_outputs = 1, c.n_train = 0;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "n_train", "n_train > 0");
  CHECK(tr.x == NULL && te.x == NULL, "failed load leaves datasets empty");
}

/* Replaces one file of a copy of the good raw directory, then expects data_load to fail. */
static void errors_idx(const char *good_gz_dir) {
  char dir[512], p[1024];
  size_t len;
  unsigned char *b;
  Dataset tr, te;
  DataConfig c;
  int rc;
  uint8_t *px = NULL;
  int n, rows, cols;

  /* missing file: a directory lacking t10k-labels */
  snprintf(dir, sizeof dir, "%s/missing", tmp);
  make_dir(dir);
  make_idx_dir(dir, 1, 0);
  path_of(p, sizeof p, dir, "t10k-labels-idx1-ubyte.gz");
  unlink(p);
  c = base_cfg(DATA_MNIST, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "t10k-labels-idx1-ubyte", "not found");
  rc = idx_read_images("/nonexistent/dir/x.gz", 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK_ERR(rc, "/nonexistent/dir/x.gz", "cannot open");
  c = base_cfg(DATA_MNIST, "");
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "mnist", "no directory");

  /* wrong magic: labels where images are expected */
  snprintf(dir, sizeof dir, "%s/magic", tmp);
  make_dir(dir);
  make_idx_dir(dir, 1, 0);
  b = idx_images(0, 0x802, NTR, NTR, R, R, &len);
  write_file(dir, "train-images-idx3-ubyte", b, len, 1), free(b);
  c = base_cfg(DATA_MNIST, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "train-images-idx3-ubyte.gz", "wrong magic 0x00000802 (expected 0x00000803");
  path_of(p, sizeof p, good_gz_dir, "train-labels-idx1-ubyte.gz");
  rc = idx_read_images(p, 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK_ERR(rc, "train-labels-idx1-ubyte.gz", "wrong magic 0x00000801");
  path_of(p, sizeof p, good_gz_dir, "train-images-idx3-ubyte.gz");
  uint8_t *lb = NULL;
  rc = idx_read_labels(p, 0, 10, &lb, &n, err, sizeof err);
  CHECK_ERR(rc, "train-images-idx3-ubyte.gz", "wrong magic 0x00000803 (expected 0x00000801");

  /* truncated payload (gzip and raw): header says 50 images, 10.5 present */
  for (int gz = 0; gz < 2; gz++) {
    snprintf(dir, sizeof dir, "%s/trunc%d", tmp, gz);
    make_dir(dir);
    make_idx_dir(dir, gz, 0);
    b = idx_images(0, 0x803, NTR, NTR, R, R, &len);
    write_file(dir, "train-images-idx3-ubyte", b, 16 + 10 * D + D / 2, gz), free(b);
    c = base_cfg(DATA_MNIST, dir);
    rc = data_load(&tr, &te, &c, err, sizeof err);
    CHECK_ERR(rc, "train-images-idx3-ubyte", "truncated: expected 39200 bytes of pixels, found 8232");
    /* a subset within the data present is still fine: only what is needed is read */
    c.n_train = 10, c.n_test = 0;
    rc = data_load(&tr, &te, &c, err, sizeof err);
    CHECK(rc == 0 && tr.n == 10, "subset inside a truncated file loads (gz=%d): %s", gz, err);
    data_free(&tr), data_free(&te);
  }

  /* truncated header */
  snprintf(dir, sizeof dir, "%s/hdr", tmp);
  make_dir(dir);
  make_idx_dir(dir, 0, 0);
  b = idx_images(0, 0x803, NTR, NTR, R, R, &len);
  write_file(dir, "t10k-images-idx3-ubyte", b, 10, 0), free(b);
  c = base_cfg(DATA_MNIST, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "t10k-images-idx3-ubyte", "truncated header: expected 16 bytes, found 10");
  path_of(p, sizeof p, dir, "empty");
  write_raw(p, "", 0);
  rc = idx_read_labels(p, 0, 10, &lb, &n, err, sizeof err);
  CHECK_ERR(rc, p, "truncated header: expected 8 bytes, found 0");

  /* image / label count mismatch (detected from the headers even for a subset) */
  snprintf(dir, sizeof dir, "%s/count", tmp);
  make_dir(dir);
  make_idx_dir(dir, 1, 0);
  b = idx_labels(0, NTR - 1, NTR - 1, &len);
  write_file(dir, "train-labels-idx1-ubyte", b, len, 1), free(b);
  c = base_cfg(DATA_MNIST, dir);
  c.n_train = 5;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "train-images-idx3-ubyte.gz", "count mismatch: 50 images but");
  CHECK(strstr(err, "train-labels-idx1-ubyte.gz has 49 labels") != NULL, "mismatch names labels: %s", err);

  /* label out of range */
  snprintf(dir, sizeof dir, "%s/range", tmp);
  make_dir(dir);
  make_idx_dir(dir, 0, 0);
  b = idx_labels(1, NTE, NTE, &len);
  b[8 + 13] = 10;
  write_file(dir, "t10k-labels-idx1-ubyte", b, len, 0), free(b);
  c = base_cfg(DATA_MNIST, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "t10k-labels-idx1-ubyte", "label 10 at index 13 out of range [0, 9]");

  /* bad gzip: a valid gzip header, then garbage */
  snprintf(dir, sizeof dir, "%s/badgz", tmp);
  make_dir(dir);
  make_idx_dir(dir, 1, 0);
  unsigned char junk[200] = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03};
  memset(junk + 10, 0xff, sizeof junk - 10);
  path_of(p, sizeof p, dir, "train-labels-idx1-ubyte.gz");
  write_raw(p, junk, sizeof junk);
  c = base_cfg(DATA_MNIST, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "train-labels-idx1-ubyte.gz", "corrupt gzip data");

  /* gzip stream cut in the middle: a truncation, whatever the reader saw before */
  path_of(p, sizeof p, good_gz_dir, "train-images-idx3-ubyte.gz");
  FILE *f = fopen(p, "rb");
  unsigned char gzb[20000];
  size_t glen = f ? fread(gzb, 1, sizeof gzb, f) : 0;
  if (f) fclose(f);
  path_of(p, sizeof p, dir, "cut.gz");
  write_raw(p, gzb, glen / 2);
  rc = idx_read_images(p, 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK(rc == -1 && strstr(err, p) && (strstr(err, "truncated") || strstr(err, "gzip")),
        "cut gzip stream: rc=%d err=%s", rc, err);

  /* hostile headers: never crash, never trust the header for allocation */
  path_of(p, sizeof p, dir, "huge");
  b = idx_images(0, 0x803, 0x7fffffffu, 2, R, R, &len);
  write_raw(p, b, len), free(b);
  rc = idx_read_images(p, 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK_ERR(rc, p, "truncated: expected 1683627179248 bytes of pixels, found 1568");
  b = idx_images(0, 0x803, 0x80000000u, 2, R, R, &len);
  write_raw(p, b, len), free(b);
  rc = idx_read_images(p, 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK_ERR(rc, p, "header says 2147483648 images");
  b = idx_images(0, 0x803, 2, 0, 0, 0, &len);
  put_be32(b + 8, 0x10000), put_be32(b + 12, 0x10000);
  write_raw(p, b, len), free(b);
  rc = idx_read_images(p, 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK_ERR(rc, p, "bad image size 65536 x 65536");
  b = idx_images(0, 0x803, 0, 0, R, R, &len);
  write_raw(p, b, len), free(b);
  rc = idx_read_images(p, 0, &px, &n, &rows, &cols, err, sizeof err);
  CHECK_ERR(rc, p, "header says 0 images");
  b = idx_labels(0, 0xffffffffu, 3, &len);
  write_raw(p, b, len), free(b);
  rc = idx_read_labels(p, 0, 10, &lb, &n, err, sizeof err);
  CHECK_ERR(rc, p, "header says 4294967295 labels");

  /* wrong image size for the MNIST loader */
  snprintf(dir, sizeof dir, "%s/size", tmp);
  make_dir(dir);
  make_idx_dir(dir, 0, 0);
  b = idx_images(1, 0x803, NTE, NTE, 14, 56, &len);
  write_file(dir, "t10k-images-idx3-ubyte", b, len, 0), free(b);
  c = base_cfg(DATA_MNIST, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "t10k-images-idx3-ubyte", "images are 14 x 56, expected 28 x 28");

  /* subsets larger than the files */
  c = base_cfg(DATA_MNIST, good_gz_dir);
  c.n_train = 51;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "train-images-idx3-ubyte.gz", "n_train = 51 but");
  CHECK(strstr(err, "holds 50 samples") != NULL, "n_train message says what is there: %s", err);
  c.n_train = 0, c.n_test = 21;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "t10k-images-idx3-ubyte.gz", "n_test = 21 but");
  c.n_test = -1;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "n_test = -1", ">= 0");
  CHECK(tr.x == NULL && te.x == NULL && tr.n == 0, "failed load leaves datasets empty");
}

static void errors_cifar(const char *good_dir) {
  char dir[512], p[1024];
  Dataset tr, te;
  DataConfig c;
  int rc;

  snprintf(dir, sizeof dir, "%s/cifar_size", tmp);
  make_dir(dir);
  make_cifar_dir(dir, 5);
  path_of(p, sizeof p, dir, "data_batch_2.bin");
  FILE *f = fopen(p, "ab");
  fputc(1, f), fclose(f);
  c = base_cfg(DATA_CIFAR10, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "data_batch_2.bin", "corrupt: size 12293 bytes is not a multiple of the 3073-byte record");

  snprintf(dir, sizeof dir, "%s/cifar_label", tmp);
  make_dir(dir);
  make_cifar_dir(dir, 5);
  path_of(p, sizeof p, dir, "test_batch.bin");
  f = fopen(p, "r+b");
  fseek(f, 2 * 3073, SEEK_SET), fputc(10, f), fclose(f);
  c = base_cfg(DATA_CIFAR10, dir);
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "test_batch.bin", "label 10 in record 2 out of range [0, 9]");

  path_of(p, sizeof p, dir, "empty.bin");
  write_raw(p, "", 0);
  uint8_t *px = NULL, *lb = NULL;
  int n = 0;
  rc = cifar10_read_batch(p, 0, &px, &lb, &n, err, sizeof err);
  CHECK_ERR(rc, "empty.bin", "empty");
  free(px), free(lb);

  c = base_cfg(DATA_CIFAR10, good_dir);
  c.n_train = 16;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, good_dir, "n_train = 16 but data_batch_1..5.bin");
  CHECK(strstr(err, "hold 15 samples") != NULL, "cifar n_train message: %s", err);
  c.n_train = 0, c.n_test = 5;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "test_batch.bin", "n_test = 5 but");

  c = base_cfg(DATA_CIFAR10, "/nonexistent/cifar");
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK_ERR(rc, "/nonexistent/cifar/data_batch_1.bin", "not found");
}

static void test_fashion_mnist(void) {
  struct stat st;
  if (stat(DATA_FASHION_MNIST_DEFAULT_DIR, &st) != 0) {
    printf("skipping Fashion-MNIST: %s not installed\n", DATA_FASHION_MNIST_DEFAULT_DIR);
    return;
  }
  Dataset tr, te;
  DataConfig c = base_cfg(DATA_FASHION_MNIST, ""); /* empty dir: the package's default */
  c.n_train = 1000, c.n_test = 500;
  int rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0, "Fashion-MNIST load: %s", err);
  if (rc) return;
  CHECK(tr.n == 1000 && te.n == 500 && tr.d == 784 && tr.k == 10 && te.d == 784 &&
            tr.channels == 1 && tr.height == 28 && tr.width == 28,
        "Fashion-MNIST shapes n=%d/%d d=%d k=%d", tr.n, te.n, tr.d, tr.k);
  int badl = 0, seen[10] = {0};
  for (int a = 0; a < tr.n; a++) {
    badl += tr.label[a] < 0 || tr.label[a] > 9;
    if (tr.label[a] >= 0 && tr.label[a] <= 9) seen[tr.label[a]] = 1;
  }
  for (int a = 0; a < te.n; a++) badl += te.label[a] < 0 || te.label[a] > 9;
  int nseen = 0;
  for (int i = 0; i < 10; i++) nseen += seen[i];
  CHECK(badl == 0 && nseen == 10, "Fashion-MNIST labels in 0..9 (%d bad), all classes present (%d)",
        badl, nseen);
  double lo = 1, hi = 0, sum = 0;
  for (size_t i = 0; i < (size_t)tr.n * 784; i++) {
    lo = fmin(lo, tr.x[i]), hi = fmax(hi, tr.x[i]), sum += tr.x[i];
  }
  CHECK(lo == 0 && hi == 1 && sum / (tr.n * 784.0) > 0.1 && sum / (tr.n * 784.0) < 0.6,
        "Fashion-MNIST pixels in [0,1]: min %g max %g mean %g", lo, hi, sum / (tr.n * 784.0));
  data_free(&tr), data_free(&te);
  c.standardize = true;
  rc = data_load(&tr, &te, &c, err, sizeof err);
  CHECK(rc == 0 && tu_all_finite(tr.x, (size_t)tr.n * 784) && tu_all_finite(te.x, (size_t)te.n * 784),
        "standardised Fashion-MNIST is finite: %s", rc ? err : "");
  data_free(&tr), data_free(&te);
}

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmp, sizeof tmp, "%s/ntk_test_data_XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 2;
  }
  char gzdir[512], rawdir[512], bothdir[512], cifdir[512], cifpart[512];
  snprintf(gzdir, sizeof gzdir, "%s/gz", tmp);
  snprintf(rawdir, sizeof rawdir, "%s/raw", tmp);
  snprintf(bothdir, sizeof bothdir, "%s/both", tmp);
  snprintf(cifdir, sizeof cifdir, "%s/cifar", tmp);
  snprintf(cifpart, sizeof cifpart, "%s/cifar_part", tmp);
  make_dir(gzdir), make_idx_dir(gzdir, 1, 0);
  make_dir(rawdir), make_idx_dir(rawdir, 0, 0);
  make_dir(bothdir), make_idx_dir(bothdir, 1, 0), make_idx_dir(bothdir, 0, 2);
  make_dir(cifdir), make_cifar_dir(cifdir, 5);
  make_dir(cifpart), make_cifar_dir(cifpart, 2);

  test_names();
  test_idx_readers(gzdir, 1);
  test_idx_readers(rawdir, 0);
  test_idx_load(gzdir, "gzip IDX");
  test_idx_load(rawdir, "raw IDX");
  test_gz_preferred(bothdir);
  test_standardize(gzdir);
  test_cifar(cifdir, cifpart);
  test_teacher();
  errors_idx(gzdir);
  errors_cifar(cifdir);
  test_fashion_mnist();

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  return tu_report("test_data");
}
