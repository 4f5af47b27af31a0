/* Dataset readers (IDX for Fashion-MNIST / MNIST, CIFAR-10 binary batches) and the synthetic
 * teacher-student set. Plain C + zlib: no PETSc, no MPI, so the readers can be fuzzed alone.
 *
 * Robustness rules (the readers are fuzzed):
 *   - every size derived from a header is checked for overflow before use;
 *   - buffers grow geometrically as bytes actually arrive, so a header that claims 2^31 images
 *     in a 100-byte file costs at most a small allocation, never one sized from the header;
 *   - every failure returns -1 with ONE line "data file PATH: what is wrong".
 */
#include "data.h"
#include "errbuf.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rng.h"

#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAX_PIXELS (1u << 24) /* rows*cols cap: far above any image set, far below overflow */
#define CIFAR_PIXELS 3072         /* 3 x 32 x 32, channel-major */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_CLASSES 10
#define READ_CHUNK0 ((size_t)1 << 16) /* first buffer size; doubles as data arrives */

/* Teacher-student streams. The named streams of rng.h are small integers (< 2^32), and
 * RNG_STREAM_TEACHER_W + 1 would be RNG_STREAM_AUGMENT, so sub-streams of a teacher stream put
 * their index in the HIGH 32-bit word of the stream (counter word 3): they can never collide with
 * a named stream or a parameter tensor stream. */
#define TEACHER_SUB(base, t) ((uint64_t)(base) + ((uint64_t)(t) << 32))
#define TEACHER_STREAM_U TEACHER_SUB(RNG_STREAM_TEACHER_W, 0)     /* U: width x d */
#define TEACHER_STREAM_V TEACHER_SUB(RNG_STREAM_TEACHER_W, 1)     /* V: k x width */
#define TEACHER_STREAM_NOISE TEACHER_SUB(RNG_STREAM_TEACHER_X, 1) /* label noise: n x k */
#define TEACHER_BLOCK 256 /* samples per GEMM block (bounds the hidden-activation scratch) */

/* ------------------------------------------------------------------ small helpers */


/* *out = a * b; false on size_t overflow. */
static bool mul_size(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return false;
  *out = a * b;
  return true;
}

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* What an existing path that is not a regular file is ("a directory", "a FIFO"), or NULL. */
static const char *non_regular(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0 || S_ISREG(st.st_mode)) return NULL;
  return S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device"
                                                                                                       : "not a regular file";
}

static gzFile open_data(const char *path, char *err, size_t errlen) {
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f)
    errbuf_set(err, errlen, "data file %s: cannot open: %s", path,
         errno ? strerror(errno) : "out of memory");
  else
    gzbuffer(f, 1u << 17);
  return f;
}

/* Reads up to want bytes into buf. *got < want means the data ended (a truncation the caller
 * reports with its own context). Returns -1 only on a read or gzip decoding error. */
static int read_bytes(gzFile f, const char *path, unsigned char *buf, size_t want, size_t *got,
                      char *err, size_t errlen) {
  size_t have = 0;
  while (have < want) {
    size_t chunk = want - have;
    if (chunk > (1u << 30)) chunk = 1u << 30; /* gzread takes an unsigned and returns an int */
    int r = gzread(f, buf + have, (unsigned)chunk);
    if (r <= 0) {
      int errnum = Z_OK;
      const char *msg = gzerror(f, &errnum);
      /* Z_BUF_ERROR is a gzip stream that simply stops: a truncation, reported by the caller. */
      if (errnum == Z_ERRNO)
        return errbuf_set(err, errlen, "data file %s: read error: %s", path, strerror(errno));
      if (errnum != Z_OK && errnum != Z_BUF_ERROR) {
        size_t pl = strlen(path); /* zlib prefixes its message with "path: " */
        if (msg && strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ') msg += pl + 2;
        return errbuf_set(err, errlen, "data file %s: corrupt gzip data (%s)", path,
                    msg && *msg ? msg : "zlib error");
      }
      break;
    }
    have += (size_t)r;
  }
  *got = have;
  return 0;
}

/* Suffix for a truncation message: says whether the gzip stream itself was cut. */
static const char *gz_trunc_note(gzFile f) {
  int errnum = Z_OK;
  gzerror(f, &errnum);
  return errnum == Z_BUF_ERROR ? " (gzip stream ends early)" : "";
}

/* Reads exactly total bytes into a malloc'd buffer that grows as data arrives (never sized from
 * the header alone). On a short read returns -1 with "truncated: expected total bytes of what". */
static int read_payload(gzFile f, const char *path, size_t total, const char *what,
                        unsigned char **out, char *err, size_t errlen) {
  *out = NULL;
  size_t cap = total < READ_CHUNK0 ? total : READ_CHUNK0, have = 0;
  unsigned char *buf = malloc(cap ? cap : 1); /* [cap] bytes */
  if (!buf) return errbuf_set(err, errlen, "data file %s: out of memory", path);
  while (have < total) {
    if (have == cap) {
      size_t ncap = cap > (total - cap) ? total : 2 * cap;
      unsigned char *nb = realloc(buf, ncap);
      if (!nb) {
        free(buf);
        return errbuf_set(err, errlen, "data file %s: out of memory (%zu bytes)", path, ncap);
      }
      buf = nb;
      cap = ncap;
    }
    size_t got = 0;
    if (read_bytes(f, path, buf + have, cap - have, &got, err, errlen)) {
      free(buf);
      return -1;
    }
    have += got;
    if (have < cap) { /* data ended before the buffer filled */
      free(buf);
      return errbuf_set(err, errlen, "data file %s: truncated: expected %zu bytes of %s, found %zu%s",
                  path, total, what, have, gz_trunc_note(f));
    }
  }
  *out = buf;
  return 0;
}

/* Reads the IDX header (magic + ndims big-endian 32-bit counts) into dims[ndims]. */
static int read_idx_header(gzFile f, const char *path, uint32_t magic, int ndims, const char *kind,
                           uint32_t *dims, char *err, size_t errlen) {
  unsigned char h[16];
  size_t want = 4 + 4 * (size_t)ndims, got = 0;
  if (read_bytes(f, path, h, want, &got, err, errlen)) return -1;
  if (got >= 4 && be32(h) != magic) {
    uint32_t m = be32(h);
    const char *hint = m == IDX_MAGIC_LABELS ? "; this is an IDX labels file"
                     : m == IDX_MAGIC_IMAGES ? "; this is an IDX images file" : "";
    return errbuf_set(err, errlen, "data file %s: wrong magic 0x%08x (expected 0x%08x for IDX %s%s)",
                path, (unsigned)m, (unsigned)magic, kind, hint);
  }
  if (got < want)
    return errbuf_set(err, errlen, "data file %s: truncated header: expected %zu bytes, found %zu%s",
                path, want, got, gz_trunc_note(f));
  for (int i = 0; i < ndims; i++) dims[i] = be32(h + 4 + 4 * i);
  return 0;
}

/* Count from the header, checked: 1..INT_MAX. */
static int check_count(const char *path, uint32_t n, const char *what, char *err, size_t errlen) {
  if (n == 0) return errbuf_set(err, errlen, "data file %s: header says 0 %s", path, what);
  if (n > (uint32_t)INT_MAX)
    return errbuf_set(err, errlen, "data file %s: header says %u %s (more than %d)", path, (unsigned)n,
                what, INT_MAX);
  return 0;
}

/* ------------------------------------------------------------------ IDX */

/* idx_read_images plus the image count the header declares (*n_header), which the loader needs
 * to match against the labels file even when only a subset is read. */
static int idx_images_impl(const char *path, int max_n, uint8_t **pixels, int *n, int *rows,
                           int *cols, int *n_header, char *err, size_t errlen) {
  *pixels = NULL;
  *n = *rows = *cols = *n_header = 0;
  if (max_n < 0) return errbuf_set(err, errlen, "data file %s: negative sample limit %d", path, max_n);
  gzFile f = open_data(path, err, errlen);
  if (!f) return -1;
  uint32_t dims[3] = {0, 0, 0};
  int rc = read_idx_header(f, path, IDX_MAGIC_IMAGES, 3, "images", dims, err, errlen);
  if (!rc) rc = check_count(path, dims[0], "images", err, errlen);
  if (!rc && (dims[1] == 0 || dims[2] == 0 || dims[1] > IDX_MAX_PIXELS || dims[2] > IDX_MAX_PIXELS ||
              (uint64_t)dims[1] * dims[2] > IDX_MAX_PIXELS))
    rc = errbuf_set(err, errlen, "data file %s: bad image size %u x %u (need 1 <= rows*cols <= %u)", path,
              (unsigned)dims[1], (unsigned)dims[2], (unsigned)IDX_MAX_PIXELS);
  if (rc) {
    gzclose(f);
    return -1;
  }
  int nh = (int)dims[0];
  int nuse = (max_n > 0 && max_n < nh) ? max_n : nh; /* never more than the header says */
  size_t per = (size_t)dims[1] * dims[2], total;
  if (!mul_size((size_t)nuse, per, &total)) {
    gzclose(f);
    return errbuf_set(err, errlen, "data file %s: %d images of %zu pixels overflow memory size", path,
                nuse, per);
  }
  unsigned char *buf = NULL; /* [nuse x rows*cols] */
  rc = read_payload(f, path, total, "pixels", &buf, err, errlen);
  gzclose(f);
  if (rc) return -1;
  *pixels = buf;
  *n = nuse;
  *rows = (int)dims[1];
  *cols = (int)dims[2];
  *n_header = nh;
  return 0;
}

int idx_read_images(const char *path, int max_n, uint8_t **pixels, int *n, int *rows, int *cols,
                    char *err, size_t errlen) {
  int nh;
  return idx_images_impl(path, max_n, pixels, n, rows, cols, &nh, err, errlen);
}

static int idx_labels_impl(const char *path, int max_n, int n_classes, uint8_t **labels, int *n,
                           int *n_header, char *err, size_t errlen) {
  *labels = NULL;
  *n = *n_header = 0;
  if (max_n < 0) return errbuf_set(err, errlen, "data file %s: negative sample limit %d", path, max_n);
  if (n_classes < 1 || n_classes > 256)
    return errbuf_set(err, errlen, "data file %s: n_classes = %d must be in 1..256", path, n_classes);
  gzFile f = open_data(path, err, errlen);
  if (!f) return -1;
  uint32_t dims[1] = {0};
  int rc = read_idx_header(f, path, IDX_MAGIC_LABELS, 1, "labels", dims, err, errlen);
  if (!rc) rc = check_count(path, dims[0], "labels", err, errlen);
  if (rc) {
    gzclose(f);
    return -1;
  }
  int nh = (int)dims[0];
  int nuse = (max_n > 0 && max_n < nh) ? max_n : nh;
  unsigned char *buf = NULL; /* [nuse] */
  rc = read_payload(f, path, (size_t)nuse, "labels", &buf, err, errlen);
  gzclose(f);
  if (rc) return -1;
  for (int i = 0; i < nuse; i++)
    if (buf[i] >= n_classes) {
      errbuf_set(err, errlen, "data file %s: label %u at index %d out of range [0, %d]", path,
           (unsigned)buf[i], i, n_classes - 1);
      free(buf);
      return -1;
    }
  *labels = buf;
  *n = nuse;
  *n_header = nh;
  return 0;
}

int idx_read_labels(const char *path, int max_n, int n_classes, uint8_t **labels, int *n,
                    char *err, size_t errlen) {
  int nh;
  return idx_labels_impl(path, max_n, n_classes, labels, n, &nh, err, errlen);
}

/* ------------------------------------------------------------------ CIFAR-10 */

int cifar10_read_batch(const char *path, int max_n, uint8_t **pixels, uint8_t **labels, int *n,
                       char *err, size_t errlen) {
  if (!pixels || !labels || !n || *n < 0 || max_n < 0)
    return errbuf_set(err, errlen, "data file %s: bad arguments to cifar10_read_batch", path);
  if (max_n > 0 && *n >= max_n) return 0; /* already have enough: do not even open the file */
  gzFile f = open_data(path, err, errlen);
  if (!f) return -1;
  /* A raw file's size is known up front; a gzip one is checked as its records arrive. */
  if (gzdirect(f)) {
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size % CIFAR_RECORD != 0) {
      gzclose(f);
      return errbuf_set(err, errlen,
                  "data file %s: corrupt: size %lld bytes is not a multiple of the %d-byte record",
                  path, (long long)st.st_size, CIFAR_RECORD);
    }
  }
  int want = max_n > 0 ? max_n - *n : INT_MAX - *n; /* records still to append */
  int n0 = *n, have = 0, cap = n0;
  unsigned char rec[CIFAR_RECORD];
  int rc = 0;
  while (have < want) {
    size_t got = 0;
    if (read_bytes(f, path, rec, CIFAR_RECORD, &got, err, errlen)) {
      rc = -1;
      break;
    }
    if (got == 0) break; /* clean end at a record boundary */
    if (got < CIFAR_RECORD) {
      rc = errbuf_set(err, errlen,
                "data file %s: corrupt: size %lld bytes is not a multiple of the %d-byte record%s",
                path, (long long)have * CIFAR_RECORD + (long long)got, CIFAR_RECORD,
                gz_trunc_note(f));
      break;
    }
    if (rec[0] >= CIFAR_CLASSES) {
      rc = errbuf_set(err, errlen, "data file %s: label %u in record %d out of range [0, %d]", path,
                (unsigned)rec[0], have, CIFAR_CLASSES - 1);
      break;
    }
    if (n0 + have == cap) { /* grow both arrays geometrically, as records arrive */
      int add = cap - n0 < 1024 ? 1024 : cap - n0;
      if (add > want - have) add = want - have;
      size_t ncap = (size_t)cap + (size_t)add, bytes;
      if (!mul_size(ncap, CIFAR_PIXELS, &bytes)) {
        rc = errbuf_set(err, errlen, "data file %s: too many records for memory", path);
        break;
      }
      uint8_t *np = realloc(*pixels, bytes); /* [ncap x 3072] */
      if (np) *pixels = np;
      uint8_t *nl = np ? realloc(*labels, ncap) : NULL; /* [ncap] */
      if (nl) *labels = nl;
      if (!np || !nl) {
        rc = errbuf_set(err, errlen, "data file %s: out of memory", path);
        break;
      }
      cap = (int)ncap;
    }
    size_t at = (size_t)(n0 + have);
    (*labels)[at] = rec[0];
    memcpy(*pixels + at * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
    have++;
  }
  if (!rc && have == 0)
    rc = errbuf_set(err, errlen, "data file %s: empty: no %d-byte records", path, CIFAR_RECORD);
  gzclose(f);
  if (rc) return -1; /* *n unchanged: the arrays stay valid and owned by the caller */
  *n = n0 + have;
  return 0;
}

/* ------------------------------------------------------------------ names */

static const char *const kind_names[DATA_COUNT] = {"fashion_mnist", "mnist", "cifar10", "teacher", "uv"};

const char *data_kind_name(DataKind k) {
  return (k >= 0 && k < DATA_COUNT) ? kind_names[k] : "unknown";
}

int data_kind_from_name(const char *name) {
  if (!name) return -1;
  for (int i = 0; i < DATA_COUNT; i++)
    if (strcmp(name, kind_names[i]) == 0) return i;
  return -1;
}

/* ------------------------------------------------------------------ dataset assembly */

void data_free(Dataset *ds) {
  if (!ds) return;
  if (!ds->borrowed) {
    free(ds->x);
    free(ds->y);
    free(ds->label);
  }
  memset(ds, 0, sizeof *ds);
}

/* Allocates x (n x d), y (n x k), label (n) and sets the shape. */
static int dataset_alloc(Dataset *ds, int n, int k, int c, int h, int w, char *err, size_t errlen) {
  memset(ds, 0, sizeof *ds);
  size_t d = (size_t)c * h * w, nd, nk;
  if (n <= 0 || d == 0 || d > INT_MAX || k <= 0 || !mul_size((size_t)n, d, &nd) ||
      !mul_size(nd, sizeof(double), &nd) || !mul_size((size_t)n, (size_t)k, &nk) ||
      !mul_size(nk, sizeof(double), &nk))
    return errbuf_set(err, errlen, "data: dataset of %d samples x %zu features x %d targets is too large",
                n, d, k);
  ds->x = malloc(nd);
  ds->y = calloc((size_t)n * k, sizeof(double));
  ds->label = malloc((size_t)n * sizeof(int));
  if (!ds->x || !ds->y || !ds->label) {
    data_free(ds);
    return errbuf_set(err, errlen, "data: out of memory for %d samples x %zu features", n, d);
  }
  ds->n = n;
  ds->d = (int)d;
  ds->k = k;
  ds->channels = c;
  ds->height = h;
  ds->width = w;
  return 0;
}

/* x = byte/255 and one-hot targets from class labels. */
static void fill_from_bytes(Dataset *ds, const uint8_t *pix /* n x d */, const uint8_t *lab /* n */) {
  size_t nd = (size_t)ds->n * ds->d;
  for (size_t i = 0; i < nd; i++) ds->x[i] = pix[i] / 255.0;
  for (int a = 0; a < ds->n; a++) {
    ds->label[a] = lab[a];
    ds->y[(size_t)a * ds->k + lab[a]] = 1.0;
  }
}

/* "dir/base.gz" if it exists, else "dir/base" if it exists (gzip preferred when both do): *out
 * malloc'd (the caller frees it, also on failure). */
static int find_idx_file(char **out, const char *dir, const char *base, char *err, size_t errlen) {
  char *gz = str_printf("%s/%s.gz", dir, base), *plain = str_printf("%s/%s", dir, base);
  int rc = 0;
  *out = NULL;
  if (!gz || !plain) rc = errbuf_set(err, errlen, "data directory %s: out of memory", dir);
  else if (file_exists(gz)) *out = gz, gz = NULL;
  else if (file_exists(plain)) *out = plain, plain = NULL;
  else if (non_regular(plain)) rc = errbuf_set(err, errlen, "data file %s: is %s, not a regular file", plain, non_regular(plain));
  else if (non_regular(gz)) rc = errbuf_set(err, errlen, "data file %s: is %s, not a regular file", gz, non_regular(gz));
  else rc = errbuf_set(err, errlen, "data file %s: not found (nor %s)", gz, plain);
  free(gz);
  free(plain);
  return rc;
}

static int load_idx_files(Dataset *ds, const char *ipath, const char *lpath, int n_req, const char *setting, char *err, size_t errlen);

/* One IDX split: images + labels, counts must agree, first n_req samples (0 = all). */
static int load_idx_split(Dataset *ds, const char *dir, const char *img_base, const char *lab_base,
                          int n_req, const char *setting, char *err, size_t errlen) {
  char *ipath = NULL, *lpath = NULL;
  if (find_idx_file(&ipath, dir, img_base, err, errlen) || find_idx_file(&lpath, dir, lab_base, err, errlen)) {
    free(ipath);
    return -1;
  }
  const int rc = load_idx_files(ds, ipath, lpath, n_req, setting, err, errlen);
  free(ipath);
  free(lpath);
  return rc;
}

static int load_idx_files(Dataset *ds, const char *ipath, const char *lpath, int n_req, const char *setting, char *err, size_t errlen) {
  uint8_t *lab = NULL, *pix = NULL; /* [nl], [ni x rows*cols] */
  int nl, nl_hdr, ni, ni_hdr, rows, cols;
  if (idx_labels_impl(lpath, n_req, 10, &lab, &nl, &nl_hdr, err, errlen)) return -1;
  if (idx_images_impl(ipath, n_req, &pix, &ni, &rows, &cols, &ni_hdr, err, errlen)) {
    free(lab);
    return -1;
  }
  int rc = 0;
  if (ni_hdr != nl_hdr)
    rc = errbuf_set(err, errlen, "data file %s: count mismatch: %d images but %s has %d labels", ipath,
              ni_hdr, lpath, nl_hdr);
  else if (n_req > ni_hdr)
    rc = errbuf_set(err, errlen, "%s = %d but %s holds %d samples", setting, n_req, ipath, ni_hdr);
  else if (ni != nl) /* cannot happen with equal headers; guards fill_from_bytes regardless */
    rc = errbuf_set(err, errlen, "data file %s: read %d images but %d labels", ipath, ni, nl);
  else if (rows != 28 || cols != 28)
    rc = errbuf_set(err, errlen, "data file %s: images are %d x %d, expected 28 x 28", ipath, rows, cols);
  if (!rc) rc = dataset_alloc(ds, ni, 10, 1, rows, cols, err, errlen);
  if (!rc) fill_from_bytes(ds, pix, lab);
  free(pix);
  free(lab);
  return rc;
}

/* CIFAR-10: train from data_batch_1..5.bin (read in order, stop once n_req are in), test from
 * test_batch.bin. */
static int load_cifar_split(Dataset *ds, const char *dir, bool train, int n_req,
                            const char *setting, char *err, size_t errlen) {
  uint8_t *pix = NULL, *lab = NULL; /* [n x 3072], [n] grown by cifar10_read_batch */
  int n = 0, rc = 0, nfiles = train ? 5 : 1;
  for (int b = 0; b < nfiles && !rc && (n_req == 0 || n < n_req); b++) {
    char *path = train ? str_printf("%s/data_batch_%d.bin", dir, b + 1) : str_printf("%s/test_batch.bin", dir);
    if (!path)
      rc = errbuf_set(err, errlen, "data directory %s: out of memory", dir);
    else if (non_regular(path))
      rc = errbuf_set(err, errlen, "data file %s: is %s, not a regular file", path, non_regular(path));
    else if (!file_exists(path))
      rc = errbuf_set(err, errlen, "data file %s: not found", path);
    else
      rc = cifar10_read_batch(path, n_req, &pix, &lab, &n, err, errlen);
    free(path);
  }
  if (!rc && n_req > n)
    rc = errbuf_set(err, errlen, "%s = %d but %s in %s hold%s %d samples", setting, n_req,
              train ? "data_batch_1..5.bin" : "test_batch.bin", dir, train ? "" : "s", n);
  if (!rc) rc = dataset_alloc(ds, n, CIFAR_CLASSES, 3, 32, 32, err, errlen);
  if (!rc) fill_from_bytes(ds, pix, lab);
  free(pix);
  free(lab);
  return rc;
}

/* The uv model's data (docs/conventions.md "uv model"): one sample (x, y) = (1, 0) in both
 * splits. */
static int load_uv(Dataset *train, Dataset *test, char *err, size_t errlen) {
  if (dataset_alloc(train, 1, 1, 1, 1, 1, err, errlen) || dataset_alloc(test, 1, 1, 1, 1, 1, err, errlen)) return -1;
  Dataset *split[2] = {train, test};
  for (int s = 0; s < 2; s++) {
    split[s]->x[0] = 1.0;
    split[s]->y[0] = 0.0;
    split[s]->label[0] = -1;
  }
  return 0;
}

/* Teacher-student regression set (see data.h / the task notes):
 *   x ~ N(0, I_d): stream RNG_STREAM_TEACHER_X, index = global_sample * d + feature, train first;
 *   y = V phi(U x / sqrt(d)) / sqrt(width) + noise * N(0,1) on train and test alike;
 *   U[i][j] index i*d + j on TEACHER_STREAM_U, V[o][i] index o*width + i on TEACHER_STREAM_V,
 *   noise index global_sample * k + o on TEACHER_STREAM_NOISE. */
static int load_teacher(Dataset *train, Dataset *test, const DataConfig *cfg, char *err,
                        size_t errlen) {
  int d = cfg->teacher_dim, w = cfg->teacher_width, k = cfg->teacher_outputs;
  if (d <= 0) return errbuf_set(err, errlen, "teacher_dim = %d must be positive", d);
  if (w <= 0) return errbuf_set(err, errlen, "teacher_width = %d must be positive", w);
  if (k <= 0) return errbuf_set(err, errlen, "teacher_outputs = %d must be positive", k);
  if (cfg->n_train <= 0)
    return errbuf_set(err, errlen, "n_train = %d: the teacher-student set needs n_train > 0",
                cfg->n_train);
  if (cfg->n_test <= 0)
    return errbuf_set(err, errlen, "n_test = %d: the teacher-student set needs n_test > 0", cfg->n_test);
  if ((int)cfg->teacher_act < 0 || cfg->teacher_act >= ACT_COUNT)
    return errbuf_set(err, errlen, "teacher_act = %d is not a known activation", (int)cfg->teacher_act);
  if (!(cfg->teacher_noise >= 0) || !isfinite(cfg->teacher_noise))
    return errbuf_set(err, errlen, "teacher_noise = %g must be finite and >= 0", cfg->teacher_noise);
  size_t nu, nv, nh;
  if (!mul_size((size_t)w, (size_t)d, &nu) || !mul_size(nu, sizeof(double), &nu) ||
      !mul_size((size_t)k, (size_t)w, &nv) || !mul_size(nv, sizeof(double), &nv) ||
      !mul_size((size_t)TEACHER_BLOCK, (size_t)w, &nh) || !mul_size(nh, sizeof(double), &nh))
    return errbuf_set(err, errlen, "teacher of width %d on %d inputs is too large", w, d);
  if (dataset_alloc(train, cfg->n_train, k, 1, 1, d, err, errlen) ||
      dataset_alloc(test, cfg->n_test, k, 1, 1, d, err, errlen))
    return -1;
  double *U = malloc(nu);                        /* width x d */
  double *V = malloc(nv);                        /* k x width */
  double *H = malloc(nh);                        /* TEACHER_BLOCK x width scratch */
  double *noise = malloc((size_t)TEACHER_BLOCK * k * sizeof(double)); /* TEACHER_BLOCK x k */
  if (!U || !V || !H || !noise) {
    free(U), free(V), free(H), free(noise);
    return errbuf_set(err, errlen, "teacher of width %d on %d inputs: out of memory", w, d);
  }
  uint64_t seed = cfg->teacher_seed;
  rng_normal_fill(train->x, (size_t)train->n * d, seed, RNG_STREAM_TEACHER_X, 0);
  rng_normal_fill(test->x, (size_t)test->n * d, seed, RNG_STREAM_TEACHER_X, (uint64_t)train->n * d);
  rng_normal_fill(U, (size_t)w * d, seed, TEACHER_STREAM_U, 0);
  rng_normal_fill(V, (size_t)k * w, seed, TEACHER_STREAM_V, 0);
  Dataset *split[2] = {train, test};
  uint64_t global0 = 0; /* global index of the split's first sample (train first, then test) */
  for (int s = 0; s < 2; s++) {
    Dataset *ds = split[s];
    for (int a0 = 0; a0 < ds->n; a0 += TEACHER_BLOCK) {
      int B = ds->n - a0 < TEACHER_BLOCK ? ds->n - a0 : TEACHER_BLOCK;
      const double *X = ds->x + (size_t)a0 * d; /* B x d */
      double *Y = ds->y + (size_t)a0 * k;       /* B x k */
      /* H = X U^T / sqrt(d), then phi, then Y = H V^T / sqrt(width) */
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, w, d, 1.0 / sqrt((double)d), X, d,
                  U, d, 0.0, H, w);
      for (size_t i = 0; i < (size_t)B * w; i++) H[i] = act_value(H[i], cfg->teacher_act);
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, k, w, 1.0 / sqrt((double)w), H, w,
                  V, w, 0.0, Y, k);
      if (cfg->teacher_noise > 0) {
        rng_normal_fill(noise, (size_t)B * k, seed, TEACHER_STREAM_NOISE,
                        (global0 + (uint64_t)a0) * (uint64_t)k);
        for (size_t i = 0; i < (size_t)B * k; i++) Y[i] += cfg->teacher_noise * noise[i];
      }
    }
    for (int a = 0; a < ds->n; a++) ds->label[a] = -1; /* regression: no class */
    global0 += (uint64_t)ds->n;
  }
  free(U), free(V), free(H), free(noise);
  return 0;
}

/* Per-feature mean/std (population, 1/n) of train, applied to train and test. A feature with
 * std < 1e-8 (e.g. an always-black border pixel) is only centred, so nothing becomes NaN/inf. */
static int standardize(Dataset *train, Dataset *test, char *err, size_t errlen) {
  int n = train->n, d = train->d;
  double *mean = calloc((size_t)d, sizeof(double)); /* d */
  double *scale = calloc((size_t)d, sizeof(double)); /* d: 1/std, or 1 for constant features */
  if (!mean || !scale) {
    free(mean), free(scale);
    return errbuf_set(err, errlen, "data: out of memory for standardisation of %d features", d);
  }
  for (int a = 0; a < n; a++)
    for (int j = 0; j < d; j++) mean[j] += train->x[(size_t)a * d + j];
  for (int j = 0; j < d; j++) mean[j] /= n;
  for (int a = 0; a < n; a++) /* two-pass variance: no cancellation */
    for (int j = 0; j < d; j++) {
      double c = train->x[(size_t)a * d + j] - mean[j];
      scale[j] += c * c;
    }
  for (int j = 0; j < d; j++) {
    double sd = sqrt(scale[j] / n);
    scale[j] = sd < 1e-8 ? 1.0 : 1.0 / sd;
  }
  Dataset *split[2] = {train, test};
  for (int s = 0; s < 2; s++)
    for (int a = 0; a < split[s]->n; a++) {
      double *x = split[s]->x + (size_t)a * d;
      for (int j = 0; j < d; j++) x[j] = (x[j] - mean[j]) * scale[j];
    }
  free(mean), free(scale);
  return 0;
}

int data_load(Dataset *train, Dataset *test, const DataConfig *cfg, char *err, size_t errlen) {
  if (!train || !test || !cfg) return errbuf_set(err, errlen, "data_load: NULL argument");
  memset(train, 0, sizeof *train);
  memset(test, 0, sizeof *test);
  if (cfg->n_train < 0) return errbuf_set(err, errlen, "n_train = %d must be >= 0", cfg->n_train);
  if (cfg->n_test < 0) return errbuf_set(err, errlen, "n_test = %d must be >= 0", cfg->n_test);
  const char *dir = cfg->dir ? cfg->dir : "";
  if (cfg->kind == DATA_FASHION_MNIST && !dir[0]) dir = DATA_FASHION_MNIST_DEFAULT_DIR;
  if (cfg->kind != DATA_TEACHER && cfg->kind != DATA_UV && !dir[0])
    return errbuf_set(err, errlen, "data: no directory given for %s", data_kind_name(cfg->kind));
  int rc;
  switch (cfg->kind) {
    case DATA_FASHION_MNIST:
    case DATA_MNIST:
      rc = load_idx_split(train, dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                          cfg->n_train, "n_train", err, errlen);
      if (!rc)
        rc = load_idx_split(test, dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                            cfg->n_test, "n_test", err, errlen);
      break;
    case DATA_CIFAR10:
      rc = load_cifar_split(train, dir, true, cfg->n_train, "n_train", err, errlen);
      if (!rc) rc = load_cifar_split(test, dir, false, cfg->n_test, "n_test", err, errlen);
      break;
    case DATA_TEACHER:
      rc = load_teacher(train, test, cfg, err, errlen);
      break;
    case DATA_UV:
      if (cfg->n_train > 1 || cfg->n_test > 1)
        return errbuf_set(err, errlen, "n_train = %d, n_test = %d: the uv data set is one sample", cfg->n_train, cfg->n_test);
      rc = load_uv(train, test, err, errlen);
      break;
    default:
      rc = errbuf_set(err, errlen, "data: unknown dataset kind %d", (int)cfg->kind);
  }
  /* One sample has no spread to standardise by: the uv data stay as docs/conventions.md defines
   * them. */
  if (!rc && cfg->standardize && cfg->kind != DATA_UV) rc = standardize(train, test, err, errlen);
  /* Classification only: regression targets are not one-hot. */
  if (!rc && cfg->center_targets && cfg->kind != DATA_TEACHER && cfg->kind != DATA_UV) {
    Dataset *split[2] = {train, test};
    for (int s = 0; s < 2; s++) {
      double c = 1.0 / split[s]->k;
      for (size_t i = 0; i < (size_t)split[s]->n * split[s]->k; i++) split[s]->y[i] -= c;
    }
  }
  if (rc) {
    data_free(train);
    data_free(test);
  }
  return rc;
}

/* The shapes data_load would give, without reading a file (the layout planner of a job whose data
 * live elsewhere): the image sets by their known sizes, the synthetic ones by generating them. */
int data_shape(Dataset *train, Dataset *test, const DataConfig *cfg, char *err, size_t errlen) {
  if (!train || !test || !cfg) return errbuf_set(err, errlen, "data_shape: NULL argument");
  if (cfg->kind == DATA_TEACHER || cfg->kind == DATA_UV) {
    int rc = data_load(train, test, cfg, err, errlen);
    if (rc) return rc;
    Dataset a = *train, b = *test;
    data_free(train), data_free(test);
    a.x = a.y = b.x = b.y = NULL, a.label = b.label = NULL;
    *train = a, *test = b;
    return 0;
  }
  memset(train, 0, sizeof *train);
  memset(test, 0, sizeof *test);
  const bool cifar = cfg->kind == DATA_CIFAR10;
  const int full_train = cifar ? 50000 : 60000, full_test = 10000;
  if (cfg->n_train < 0 || cfg->n_train > full_train) return errbuf_set(err, errlen, "option -n_train: %d exceeds the %d training samples of %s", cfg->n_train, full_train, data_kind_name(cfg->kind));
  if (cfg->n_test < 0 || cfg->n_test > full_test) return errbuf_set(err, errlen, "option -n_test: %d exceeds the %d test samples of %s", cfg->n_test, full_test, data_kind_name(cfg->kind));
  Dataset *split[2] = {train, test};
  for (int s = 0; s < 2; s++) {
    split[s]->n = s == 0 ? (cfg->n_train ? cfg->n_train : full_train) : (cfg->n_test ? cfg->n_test : full_test);
    split[s]->channels = cifar ? 3 : 1;
    split[s]->height = split[s]->width = cifar ? 32 : 28;
    split[s]->d = split[s]->channels * split[s]->height * split[s]->width;
    split[s]->k = 10;
  }
  return 0;
}
