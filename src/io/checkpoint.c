/* Checkpoint files (see checkpoint.h and docs/checkpoint.md).
 *
 * Serial HDF5 (the default sec2 driver, one writing rank) into "<file>.tmp", then fsync and
 * rename, then fsync of the directory: the rename is atomic, so a reader sees the previous
 * checkpoint or the new one, never a mixture. Numbers are stored in native layout; the machine
 * signature (byte order and struct sizes) is checked on reading. A 64-bit FNV-1a checksum over
 * every stored byte catches corruption that HDF5 itself (no checksums on raw data) would not. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <hdf5.h>
#include "errbuf.h"

/* ------------------------------------------------------------------ small helpers */

char *ckpt_sweep_path(const char *dir) { return str_printf("%s/sweep.h5", dir); }
char *ckpt_run_path(const char *dir, int run) { return str_printf("%s/run_%06d.h5", dir, run); }

/* Byte order and the sizes of the structs stored as bytes: a checkpoint is read only where it
 * means the same. */
static void machine_signature(char *buf, size_t len)
{
  const uint32_t one = 1;
  snprintf(buf, len, "%s-endian double%zu summary%zu instance%zu", *(const unsigned char *)&one ? "little" : "big", sizeof(double),
           sizeof(SummaryRow), sizeof(InstanceRow));
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}
#define FNV_START 0xcbf29ce484222325ull

/* A dataset's contribution to the file's checksum: the hash of its name and bytes. The checksum
 * is the sum of these, so it does not depend on the order datasets are written or read in. */
static uint64_t dataset_hash(const char *name, const void *p, size_t n)
{
  return fnv1a(fnv1a(FNV_START, name, strlen(name)), p, n);
}

int ckpt_make_dir(const char *dir, char *err, size_t errlen)
{
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      errbuf_set(err, errlen, "checkpoint directory %s is not a directory", dir);
      return -1;
    }
  } else if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
    errbuf_set(err, errlen, "checkpoint directory %s: cannot create it: %s", dir, strerror(errno));
    return -1;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    errbuf_set(err, errlen, "checkpoint directory %s is not writable: %s", dir, strerror(errno));
    return -1;
  }
  return 0;
}

void ckpt_remove_all(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    size_t l = strlen(n);
    bool ours = strcmp(n, "sweep.h5") == 0 || strcmp(n, "sweep.h5.tmp") == 0 ||
                (strncmp(n, "run_", 4) == 0 && ((l > 3 && strcmp(n + l - 3, ".h5") == 0) || (l > 7 && strcmp(n + l - 7, ".h5.tmp") == 0)));
    if (!ours) continue;
    char *path = str_printf("%s/%s", dir, n);
    if (path) unlink(path);
    free(path);
  }
  closedir(d);
}

/* ------------------------------------------------------------------ HDF5 writing */

typedef struct {
  hid_t file;
  uint64_t sum;
  int bad;
} Writer;

static void w_attr(Writer *w, const char *name, hid_t type, const void *val)
{
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = sp >= 0 ? H5Acreate2(w->file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
  if (a < 0 || H5Awrite(a, type, val) < 0) w->bad = 1;
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
}

static void w_attr_str(Writer *w, const char *name, const char *s)
{
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(s) + 1);
  w_attr(w, name, t, s);
  H5Tclose(t);
}

/* A rows x cols dataset of type (native double or bytes), checksummed. */
static void w_data(Writer *w, const char *name, hid_t type, size_t elem, int64_t rows, int64_t cols, const void *buf)
{
  hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
  hid_t sp = H5Screate_simple(2, dims, NULL);
  hid_t d = sp >= 0 ? H5Dcreate2(w->file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  if (d < 0 || (rows * cols > 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) w->bad = 1;
  w->sum += dataset_hash(name, buf, (size_t)(rows * cols) * elem);
  if (d >= 0) H5Dclose(d);
  if (sp >= 0) H5Sclose(sp);
}

static void w_doubles(Writer *w, const char *name, int64_t rows, int64_t cols, const double *buf)
{
  w_data(w, name, H5T_NATIVE_DOUBLE, sizeof(double), rows, cols, buf);
}

static int w_begin(Writer *w, const char *tmp, const char *kind, const char *deck)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  w->sum = 0;
  w->bad = 0;
  /* Built in memory (HDF5's core driver, no backing store) and written out by w_commit with plain
   * write(2): a full disk then fails in our write, never inside HDF5's close, which leaves a file it
   * could not flush open and crashes on it at exit. */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0) {
    if (fapl >= 0) H5Pclose(fapl);
    w->file = -1;
    return -1;
  }
  w->file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (w->file < 0) return -1;
  char sig[128];
  machine_signature(sig, sizeof sig);
  const int32_t version = CKPT_FORMAT_VERSION;
  w_attr_str(w, "format", "ntkhpc checkpoint");
  w_attr(w, "format_version", H5T_NATIVE_INT32, &version);
  w_attr_str(w, "kind", kind);
  w_attr_str(w, "machine", sig);
  w_data(w, "deck", H5T_NATIVE_CHAR, 1, 1, (int64_t)strlen(deck) + 1, deck);
  return w->bad ? -1 : 0;
}

/* Closes the in-memory file (nothing is written to disk: it cannot fail on a full disk). */
static void w_close(Writer *w)
{
  if (w->file >= 0) H5Fclose(w->file);
  w->file = -1;
}

/* The whole image to tmp, synced; 0, or -1 with errno set (tmp removed). */
static int write_image(const char *tmp, const void *buf, size_t len)
{
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0) return -1;
  const char *p = buf;
  while (len > 0) {
    const ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int saved = n < 0 ? errno : ENOSPC;
      close(fd);
      unlink(tmp);
      errno = saved;
      return -1;
    }
    p += n, len -= (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    const int saved = errno;
    unlink(tmp);
    errno = saved;
    return -1;
  }
  return 0;
}

/* Writes the file's image to tmp, fsyncs it and renames it to path, then fsyncs the directory. */
static int w_commit(Writer *w, const char *tmp, const char *path)
{
  w_attr(w, "checksum", H5T_NATIVE_UINT64, &w->sum);
  void *image = NULL;
  ssize_t len = -1;
  if (!w->bad && H5Fflush(w->file, H5F_SCOPE_GLOBAL) >= 0) len = H5Fget_file_image(w->file, NULL, 0);
  if (len > 0 && (image = malloc((size_t)len)) && H5Fget_file_image(w->file, image, (size_t)len) != len) len = -1;
  w_close(w);
  if (w->bad || len <= 0 || !image) {
    free(image);
    return -1;
  }
  const int rc = write_image(tmp, image, (size_t)len);
  free(image);
  if (rc) return -1;
  if (rename(tmp, path) != 0) return -1;
  char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
  if (slash) *slash = 0;
  const int fd = dir ? open(slash ? dir : ".", O_RDONLY) : -1;
  if (fd >= 0) {
    fsync(fd); /* the rename itself on disk */
    close(fd);
  }
  free(dir);
  return 0;
}

/* Commits a written checkpoint (rc 0) to path, or removes tmp and reports the failure; frees
 * both names. 0 or -1. */
static int w_finish(Writer *w, int rc, char *tmp, char *path, char *err, size_t errlen)
{
  if (w->file >= 0 && w_commit(w, tmp, path) == 0 && rc == 0) {
    free(tmp), free(path);
    return 0;
  }
  const int saved = errno;
  w_close(w);
  unlink(tmp);
  errno = saved;
  errbuf_set(err, errlen, "checkpoint %s: cannot write it (%s)", path, errno ? strerror(errno) : "HDF5 error");
  free(tmp), free(path);
  return -1;
}

int ckpt_write_run(const char *dir, const char *deck, const RunCheckpoint *c, char *err, size_t errlen)
{
  char name[CKPT_NAME_LEN + 16], *path = ckpt_run_path(dir, c->run), *tmp = path ? str_printf("%s.tmp", path) : NULL;
  if (!tmp) {
    free(path);
    return errbuf_set(err, errlen, "checkpoint of run %d in %s: out of memory", c->run, dir);
  }
  Writer w;
  int rc = w_begin(&w, tmp, "run", deck);
  const int64_t ints[4] = {c->run, c->status, c->next_step, c->n_params};
  w_data(&w, "ints", H5T_NATIVE_INT64, sizeof(int64_t), 1, 4, ints);
  w_doubles(&w, "stats", 1, CKPT_NSTATS, c->stats);
  for (int i = 0; i < c->n_arrays; i++)
    if (c->arrays[i].n > 0) {
      snprintf(name, sizeof name, "array.%s", c->arrays[i].name);
      w_doubles(&w, name, 1, c->arrays[i].n, c->arrays[i].data);
    }
  for (int i = 0; i < c->n_records && rc == 0; i++) { /* rows as [index, values...] */
    const CkptRecords *r = &c->records[i];
    const int64_t cols = 1 + r->width;
    double *m = malloc((size_t)(r->n * cols + 1) * sizeof *m);
    if (!m) {
      rc = -1;
      break;
    }
    for (int64_t j = 0; j < r->n; j++) {
      m[j * cols] = (double)r->index[j];
      memcpy(m + j * cols + 1, r->rows + j * r->width, (size_t)r->width * sizeof *m);
    }
    snprintf(name, sizeof name, "records.%s", r->group);
    w_doubles(&w, name, r->n, cols, m);
    free(m);
  }
  w_data(&w, "summary", H5T_NATIVE_UCHAR, 1, 1, sizeof(SummaryRow), &c->summary);
  return w_finish(&w, rc, tmp, path, err, errlen);
}

int ckpt_write_sweep(const char *dir, const char *deck, const char *job, int n, const InstanceRow *rows, const int32_t *measured, char *err,
                     size_t errlen)
{
  char *path = ckpt_sweep_path(dir), *tmp = path ? str_printf("%s.tmp", path) : NULL;
  if (!tmp) {
    free(path);
    return errbuf_set(err, errlen, "checkpoint %s/sweep.h5: out of memory", dir);
  }
  Writer w;
  if (w_begin(&w, tmp, "sweep", deck) == 0 && job) w_attr_str(&w, "job", job);
  const int64_t ni = n;
  w_data(&w, "ints", H5T_NATIVE_INT64, sizeof(int64_t), 1, 1, &ni);
  w_data(&w, "instances", H5T_NATIVE_UCHAR, 1, n, sizeof(InstanceRow), rows);
  w_data(&w, "measured", H5T_NATIVE_INT32, sizeof(int32_t), 1, n, measured);
  return w_finish(&w, 0, tmp, path, err, errlen);
}

/* ------------------------------------------------------------------ reading */

typedef struct {
  hid_t file;
  uint64_t sum;
  int bad;
} Reader;

static int64_t r_attr_int(Reader *r, const char *name, hid_t type)
{
  int64_t v = -1;
  hid_t a = H5Aopen(r->file, name, H5P_DEFAULT);
  if (a < 0 || H5Aread(a, type, &v) < 0) r->bad = 1;
  if (a >= 0) H5Aclose(a);
  return v;
}

static void r_attr_str(Reader *r, const char *name, char *buf, size_t len)
{
  buf[0] = 0;
  hid_t a = H5Aopen(r->file, name, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  if (t < 0 || H5Tget_class(t) != H5T_STRING || H5Tget_size(t) > len || H5Aread(a, t, buf) < 0) r->bad = 1;
  buf[len - 1] = 0;
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
}

/* Reads a rows x cols dataset whose shape must be as given (cols < 0: any, returned); malloc'd. */
static void *r_data(Reader *r, const char *name, hid_t type, size_t elem, int64_t rows, int64_t *cols)
{
  if (r->bad) return NULL;
  hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT);
  hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t dims[2] = {0, 0};
  void *buf = NULL;
  if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 ||
      (rows >= 0 && dims[0] != (hsize_t)rows) || (*cols >= 0 && dims[1] != (hsize_t)*cols)) {
    r->bad = 1;
  } else {
    size_t n = (size_t)(dims[0] * dims[1]);
    buf = calloc(n ? n : 1, elem);
    if (!buf || (n && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
      r->bad = 1;
      free(buf);
      buf = NULL;
    } else {
      r->sum += dataset_hash(name, buf, n * elem);
      *cols = (int64_t)dims[1];
    }
  }
  if (sp >= 0) H5Sclose(sp);
  if (d >= 0) H5Dclose(d);
  return buf;
}

/* Opens path and checks format, version, kind, machine and deck. 0 ok, 1 missing, -1 bad. */
static int r_begin(Reader *r, const char *path, const char *kind, const char *deck, char *err, size_t errlen)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  r->sum = 0;
  r->bad = 0;
  r->file = -1;
  if (access(path, F_OK) != 0) return 1;
  r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r->file < 0) {
    errbuf_set(err, errlen, "checkpoint %s: cannot read it (corrupt or truncated; remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  char fmt[64], k[16], sig[128], mine[128];
  r_attr_str(r, "format", fmt, sizeof fmt);
  int64_t version = r_attr_int(r, "format_version", H5T_NATIVE_INT64);
  r_attr_str(r, "kind", k, sizeof k);
  r_attr_str(r, "machine", sig, sizeof sig);
  machine_signature(mine, sizeof mine);
  if (r->bad || strcmp(fmt, "ntkhpc checkpoint") != 0) {
    errbuf_set(err, errlen, "checkpoint %s: not an ntkhpc checkpoint, or corrupt (remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  if (version != CKPT_FORMAT_VERSION || strcmp(k, kind) != 0) {
    errbuf_set(err, errlen, "checkpoint %s: format version %lld (%s), this ntkhpc reads version %d (%s)", path, (long long)version, k,
           CKPT_FORMAT_VERSION, kind);
    return -1;
  }
  if (strcmp(sig, mine) != 0) {
    errbuf_set(err, errlen, "checkpoint %s: written on a different architecture (%s; this machine: %s)", path, sig, mine);
    return -1;
  }
  int64_t dl = -1;
  char *theirs = r_data(r, "deck", H5T_NATIVE_CHAR, 1, 1, &dl);
  if (!theirs || dl < 1) {
    free(theirs);
    errbuf_set(err, errlen, "checkpoint %s: cannot read its deck (corrupt or truncated)", path);
    return -1;
  }
  theirs[dl - 1] = 0;
  char key[128];
  int diff = ckpt_deck_diff(deck, theirs, key, sizeof key);
  free(theirs);
  if (diff) {
    errbuf_set(err, errlen, "checkpoint %s: written by a different deck (option %s differs); give -overwrite to start afresh", path, key);
    return -1;
  }
  return 0;
}

static int r_end(Reader *r, const char *path, char *err, size_t errlen)
{
  uint64_t stored = 0;
  if (!r->bad) {
    hid_t a = H5Aopen(r->file, "checksum", H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_UINT64, &stored) < 0) r->bad = 1;
    if (a >= 0) H5Aclose(a);
  }
  if (H5Fclose(r->file) < 0) r->bad = 1;
  r->file = -1;
  if (r->bad) {
    errbuf_set(err, errlen, "checkpoint %s: cannot read it (corrupt or truncated; remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  if (stored != r->sum) {
    errbuf_set(err, errlen, "checkpoint %s: checksum mismatch (corrupt; remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  return 0;
}

void ckpt_run_free(RunCheckpoint *c)
{
  for (int i = 0; i < c->n_arrays; i++) free(c->arrays[i].data);
  for (int i = 0; i < c->n_records; i++) free(c->records[i].index), free(c->records[i].rows);
  memset(c, 0, sizeof *c);
}

const CkptArray *ckpt_array(const RunCheckpoint *c, const char *name)
{
  for (int i = 0; i < c->n_arrays; i++)
    if (strcmp(c->arrays[i].name, name) == 0) return &c->arrays[i];
  return NULL;
}

const CkptRecords *ckpt_records(const RunCheckpoint *c, const char *group)
{
  for (int i = 0; i < c->n_records; i++)
    if (strcmp(c->records[i].group, group) == 0) return &c->records[i];
  return NULL;
}

/* The names of the file's "array.*" and "records.*" datasets, for ckpt_read_run. */
typedef struct {
  int n, n_arrays, n_records;
  char names[CKPT_MAX_ARRAYS + CKPT_MAX_RECORDS][CKPT_NAME_LEN + 16];
  int overflow;
} NameList;

static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
  NameList *l = data;
  const bool array = strncmp(name, "array.", 6) == 0;
  if (!array && strncmp(name, "records.", 8) != 0) return 0;
  int *kind = array ? &l->n_arrays : &l->n_records;
  if (*kind >= (array ? CKPT_MAX_ARRAYS : CKPT_MAX_RECORDS) || strlen(name) >= sizeof l->names[0]) {
    l->overflow = 1;
    return 0;
  }
  snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
  (*kind)++;
  return 0;
}

int ckpt_read_run(const char *dir, const char *deck, int run, RunCheckpoint *c, char *err, size_t errlen)
{
  char *path = ckpt_run_path(dir, run);
  memset(c, 0, sizeof *c);
  if (!path) return errbuf_set(err, errlen, "checkpoint of run %d in %s: out of memory", run, dir);
  Reader r;
  int rc = r_begin(&r, path, "run", deck, err, errlen);
  if (rc) {
    free(path);
    return rc;
  }
  int64_t four = 4, nst = CKPT_NSTATS;
  int64_t *ints = r_data(&r, "ints", H5T_NATIVE_INT64, sizeof(int64_t), 1, &four);
  double *stats = r_data(&r, "stats", H5T_NATIVE_DOUBLE, sizeof(double), 1, &nst);
  if (ints && stats) {
    c->run = (int32_t)ints[0], c->status = (int32_t)ints[1], c->next_step = ints[2], c->n_params = ints[3];
    memcpy(c->stats, stats, sizeof c->stats);
    if (c->run != run || c->n_params < 0) r.bad = 1;
  }
  free(ints), free(stats);
  NameList *names = calloc(1, sizeof *names);
  hsize_t idx = 0;
  if (!names || (!r.bad && H5Literate(r.file, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, names) < 0) || (names && names->overflow)) r.bad = 1;
  for (int i = 0; names && i < names->n && !r.bad; i++) {
    const char *name = names->names[i];
    int64_t cols = -1;
    if (name[0] == 'a') { /* array.<name>: one row of any length */
      CkptArray *a = &c->arrays[c->n_arrays++];
      snprintf(a->name, sizeof a->name, "%s", name + 6);
      a->data = r_data(&r, name, H5T_NATIVE_DOUBLE, sizeof(double), 1, &cols);
      a->n = a->data ? cols : 0;
      continue;
    }
    /* records.<group>: rows [index, values...], any number */
    hid_t d = H5Dopen2(r.file, name, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[2] = {0, 0};
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 || dims[1] < 1) r.bad = 1;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    double *m = r.bad ? NULL : r_data(&r, name, H5T_NATIVE_DOUBLE, sizeof(double), (int64_t)dims[0], &cols);
    if (!m) break;
    CkptRecords *rec = &c->records[c->n_records++];
    snprintf(rec->group, sizeof rec->group, "%s", name + 8);
    rec->n = (int64_t)dims[0], rec->width = cols - 1;
    rec->index = malloc((size_t)(rec->n + 1) * sizeof *rec->index);
    rec->rows = malloc((size_t)(rec->n * rec->width + 1) * sizeof *rec->rows);
    if (!rec->index || !rec->rows) r.bad = 1;
    for (int64_t j = 0; j < rec->n && !r.bad; j++) {
      rec->index[j] = (int64_t)m[j * cols];
      memcpy(rec->rows + j * rec->width, m + j * cols + 1, (size_t)rec->width * sizeof(double));
    }
    free(m);
  }
  free(names);
  int64_t ss = sizeof(SummaryRow);
  unsigned char *sum = r_data(&r, "summary", H5T_NATIVE_UCHAR, 1, 1, &ss);
  if (sum) memcpy(&c->summary, sum, sizeof c->summary);
  free(sum);
  if (!r.bad && c->status == RUN_RUNNING && !ckpt_array(c, "theta")) r.bad = 1;
  rc = r_end(&r, path, err, errlen);
  free(path);
  if (rc) {
    ckpt_run_free(c);
    return -1;
  }
  return 0;
}

int ckpt_read_sweep(const char *dir, const char *deck, int n, InstanceRow *rows, int32_t *measured, char *err, size_t errlen)
{
  char *path = ckpt_sweep_path(dir);
  if (!path) return errbuf_set(err, errlen, "checkpoint %s/sweep.h5: out of memory", dir);
  Reader r;
  int rc = r_begin(&r, path, "sweep", deck, err, errlen);
  if (rc) {
    free(path);
    return rc;
  }
  int64_t one = 1, is = sizeof(InstanceRow), nn = n;
  int64_t *ni = r_data(&r, "ints", H5T_NATIVE_INT64, sizeof(int64_t), 1, &one);
  if (ni && *ni != n) r.bad = 1;
  unsigned char *ir = r_data(&r, "instances", H5T_NATIVE_UCHAR, 1, n, &is);
  int32_t *me = r_data(&r, "measured", H5T_NATIVE_INT32, sizeof(int32_t), 1, &nn);
  if (ir && me) {
    memcpy(rows, ir, (size_t)n * sizeof *rows);
    memcpy(measured, me, (size_t)n * sizeof *measured);
  }
  free(ni), free(ir), free(me);
  rc = r_end(&r, path, err, errlen);
  free(path);
  return rc;
}

int ckpt_sweep_job(const char *dir, char **job)
{
  char *path = ckpt_sweep_path(dir);
  *job = NULL;
  if (!path) return -1;
  const int there = access(path, F_OK) == 0;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  Reader r = {.file = there ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1};
  free(path);
  if (!there) return 1;
  if (r.file < 0) return -1;
  int rc = 1;
  if (H5Aexists(r.file, "job") > 0) { /* a string attribute of any length */
    hid_t a = H5Aopen(r.file, "job", H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1;
    const size_t n = t >= 0 && H5Tget_class(t) == H5T_STRING ? H5Tget_size(t) : 0;
    *job = n ? calloc(n + 1, 1) : NULL;
    rc = *job && H5Aread(a, t, *job) >= 0 ? 0 : -1;
    if (rc) free(*job), *job = NULL;
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
  }
  H5Fclose(r.file);
  return rc;
}

/* ------------------------------------------------------------------ decks */

/* Options that do not change results: where things go, how often they are reported or saved. */
static bool ignored_key(const char *k, size_t n)
{
  static const char *const keys[] = {"-output", "-overwrite", "-flush_seconds", "-progress_seconds", "-quiet", "-checkpoint_every",
                                     "-checkpoint_minutes", "-checkpoint_dir", "-restart", "-ranks_per_run",
                                     "-grad_overlap", "-grad_bucket_mb", "-grad_sum", "-grad_node_ranks", "-data_shared"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (strlen(keys[i]) == n && strncmp(k, keys[i], n) == 0) return true;
  return false;
}

/* Value of key in deck ("-key value" lines), or NULL; *vlen its length. */
static const char *find_key(const char *deck, const char *key, size_t klen, size_t *vlen)
{
  for (const char *p = deck; *p;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    size_t kl = strcspn(p, " \t\n");
    if (kl == klen && strncmp(p, key, klen) == 0) {
      const char *v = p + kl;
      while (v < p + len && (*v == ' ' || *v == '\t')) v++;
      *vlen = (size_t)(p + len - v);
      return v;
    }
    p += len + (eol ? 1 : 0);
  }
  return NULL;
}

static int diff_one_way(const char *a, const char *b, char *key, size_t keylen)
{
  for (const char *p = a; *p;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    size_t kl = strcspn(p, " \t\n");
    if (kl > 0 && p[0] == '-' && !ignored_key(p, kl)) {
      const char *va = p + kl;
      while (va < p + len && (*va == ' ' || *va == '\t')) va++;
      size_t la = (size_t)(p + len - va), lb = 0;
      const char *vb = find_key(b, p, kl, &lb);
      if (!vb || la != lb || strncmp(va, vb, la) != 0) {
        snprintf(key, keylen, "%.*s", (int)kl, p);
        return 1;
      }
    }
    p += len + (eol ? 1 : 0);
  }
  return 0;
}

int ckpt_deck_diff(const char *mine, const char *theirs, char *key, size_t keylen)
{
  return diff_one_way(mine, theirs, key, keylen) || diff_one_way(theirs, mine, key, keylen);
}

/* ------------------------------------------------------------------ the end of a finished job */

/* Removes path and path.tmp (path malloc'd, freed); 0, or -1 (err) if path exists and stays. */
static int remove_pair(char *path, bool must_exist, char *err, size_t errlen)
{
  if (!path) return errbuf_set(err, errlen, "checkpoint: out of memory");
  int rc = 0;
  if (unlink(path) && (must_exist || errno != ENOENT)) rc = errbuf_set(err, errlen, "cannot remove checkpoint %s: %s", path, strerror(errno));
  char *tmp = str_printf("%s.tmp", path);
  if (tmp) unlink(tmp);
  free(tmp), free(path);
  return rc;
}

int ckpt_remove_finished(const char *dir, const char *deck, int n_runs, int n_instances, char *err, size_t errlen)
{
  char msg[256] = ""; /* the reason this is not our sweep's folder: not reported */
  InstanceRow *rows = calloc((size_t)(n_instances > 0 ? n_instances : 1), sizeof *rows);
  int32_t *measured = calloc((size_t)(n_instances > 0 ? n_instances : 1), sizeof *measured);
  const int ours = rows && measured && ckpt_read_sweep(dir, deck, n_instances, rows, measured, msg, sizeof msg) == 0;
  free(rows), free(measured);
  if (!ours) return 1;
  for (int i = 0; i < n_runs; i++)
    if (remove_pair(ckpt_run_path(dir, i), false, err, errlen)) return -1;
  if (remove_pair(ckpt_sweep_path(dir), true, err, errlen)) return -1;
  if (rmdir(dir)) return errbuf_set(err, errlen, "checkpoint folder %s kept: %s", dir, strerror(errno));
  return 0;
}

/* The /deck string of an output file (malloc'd), or NULL. */
static char *output_deck(hid_t f)
{
  hid_t d = H5Dopen2(f, "deck", H5P_DEFAULT), t = d >= 0 ? H5Dget_type(d) : -1;
  char *deck = NULL;
  if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
    size_t n = H5Tget_size(t);
    if ((deck = calloc(n + 1, 1)) && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, deck) < 0) free(deck), deck = NULL;
  }
  if (t >= 0) H5Tclose(t);
  if (d >= 0) H5Dclose(d);
  return deck;
}

int ckpt_output_finished(const char *path, const char *deck, int n_runs)
{
  struct stat st;
  if (stat(path, &st) || !S_ISREG(st.st_mode) || H5Fis_hdf5(path) <= 0) return 0;
  int done = 0;
  hid_t f = -1, d = -1, ft = -1, et = -1, mt = -1, sp = -1;
  H5E_BEGIN_TRY
  {
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *theirs = f >= 0 ? output_deck(f) : NULL, key[256];
    const bool same_deck = theirs && ckpt_deck_diff(deck, theirs, key, sizeof key) == 0;
    free(theirs);
    int idx = -1;
    if (same_deck && (d = H5Dopen2(f, "summary", H5P_DEFAULT)) >= 0 && (ft = H5Dget_type(d)) >= 0 && H5Tget_class(ft) == H5T_COMPOUND)
      idx = H5Tget_member_index(ft, "status");
    hssize_t n = -1;
    if (idx >= 0 && (sp = H5Dget_space(d)) >= 0) n = H5Sget_simple_extent_npoints(sp);
    /* the status member in memory: the file's enum as a native int32 enum, read alone */
    if (n == n_runs && n > 0 && (et = H5Tget_member_type(ft, (unsigned)idx)) >= 0 && H5Tget_class(et) == H5T_ENUM) {
      hid_t ne = H5Tget_native_type(et, H5T_DIR_ASCEND);
      int32_t v_done = -1, v_div = -1;
      if (ne >= 0 && H5Tget_size(ne) == sizeof(int32_t) && H5Tenum_valueof(ne, "done", &v_done) >= 0 &&
          H5Tenum_valueof(ne, "diverged", &v_div) >= 0 && (mt = H5Tcreate(H5T_COMPOUND, sizeof(int32_t))) >= 0 &&
          H5Tinsert(mt, "status", 0, ne) >= 0) {
        int32_t *status = malloc((size_t)n * sizeof *status);
        if (status && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, status) >= 0) {
          done = 1;
          for (hssize_t i = 0; i < n; i++)
            if (status[i] != v_done && status[i] != v_div) done = 0;
        }
        free(status);
      }
      if (ne >= 0) H5Tclose(ne);
    }
    if (mt >= 0) H5Tclose(mt);
    if (et >= 0) H5Tclose(et);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
  }
  H5E_END_TRY;
  return done;
}

/* ------------------------------------------------------------------ output refill */

int ckpt_records_restore(RecordBuffer *b, const CkptRecords *r)
{
  if (r->width != b->width || r->n > b->capacity) return -1;
  for (int64_t j = 0; j < r->n; j++)
    if (r->index[j] < 0 || r->index[j] >= b->schema->n_records) return -1;
  memcpy(b->rows, r->rows, (size_t)(r->n * r->width) * sizeof(double));
  memcpy(b->index, r->index, (size_t)r->n * sizeof(int64_t));
  b->n = r->n;
  b->flushed = 0;
  return 0;
}

int ckpt_refill_output(OutputFile *of, const RunCheckpoint *c)
{
  int rc = 0;
  for (int m = 0; m < of->n_schemas; m++) {
    const CkptRecords *r = ckpt_records(c, of->schema[m].group);
    if (!r) continue;
    RecordBuffer b;
    if (records_init(&b, &of->schema[m]) || ckpt_records_restore(&b, r) || output_write_records(of, c->run, &b, 0, b.n)) rc = -1;
    records_free(&b);
  }
  if (c->status != RUN_RUNNING) rc |= output_write_summary(of, &c->summary);
  return rc;
}

/* ------------------------------------------------------------------ signals */

static volatile sig_atomic_t received_signal = 0;

static void on_signal(int sig) { received_signal = sig; }

void ckpt_install_signal_handlers(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
}

int ckpt_signal_received(void) { return (int)received_signal; }
