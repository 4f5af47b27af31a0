/* The parallel HDF5 output: created collectively, written independently by group leaders of
 * 2-rank sub-communicators at different times, then read back serially on rank 0 and checked value
 * by value (including the NaN / -1 fill of rows never written, and a copy of the file taken before
 * output_close, which is what a killed job leaves). Also the refusal / overwrite / unwritable
 * directory paths of output_create. The trajectories are written from schemas declared here, as a
 * measurement declares them (schema.h): a train-like and a test-like schema of columns, and a
 * schema with a 2-D dataset whose rows are written out of order and with gaps (as a measurement
 * recorded at listed steps does). Runs at 1 and 4 ranks.
 *
 * Set NTK_KEEP_OUTPUT=1 to keep the temporary directory (its path is printed). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "output.h"
#include "testutil.h"

#define N_RUNS 7

/* What each run's leader writes: rows written, final status, steps done. */
typedef struct {
  int64_t n_train, n_test;
  int status;
  int64_t steps_done;
} Plan;

static Config cfg;
static RunSpec specs[N_RUNS];
static int n_instances;
static Schema schemas[3];   /* "train", "test", "listed" */
#define LISTED_ROWS 5
#define LISTED_WIDTH 3
static int order[N_RUNS];
static Plan plan[N_RUNS];
static const char *deck =
    "-arch fc\n-depth 2\n-widths 16,32\n-steps 25\n-record_every 4\n-test_every 10\n"
    "-output out.h5\n";

static void setup(int world_size) {
  memset(&cfg, 0, sizeof cfg);
  cfg.model.arch = ARCH_FC;
  cfg.model.depth = 2;
  cfg.model.act = ACT_RELU;
  cfg.model.bias = true;
  cfg.model.sigma_w = 1.4;
  cfg.model.sigma_b = 0.1;
  cfg.model.base_width = 64;
  cfg.model.mup_zero_readout = false;
  cfg.data.kind = DATA_FASHION_MNIST;
  cfg.data.dir = DATA_FASHION_MNIST_DEFAULT_DIR;
  cfg.data.n_train = 256;
  cfg.data.n_test = 100;
  cfg.data.standardize = true;
  cfg.data.center_targets = false;
  cfg.ntk_batch = 20;
  cfg.ntk_nev = 3;
  cfg.lambda_every = 10;
  cfg.gram_max_rows = 4000;
  cfg.optimizer = OPT_SGD;
  cfg.batch_size = 32;
  cfg.steps = 25;
  cfg.momentum = 0.9;
  cfg.weight_decay = 1e-4;
  cfg.lr_schedule = LR_COSINE;
  cfg.warmup_steps = 5;
  cfg.lr_step_every = 10;
  cfg.lr_step_gamma = 0.5;
  cfg.lr_min_factor = 0.01;
  cfg.record_every = 4;  /* train steps 0,4,...,24,25: 8 records */
  cfg.test_every = 10;   /* test steps 0,10,20,25: 4 records */
  cfg.diverge_factor = 1e6;
  cfg.catapult_factor = 1.5;
  cfg.catapult_window = 10;
  cfg.ranks_per_run = world_size >= 2 ? 2 : 1;

  for (int i = 0; i < N_RUNS; i++) {
    RunSpec *r = &specs[i];
    r->index = i;
    r->instance = i / 2;
    r->width = (i % 2) ? 32 : 16;
    r->seed = 1000 + i / 2;
    r->param = (Parameterization)(i % 3);
    r->eta = 0.05 * (i + 1);
    r->eta_factor = (i % 3 == 2) ? NAN : 0.5 * (i + 1);
    r->n_params = 1000 + 17 * i;
    r->cost = 1e6 * (N_RUNS - i);
    order[i] = i;
  }
  n_instances = (N_RUNS + 1) / 2;
  (void)order;

  Schema *s = &schemas[0];
  *s = (Schema){.group = "train", .description = "train rows", .n_records = record_count(cfg.steps, cfg.record_every)};
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step");
  schema_add(s, "loss", DS_FLOAT64, SCALAR, "1", "train loss");
  schema_add(s, "accuracy", DS_FLOAT64, SCALAR, "1", "train accuracy");
  schema_add(s, "param_norm", DS_FLOAT64, SCALAR, "1", "parameter norm");
  schema_add(s, "dist_init", DS_FLOAT64, SCALAR, "1", "distance from init");
  schema_add(s, "lr", DS_FLOAT64, SCALAR, "1", "learning rate");
  s = &schemas[1];
  *s = (Schema){.group = "test", .description = "test rows", .n_records = record_count(cfg.steps, cfg.test_every)};
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step");
  schema_add(s, "loss", DS_FLOAT64, SCALAR, "1", "test loss");
  schema_add(s, "accuracy", DS_FLOAT64, SCALAR, "1", "test accuracy");
  s = &schemas[2];
  *s = (Schema){.group = "listed", .description = "rows at listed steps", .n_records = LISTED_ROWS};
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "training step");
  schema_add(s, "values", DS_FLOAT64, LISTED_WIDTH, "1", "a row of values");
  schema_add(s, "count", DS_INT64, SCALAR, "1", "an integer per row");

  int64_t ntr = schemas[0].n_records, nte = schemas[1].n_records;
  for (int i = 0; i < N_RUNS; i++) plan[i] = (Plan){ntr, nte, RUN_DONE, cfg.steps};
  plan[3] = (Plan){3, 1, RUN_RUNNING, 9};   /* still running when the job ends */
  plan[4] = (Plan){5, 2, RUN_DIVERGED, 17}; /* stopped early */
  plan[5] = (Plan){0, 0, RUN_PENDING, 0};   /* never started */
}

/* The values the leaders write, as functions of (run, row). */
typedef struct {
  int64_t step;
  double loss, accuracy, param_norm, dist_init, lr;
} TrainRecord;
typedef struct {
  int64_t step;
  double loss, accuracy;
} TestRecord;
static TrainRecord train_rec(int run, int64_t r) {
  TrainRecord t;
  t.step = record_step(cfg.steps, cfg.record_every, r);
  t.loss = run + 0.5 + 0.001 * (double)r;
  if (plan[run].status == RUN_DIVERGED && r == plan[run].n_train - 1) t.loss = INFINITY;
  t.accuracy = 0.01 * (double)r;
  t.param_norm = 10.0 + run + (double)r;
  t.dist_init = 0.5 * (double)r;
  t.lr = 0.1 * (run + 1) / (1.0 + (double)r);
  return t;
}
static TestRecord test_rec(int run, int64_t r) {
  TestRecord t;
  t.step = record_step(cfg.steps, cfg.test_every, r);
  t.loss = 100.0 + run + 0.25 * (double)r;
  t.accuracy = 0.5 + 0.03 * (double)r;
  return t;
}
static SummaryRow summary_of(int run, int status) {
  const RunSpec *s = &specs[run];
  const Plan *p = &plan[run];
  SummaryRow row = {.run = s->index, .instance = s->instance, .width = s->width,
                    .param = (int32_t)s->param, .seed = s->seed, .eta = s->eta,
                    .eta_factor = s->eta_factor, .status = status};
  row.steps_done = p->steps_done;
  row.n_train_records = (int32_t)p->n_train;
  row.n_test_records = (int32_t)p->n_test;
  row.loss0 = train_rec(run, 0).loss;
  row.loss_peak = row.loss_final = train_rec(run, p->n_train - 1).loss;
  row.acc_final = train_rec(run, p->n_train - 1).accuracy;
  row.test_loss_final = test_rec(run, p->n_test - 1).loss;
  row.test_acc_final = test_rec(run, p->n_test - 1).accuracy;
  row.wall_seconds = 1.5 * run;
  row.peak_step = 2 * run;
  return row;
}

/* ------------------------------------------------------------------ serial readers (rank 0) */

static int same_double(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return a == b; /* bit-exact round trip, infinities included */
}

static int read_attr(hid_t loc, const char *obj, const char *name, hid_t type, void *buf) {
  hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) return -1;
  int rc = H5Aread(a, type, buf) < 0 ? -1 : 0;
  H5Aclose(a);
  return rc;
}
/* Fixed-length string attribute into buf (len bytes). */
static int read_attr_str(hid_t loc, const char *obj, const char *name, char *buf, size_t len) {
  hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a);
  int rc = -1;
  if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && H5Tget_size(t) <= len) {
    memset(buf, 0, len);
    rc = H5Aread(a, t, buf) < 0 ? -1 : 0;
  }
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}
/* An enum attribute whose value is v and whose name for it is want. */
static int attr_enum_is(hid_t loc, const char *obj, const char *name, const char *want, int v) {
  hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) return 0;
  hid_t t = H5Aget_type(a), nt = H5Tget_native_type(t, H5T_DIR_ASCEND);
  int32_t got = -12345;
  char nm[64] = "";
  int ok = H5Tget_class(t) == H5T_ENUM && H5Tget_size(nt) == sizeof got && H5Aread(a, nt, &got) >= 0 &&
           H5Tenum_nameof(nt, &got, nm, sizeof nm) >= 0 && got == v && strcmp(nm, want) == 0;
  H5Tclose(nt);
  H5Tclose(t);
  H5Aclose(a);
  return ok;
}
static int64_t attr_i64(hid_t loc, const char *obj, const char *name) {
  int64_t v = INT64_MIN;
  if (read_attr(loc, obj, name, H5T_NATIVE_INT64, &v) < 0) return INT64_MIN;
  return v;
}
static double attr_f64(hid_t loc, const char *obj, const char *name) {
  double v = -12345.678;
  if (read_attr(loc, obj, name, H5T_NATIVE_DOUBLE, &v) < 0) return -12345.678;
  return v;
}
static int attr_str_is(hid_t loc, const char *obj, const char *name, const char *want) {
  char buf[4096];
  if (read_attr_str(loc, obj, name, buf, sizeof buf) < 0) return 0;
  return strcmp(buf, want) == 0;
}

/* Reads a whole 1-D dataset; returns its length or -1. Checks it is contiguous. */
static int64_t read_column(hid_t f, const char *path, hid_t memtype, void *buf, size_t cap) {
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  if (d < 0) return -1;
  hid_t sp = H5Dget_space(d);
  hsize_t n = 0;
  int64_t out = -1;
  hid_t dcpl = H5Dget_create_plist(d);
  if (H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_dims(sp, &n, NULL) == 1 &&
      n <= cap && H5Pget_layout(dcpl) == H5D_CONTIGUOUS &&
      H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)
    out = (int64_t)n;
  H5Pclose(dcpl);
  H5Sclose(sp);
  H5Dclose(d);
  return out;
}

static hid_t summary_mem_type(void) {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(SummaryRow));
#define F(name, type) H5Tinsert(t, #name, HOFFSET(SummaryRow, name), type)
  F(run, H5T_NATIVE_INT32); F(instance, H5T_NATIVE_INT32); F(width, H5T_NATIVE_INT32);
  F(param, H5T_NATIVE_INT32); F(seed, H5T_NATIVE_INT64); F(eta, H5T_NATIVE_DOUBLE);
  F(eta_factor, H5T_NATIVE_DOUBLE); F(status, H5T_NATIVE_INT32); F(steps_done, H5T_NATIVE_INT64);
  F(n_train_records, H5T_NATIVE_INT32); F(n_test_records, H5T_NATIVE_INT32);
  F(loss0, H5T_NATIVE_DOUBLE); F(loss_peak, H5T_NATIVE_DOUBLE); F(loss_final, H5T_NATIVE_DOUBLE);
  F(acc_final, H5T_NATIVE_DOUBLE); F(test_loss_final, H5T_NATIVE_DOUBLE);
  F(test_acc_final, H5T_NATIVE_DOUBLE); F(wall_seconds, H5T_NATIVE_DOUBLE); F(peak_step, H5T_NATIVE_INT64);
#undef F
  return t;
}

static int summary_equal(const SummaryRow *a, const SummaryRow *b) {
  return a->run == b->run && a->instance == b->instance && a->width == b->width &&
         a->param == b->param && a->seed == b->seed && same_double(a->eta, b->eta) &&
         same_double(a->eta_factor, b->eta_factor) && a->status == b->status &&
         a->steps_done == b->steps_done && a->n_train_records == b->n_train_records &&
         a->n_test_records == b->n_test_records && same_double(a->loss0, b->loss0) &&
         same_double(a->loss_peak, b->loss_peak) && same_double(a->loss_final, b->loss_final) &&
         same_double(a->acc_final, b->acc_final) &&
         same_double(a->test_loss_final, b->test_loss_final) &&
         same_double(a->test_acc_final, b->test_acc_final) &&
         same_double(a->wall_seconds, b->wall_seconds) && a->peak_step == b->peak_step;
}

/* Every value of the file. */
static void verify_file(const char *path, int world_size, const char *label) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  CHECK(f >= 0, "%s: serial H5Fopen of %s failed", label, path);
  if (f < 0) return;

  /* root attributes */
  CHECK(attr_str_is(f, ".", "program", "ntkhpc"), "%s: /program", label);
  char buf[4096];
  CHECK(read_attr_str(f, ".", "version", buf, sizeof buf) == 0 && buf[0], "%s: /version", label);
  CHECK(read_attr_str(f, ".", "created", buf, sizeof buf) == 0 && strlen(buf) == 20 &&
            buf[4] == '-' && buf[10] == 'T' && buf[19] == 'Z',
        "%s: /created '%s' is not ISO 8601 UTC", label, buf);
  CHECK(attr_i64(f, ".", "n_runs") == N_RUNS, "%s: n_runs", label);
  CHECK(attr_i64(f, ".", "n_instances") == n_instances, "%s: n_instances", label);
  CHECK(attr_str_is(f, ".", "measurements", "train,test,listed"), "%s: /measurements", label);
  CHECK(attr_i64(f, ".", "world_size") == world_size, "%s: world_size", label);
  CHECK(attr_i64(f, ".", "ranks_per_run") == cfg.ranks_per_run, "%s: ranks_per_run", label);

  /* /deck */
  {
    hid_t d = H5Dopen2(f, "deck", H5P_DEFAULT);
    CHECK(d >= 0, "%s: /deck missing", label);
    if (d >= 0) {
      hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
      CHECK(H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_type(sp) == H5S_SCALAR,
            "%s: /deck is not a scalar string", label);
      memset(buf, 0, sizeof buf);
      CHECK(H5Tget_size(t) <= sizeof buf && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0 &&
                strcmp(buf, deck) == 0,
            "%s: /deck content '%s'", label, buf);
      H5Tclose(t);
      H5Sclose(sp);
      H5Dclose(d);
    }
  }

  /* /config */
  CHECK(attr_str_is(f, "config", "arch", "fc"), "%s: config/arch", label);
  CHECK(attr_i64(f, "config", "depth") == 2, "%s: config/depth", label);
  CHECK(attr_str_is(f, "config", "activation", "relu"), "%s: config/activation", label);
  CHECK(attr_i64(f, "config", "bias") == 1, "%s: config/bias", label);
  CHECK(attr_f64(f, "config", "sigma_w") == 1.4, "%s: config/sigma_w", label);
  CHECK(attr_f64(f, "config", "sigma_b") == 0.1, "%s: config/sigma_b", label);
  CHECK(attr_i64(f, "config", "base_width") == 64, "%s: config/base_width", label);
  CHECK(attr_i64(f, "config", "mup_zero_readout") == 0, "%s: config/mup_zero_readout", label);
  CHECK(attr_str_is(f, "config", "dataset", "fashion_mnist"), "%s: config/dataset", label);
  CHECK(attr_str_is(f, "config", "data_dir", DATA_FASHION_MNIST_DEFAULT_DIR), "%s: data_dir", label);
  CHECK(attr_i64(f, "config", "n_train") == 256, "%s: config/n_train", label);
  CHECK(attr_i64(f, "config", "n_test") == 100, "%s: config/n_test", label);
  CHECK(attr_i64(f, "config", "standardize") == 1, "%s: config/standardize", label);
  CHECK(attr_i64(f, "config", "center_targets") == 0, "%s: config/center_targets", label);
  CHECK(attr_str_is(f, "config", "optimizer", "sgd"), "%s: config/optimizer", label);
  CHECK(attr_i64(f, "config", "batch_size") == 32, "%s: config/batch_size", label);
  CHECK(attr_i64(f, "config", "steps") == 25, "%s: config/steps", label);
  CHECK(attr_f64(f, "config", "momentum") == 0.9, "%s: config/momentum", label);
  CHECK(attr_f64(f, "config", "weight_decay") == 1e-4, "%s: config/weight_decay", label);
  CHECK(attr_str_is(f, "config", "lr_schedule", "cosine"), "%s: config/lr_schedule", label);
  CHECK(attr_i64(f, "config", "warmup_steps") == 5, "%s: config/warmup_steps", label);
  CHECK(attr_i64(f, "config", "lr_step_every") == 10, "%s: config/lr_step_every", label);
  CHECK(attr_f64(f, "config", "lr_step_gamma") == 0.5, "%s: config/lr_step_gamma", label);
  CHECK(attr_f64(f, "config", "lr_min_factor") == 0.01, "%s: config/lr_min_factor", label);
  CHECK(attr_i64(f, "config", "record_every") == 4, "%s: config/record_every", label);
  CHECK(attr_i64(f, "config", "test_every") == 10, "%s: config/test_every", label);
  CHECK(attr_f64(f, "config", "diverge_factor") == 1e6, "%s: config/diverge_factor", label);
  CHECK(attr_f64(f, "config", "catapult_factor") == 1.5, "%s: config/catapult_factor", label);
  CHECK(attr_i64(f, "config", "catapult_window") == 10, "%s: config/catapult_window", label);

  /* /runs */
  int64_t ntr = schemas[0].n_records, nte = schemas[1].n_records;
  static const char *tf[] = {"loss", "accuracy", "param_norm", "dist_init", "lr"};
  static const char *ef[] = {"loss", "accuracy"};
  for (int run = 0; run < N_RUNS; run++) {
    char g[64], p[128];
    snprintf(g, sizeof g, "runs/run_%06d", run);
    const RunSpec *s = &specs[run];
    CHECK(attr_i64(f, g, "run") == run, "%s: %s run", label, g);
    CHECK(attr_i64(f, g, "instance") == s->instance, "%s: %s instance", label, g);
    CHECK(attr_i64(f, g, "width") == s->width, "%s: %s width", label, g);
    CHECK(attr_i64(f, g, "seed") == s->seed, "%s: %s seed", label, g);
    CHECK(attr_enum_is(f, g, "param", param_name(s->param), (int)s->param), "%s: %s param", label, g);
    CHECK(same_double(attr_f64(f, g, "eta"), s->eta), "%s: %s eta", label, g);
    CHECK(same_double(attr_f64(f, g, "eta_factor"), s->eta_factor), "%s: %s eta_factor", label, g);
    CHECK(attr_i64(f, g, "n_params") == s->n_params, "%s: %s n_params", label, g);

    int64_t steps[64];
    double col[64];
    snprintf(p, sizeof p, "%s/train/step", g);
    CHECK(read_column(f, p, H5T_NATIVE_INT64, steps, 64) == ntr, "%s: %s length", label, p);
    for (int64_t r = 0; r < ntr; r++)
      CHECK(steps[r] == (r < plan[run].n_train ? record_step(cfg.steps, cfg.record_every, r) : -1),
            "%s: %s[%lld] = %lld", label, p, (long long)r, (long long)steps[r]);
    for (int k = 0; k < 5; k++) {
      snprintf(p, sizeof p, "%s/train/%s", g, tf[k]);
      CHECK(read_column(f, p, H5T_NATIVE_DOUBLE, col, 64) == ntr, "%s: %s length", label, p);
      for (int64_t r = 0; r < ntr; r++) {
        TrainRecord t = train_rec(run, r);
        double want = r >= plan[run].n_train ? NAN
                      : k == 0               ? t.loss
                      : k == 1               ? t.accuracy
                      : k == 2               ? t.param_norm
                      : k == 3               ? t.dist_init
                                             : t.lr;
        CHECK(same_double(col[r], want), "%s: %s[%lld] = %g, want %g", label, p, (long long)r,
              col[r], want);
      }
    }
    snprintf(p, sizeof p, "%s/test/step", g);
    CHECK(read_column(f, p, H5T_NATIVE_INT64, steps, 64) == nte, "%s: %s length", label, p);
    for (int64_t r = 0; r < nte; r++)
      CHECK(steps[r] == (r < plan[run].n_test ? record_step(cfg.steps, cfg.test_every, r) : -1),
            "%s: %s[%lld] = %lld", label, p, (long long)r, (long long)steps[r]);
    for (int k = 0; k < 2; k++) {
      snprintf(p, sizeof p, "%s/test/%s", g, ef[k]);
      CHECK(read_column(f, p, H5T_NATIVE_DOUBLE, col, 64) == nte, "%s: %s length", label, p);
      for (int64_t r = 0; r < nte; r++) {
        TestRecord t = test_rec(run, r);
        double want = r >= plan[run].n_test ? NAN : k == 0 ? t.loss : t.accuracy;
        CHECK(same_double(col[r], want), "%s: %s[%lld] = %g, want %g", label, p, (long long)r,
              col[r], want);
      }
    }
    /* the schema's attributes */
    snprintf(p, sizeof p, "%s/train", g);
    CHECK(attr_str_is(f, p, "description", "train rows"), "%s: %s description", label, p);
    snprintf(p, sizeof p, "%s/train/loss", g);
    CHECK(attr_str_is(f, p, "units", "1") && attr_str_is(f, p, "description", "train loss"), "%s: %s units/description", label, p);
    /* listed rows: 1 and 3 written (3 first), the others keep their fill */
    snprintf(p, sizeof p, "%s/listed/step", g);
    CHECK(read_column(f, p, H5T_NATIVE_INT64, steps, 64) == LISTED_ROWS, "%s: %s length", label, p);
    for (int64_t r = 0; r < LISTED_ROWS; r++)
      CHECK(steps[r] == (r == 1 || r == 3 ? 100 * r + run : -1), "%s: %s[%lld] = %lld", label, p, (long long)r, (long long)steps[r]);
    snprintf(p, sizeof p, "%s/listed/values", g);
    double m[LISTED_ROWS][LISTED_WIDTH];
    hid_t d = H5Dopen2(f, p, H5P_DEFAULT);
    CHECK(d >= 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, m) >= 0, "%s: read %s", label, p);
    if (d >= 0) H5Dclose(d);
    for (int64_t r = 0; r < LISTED_ROWS; r++)
      for (int c = 0; c < LISTED_WIDTH; c++) {
        const double want = r == 1 || r == 3 ? run + 0.5 * r + 0.125 * c : NAN;
        CHECK(same_double(m[r][c], want), "%s: %s[%lld][%d] = %g, want %g", label, p, (long long)r, c, m[r][c], want);
      }
  }

  /* /summary: member names are the struct's, in order */
  {
    static const char *names[] = {"run", "instance", "width", "param", "seed", "eta", "eta_factor",
                                  "status", "steps_done", "n_train_records", "n_test_records",
                                  "loss0", "loss_peak", "loss_final", "acc_final",
                                  "test_loss_final", "test_acc_final", "wall_seconds",
                                  "lambda0", "lambda_final", "peak_ratio", "peak_step", "eta_lambda0",
                                  "eta_lambda_final", "lambda_ratio", "phase", "measured"};
    const unsigned n_names = sizeof names / sizeof names[0];
    hid_t d = H5Dopen2(f, "summary", H5P_DEFAULT);
    CHECK(d >= 0, "%s: /summary missing", label);
    if (d >= 0) {
      hid_t t = H5Dget_type(d);
      CHECK(H5Tget_class(t) == H5T_COMPOUND && H5Tget_nmembers(t) == (int)n_names, "%s: summary type", label);
      for (unsigned i = 0; i < n_names && H5Tget_class(t) == H5T_COMPOUND; i++) {
        char *nm = H5Tget_member_name(t, i);
        CHECK(nm && strcmp(nm, names[i]) == 0, "%s: summary member %u is '%s', want '%s'", label,
              i, nm ? nm : "(null)", names[i]);
        if (nm) H5free_memory(nm);
      }
      H5Tclose(t);
      H5Dclose(d);
    }
    SummaryRow rows[N_RUNS];
    memset(rows, 0, sizeof rows);
    hid_t mt = summary_mem_type();
    CHECK(read_column(f, "summary", mt, rows, N_RUNS) == N_RUNS, "%s: summary length", label);
    H5Tclose(mt);
    for (int run = 0; run < N_RUNS; run++) {
      SummaryRow want;
      if (plan[run].status == RUN_PENDING) {
        const RunSpec *s = &specs[run];
        want = (SummaryRow){.run = run, .instance = s->instance, .width = s->width,
                            .param = (int32_t)s->param, .seed = s->seed, .eta = s->eta,
                            .eta_factor = s->eta_factor, .status = RUN_PENDING, .steps_done = 0,
                            .n_train_records = 0, .n_test_records = 0, .loss0 = NAN,
                            .loss_peak = NAN, .loss_final = NAN, .acc_final = NAN,
                            .test_loss_final = NAN, .test_acc_final = NAN, .wall_seconds = NAN, .peak_step = -1};
      } else {
        want = summary_of(run, plan[run].status);
      }
      CHECK(summary_equal(&rows[run], &want), "%s: summary row %d (status %d, steps_done %lld)",
            label, run, rows[run].status, (long long)rows[run].steps_done);
    }
  }
  CHECK(H5Fclose(f) >= 0, "%s: H5Fclose", label);
}

/* ------------------------------------------------------------------ helpers */

static int copy_file(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  int rc = (a && b) ? 0 : -1;
  char buf[65536];
  size_t n;
  while (rc == 0 && (n = fread(buf, 1, sizeof buf, a)) > 0)
    if (fwrite(buf, 1, n, b) != n) rc = -1;
  if (a) fclose(a);
  if (b && fclose(b) != 0) rc = -1;
  return rc;
}

static int write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  if (!fp) return -1;
  fputs(text, fp);
  return fclose(fp);
}

static int file_is(const char *path, const char *text) {
  char buf[256] = "";
  FILE *fp = fopen(path, "r");
  if (!fp) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  return strcmp(buf, text) == 0;
}

/* Collective create expected to fail: same -1 and a message naming the file on every rank. */
static void expect_create_fails(const char *path, bool overwrite, const char *must_contain) {
  OutputFile of;
  char err[1024] = "";
  cfg.output = (char *)path; /* outlives the calls (Config.output is a pointer) */
  cfg.overwrite = overwrite;
  int rc = output_create(&of, MPI_COMM_WORLD, &cfg, specs, N_RUNS, n_instances, schemas, 3, deck, err, sizeof err);
  CHECK(rc == -1, "output_create(%s) should fail, got %d", path, rc);
  CHECK(strstr(err, path) != NULL, "message does not name the file: '%s'", err);
  CHECK(!must_contain || strstr(err, must_contain), "message '%s' lacks '%s'", err,
        must_contain ? must_contain : "");
  CHECK(strchr(err, '\n') == NULL, "message is not one line: '%s'", err);
  CHECK(of.file < 0, "failed create left a file handle");
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  setup(size);

  /* record schedule */
  {
    CHECK(record_count(25, 4) == 8 && record_count(25, 10) == 4, "record counts");
    CHECK(record_step(25, 4, 0) == 0 && record_step(25, 4, 6) == 24 && record_step(25, 4, 7) == 25, "train steps");
    CHECK(record_step(25, 10, 1) == 10 && record_step(25, 10, 2) == 20 && record_step(25, 10, 3) == 25, "test steps");
    CHECK(record_count(20, 5) == 5 && record_step(20, 5, 4) == 20, "exact multiple");
    CHECK(record_count(20, 0) == 2 && record_step(20, 0, 0) == 0 && record_step(20, 0, 1) == 20, "every 0: first and last only");
    CHECK(record_count(0, 5) == 1 && record_count(0, 0) == 1, "zero steps");
    CHECK(record_due(25, 4, 0) && record_due(25, 4, 24) && record_due(25, 4, 25) && !record_due(25, 4, 23), "record_due");
  }

  char dir[256] = "";
  if (rank == 0) {
    snprintf(dir, sizeof dir, "/tmp/ntk_test_output_XXXXXX");
    if (!mkdtemp(dir)) dir[0] = '\0';
  }
  MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (!dir[0]) {
    if (rank == 0) fprintf(stderr, "cannot make a temporary directory\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  char path[512], killed[512];
  snprintf(path, sizeof path, "%s/out.h5", dir);
  snprintf(killed, sizeof killed, "%s/killed.h5", dir);

  /* ---- the main scenario ---- */
  OutputFile of;
  char err[1024] = "";
  cfg.output = (char *)path; /* outlives the calls (Config.output is a pointer) */
  cfg.overwrite = false;
  int rc = output_create(&of, MPI_COMM_WORLD, &cfg, specs, N_RUNS, n_instances, schemas, 3, deck, err, sizeof err);
  CHECK(rc == 0, "output_create: %s", err);
  if (rc != 0) MPI_Abort(MPI_COMM_WORLD, 3);
  CHECK(of.n_runs == N_RUNS && of.n_schemas == 3 && of.schema[0].n_records == 8 && of.schema[1].n_records == 4, "OutputFile sizes");

  /* Groups of ranks_per_run ranks; run i belongs to group i % n_groups; only leaders write. */
  int rpr = cfg.ranks_per_run, n_groups = (size + rpr - 1) / rpr, color = rank / rpr;
  MPI_Comm group;
  MPI_Comm_split(MPI_COMM_WORLD, color, rank, &group);
  int grank;
  MPI_Comm_rank(group, &grank);
  if (grank == 0) {
    /* Phases of 3 train rows and 1 test row per run; groups sleep differently so writes from
     * different ranks interleave in time. */
    /* One buffer per run and schema, as a run keeps them; rows are appended and flushed in
     * phases, like a running job's flushes. */
    RecordBuffer trb[N_RUNS], teb[N_RUNS], lib[N_RUNS];
    for (int run = color; run < N_RUNS; run += n_groups) {
      CHECK(records_init(&trb[run], &schemas[0]) == 0 && records_init(&teb[run], &schemas[1]) == 0 && records_init(&lib[run], &schemas[2]) == 0,
            "records_init");
      const Plan *p = &plan[run];
      for (int64_t r = 0; r < p->n_train; r++) {
        TrainRecord t = train_rec(run, r);
        double *o = records_append(&trb[run], r);
        o[0] = (double)t.step, o[1] = t.loss, o[2] = t.accuracy, o[3] = t.param_norm, o[4] = t.dist_init, o[5] = t.lr;
      }
      for (int64_t r = 0; r < p->n_test; r++) {
        TestRecord t = test_rec(run, r);
        double *o = records_append(&teb[run], r);
        o[0] = (double)t.step, o[1] = t.loss, o[2] = t.accuracy;
      }
      for (int k = 0; k < 2; k++) { /* output rows 3 then 1 */
        const int r = k ? 1 : 3;
        double *o = records_append(&lib[run], r);
        o[0] = 100 * r + run;
        for (int c = 0; c < LISTED_WIDTH; c++) o[1 + c] = run + 0.5 * r + 0.125 * c;
        o[1 + LISTED_WIDTH] = 7;
      }
    }
    /* Phases of 3 train rows and 1 test row per run; groups sleep differently so writes from
     * different ranks interleave in time. */
    for (int phase = 0; phase < 4; phase++) {
      nanosleep(&(struct timespec){0, 2000000L * (color + 1)}, NULL);
      for (int run = color; run < N_RUNS; run += n_groups) {
        const Plan *p = &plan[run];
        int64_t first = 3 * phase, count = p->n_train - first;
        if (count > 3) count = 3;
        if (count > 0) CHECK(output_write_records(&of, run, &trb[run], first, count) == 0, "write train run %d", run);
        if (phase < p->n_test) CHECK(output_write_records(&of, run, &teb[run], phase, 1) == 0, "write test run %d", run);
        if (phase == 1) CHECK(output_write_records(&of, run, &lib[run], 0, 2) == 0, "write listed rows of run %d", run);
        if (p->status != RUN_PENDING && phase == 0) {
          SummaryRow s = summary_of(run, RUN_RUNNING); /* overwritten below unless running */
          s.steps_done = 1;
          CHECK(output_write_summary(&of, &s) == 0, "write summary run %d", run);
        }
      }
    }
    for (int run = color; run < N_RUNS; run += n_groups) {
      if (plan[run].status == RUN_PENDING) continue;
      SummaryRow s = summary_of(run, plan[run].status);
      CHECK(output_write_summary(&of, &s) == 0, "final summary run %d", run);
    }
    /* Bad arguments are refused without touching the file. */
    CHECK(output_write_records(&of, N_RUNS, &trb[color], 0, 1) == -1, "run out of range accepted");
    CHECK(output_write_records(&of, color, &trb[color], 7, 2) == -1, "rows past the end accepted");
    CHECK(output_write_records(&of, color, &teb[color], -1, 1) == -1, "negative first accepted");
    CHECK(output_write_records(&of, color, &trb[color], 2, 0) == 0, "empty write refused");
    Schema alien = schemas[0];
    alien.group = "alien";
    RecordBuffer ab;
    CHECK(records_init(&ab, &alien) == 0 && records_append(&ab, 0), "alien buffer");
    CHECK(output_write_records(&of, color, &ab, 0, 1) == -1, "a group the file does not have accepted");
    records_free(&ab);
    for (int run = color; run < N_RUNS; run += n_groups) records_free(&trb[run]), records_free(&teb[run]), records_free(&lib[run]);
  }
  MPI_Comm_free(&group);

  /* What a job killed now would leave: the bytes on disk before any close. */
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) CHECK(copy_file(path, killed) == 0, "copy of the open file");
  MPI_Barrier(MPI_COMM_WORLD);

  CHECK(output_close(&of) == 0, "output_close");
  CHECK(output_close(&of) == 0, "second output_close is a no-op");

  if (rank == 0) {
    verify_file(path, size, "closed file");
    verify_file(killed, size, "file of a killed job");
  }

  /* ---- refusing, overwriting, unwritable places ---- */
  struct stat st0, st1;
  if (rank == 0) stat(path, &st0);
  MPI_Barrier(MPI_COMM_WORLD);
  expect_create_fails(path, false, "refusing to overwrite (give -overwrite to replace it)");
  if (rank == 0) {
    stat(path, &st1);
    CHECK(st0.st_size == st1.st_size && st0.st_mtim.tv_sec == st1.st_mtim.tv_sec &&
              st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec,
          "refused file was modified");
    verify_file(path, size, "refused file");
  }

  char other[512];
  snprintf(other, sizeof other, "%s/exists.h5", dir);
  if (rank == 0) CHECK(write_text(other, "not an HDF5 file\n") == 0, "write %s", other);
  MPI_Barrier(MPI_COMM_WORLD);
  expect_create_fails(other, false, "exists");
  if (rank == 0) CHECK(file_is(other, "not an HDF5 file\n"), "refused file was changed");

  cfg.overwrite = true;
  cfg.output = other;
  rc = output_create(&of, MPI_COMM_WORLD, &cfg, specs, N_RUNS, n_instances, schemas, 3, deck, err, sizeof err);
  CHECK(rc == 0, "output_create with overwrite: %s", err);
  if (rc == 0) CHECK(output_close(&of) == 0, "close overwritten file");
  if (rank == 0) CHECK(H5Fis_hdf5(other) > 0, "overwritten file is not HDF5");

  char bad[600];
  snprintf(bad, sizeof bad, "%s/no/such/dir/out.h5", dir);
  expect_create_fails(bad, true, NULL);
  snprintf(bad, sizeof bad, "%s/exists.h5/out.h5", dir); /* "directory" is a file */
  expect_create_fails(bad, true, "not a directory");
  expect_create_fails(dir, true, "is a directory");
  if (geteuid() != 0) { /* root may write anywhere: only meaningful for ordinary users */
    char ro[512];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    if (rank == 0) mkdir(ro, 0555);
    MPI_Barrier(MPI_COMM_WORLD);
    snprintf(bad, sizeof bad, "%s/out.h5", ro);
    expect_create_fails(bad, true, "not writable");
    if (rank == 0) rmdir(ro);
  }

  /* A failure half-way through creation (here: two runs claiming one group) leaves no file. */
  {
    char half[512];
    snprintf(half, sizeof half, "%s/half.h5", dir);
    specs[1].index = 0;
    expect_create_fails(half, false, "/runs/run_000000");
    specs[1].index = 1;
    if (rank == 0) CHECK(access(half, F_OK) != 0, "incomplete file %s was left behind", half);
  }

  /* ---- totals over all ranks ---- */
  int local[2] = {tu_passed, tu_failed}, total[2];
  MPI_Allreduce(local, total, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  int status = 0;
  if (rank == 0) {
    if (getenv("NTK_KEEP_OUTPUT")) {
      printf("kept %s\n", dir);
    } else {
      unlink(path);
      unlink(killed);
      unlink(other);
      rmdir(dir);
    }
    tu_passed = total[0];
    tu_failed = total[1];
    status = tu_report("test_output");
  }
  MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return status;
}
