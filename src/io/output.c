/* One parallel HDF5 file per job; layout in docs/output.md.
 *
 * Design: every HDF5 metadata operation (creating groups, datasets, attributes) is collective in
 * parallel HDF5, but runs end at different times on different sub-communicators. So
 * output_create() builds the complete file up front, collectively: every dataset of every run is
 * contiguous, allocated early and filled (NaN, or -1 for steps), then the metadata is flushed.
 * Afterwards a run's leader only opens existing datasets and writes raw bytes into space that is
 * already allocated, which needs no metadata change and so no other rank.
 */
#include "output.h"

#include <hdf5_hl.h>

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "layers.h"
#include "model.h"

#ifndef NTK_VERSION
#define NTK_VERSION "0.1.0"
#endif

/* ------------------------------------------------------------------ small helpers */

static void report(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ntkhpc: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

/* Fixed-length, NUL-terminated UTF-8 string type. Fixed rather than variable length because VL
 * data lives in the global heap, which parallel HDF5 supports poorly. */
static hid_t str_type(size_t len) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0) return -1;
  if (H5Tset_size(t, len + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
      H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

/* An attribute of file type ftype written from memory type mtype: a scalar (rank 0) or an array
 * of the given dims. */
static int attr_put(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims, const void *val) {
  hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  if (sp < 0) return -1;
  hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  int rc = (a >= 0 && H5Awrite(a, mtype, val) >= 0) ? 0 : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc;
}
static int attr_write(hid_t loc, const char *name, hid_t type, const void *val) { return attr_put(loc, name, type, type, 0, NULL, val); }
static int attr_write_as(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *val) {
  return attr_put(loc, name, ftype, mtype, 0, NULL, val);
}

static int attr_str(hid_t loc, const char *name, const char *val) {
  if (!val) val = "";
  hid_t t = str_type(strlen(val));
  if (t < 0) return -1;
  int rc = attr_write(loc, name, t, val);
  H5Tclose(t);
  return rc;
}
static int attr_i32(hid_t loc, const char *name, int32_t v) {
  return attr_write(loc, name, H5T_NATIVE_INT32, &v);
}
static int attr_i64(hid_t loc, const char *name, int64_t v) {
  return attr_write(loc, name, H5T_NATIVE_INT64, &v);
}
static int attr_f64(hid_t loc, const char *name, double v) {
  return attr_write(loc, name, H5T_NATIVE_DOUBLE, &v);
}
/* A float64 attribute of shape rows x cols (row-major). */
static int attr_f64_matrix(hid_t loc, const char *name, const double *v, hsize_t rows, hsize_t cols) {
  const hsize_t dims[2] = {rows, cols};
  return attr_put(loc, name, H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 2, dims, v);
}

/* Directory part of path ("." if none). */
/* The directory of path, malloc'd (any length), or NULL when out of memory. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* Rank 0's verdict on the output path: 0 = go ahead, else a message in err. Done on one rank
 * so every rank acts on the same answer (the file system may change between ranks' checks). */
static int check_path(const char *path, bool overwrite, char *err, size_t errlen) {
  struct stat st;
  if (path[0] == '\0') {
    errbuf_set(err, errlen, "no output file given (option -output)");
    return -1;
  }
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      errbuf_set(err, errlen, "output file %s is a directory", path);
      return -1;
    }
    if (!overwrite) {
      errbuf_set(err, errlen,
             "output file %s exists: refusing to overwrite (give -overwrite to replace it)", path);
      return -1;
    }
    if (access(path, W_OK) != 0) {
      errbuf_set(err, errlen, "output file %s exists and is not writable: %s", path, strerror(errno));
      return -1;
    }
  }
  char *dir = dir_of(path);
  int rc = -1;
  if (!dir)
    errbuf_set(err, errlen, "output file %s: out of memory", path);
  else if (stat(dir, &st) != 0)
    errbuf_set(err, errlen, "output file %s: directory %s: %s", path, dir, strerror(errno));
  else if (!S_ISDIR(st.st_mode))
    errbuf_set(err, errlen, "output file %s: %s is not a directory", path, dir);
  else if (access(dir, W_OK | X_OK) != 0)
    errbuf_set(err, errlen, "output file %s: directory %s is not writable: %s", path, dir, strerror(errno));
  else
    rc = 0;
  free(dir);
  return rc;
}

/* Enumerations are stored as HDF5 enum types everywhere (the compound rows, the run attributes):
 * the names travel with the values. */
typedef struct {
  int first;               /* value of names[0]; the others follow */
  int n;
  const char *const *names;
} EnumDef;

static const char *const status_names[] = {"pending", "running", "done", "diverged"};
static const char *const phase_names[] = {"unknown", "lazy", "catapult", "divergent", "unresolved"};
static const char *const method_names[] = {"auto", "matfree", "exact"};
static const EnumDef status_enum = {RUN_PENDING, 4, status_names}, phase_enum = {PHASE_UNKNOWN, 5, phase_names},
                     method_enum = {NTK_METHOD_AUTO, 3, method_names};

/* The parameterizations' names come from the model (param_name). */
static const EnumDef *param_enum(void)
{
  static const char *names[PARAM_COUNT];
  static EnumDef e = {0, PARAM_COUNT, names};
  for (int i = 0; i < PARAM_COUNT; i++) names[i] = param_name((Parameterization)i);
  return &e;
}

/* An int32 enum type (little-endian in the file, native in memory). */
static hid_t enum_type(const EnumDef *e, bool file)
{
  hid_t t = H5Tenum_create(file ? H5T_STD_I32LE : H5T_NATIVE_INT32);
  for (int i = 0; t >= 0 && i < e->n; i++) {
    int32_t v = e->first + i; /* H5Tenum_insert takes the value in the base type's memory form */
    if (file) {
      unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
      if (H5Tenum_insert(t, e->names[i], le) < 0) t = (H5Tclose(t), -1);
    } else if (H5Tenum_insert(t, e->names[i], &v) < 0) {
      t = (H5Tclose(t), -1);
    }
  }
  return t;
}

/* The SummaryRow as HDF5 compound; member names are the struct's. In memory: the native struct.
 * In the file: packed little-endian standard types, independent of the writer's ABI. */
typedef struct {
  const char *name;
  size_t offset;
  int kind;              /* 0 int32, 1 int64, 2 double, 3 int32 enum */
  const EnumDef *e;      /* kind 3; NULL: the parameterizations */
} Field;

static const Field summary_fields[] = {
#define F(name, kind) {#name, offsetof(SummaryRow, name), kind, NULL}
#define E(name, def) {#name, offsetof(SummaryRow, name), 3, def}
    F(run, 0),          F(instance, 0),        F(width, 0),          E(param, NULL),
    F(seed, 1),         F(eta, 2),             F(eta_factor, 2),     E(status, &status_enum),
    F(steps_done, 1),   F(n_train_records, 0), F(n_test_records, 0), F(loss0, 2),
    F(loss_peak, 2),    F(loss_final, 2),      F(acc_final, 2),      F(test_loss_final, 2),
    F(test_acc_final, 2), F(wall_seconds, 2), F(lambda0, 2),       F(lambda_final, 2),
    F(peak_ratio, 2),   F(peak_step, 1),       F(eta_lambda0, 2),     F(eta_lambda_final, 2),
    F(lambda_ratio, 2), E(phase, &phase_enum),
    F(measured, 0),
#undef F
#undef E
};
#define N_SUMMARY_FIELDS (sizeof summary_fields / sizeof summary_fields[0])

/* The InstanceRow likewise (/instances). */
static const Field instance_fields[] = {
#define F(name, kind) {#name, offsetof(InstanceRow, name), kind, NULL}
#define E(name, def) {#name, offsetof(InstanceRow, name), 3, def}
    F(instance, 0), F(width, 0), E(param, NULL), F(seed, 1), F(n_params, 1),
    F(lambda0, 2), F(lambda0_resid, 2), E(method, &method_enum), F(seconds, 2),
    F(eta_max_lo, 2), F(eta_max_hi, 2), F(eta_max_probes, 0),
#undef F
#undef E
};
#define N_INSTANCE_FIELDS (sizeof instance_fields / sizeof instance_fields[0])

static hid_t compound_type(const Field *fields, size_t n, size_t native_size, bool file) {
  static const size_t sizes[4] = {4, 8, 8, 4};
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += sizes[fields[i].kind];
  hid_t t = H5Tcreate(H5T_COMPOUND, file ? total : native_size);
  if (t < 0) return -1;
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    int k = fields[i].kind;
    hid_t et = k == 3 ? enum_type(fields[i].e ? fields[i].e : param_enum(), file) : -1;
    hid_t mt = k == 3 ? et
               : file ? (k == 0 ? H5T_STD_I32LE : k == 1 ? H5T_STD_I64LE : H5T_IEEE_F64LE)
                      : (k == 0 ? H5T_NATIVE_INT32 : k == 1 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE);
    const herr_t e = mt >= 0 ? H5Tinsert(t, fields[i].name, file ? off : fields[i].offset, mt) : -1;
    if (et >= 0) H5Tclose(et);
    if (e < 0) {
      H5Tclose(t);
      return -1;
    }
    off += sizes[k];
  }
  return t;
}

static hid_t summary_type(bool file) {
  return compound_type(summary_fields, N_SUMMARY_FIELDS, sizeof(SummaryRow), file);
}
static hid_t instance_type(bool file) {
  return compound_type(instance_fields, N_INSTANCE_FIELDS, sizeof(InstanceRow), file);
}

/* Dataset creation: contiguous and allocated at creation, so later independent writes only touch
 * raw data. The fill value is recorded (readers see it as the dataset's fillvalue) but HDF5 does
 * not write it: its parallel fill costs a barrier per dataset, which dominates creating thousands
 * of runs. Rank 0 writes the fill rows itself instead (make_dataset). */
static hid_t make_dcpl(hid_t fill_type, const void *fill) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (dcpl < 0) return -1;
  if (H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 || H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 ||
      (fill && H5Pset_fill_value(dcpl, fill_type, fill) < 0) ||
      H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0) {
    H5Pclose(dcpl);
    return -1;
  }
  return dcpl;
}

static int write_config_attrs(hid_t g, const Config *cfg) {
  const ModelConfig *m = &cfg->model;
  const DataConfig *d = &cfg->data;
  int rc = 0;
  rc |= attr_str(g, "arch", arch_name(m->arch));
  rc |= attr_i32(g, "depth", m->depth);
  rc |= attr_str(g, "activation", act_name(m->act));
  rc |= attr_i32(g, "bias", m->bias ? 1 : 0);
  rc |= attr_f64(g, "sigma_w", m->sigma_w);
  rc |= attr_f64(g, "sigma_b", m->sigma_b);
  rc |= attr_i32(g, "base_width", m->base_width);
  rc |= attr_i32(g, "mup_zero_readout", m->mup_zero_readout ? 1 : 0);
  if (cfg->mup_limit) rc |= attr_i32(g, "mup_limit", 1);
  if (cfg->kernel_regression) rc |= attr_i32(g, "kernel_regression", 1);
  for (int i = 0; i < cfg->n_params; i++)
    if (cfg->params[i] == PARAM_ABC) rc |= attr_f64_matrix(g, "abc_exponents", &m->abc[0][0], ABC_KINDS, 3);
  rc |= attr_str(g, "dataset", data_kind_name(d->kind));
  rc |= attr_str(g, "data_dir", d->dir);
  rc |= attr_i32(g, "n_train", d->n_train);
  rc |= attr_i32(g, "n_test", d->n_test);
  rc |= attr_i32(g, "standardize", d->standardize ? 1 : 0);
  rc |= attr_i32(g, "center_targets", d->center_targets ? 1 : 0);
  if (d->kind == DATA_TEACHER) {
    rc |= attr_i32(g, "teacher_dim", d->teacher_dim);
    rc |= attr_i32(g, "teacher_width", d->teacher_width);
    rc |= attr_i32(g, "teacher_outputs", d->teacher_outputs);
    rc |= attr_str(g, "teacher_activation", act_name(d->teacher_act));
    rc |= attr_i64(g, "teacher_seed", (int64_t)d->teacher_seed);
    rc |= attr_f64(g, "teacher_noise", d->teacher_noise);
  }
  rc |= attr_str(g, "optimizer", optimizer_name(cfg->optimizer));
  rc |= attr_i32(g, "batch_size", cfg->batch_size);
  rc |= attr_i64(g, "steps", cfg->steps);
  rc |= attr_f64(g, "momentum", cfg->momentum);
  rc |= attr_f64(g, "weight_decay", cfg->weight_decay);
  rc |= attr_str(g, "lr_schedule", lr_schedule_name(cfg->lr_schedule));
  rc |= attr_i64(g, "warmup_steps", cfg->warmup_steps);
  rc |= attr_i64(g, "lr_step_every", cfg->lr_step_every);
  rc |= attr_f64(g, "lr_step_gamma", cfg->lr_step_gamma);
  rc |= attr_f64(g, "lr_min_factor", cfg->lr_min_factor);
  rc |= attr_str(g, "loss", loss_name(m->loss));
  rc |= attr_i32(g, "fc_batch_norm", m->fc_batch_norm ? 1 : 0);
  rc |= attr_i32(g, "bn_no_affine", m->bn_no_affine ? 1 : 0);
  rc |= attr_i32(g, "batch_norm", (m->arch == ARCH_WRN && m->batch_norm) || (m->arch == ARCH_FC && m->fc_batch_norm) ? 1 : 0);
  rc |= attr_f64(g, "bn_eps", m->bn_eps);
  rc |= attr_f64(g, "lr_exp_factor", cfg->lr_exp_factor);
  rc |= attr_f64(g, "onecycle_pct", cfg->onecycle_pct);
  rc |= attr_f64(g, "onecycle_div", cfg->onecycle_div);
  rc |= attr_f64(g, "onecycle_final_div", cfg->onecycle_final_div);
  rc |= attr_str(g, "freeze", cfg->freeze);
  rc |= attr_f64(g, "momentum_init", cfg->momentum_init);
  rc |= attr_i64(g, "record_every", cfg->record_every);
  rc |= attr_i64(g, "test_every", cfg->test_every);
  rc |= attr_f64(g, "diverge_factor", cfg->diverge_factor);
  rc |= attr_f64(g, "catapult_factor", cfg->catapult_factor);
  rc |= attr_i64(g, "catapult_window", cfg->catapult_window);
  rc |= attr_i32(g, "eta_in_lambda0_units", cfg->eta_in_lambda0_units ? 1 : 0);
  rc |= attr_i32(g, "ntk_batch", cfg->ntk_batch);
  rc |= attr_str(g, "ntk_variant", cfg->ntk_variant ? "traced" : "full");
  rc |= attr_str(g, "ntk_method", ntk_method_name(cfg->ntk_method));
  rc |= attr_i32(g, "ntk_nev", cfg->ntk_nev);
  rc |= attr_str(g, "ntk_weighting", ntk_weighting_name(cfg->ntk_weighting));
  rc |= attr_i64(g, "lambda_every", cfg->lambda_every);
  rc |= attr_i64(g, "lambda_dense_steps", cfg->lambda_dense_steps);
  rc |= attr_i32(g, "gram_max_rows", cfg->gram_max_rows);
  rc |= attr_i64(g, "features_every", cfg->features_every);
  rc |= attr_i32(g, "hess_batch", cfg->hess_batch);
  rc |= attr_i64(g, "hess_every", cfg->hess_every);
  rc |= attr_i32(g, "hess_nev", cfg->hess_nev);
  rc |= attr_i32(g, "trace_probes", cfg->trace_probes);
  rc |= attr_i32(g, "slq_probes", cfg->slq_probes);
  rc |= attr_i32(g, "slq_lanczos", cfg->slq_lanczos);
  rc |= attr_i32(g, "eta_max_search", cfg->eta_max_search ? 1 : 0);
  rc |= attr_i64(g, "eta_max_steps", cfg->eta_max_steps);
  rc |= attr_f64(g, "eta_max_tol", cfg->eta_max_tol);
  return rc ? -1 : 0;
}

/* Dataset creation properties and fill buffers shared by every run's datasets. */
typedef struct {
  hid_t dcpl_f64, dcpl_i64;
  const double *nans;     /* large enough for the largest dataset */
  const int64_t *minus1s;
  int rank;
  int *write_errno;       /* rank 0: the errno of its first failed write of initial rows, else 0 */
} RunLayout;

/* Rank 0 writes the initial rows alone (raw data). A failure (a full disk) must not change the
 * sequence of collective calls that the other ranks make, or they would wait forever: it is noted
 * here, the creation goes on, and create_file reports it at the end (the ranks then agree). */
static void rank0_write(const RunLayout *L, hid_t d, hid_t memtype, const void *buf)
{
  if (L->rank != 0 || *L->write_errno) return; /* after a failure, no more writes */
  errno = 0;
  if (H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) *L->write_errno = errno ? errno : EIO;
}

/* One measurement's dataset in a run's group, with its schema attributes; returned open. */
static hid_t make_schema_dataset(hid_t g, const DatasetSpec *ds, int64_t n_records, const RunLayout *L)
{
  hsize_t dims[2] = {(hsize_t)n_records, (hsize_t)ds->width};
  hid_t sp = H5Screate_simple(ds->width == SCALAR ? 1 : 2, dims, NULL);
  if (sp < 0) return -1;
  const bool i64 = ds->type == DS_INT64;
  hid_t d = H5Dcreate2(g, ds->name, i64 ? H5T_STD_I64LE : H5T_IEEE_F64LE, sp, H5P_DEFAULT, i64 ? L->dcpl_i64 : L->dcpl_f64, H5P_DEFAULT);
  int rc = d >= 0 ? 0 : -1;
  if (rc == 0) rank0_write(L, d, i64 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, i64 ? (const void *)L->minus1s : (const void *)L->nans);
  if (rc == 0) rc |= attr_str(d, "units", ds->units) | attr_str(d, "description", ds->description);
  H5Sclose(sp);
  if (rc && d >= 0) H5Dclose(d);
  return rc ? -1 : d;
}

/* The index 0..width-1 of a vector dataset's second axis, as a dimension scale <group>_<name> in
 * the run's group, attached to that axis. */
static int attach_index_scale(hid_t run_group, hid_t d, const Schema *sc, const DatasetSpec *ds, const RunLayout *L)
{
  char name[128];
  snprintf(name, sizeof name, "%s_%s", sc->group, ds->name);
  hsize_t w = (hsize_t)ds->width;
  hid_t sp = H5Screate_simple(1, &w, NULL);
  hid_t x = sp >= 0 ? H5Dcreate2(run_group, name, H5T_STD_I64LE, sp, H5P_DEFAULT, L->dcpl_i64, H5P_DEFAULT) : -1;
  int64_t *idx = L->rank == 0 ? malloc((size_t)w * sizeof *idx) : NULL;
  for (hsize_t i = 0; idx && i < w; i++) idx[i] = (int64_t)i;
  int rc = x >= 0 && (L->rank != 0 || idx) ? 0 : -1;
  if (rc == 0) rank0_write(L, x, H5T_NATIVE_INT64, idx);
  if (rc == 0) rc |= attr_str(x, "units", "") | attr_str(x, "description", "index along the second axis of this measurement's dataset");
  if (rc == 0 && (H5DSset_scale(x, name) < 0 || H5DSattach_scale(d, x, 1) < 0)) rc = -1;
  free(idx);
  if (x >= 0) H5Dclose(x);
  if (sp >= 0) H5Sclose(sp);
  return rc;
}

/* One measurement's group in a run's group: every dataset of its schema, with the step dataset a
 * dimension scale on every dataset's first axis and an index scale on a vector's second, so that
 * netCDF readers (xarray with h5netcdf) see named dimensions. */
static int make_measurement(hid_t run_group, const Schema *sc, const RunLayout *L)
{
  hid_t sub = H5Gcreate2(run_group, sc->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (sub < 0) return -1;
  int rc = attr_str(sub, "description", sc->description);
  hid_t step = -1;
  for (int k = 0; k < sc->n_datasets && rc == 0; k++) {
    const DatasetSpec *ds = &sc->datasets[k];
    hid_t d = make_schema_dataset(sub, ds, sc->n_records, L);
    if (d < 0) {
      rc = -1;
      break;
    }
    if (k == 0) { /* "step": the first axis of every dataset of the group */
      if (H5DSset_scale(d, "step") < 0) rc = -1;
      step = d;
      continue;
    }
    if (H5DSattach_scale(d, step, 0) < 0) rc = -1;
    if (rc == 0 && ds->width != SCALAR) rc = attach_index_scale(run_group, d, sc, ds, L);
    H5Dclose(d);
  }
  if (step >= 0) H5Dclose(step);
  H5Gclose(sub);
  return rc ? -1 : 0;
}

/* One run's group: its attributes and one subgroup per measurement, every dataset declared in the
 * measurement's schema. */
static int make_run(hid_t runs, const RunSpec *rs, const Schema *schemas, int n_schemas, const RunLayout *L) {
  char name[32];
  snprintf(name, sizeof name, "run_%06d", rs->index);
  hid_t g = H5Gcreate2(runs, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return -1;
  int rc = 0;
  rc |= attr_i32(g, "run", rs->index);
  rc |= attr_i32(g, "deck_index", rs->deck_index);
  rc |= attr_i32(g, "instance", rs->instance);
  rc |= attr_i32(g, "width", rs->width);
  rc |= attr_i64(g, "seed", rs->seed);
  { /* the parameterization, as the same enum as in /summary */
    hid_t et = enum_type(param_enum(), true), mt = enum_type(param_enum(), false);
    const int32_t p = (int32_t)rs->param;
    rc |= et >= 0 && mt >= 0 ? attr_write_as(g, "param", et, mt, &p) : -1;
    if (et >= 0) H5Tclose(et);
    if (mt >= 0) H5Tclose(mt);
  }
  rc |= attr_f64(g, "eta", rs->eta);
  rc |= attr_f64(g, "eta_factor", rs->eta_factor);
  rc |= attr_i64(g, "n_params", rs->n_params);
  for (int m = 0; m < n_schemas && rc == 0; m++) rc |= make_measurement(g, &schemas[m], L);
  H5Gclose(g);
  return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ create */

static int create_file(OutputFile *of, MPI_Comm comm, const Config *cfg, const RunSpec *runs_spec,
                       int n_runs, int n_instances, const char *deck, int rank, int size, const char *created, char *err,
                       size_t errlen) {
  const char *path = cfg->output;
  hid_t fapl = -1, file = -1, sp = -1, t = -1, d = -1, g = -1, runs = -1;
  hid_t dcpl_plain = -1;
  int write_errno = 0;
  RunLayout L = {-1, -1, NULL, NULL, rank, &write_errno};
  hid_t mtype = -1, ftype = -1;
  SummaryRow *rows = NULL;
  double *nans = NULL;
  int64_t *minus1s = NULL;
  int rc = -1;
  const double nan = NAN;
  const int64_t minus1 = -1;

  fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
    errbuf_set(err, errlen, "output file %s: cannot set up MPI-IO file access", path);
    goto done;
  }
  /* Metadata is written collectively at flush/close (fewer, larger writes); metadata READS stay
   * independent, which the single-rank writes of output_write_* rely on. Default (earliest)
   * libver bounds: no superblock status flags, so a killed job's file opens without h5clear. */
  H5Pset_coll_metadata_write(fapl, true);
  /* Every check has passed on rank 0: only now is an existing file truncated. EXCL otherwise, so a
   * file that appeared since the check is still not overwritten. */
  file = H5Fcreate(path, cfg->overwrite ? H5F_ACC_TRUNC : H5F_ACC_EXCL, H5P_DEFAULT, fapl);
  if (file < 0) {
    errbuf_set(err, errlen, "output file %s: cannot create it (HDF5/MPI-IO open failed)", path);
    goto done;
  }

  /* root attributes */
  if (attr_str(file, "program", "ntkhpc") || attr_str(file, "version", NTK_VERSION) ||
      attr_str(file, "created", created) || attr_i32(file, "n_runs", n_runs) ||
      attr_i32(file, "n_instances", n_instances) || attr_i32(file, "world_size", size) ||
      attr_i32(file, "ranks_per_run", cfg->ranks_per_run) || attr_i32(file, "sweep_part", cfg->sweep_part) ||
      attr_i32(file, "sweep_parts", cfg->sweep_parts)) {
    errbuf_set(err, errlen, "output file %s: cannot write the root attributes", path);
    goto done;
  }
  { /* the measurement groups of every run, in the order they were declared */
    char list[1024] = "";
    for (int m = 0; m < of->n_schemas; m++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", m ? "," : "", of->schema[m].group);
    if (attr_str(file, "measurements", list)) {
      errbuf_set(err, errlen, "output file %s: cannot write the root attributes", path);
      goto done;
    }
  }

  /* /deck: scalar fixed-length string; rank 0 writes the bytes (raw data, no metadata) */
  dcpl_plain = make_dcpl(-1, NULL);
  size_t decklen = strlen(deck);
  if (dcpl_plain < 0 || (sp = H5Screate(H5S_SCALAR)) < 0 || (t = str_type(decklen)) < 0 ||
      (d = H5Dcreate2(file, "deck", t, sp, H5P_DEFAULT, dcpl_plain, H5P_DEFAULT)) < 0 ||
      (rank0_write(&L, d, t, deck), 0) || attr_str(d, "units", "") ||
      attr_str(d, "description", "the effective deck: every option in force, one -key value a line; itself a deck that reproduces the job")) {
    errbuf_set(err, errlen, "output file %s: cannot write /deck", path);
    goto done;
  }
  H5Dclose(d), d = -1;
  H5Tclose(t), t = -1;
  H5Sclose(sp), sp = -1;

  /* /config */
  if ((g = H5Gcreate2(file, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
      write_config_attrs(g, cfg) < 0) {
    errbuf_set(err, errlen, "output file %s: cannot write /config", path);
    goto done;
  }
  H5Gclose(g), g = -1;

  /* /runs/run_%06d, one subgroup per measurement */
  L.dcpl_f64 = make_dcpl(H5T_NATIVE_DOUBLE, &nan);
  L.dcpl_i64 = make_dcpl(H5T_NATIVE_INT64, &minus1);
  L.rank = rank;
  runs = H5Gcreate2(file, "runs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  size_t nfill = 1;
  for (int m = 0; m < of->n_schemas; m++)
    for (int k = 0; k < of->schema[m].n_datasets; k++) {
      const size_t n = (size_t)(of->schema[m].n_records * dataset_values(&of->schema[m].datasets[k]));
      if (n > nfill) nfill = n;
    }
  nans = malloc(nfill * sizeof *nans);
  minus1s = malloc(nfill * sizeof *minus1s);
  if (nans && minus1s)
    for (size_t i = 0; i < nfill; i++) nans[i] = nan, minus1s[i] = minus1;
  L.nans = nans;
  L.minus1s = minus1s;
  if (L.dcpl_f64 < 0 || L.dcpl_i64 < 0 || runs < 0 || !nans || !minus1s) {
    errbuf_set(err, errlen, "output file %s: cannot create /runs", path);
    goto done;
  }
  for (int i = 0; i < n_runs; i++) {
    if (make_run(runs, &runs_spec[i], of->schema, of->n_schemas, &L) < 0) {
      errbuf_set(err, errlen, "output file %s: cannot create /runs/run_%06d", path, runs_spec[i].index);
      goto done;
    }
  }

  /* /instances, one row per model instance, filled in by the group that measures lambda_0 */
  {
    hsize_t ni = (hsize_t)n_instances;
    InstanceRow *irows = calloc(ni ? ni : 1, sizeof *irows);
    hid_t imt = instance_type(false), ift = instance_type(true), isp = H5Screate_simple(1, &ni, NULL);
    hid_t id = (irows && imt >= 0 && ift >= 0 && isp >= 0) ? H5Dcreate2(file, "instances", ift, isp, H5P_DEFAULT, dcpl_plain, H5P_DEFAULT) : -1;
    int bad = id < 0;
    if (!bad) {
      for (int i = 0; i < n_runs; i++) irows[runs_spec[i].instance] = instance_row_unmeasured(&runs_spec[i]);
      if (ni > 0) rank0_write(&L, id, imt, irows);
      if (attr_str(id, "units", "") || attr_str(id, "description", "one row per model instance: lambda_0 and the eta_max search (docs/output.md)"))
        bad = 1;
    }
    if (id >= 0) H5Dclose(id);
    if (isp >= 0) H5Sclose(isp);
    if (imt >= 0) H5Tclose(imt);
    if (ift >= 0) H5Tclose(ift);
    free(irows);
    if (bad) {
      errbuf_set(err, errlen, "output file %s: cannot create /instances", path);
      goto done;
    }
  }

  /* /summary, initial rows written once, by rank 0 */
  hsize_t nr = (hsize_t)n_runs;
  rows = calloc(n_runs > 0 ? (size_t)n_runs : 1, sizeof *rows);
  mtype = summary_type(false);
  ftype = summary_type(true);
  if (!rows || mtype < 0 || ftype < 0 || (sp = H5Screate_simple(1, &nr, NULL)) < 0 ||
      (d = H5Dcreate2(file, "summary", ftype, sp, H5P_DEFAULT, dcpl_plain, H5P_DEFAULT)) < 0) {
    errbuf_set(err, errlen, "output file %s: cannot create /summary", path);
    goto done;
  }
  for (int i = 0; i < n_runs; i++) {
    const RunSpec *rs = &runs_spec[i];
    rows[rs->index >= 0 && rs->index < n_runs ? rs->index : i] = summary_row_pending(rs, RUN_PENDING);
  }
  if (n_runs > 0) rank0_write(&L, d, mtype, rows);
  if (attr_str(d, "units", "") || attr_str(d, "description", "one row per run: identity, status, results and phase (docs/output.md)") ||
      attr_str(d, "loss", loss_name(cfg->model.loss)) ||
      attr_str(d, "phase_theory", cfg->model.loss == LOSS_MSE ? "MSE" : "MSE theory (the run used xent: phases classified as for MSE)")) {
    errbuf_set(err, errlen, "output file %s: cannot write /summary", path);
    goto done;
  }
  H5Dclose(d), d = -1;

  /* Metadata to disk now: from here on the file is readable whatever happens to the job. */
  errno = 0;
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
    errbuf_set(err, errlen, "output file %s: cannot write it: %s", path, strerror(errno ? errno : EIO));
    goto done;
  }
  if (write_errno) {
    errbuf_set(err, errlen, "output file %s: cannot write its initial rows: %s", path, strerror(write_errno));
    goto done;
  }
  rc = 0;

done:
  /* The file goes back to the caller even on failure: closing is collective, so it must happen
   * after all ranks agree (output_create). */
  of->file = file;
  file = -1;
  free(rows);
  free(nans);
  free(minus1s);
  if (d >= 0) H5Dclose(d);
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  if (g >= 0) H5Gclose(g);
  if (runs >= 0) H5Gclose(runs);
  if (L.dcpl_f64 >= 0) H5Pclose(L.dcpl_f64);
  if (L.dcpl_i64 >= 0) H5Pclose(L.dcpl_i64);
  if (dcpl_plain >= 0) H5Pclose(dcpl_plain);
  if (mtype >= 0) H5Tclose(mtype);
  if (ftype >= 0) H5Tclose(ftype);
  if (file >= 0) H5Fclose(file);
  if (fapl >= 0) H5Pclose(fapl);
  return rc;
}

int output_check_path(MPI_Comm comm, const Config *cfg, char *err, size_t errlen) {
  /* Rank 0 decides on the path; everybody gets the same verdict and message. */
  int rank;
  MPI_Comm_rank(comm, &rank);
  char msg[ERRBUF_LEN] = "";
  int bad = 0;
  if (rank == 0) bad = check_path(cfg->output, cfg->overwrite, msg, sizeof msg) != 0;
  MPI_Bcast(&bad, 1, MPI_INT, 0, comm);
  if (bad) {
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, 0, comm);
    errbuf_set(err, errlen, "%s", msg);
    return -1;
  }
  return 0;
}

int output_create(OutputFile *of, MPI_Comm comm, const Config *cfg, const RunSpec *runs, int n_runs, int n_instances, const Schema *schemas,
                  int n_schemas, const char *deck_text, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (err && errlen) err[0] = '\0';
  of->file = -1;
  of->path = strdup(cfg->output); /* NULL (out of memory): messages say "(unknown)" */
  of->comm = comm;
  of->n_runs = n_runs;
  of->n_instances = n_instances;
  of->n_schemas = n_schemas < OUTPUT_MAX_SCHEMAS ? n_schemas : OUTPUT_MAX_SCHEMAS;
  for (int m = 0; m < of->n_schemas; m++) of->schema[m] = schemas[m];
  /* Our one-line messages replace HDF5's error stack dumps. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

  if (output_check_path(comm, cfg, err, errlen)) return -1;

  /* Values that must be identical on all ranks for collective metadata writes: rank 0's. */
  char created[64] = "";
  if (rank == 0) {
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  }
  MPI_Bcast(created, (int)sizeof created, MPI_CHAR, 0, comm);
  long decklen = rank == 0 && deck_text ? (long)strlen(deck_text) : 0;
  MPI_Bcast(&decklen, 1, MPI_LONG, 0, comm);
  char *deck = malloc((size_t)decklen + 1);
  if (!deck) { /* rank-local failure cannot be agreed on safely; abort is the honest answer */
    report("output file %s: out of memory for the deck text", cfg->output);
    MPI_Abort(comm, 1);
  }
  if (rank == 0 && decklen) memcpy(deck, deck_text, (size_t)decklen);
  deck[decklen] = '\0';
  if (decklen) MPI_Bcast(deck, (int)decklen, MPI_CHAR, 0, comm);

  char myerr[ERRBUF_LEN] = "";
  int rc = create_file(of, comm, cfg, runs, n_runs, n_instances, deck, rank, size, created, myerr, sizeof myerr);
  free(deck);

  /* Agree on the outcome; the message is the lowest failing rank's. */
  int fail_rank = rc ? rank : size, first_fail;
  MPI_Allreduce(&fail_rank, &first_fail, 1, MPI_INT, MPI_MIN, comm);
  if (first_fail < size) {
    MPI_Bcast(myerr, (int)sizeof myerr, MPI_CHAR, first_fail, comm);
    /* A half-built file is useless and would make a rerun need -overwrite: remove it. It did not
     * exist before (EXCL), or -overwrite had asked for it to be replaced. */
    int created_it = of->file >= 0, all_created;
    MPI_Allreduce(&created_it, &all_created, 1, MPI_INT, MPI_MIN, comm);
    /* The file is removed below: rank 0 first gives its space back, so that closing (which writes
     * the metadata) does not fail on a full disk and leave HDF5 to crash at MPI_Finalize. */
    if (all_created && rank == 0 && truncate(cfg->output, 0) != 0) { /* best effort: closing may fail, as before */
    }
    if (all_created) MPI_Barrier(comm);
    if (of->file >= 0) H5Fclose(of->file);
    of->file = -1;
    free(of->path);
    of->path = NULL;
    if (all_created) {
      MPI_Barrier(comm);
      if (rank == 0) unlink(cfg->output);
    }
    errbuf_set(err, errlen, all_created ? "%s (the incomplete file was removed)" : "%s", myerr);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ independent writes */

/* The file's name for messages. */
static const char *fname(const OutputFile *of) { return of->path ? of->path : "(unknown)"; }

static hid_t indep_dxpl(void) {
  hid_t x = H5Pcreate(H5P_DATASET_XFER);
  if (x >= 0 && H5Pset_dxpl_mpio(x, H5FD_MPIO_INDEPENDENT) < 0) {
    H5Pclose(x);
    return -1;
  }
  return x;
}

static int check_rows(const OutputFile *of, const char *what, int run, int64_t first, int64_t count,
                      int64_t capacity) {
  if (!of || of->file < 0) {
    report("output: %s rows of run %d: the output file is not open", what, run);
    return -1;
  }
  if (run < 0 || run >= of->n_runs || first < 0 || count < 0 || first + count > capacity) {
    report("output file %s: %s rows [%lld, %lld) of run %d out of range (runs 0..%d, %lld rows "
           "per run)",
           fname(of), what, (long long)first, (long long)(first + count), run, of->n_runs - 1,
           (long long)capacity);
    return -1;
  }
  return 0;
}

int output_schema_index(const OutputFile *of, const char *group) {
  for (int m = 0; of && m < of->n_schemas; m++)
    if (strcmp(of->schema[m].group, group) == 0) return m;
  return -1;
}

/* Rows [first, first + count) of dataset path, each row width values (SCALAR: a 1-D dataset). */
static int write_block(hid_t file, const char *path, hid_t memtype, hid_t dxpl, int64_t first, int64_t count, int64_t width, const void *buf) {
  hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
  if (d < 0) return -1;
  hid_t fs = H5Dget_space(d);
  hsize_t start[2] = {(hsize_t)first, 0}, cnt[2] = {(hsize_t)count, (hsize_t)width};
  hid_t ms = H5Screate_simple(width == SCALAR ? 1 : 2, cnt, NULL);
  int rc = -1;
  if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
      H5Dwrite(d, memtype, ms, fs, dxpl, buf) >= 0)
    rc = 0;
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  H5Dclose(d);
  return rc;
}

/* Buffer rows [a, a + count) going to consecutive output rows: every dataset, the step last. */
static int write_consecutive(OutputFile *of, int run, const RecordBuffer *b, int64_t a, int64_t count, hid_t dxpl, double *col, int64_t *ints) {
  const Schema *s = b->schema;
  char path[192];
  int rc = 0;
  for (int j = 0; j < s->n_datasets && rc == 0; j++) {
    const int k = (j + 1) % s->n_datasets;
    const DatasetSpec *ds = &s->datasets[k];
    const int64_t off = schema_offset(s, k), w = dataset_values(ds);
    for (int64_t i = 0; i < count; i++)
      for (int64_t c = 0; c < w; c++) {
        const double v = records_row(b, a + i)[off + c];
        if (ds->type == DS_INT64) ints[i * w + c] = (int64_t)v;
        else col[i * w + c] = v;
      }
    snprintf(path, sizeof path, "/runs/run_%06d/%s/%s", run, s->group, ds->name);
    rc = write_block(of->file, path, ds->type == DS_INT64 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, dxpl, b->index[a], count, ds->width,
                     ds->type == DS_INT64 ? (const void *)ints : (const void *)col);
  }
  return rc;
}

int output_write_records(OutputFile *of, int run, const RecordBuffer *b, int64_t first, int64_t count) {
  const char *group = b && b->schema ? b->schema->group : "?";
  const int m = output_schema_index(of, group);
  if (!of || of->file < 0 || m < 0) {
    report("output: %s rows of run %d: the output file is not open or has no such group", group, run);
    return -1;
  }
  const Schema *s = &of->schema[m];
  bool bad = run < 0 || run >= of->n_runs || first < 0 || count < 0 || first + count > b->n;
  for (int64_t i = first; i < first + count && !bad; i++) bad = b->index[i] < 0 || b->index[i] >= s->n_records;
  if (bad) {
    report("output file %s: %s rows [%lld, %lld) of run %d out of range (runs 0..%d, %lld rows per run)", fname(of), group, (long long)first,
           (long long)(first + count), run, of->n_runs - 1, (long long)s->n_records);
    return -1;
  }
  if (count == 0) return 0;
  int64_t maxw = 1;
  for (int k = 0; k < s->n_datasets; k++) maxw = dataset_values(&s->datasets[k]) > maxw ? dataset_values(&s->datasets[k]) : maxw;
  double *col = malloc((size_t)(count * maxw) * sizeof *col);
  int64_t *ints = malloc((size_t)(count * maxw) * sizeof *ints);
  hid_t dxpl = indep_dxpl();
  int rc = col && ints && dxpl >= 0 ? 0 : -1;
  for (int64_t a = first; a < first + count && rc == 0;) { /* runs of consecutive output rows */
    int64_t e = a + 1;
    while (e < first + count && b->index[e] == b->index[e - 1] + 1) e++;
    rc = write_consecutive(of, run, b, a, e - a, dxpl, col, ints);
    a = e;
  }
  if (rc) report("output file %s: cannot write %s rows [%lld, %lld) of run %d", fname(of), group, (long long)first, (long long)(first + count), run);
  if (dxpl >= 0) H5Pclose(dxpl);
  free(col);
  free(ints);
  return rc;
}

int output_write_summary(OutputFile *of, const SummaryRow *row) {
  if (check_rows(of, "summary", row ? row->run : -1, 0, 0, 0) < 0) return -1;
  hid_t mtype = summary_type(false);
  hid_t dxpl = indep_dxpl();
  int rc = (mtype >= 0 && dxpl >= 0)
               ? write_block(of->file, "/summary", mtype, dxpl, row->run, 1, SCALAR, row)
               : -1;
  if (rc) report("output file %s: cannot write the summary row of run %d", fname(of), row->run);
  if (mtype >= 0) H5Tclose(mtype);
  if (dxpl >= 0) H5Pclose(dxpl);
  return rc;
}

int output_write_instance(OutputFile *of, const InstanceRow *row) {
  if (!of || of->file < 0 || !row || row->instance < 0 || row->instance >= of->n_instances) {
    report("output: instance row %d out of range", row ? row->instance : -1);
    return -1;
  }
  hid_t mtype = instance_type(false);
  hid_t dxpl = indep_dxpl();
  int rc = (mtype >= 0 && dxpl >= 0) ? write_block(of->file, "/instances", mtype, dxpl, row->instance, 1, SCALAR, row) : -1;
  if (rc) report("output file %s: cannot write the row of instance %d", fname(of), row->instance);
  if (mtype >= 0) H5Tclose(mtype);
  if (dxpl >= 0) H5Pclose(dxpl);
  return rc;
}

/* ------------------------------------------------------------------ close */

int output_close(OutputFile *of) {
  if (!of || of->file < 0) return 0;
  const char *name = fname(of);
  const int bad = H5Fclose(of->file) < 0;
  int any = bad, rank = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, of->comm);
  MPI_Comm_rank(of->comm, &rank);
  if (any) {
    /* A file HDF5 could not close (its last flush failed: a full disk) stays open inside HDF5,
     * which would close it again within MPI_Finalize, where MPI-IO can no longer do it (a crash).
     * The file is given up (-restart rebuilds the output from the checkpoints): rank 0 gives its
     * space back, then the ranks still holding it close it. */
    if (rank == 0 && truncate(name, 0) != 0) { /* best effort */ }
    MPI_Barrier(of->comm);
    if (bad && H5Iis_valid(of->file) > 0) H5Fclose(of->file);
    if (rank == 0) report("output file %s: closing failed (data may be incomplete)", name);
  }
  of->file = -1;
  free(of->path);
  of->path = NULL;
  return any ? -1 : 0;
}
