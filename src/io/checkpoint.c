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

/* ------------------------------------------------------------------ small helpers */

static void seterr(char *err, size_t len, const char *fmt, ...)
{
  if (!err || !len) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, len, fmt, ap);
  va_end(ap);
}

void ckpt_sweep_path(char *path, size_t len, const char *dir) { snprintf(path, len, "%s/sweep.h5", dir); }
void ckpt_run_path(char *path, size_t len, const char *dir, int run) { snprintf(path, len, "%s/run_%06d.h5", dir, run); }

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

int ckpt_make_dir(const char *dir, char *err, size_t errlen)
{
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      seterr(err, errlen, "checkpoint directory %s is not a directory", dir);
      return -1;
    }
  } else if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
    seterr(err, errlen, "checkpoint directory %s: cannot create it: %s", dir, strerror(errno));
    return -1;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    seterr(err, errlen, "checkpoint directory %s is not writable: %s", dir, strerror(errno));
    return -1;
  }
  return 0;
}

void ckpt_remove_all(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[4400];
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    size_t l = strlen(n);
    bool ours = strcmp(n, "sweep.h5") == 0 || strcmp(n, "sweep.h5.tmp") == 0 ||
                (strncmp(n, "run_", 4) == 0 && ((l > 3 && strcmp(n + l - 3, ".h5") == 0) || (l > 7 && strcmp(n + l - 7, ".h5.tmp") == 0)));
    if (!ours) continue;
    snprintf(path, sizeof path, "%s/%s", dir, n);
    unlink(path);
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
  if (rows * cols > 0) w->sum = fnv1a(w->sum, buf, (size_t)(rows * cols) * elem);
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
  w->sum = FNV_START;
  w->bad = 0;
  w->file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
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

/* Closes, fsyncs and renames tmp to path, then fsyncs the directory. */
static int w_commit(Writer *w, const char *tmp, const char *path)
{
  w_attr(w, "checksum", H5T_NATIVE_UINT64, &w->sum);
  if (H5Fclose(w->file) < 0) w->bad = 1;
  w->file = -1;
  if (w->bad) return -1;
  int fd = open(tmp, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  if (rename(tmp, path) != 0) return -1;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  else snprintf(dir, sizeof dir, ".");
  fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    fsync(fd); /* the rename itself on disk */
    close(fd);
  }
  return 0;
}

static const char *const warm_names[CKPT_NWARM] = {"warm_ntk", "warm_hess_top", "warm_hess_min"};

int ckpt_write_run(const char *dir, const char *deck, const RunCheckpoint *c, char *err, size_t errlen)
{
  char path[4200], tmp[4300];
  ckpt_run_path(path, sizeof path, dir, c->run);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  Writer w;
  int rc = w_begin(&w, tmp, "run", deck);
  const int64_t ints[6] = {c->run, c->status, c->next_step, c->n_params, c->nev, c->hess_nev};
  w_data(&w, "ints", H5T_NATIVE_INT64, sizeof(int64_t), 1, 6, ints);
  w_doubles(&w, "stats", 1, CKPT_NSTATS, c->stats);
  if (c->theta) w_doubles(&w, "theta", 1, c->n_params, c->theta);
  if (c->velocity) w_doubles(&w, "velocity", 1, c->n_params, c->velocity);
  for (int i = 0; i < CKPT_NWARM; i++)
    if (c->warm[i] && c->n_warm[i] > 0) w_doubles(&w, warm_names[i], 1, c->n_warm[i], c->warm[i]);
  /* Trajectory rows as double matrices (steps are exact in a double up to 2^53). */
  const int64_t nl = 4 + 2 * (int64_t)c->nev, nh = 7 + 2 * (int64_t)c->hess_nev;
  int64_t cap = 6 * c->n_train;
  if (3 * c->n_test > cap) cap = 3 * c->n_test;
  if (nl * c->n_lambda > cap) cap = nl * c->n_lambda;
  if (nh * c->n_hess > cap) cap = nh * c->n_hess;
  double *m = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *m);
  if (!m) rc = -1;
  for (int64_t i = 0; m && i < c->n_train; i++) {
    const TrainRecord *r = &c->train[i];
    double *o = m + 6 * i;
    o[0] = (double)r->step, o[1] = r->loss, o[2] = r->accuracy, o[3] = r->param_norm, o[4] = r->dist_init, o[5] = r->lr;
  }
  if (m) w_doubles(&w, "train", c->n_train, 6, m);
  for (int64_t i = 0; m && i < c->n_test; i++) {
    const TestRecord *r = &c->test[i];
    m[3 * i] = (double)r->step, m[3 * i + 1] = r->loss, m[3 * i + 2] = r->accuracy;
  }
  if (m) w_doubles(&w, "test", c->n_test, 3, m);
  for (int64_t i = 0; m && i < c->n_lambda; i++) {
    const LambdaRecord *r = &c->lambda[i];
    double *o = m + nl * i;
    o[0] = (double)r->step, o[1] = r->lambda, o[2] = r->kernel_distance, o[3] = r->nconv;
    for (int j = 0; j < c->nev; j++) o[4 + j] = r->topk[j], o[4 + c->nev + j] = r->resid[j];
  }
  if (m) w_doubles(&w, "lambda", c->n_lambda, nl, m);
  for (int64_t i = 0; m && i < c->n_hess; i++) {
    const HessianRecord *r = &c->hess[i];
    double *o = m + nh * i;
    o[0] = (double)r->step, o[1] = r->sharpness, o[2] = r->min_eig, o[3] = r->min_resid, o[4] = r->lambda, o[5] = r->lr, o[6] = r->nconv;
    for (int j = 0; j < c->hess_nev; j++) o[7 + j] = r->topk[j], o[7 + c->hess_nev + j] = r->resid[j];
  }
  if (m) w_doubles(&w, "hessian", c->n_hess, nh, m);
  free(m);
  w_doubles(&w, "spectrum", c->n_spec, 2 + c->spec_len, c->spec);
  w_doubles(&w, "density", c->n_dens, 4 + 2 * c->dens_len, c->dens);
  w_data(&w, "summary", H5T_NATIVE_UCHAR, 1, 1, sizeof(SummaryRow), &c->summary);
  if (w.file >= 0 && w_commit(&w, tmp, path) == 0 && rc == 0) return 0;
  if (w.file >= 0) H5Fclose(w.file);
  unlink(tmp);
  seterr(err, errlen, "checkpoint %s: cannot write it (%s)", path, errno ? strerror(errno) : "HDF5 error");
  return -1;
}

int ckpt_write_sweep(const char *dir, const char *deck, int n, const InstanceRow *rows, const int32_t *measured, char *err, size_t errlen)
{
  char path[4200], tmp[4300];
  ckpt_sweep_path(path, sizeof path, dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  Writer w;
  w_begin(&w, tmp, "sweep", deck);
  const int64_t ni = n;
  w_data(&w, "ints", H5T_NATIVE_INT64, sizeof(int64_t), 1, 1, &ni);
  w_data(&w, "instances", H5T_NATIVE_UCHAR, 1, n, sizeof(InstanceRow), rows);
  w_data(&w, "measured", H5T_NATIVE_INT32, sizeof(int32_t), 1, n, measured);
  if (w.file >= 0 && w_commit(&w, tmp, path) == 0) return 0;
  if (w.file >= 0) H5Fclose(w.file);
  unlink(tmp);
  seterr(err, errlen, "checkpoint %s: cannot write it (%s)", path, errno ? strerror(errno) : "HDF5 error");
  return -1;
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
      r->sum = fnv1a(r->sum, buf, n * elem);
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
  r->sum = FNV_START;
  r->bad = 0;
  r->file = -1;
  if (access(path, F_OK) != 0) return 1;
  r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r->file < 0) {
    seterr(err, errlen, "checkpoint %s: cannot read it (corrupt or truncated; remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  char fmt[64], k[16], sig[128], mine[128];
  r_attr_str(r, "format", fmt, sizeof fmt);
  int64_t version = r_attr_int(r, "format_version", H5T_NATIVE_INT64);
  r_attr_str(r, "kind", k, sizeof k);
  r_attr_str(r, "machine", sig, sizeof sig);
  machine_signature(mine, sizeof mine);
  if (r->bad || strcmp(fmt, "ntkhpc checkpoint") != 0) {
    seterr(err, errlen, "checkpoint %s: not an ntkhpc checkpoint, or corrupt (remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  if (version != CKPT_FORMAT_VERSION || strcmp(k, kind) != 0) {
    seterr(err, errlen, "checkpoint %s: format version %lld (%s), this ntkhpc reads version %d (%s)", path, (long long)version, k,
           CKPT_FORMAT_VERSION, kind);
    return -1;
  }
  if (strcmp(sig, mine) != 0) {
    seterr(err, errlen, "checkpoint %s: written on a different architecture (%s; this machine: %s)", path, sig, mine);
    return -1;
  }
  int64_t dl = -1;
  char *theirs = r_data(r, "deck", H5T_NATIVE_CHAR, 1, 1, &dl);
  if (!theirs || dl < 1) {
    free(theirs);
    seterr(err, errlen, "checkpoint %s: cannot read its deck (corrupt or truncated)", path);
    return -1;
  }
  theirs[dl - 1] = 0;
  char key[128];
  int diff = ckpt_deck_diff(deck, theirs, key, sizeof key);
  free(theirs);
  if (diff) {
    seterr(err, errlen, "checkpoint %s: written by a different deck (option %s differs); give -overwrite to start afresh", path, key);
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
    seterr(err, errlen, "checkpoint %s: cannot read it (corrupt or truncated; remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  if (stored != r->sum) {
    seterr(err, errlen, "checkpoint %s: checksum mismatch (corrupt; remove it, or give -overwrite to start afresh)", path);
    return -1;
  }
  return 0;
}

void ckpt_run_free(RunCheckpoint *c)
{
  free(c->theta), free(c->velocity), free(c->train), free(c->test), free(c->lambda), free(c->hess);
  free(c->spec), free(c->dens), free(c->lambda_vals), free(c->hess_vals);
  for (int i = 0; i < CKPT_NWARM; i++) free(c->warm[i]);
  memset(c, 0, sizeof *c);
}

int ckpt_read_run(const char *dir, const char *deck, int run, RunCheckpoint *c, char *err, size_t errlen)
{
  char path[4200];
  ckpt_run_path(path, sizeof path, dir, run);
  memset(c, 0, sizeof *c);
  Reader r;
  int rc = r_begin(&r, path, "run", deck, err, errlen);
  if (rc) return rc;
  int64_t six = 6, nst = CKPT_NSTATS;
  int64_t *ints = r_data(&r, "ints", H5T_NATIVE_INT64, sizeof(int64_t), 1, &six);
  double *stats = r_data(&r, "stats", H5T_NATIVE_DOUBLE, sizeof(double), 1, &nst);
  if (ints && stats) {
    c->run = (int32_t)ints[0], c->status = (int32_t)ints[1], c->next_step = ints[2], c->n_params = ints[3];
    c->nev = (int)ints[4], c->hess_nev = (int)ints[5];
    memcpy(c->stats, stats, sizeof c->stats);
    if (c->run != run || c->n_params < 0 || c->nev < 0 || c->hess_nev < 0) r.bad = 1;
  }
  free(ints), free(stats);
  if (!r.bad && H5Lexists(r.file, "theta", H5P_DEFAULT) > 0) c->theta = r_data(&r, "theta", H5T_NATIVE_DOUBLE, sizeof(double), 1, &c->n_params);
  if (!r.bad && H5Lexists(r.file, "velocity", H5P_DEFAULT) > 0)
    c->velocity = r_data(&r, "velocity", H5T_NATIVE_DOUBLE, sizeof(double), 1, &c->n_params);
  for (int i = 0; i < CKPT_NWARM && !r.bad; i++)
    if (H5Lexists(r.file, warm_names[i], H5P_DEFAULT) > 0) {
      c->n_warm[i] = -1; /* any length */
      c->warm[i] = r_data(&r, warm_names[i], H5T_NATIVE_DOUBLE, sizeof(double), 1, &c->n_warm[i]);
      if (!c->warm[i]) c->n_warm[i] = 0;
    }
  /* The trajectory matrices; rows from each dataset's shape. */
  struct { const char *name; int64_t cols; double **out; int64_t *rows; } mats[] = {
      {"train", 6, NULL, &c->n_train},
      {"test", 3, NULL, &c->n_test},
      {"lambda", 4 + 2 * (int64_t)c->nev, &c->lambda_vals, &c->n_lambda},
      {"hessian", 7 + 2 * (int64_t)c->hess_nev, &c->hess_vals, &c->n_hess},
      {"spectrum", -1, &c->spec, &c->n_spec},
      {"density", -1, &c->dens, &c->n_dens},
  };
  for (size_t k = 0; k < sizeof mats / sizeof mats[0] && !r.bad; k++) {
    hid_t d = H5Dopen2(r.file, mats[k].name, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[2] = {0, 0};
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) r.bad = 1;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    int64_t cc = mats[k].cols;
    double *v = r_data(&r, mats[k].name, H5T_NATIVE_DOUBLE, sizeof(double), (int64_t)dims[0], &cc);
    *mats[k].rows = (int64_t)dims[0];
    if (k == 0 && v) {
      c->train = calloc(dims[0] ? dims[0] : 1, sizeof *c->train);
      for (hsize_t i = 0; i < dims[0]; i++) {
        const double *o = v + 6 * i;
        c->train[i] = (TrainRecord){(int64_t)o[0], o[1], o[2], o[3], o[4], o[5]};
      }
      free(v);
    } else if (k == 1 && v) {
      c->test = calloc(dims[0] ? dims[0] : 1, sizeof *c->test);
      for (hsize_t i = 0; i < dims[0]; i++) c->test[i] = (TestRecord){(int64_t)v[3 * i], v[3 * i + 1], v[3 * i + 2]};
      free(v);
    } else if (k == 4) {
      c->spec_len = cc - 2;
      *mats[k].out = v;
    } else if (k == 5) {
      c->dens_len = (cc - 4) / 2;
      *mats[k].out = v;
    } else if (k > 1) {
      *mats[k].out = v;
    }
  }
  if (!r.bad) { /* records pointing into the owned matrices */
    const int64_t nl = 4 + 2 * (int64_t)c->nev, nh = 7 + 2 * (int64_t)c->hess_nev;
    c->lambda = calloc((size_t)(c->n_lambda ? c->n_lambda : 1), sizeof *c->lambda);
    for (int64_t i = 0; i < c->n_lambda; i++) {
      const double *o = c->lambda_vals + nl * i;
      c->lambda[i] = (LambdaRecord){(int64_t)o[0], o[1], o[2], (int32_t)o[3], o + 4, o + 4 + c->nev};
    }
    c->hess = calloc((size_t)(c->n_hess ? c->n_hess : 1), sizeof *c->hess);
    for (int64_t i = 0; i < c->n_hess; i++) {
      const double *o = c->hess_vals + nh * i;
      c->hess[i] = (HessianRecord){(int64_t)o[0], o[1], o[2], o[3], o[4], o[5], (int32_t)o[6], o + 7, o + 7 + c->hess_nev};
    }
  }
  int64_t ss = sizeof(SummaryRow);
  unsigned char *sum = r_data(&r, "summary", H5T_NATIVE_UCHAR, 1, 1, &ss);
  if (sum) memcpy(&c->summary, sum, sizeof c->summary);
  free(sum);
  if (!r.bad && c->status == RUN_RUNNING && !c->theta) r.bad = 1;
  if (r_end(&r, path, err, errlen)) {
    ckpt_run_free(c);
    return -1;
  }
  return 0;
}

int ckpt_read_sweep(const char *dir, const char *deck, int n, InstanceRow *rows, int32_t *measured, char *err, size_t errlen)
{
  char path[4200];
  ckpt_sweep_path(path, sizeof path, dir);
  Reader r;
  int rc = r_begin(&r, path, "sweep", deck, err, errlen);
  if (rc) return rc;
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
  return r_end(&r, path, err, errlen);
}

/* ------------------------------------------------------------------ decks */

/* Options that do not change results: where things go, how often they are reported or saved. */
static bool ignored_key(const char *k, size_t n)
{
  static const char *const keys[] = {"-output", "-overwrite", "-flush_seconds", "-progress_seconds", "-quiet", "-checkpoint_every",
                                     "-checkpoint_minutes", "-checkpoint_dir", "-restart", "-ranks_per_run"};
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

/* ------------------------------------------------------------------ output refill */

int ckpt_refill_output(OutputFile *of, const RunCheckpoint *c)
{
  int rc = 0;
  rc |= output_write_train(of, c->run, 0, c->n_train, c->train);
  rc |= output_write_test(of, c->run, 0, c->n_test, c->test);
  rc |= output_write_lambda(of, c->run, 0, c->n_lambda, c->lambda);
  if (c->n_hess) rc |= output_write_hessian(of, c->run, 0, c->n_hess, c->hess);
  for (int64_t i = 0; i < c->n_spec; i++) {
    const double *o = c->spec + i * (2 + c->spec_len);
    rc |= output_write_spectrum(of, c->run, (int)o[0], (int64_t)o[1], o + 2);
  }
  for (int64_t i = 0; i < c->n_dens; i++) {
    const double *o = c->dens + i * (4 + 2 * c->dens_len);
    DensityRecord d = {(int64_t)o[1], o[2], o[3], o + 4, o + 4 + c->dens_len};
    rc |= output_write_density(of, c->run, (int)o[0], &d);
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
