/* Loss landscapes of a finished sweep (landscape.h, docs/landscape.md).
 *
 * The phase, on every rank of the world:
 *   1. rank 0 reads the source output's theta records (steps) and train losses, resolves every
 *      slice (a surface: a run, a centre record, a grid; a path: two endpoints and a grid of t) and
 *      broadcasts the list;
 *   2. the landscape file is created collectively with every group, dataset and attribute (rank 0
 *      writes the coordinates, the directions and the trajectory projections), its "spec"
 *      attribute written last; an existing file with the same spec is resumed, another refused;
 *   3. rank 0 reads the done bitmaps: the points still to do, in slice order, go to the dynamic
 *      scheduler; each group of -landscape_ranks_per_point ranks evaluates the points it is handed
 *      (the centre from the source, the directions as stored), and its leader writes the
 *      values into their place and then the point's done flag. Nothing is reduced over the world.
 * A point's values depend only on (slice, point, ranks per point): a killed surface resumes and
 * ends bit-identical, and any number of groups gives the same file. */
#include "landscape.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <hdf5.h>
#include <petscsys.h>
#include <slepceps.h>
#include "checkpoint.h"
#include "hessian.h"
#include "landscape_dirs.h"
#include "landscape_eval.h"
#include "rng.h"
#include "run_state.h"

enum { SL_SURFACE = 0, SL_PATH = 1, SL_BEZIER = 2 };
enum { MAX_SLICES = 4096 };

typedef struct {
  int kind;              /* SL_SURFACE, SL_PATH */
  int index;             /* surface_%03d / path_%03d */
  int run, rec;          /* the centre (a path: endpoint A): run and theta record */
  int64_t step, step_req;/* its step; what was asked (a step, LANDSCAPE_END or LANDSCAPE_PEAK) */
  int run_b, rec_b;      /* a path's endpoint B */
  int64_t step_b;
  int dim, nx, ny;       /* ny = 1 for 1-D slices and paths */
  double ax[2], by[2];   /* lo, hi of each coordinate */
  int64_t P;
  int64_t first;         /* its first point in the job's numbering */
  int affine;            /* its first layer from the affine cache (landscape_eval.h), else the plain forward */
} Slice;

static PetscLogEvent EV_POINT, EV_DIRS, EV_CACHE, EV_PARAMS, EV_EVAL;

bool landscape_on(const Config *cfg) { return cfg->n_landscape_centres > 0 || cfg->landscape_paths[0]; }

int landscape_parse_endpoint(const char *s, int *run, int64_t *step)
{
  char *end;
  long r = strtol(s, &end, 10);
  if (end == s || r < 0 || r > 1000000000L) return -1;
  *run = (int)r, *step = -1;
  if (*end == '@') {
    const char *p = end + 1;
    long long t = strtoll(p, &end, 10);
    if (end == p || t < 0) return -1;
    *step = t;
  }
  return *end ? -1 : 0;
}

static double coord(const double lohi[2], int n, int i) { return n == 1 ? lohi[0] : lohi[0] + (lohi[1] - lohi[0]) * i / (n - 1); }

/* ------------------------------------------------------------------ the source output */

static hid_t open_ro(const char *path) { return H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }

/* Rows of a 1-D dataset of run `run`'s group `grp` (NULL on failure). */
static void *read_column(hid_t f, int run, const char *grp, const char *name, hid_t mtype, size_t elem, int *n)
{
  char path[128];
  snprintf(path, sizeof path, "/runs/run_%06d/%s/%s", run, grp, name);
  void *buf = NULL;
  H5E_BEGIN_TRY
  {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
    const hssize_t m = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (m > 0 && (buf = malloc((size_t)m * elem)) && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) *n = (int)m;
    else free(buf), buf = NULL;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
  }
  H5E_END_TRY;
  return buf;
}

/* theta of record rec of run into out[P]. 0 or -1. */
static int read_theta(hid_t f, int run, int rec, int64_t P, double *out /* P */)
{
  char path[128];
  snprintf(path, sizeof path, "/runs/run_%06d/theta/theta", run);
  int rc = -1;
  H5E_BEGIN_TRY
  {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), fs = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t start[2] = {(hsize_t)rec, 0}, cnt[2] = {1, (hsize_t)P};
    hid_t ms = H5Screate_simple(2, cnt, NULL);
    if (fs >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 && H5Dread(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, out) >= 0)
      rc = 0;
    H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (d >= 0) H5Dclose(d);
  }
  H5E_END_TRY;
  for (int64_t p = 0; p < P && rc == 0; p++)
    if (!isfinite(out[p])) rc = -1;
  return rc;
}

/* The run's recorded theta steps: n valid records (step >= 0, in order); malloc'd. */
static int64_t *theta_steps(hid_t f, int run, int *n)
{
  int m = 0;
  int64_t *s = read_column(f, run, "theta", "step", H5T_NATIVE_INT64, sizeof(int64_t), &m);
  *n = 0;
  while (s && *n < m && s[*n] >= 0) (*n)++;
  return s;
}

/* Record of step `want` (the nearest recorded step): its position. */
static int nearest(const int64_t *steps, int n, int64_t want)
{
  int best = 0;
  for (int i = 1; i < n; i++)
    if (llabs(steps[i] - want) < llabs(steps[best] - want)) best = i;
  return best;
}

/* The step of the largest finite recorded train loss (-1 if none). */
static int64_t peak_step(hid_t f, int run)
{
  int n1 = 0, n2 = 0;
  int64_t *st = read_column(f, run, "train", "step", H5T_NATIVE_INT64, sizeof(int64_t), &n1), best = -1;
  double *L = read_column(f, run, "train", "loss", H5T_NATIVE_DOUBLE, sizeof(double), &n2), top = -INFINITY;
  for (int i = 0; st && L && i < n1 && i < n2 && st[i] >= 0; i++)
    if (isfinite(L[i]) && L[i] > top) top = L[i], best = st[i];
  free(st), free(L);
  return best;
}

/* Rank 0: the slices of the deck. 0, or -1 with one line in err. */
static int resolve_slices(const Config *cfg, const RunSpec *runs, int n_runs, hid_t f, Slice *sl, int *n_sl, char *err, size_t errlen)
{
  int n = 0, ns = 0, np = 0;
  int64_t first = 0;
  for (int r = 0; r < n_runs; r++) {
    bool want = cfg->n_landscape_runs == 0;
    for (int i = 0; i < cfg->n_landscape_runs; i++) want |= cfg->landscape_runs[i] == r;
    if (!want || !cfg->n_landscape_centres) continue;
    int nrec;
    int64_t *steps = theta_steps(f, r, &nrec);
    if (!nrec) {
      free(steps);
      snprintf(err, errlen, "landscape: run %d has no recorded theta in the source output (-theta_every)", r);
      return -1;
    }
    for (int c = 0; c < cfg->n_landscape_centres; c++) {
      if (n == MAX_SLICES) return snprintf(err, errlen, "landscape: more than %d surfaces", MAX_SLICES), free(steps), -1;
      Slice *s = &sl[n++];
      memset(s, 0, sizeof *s);
      const int64_t tok = cfg->landscape_centres[c];
      int64_t want_step = tok >= 0 ? tok : tok == LANDSCAPE_END ? steps[nrec - 1] : peak_step(f, r);
      if (want_step < 0) want_step = 0;
      const int rec = nearest(steps, nrec, want_step);
      bool seen = false; /* two tokens on one record (a lazy run's peak is often step 0): one surface */
      for (int q = 0; q < n - 1; q++) seen |= sl[q].kind == SL_SURFACE && sl[q].run == r && sl[q].rec == rec;
      if (seen) {
        n--;
        continue;
      }
      s->kind = SL_SURFACE, s->index = ns++, s->run = r, s->step_req = tok;
      s->rec = rec, s->step = steps[s->rec];
      s->dim = cfg->landscape_dim, s->nx = (int)cfg->landscape_alpha[2], s->ny = s->dim == 2 ? (int)cfg->landscape_beta[2] : 1;
      s->ax[0] = cfg->landscape_alpha[0], s->ax[1] = cfg->landscape_alpha[1];
      s->by[0] = s->dim == 2 ? cfg->landscape_beta[0] : 0, s->by[1] = s->dim == 2 ? cfg->landscape_beta[1] : 0;
      s->P = runs[r].n_params, s->first = first, s->run_b = -1, s->rec_b = -1, s->step_b = -1;
      first += (int64_t)s->nx * s->ny;
      if (cfg->landscape_dir == LDIR_PCA && nrec < 3) {
        free(steps);
        snprintf(err, errlen, "option -landscape_dir: pca needs at least 3 recorded theta of run %d, it has %d (-theta_every)", r, nrec);
        return -1;
      }
    }
    free(steps);
  }
  char buf[sizeof cfg->landscape_paths];
  snprintf(buf, sizeof buf, "%s", cfg->landscape_paths);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    int ra = -1, rb = -1;
    int64_t sa, sb;
    if (!colon) return snprintf(err, errlen, "option -landscape_paths: '%s' is not RUN[@STEP]:RUN[@STEP]", tok), -1;
    *colon = 0;
    if (landscape_parse_endpoint(tok, &ra, &sa) || landscape_parse_endpoint(colon + 1, &rb, &sb))
      return snprintf(err, errlen, "option -landscape_paths: '%s:%s' is not RUN[@STEP]:RUN[@STEP]", tok, colon + 1), -1;
    if (ra >= n_runs || rb >= n_runs) return snprintf(err, errlen, "option -landscape_paths: run %d is not in the sweep (%d runs)", ra >= n_runs ? ra : rb, n_runs), -1;
    if (runs[ra].n_params != runs[rb].n_params)
      return snprintf(err, errlen, "option -landscape_paths: runs %d and %d have different models (%lld and %lld parameters)", ra, rb,
                      (long long)runs[ra].n_params, (long long)runs[rb].n_params), -1;
    if (n == MAX_SLICES) return snprintf(err, errlen, "landscape: more than %d slices", MAX_SLICES), -1;
    Slice *s = &sl[n++];
    memset(s, 0, sizeof *s);
    int na, nb;
    int64_t *A = theta_steps(f, ra, &na), *B = theta_steps(f, rb, &nb);
    if (!na || !nb) {
      free(A), free(B);
      return snprintf(err, errlen, "option -landscape_paths: run %d has no recorded theta (-theta_every)", !na ? ra : rb), -1;
    }
    s->kind = SL_PATH, s->index = np++, s->run = ra, s->run_b = rb, s->dim = 1;
    s->rec = sa < 0 ? na - 1 : nearest(A, na, sa), s->rec_b = sb < 0 ? nb - 1 : nearest(B, nb, sb);
    s->step = A[s->rec], s->step_b = B[s->rec_b], s->step_req = sa < 0 ? LANDSCAPE_END : sa;
    s->nx = (int)cfg->landscape_path_t[2], s->ny = 1;
    s->ax[0] = cfg->landscape_path_t[0], s->ax[1] = cfg->landscape_path_t[1];
    s->P = runs[ra].n_params, s->first = first;
    first += s->nx;
    free(A), free(B);
    if (s->run == s->run_b && s->rec == s->rec_b)
      return snprintf(err, errlen, "option -landscape_paths: both ends of path %d are record %d of run %d", s->index, s->rec, s->run), -1;
    if (cfg->landscape_bezier_steps > 0) { /* the same ends, a trained bend */
      if (n == MAX_SLICES) return snprintf(err, errlen, "landscape: more than %d slices", MAX_SLICES), -1;
      sl[n] = *s;
      sl[n].kind = SL_BEZIER, sl[n].first = first;
      first += sl[n].nx;
      n++;
    }
  }
  *n_sl = n;
  return 0;
}

/* ------------------------------------------------------------------ directions */

typedef struct {
  int slice;             /* the slice whose centre and directions are held, -1 none */
  int64_t P;
  double *c, *d1, *d2;   /* P each; d2 NULL-equivalent when dim 1 (not used) */
  double sv[2];          /* PCA: singular values */
} Dirs;

/* Is name one of the comma-separated names of list? */
static bool listed(const char *list, const char *name)
{
  const size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    const size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && !strncmp(p, name, n)) return true;
    if (!e) break;
    p = e + 1;
  }
  return false;
}

/* The top `dim` unit eigenvectors of the loss Hessian (gn = 0) or of the Gauss-Newton matrix
 * G = J^T J / N (gn = 1: its eigenvectors are the NTK's, J^T u / sqrt(N lambda)) at c, on the
 * first hb training samples, by Krylov-Schur on one rank (tolerance 1e-10); each signed so that its
 * largest-magnitude entry is positive; the eigenvalues in ev. */
static PetscErrorCode eig_dirs(const Model *m, const Dataset *train, int hb, const double *c, int dim, int gn, double *d1, double *d2,
                               double *ev)
{
  HessianOperator *op;
  Mat A;
  EPS eps;
  Vec x;
  PetscInt nconv;
  PetscFunctionBeginUser;
  PetscCall(hessian_operator_create(&op, PETSC_COMM_SELF, m, train->x, train->y, hb, 0, hb));
  PetscCall(hessian_set_params(op, c));
  PetscCall(gn ? hessian_gn_mat(op, &A) : hessian_operator_mat(op, &A));
  PetscCall(EPSCreate(PETSC_COMM_SELF, &eps));
  PetscCall(EPSSetOperators(eps, A, NULL));
  PetscCall(EPSSetProblemType(eps, EPS_HEP));
  PetscCall(EPSSetWhichEigenpairs(eps, EPS_LARGEST_REAL));
  PetscCall(EPSSetDimensions(eps, dim, PETSC_DEFAULT, PETSC_DEFAULT));
  PetscCall(EPSSetTolerances(eps, 1e-10, 10000));
  PetscCall(EPSSolve(eps));
  PetscCall(EPSGetConverged(eps, &nconv));
  PetscCheck(nconv >= dim, PETSC_COMM_SELF, PETSC_ERR_NOT_CONVERGED, "landscape: %d of %d eigenvectors converged", (int)nconv, dim);
  PetscCall(MatCreateVecs(A, &x, NULL));
  for (int i = 0; i < dim; i++) {
    double *d = i ? d2 : d1, kr;
    const PetscScalar *xa;
    PetscInt n;
    PetscCall(EPSGetEigenpair(eps, i, &kr, NULL, x, NULL));
    PetscCall(VecNormalize(x, NULL));
    PetscCall(VecGetLocalSize(x, &n));
    PetscCall(VecGetArrayRead(x, &xa));
    size_t big = 0;
    for (PetscInt p = 0; p < n; p++) {
      d[p] = xa[p];
      if (fabs(d[p]) > fabs(d[big])) big = (size_t)p;
    }
    PetscCall(VecRestoreArrayRead(x, &xa));
    if (d[big] < 0)
      for (PetscInt p = 0; p < n; p++) d[p] = -d[p];
    ev[i] = kr;
  }
  PetscCall(VecDestroy(&x));
  PetscCall(EPSDestroy(&eps));
  PetscCall(hessian_operator_destroy(&op));
  PetscFunctionReturn(0);
}

/* Centre and directions of slice s from the source file (rank 0 at layout; deterministic). 0 or -1. */
static int make_dirs(const Config *cfg, const Slice *s, int si, hid_t f, const Model *m, const Dataset *train, Dirs *D)
{
  if (D->slice == si) return 0;
  PetscLogEventBegin(EV_DIRS, 0, 0, 0, 0);
  int rc = -1;
  const int64_t P = s->P;
  if (D->P < P) {
    free(D->c), free(D->d1), free(D->d2);
    D->c = malloc(P * sizeof(double)), D->d1 = malloc(P * sizeof(double)), D->d2 = malloc(P * sizeof(double));
    D->P = D->c && D->d1 && D->d2 ? P : 0;
    if (!D->P) goto done;
  }
  D->slice = -1, D->sv[0] = D->sv[1] = NAN;
  if (read_theta(f, s->run, s->rec, P, D->c)) goto done;
  if (s->kind == SL_PATH) {
    if (read_theta(f, s->run_b, s->rec_b, P, D->d1)) goto done;
    for (int64_t p = 0; p < P; p++) D->d1[p] -= D->c[p];
    memset(D->d2, 0, P * sizeof(double));
  } else if (s->kind == SL_BEZIER) { /* d1: the bend, from the midpoint (trained by train_bend); d2: theta_B */
    if (read_theta(f, s->run_b, s->rec_b, P, D->d2)) goto done;
    for (int64_t p = 0; p < P; p++) D->d1[p] = 0.5 * (D->c[p] + D->d2[p]);
  } else if (cfg->landscape_dir == LDIR_RANDOM) {
    landscape_random_direction(D->d1, m, D->c, (uint64_t)cfg->landscape_seed, 0, cfg->landscape_filter, cfg->landscape_bias);
    if (s->dim == 2) landscape_random_direction(D->d2, m, D->c, (uint64_t)cfg->landscape_seed, 1, cfg->landscape_filter, cfg->landscape_bias);
    else memset(D->d2, 0, P * sizeof(double));
    for (int t = 0; t < m->n_tensors && cfg->landscape_tensors[0]; t++)
      if (!listed(cfg->landscape_tensors, m->tensors[t].name)) {
        memset(D->d1 + m->tensors[t].offset, 0, m->tensors[t].size * sizeof(double));
        memset(D->d2 + m->tensors[t].offset, 0, m->tensors[t].size * sizeof(double));
      }
  } else if (cfg->landscape_dir == LDIR_HESSIAN || cfg->landscape_dir == LDIR_NTK) {
    const int hb0 = cfg->landscape_hess_batch ? cfg->landscape_hess_batch : cfg->hess_batch, hb = hb0 < train->n ? hb0 : train->n;
    memset(D->d2, 0, P * sizeof(double));
    if (eig_dirs(m, train, hb, D->c, s->dim, cfg->landscape_dir == LDIR_NTK, D->d1, D->d2, D->sv)) goto done;
  } else { /* pca of the run's whole recorded trajectory */
    int n;
    int64_t *steps = theta_steps(f, s->run, &n);
    free(steps);
    double *rows = malloc((size_t)n * P * sizeof(double)), pc_sv[2];
    double *pc = malloc(2 * (size_t)P * sizeof(double));
    int ok = rows && pc;
    for (int i = 0; i < n && ok; i++) ok = read_theta(f, s->run, i, P, rows + (size_t)i * P) == 0;
    if (ok && landscape_pca(pc, pc_sv, rows, n, (size_t)P, 2) == 0) {
      memcpy(D->d1, pc, P * sizeof(double));
      if (s->dim == 2) memcpy(D->d2, pc + P, P * sizeof(double));
      else memset(D->d2, 0, P * sizeof(double));
      D->sv[0] = pc_sv[0], D->sv[1] = pc_sv[1];
    } else ok = 0;
    free(rows), free(pc);
    if (!ok) goto done;
  }
  D->slice = si;
  rc = 0;
done:
  PetscLogEventEnd(EV_DIRS, 0, 0, 0, 0);
  return rc;
}

/* The centre (from the source) and the directions as rank 0 stored them in the landscape file
 * (any rank; independent reads): every rank evaluates with exactly the stored directions. */
static int read_dir(hid_t f, const Slice *s, const char *name, double *out)
{
  char path[96];
  snprintf(path, sizeof path, s->kind == SL_SURFACE ? "/surfaces/surface_%03d/%s" : s->kind == SL_PATH ? "/paths/path_%03d/%s" : "/paths/bezier_%03d/%s",
           s->index, name);
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT), x = H5Pcreate(H5P_DATASET_XFER);
  int rc = d >= 0 && x >= 0 && H5Pset_dxpl_mpio(x, H5FD_MPIO_INDEPENDENT) >= 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, x, out) >= 0 ? 0 : -1;
  if (x >= 0) H5Pclose(x);
  if (d >= 0) H5Dclose(d);
  return rc;
}

static int load_dirs(hid_t f, const Slice *s, int si, hid_t src, Dirs *D)
{
  if (D->slice == si) return 0;
  const int64_t P = s->P;
  if (D->P < P) {
    free(D->c), free(D->d1), free(D->d2);
    D->c = malloc(P * sizeof(double)), D->d1 = malloc(P * sizeof(double)), D->d2 = calloc(P, sizeof(double));
    D->P = D->c && D->d1 && D->d2 ? P : 0;
    if (!D->P) return -1;
  }
  D->slice = -1;
  if (read_theta(src, s->run, s->rec, P, D->c) || read_dir(f, s, "dir1", D->d1) || ((s->dim == 2 || s->kind == SL_BEZIER) && read_dir(f, s, "dir2", D->d2)))
    return -1;
  D->slice = si;
  return 0;
}

/* ------------------------------------------------------------------ the landscape file */

static int attr_put(hid_t loc, const char *name, hid_t type, const void *v)
{
  hid_t sp = H5Screate(H5S_SCALAR), a = sp >= 0 ? H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
  int rc = a >= 0 && H5Awrite(a, type, v) >= 0 ? 0 : -1;
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
  return rc;
}
static int attr_str(hid_t loc, const char *name, const char *v)
{
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  int rc = attr_put(loc, name, t, v);
  H5Tclose(t);
  return rc;
}
static int attr_i64(hid_t loc, const char *name, int64_t v) { return attr_put(loc, name, H5T_NATIVE_INT64, &v); }

static int make_ds(hid_t g, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1, const char *units, const char *desc)
{
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  hsize_t dims[2] = {d0, d1};
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  int rc = -1;
  if (dcpl >= 0 && sp >= 0 && H5Pset_layout(dcpl, H5D_CONTIGUOUS) >= 0 && H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
      H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0) {
    hid_t d = H5Dcreate2(g, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0) rc = attr_str(d, "units", units) | attr_str(d, "description", desc), H5Dclose(d);
  }
  if (sp >= 0) H5Sclose(sp);
  if (dcpl >= 0) H5Pclose(dcpl);
  return rc;
}

static const char *const VALUES[6] = {"train_loss", "train_acc", "test_loss", "test_acc", "grad_norm", "hess_top"};

static void slice_path(const Slice *s, char *buf, size_t n)
{
  snprintf(buf, n, s->kind == SL_SURFACE ? "/surfaces/surface_%03d" : s->kind == SL_PATH ? "/paths/path_%03d" : "/paths/bezier_%03d", s->index);
}

/* Collective: every group, dataset and attribute of the slices. */
static int create_layout(hid_t f, const Config *cfg, const Slice *sl, int n, const char *source, const Dataset *trv, const Dataset *tev,
                         const int *n_recs)
{
  int rc = 0;
  hid_t gs = H5Gcreate2(f, "surfaces", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), gp = H5Gcreate2(f, "paths", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  rc |= gs < 0 || gp < 0;
  rc |= attr_str(f, "source", source);
  rc |= attr_i64(f, "seed", cfg->landscape_seed);
  rc |= attr_str(f, "rng_stream", "landscape (Philox stream 7; direction j in the high 32 bits)");
  rc |= attr_i64(f, "train_samples", trv->n);
  rc |= attr_i64(f, "test_samples", tev->n);
  rc |= attr_i64(f, "ranks_per_point", cfg->landscape_ranks_per_point);
  rc |= attr_str(f, "layout", "value arrays are [n_beta, n_alpha]: row j = beta[j], column i = alpha[i] (x = alpha)");
  for (int k = 0; k < n && !rc; k++) {
    const Slice *s = &sl[k];
    char path[64];
    slice_path(s, path, sizeof path);
    hid_t g = H5Gcreate2(f, path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    rc |= attr_str(g, "kind", s->kind == SL_SURFACE ? "surface" : s->kind == SL_PATH ? "path" : "bezier");
    rc |= attr_i64(g, "run", s->run) | attr_i64(g, "step", s->step) | attr_i64(g, "record", s->rec) | attr_i64(g, "n_params", s->P);
    rc |= attr_str(g, "step_requested", s->step_req == LANDSCAPE_END ? "end" : s->step_req == LANDSCAPE_PEAK ? "peak" : "step");
    rc |= attr_i64(g, "dim", s->dim);
    if (s->kind == SL_SURFACE) {
      rc |= attr_str(g, "direction", landscape_dir_name(cfg->landscape_dir));
      if (cfg->landscape_dir >= LDIR_HESSIAN)
        rc |= attr_i64(g, "eig_batch", cfg->landscape_hess_batch ? cfg->landscape_hess_batch : cfg->hess_batch);
      rc |= attr_i64(g, "seed", cfg->landscape_seed);
      rc |= attr_i64(g, "filter_normalized", cfg->landscape_dir == LDIR_RANDOM && cfg->landscape_filter);
      rc |= attr_i64(g, "perturb_1d", cfg->landscape_bias);
      rc |= attr_str(g, "tensors", cfg->landscape_tensors[0] ? cfg->landscape_tensors : "all");
    } else {
      rc |= attr_str(g, "direction", s->kind == SL_PATH ? "theta_B - theta_A" : "quadratic Bezier: (1-t)^2 theta_A + 2t(1-t) dir1 + t^2 dir2");
      rc |= attr_i64(g, "run_b", s->run_b) | attr_i64(g, "step_b", s->step_b) | attr_i64(g, "record_b", s->rec_b);
    }
    const hsize_t nx = (hsize_t)s->nx, ny = (hsize_t)s->ny;
    rc |= make_ds(g, "alpha", H5T_NATIVE_DOUBLE, 1, nx, 0, "1",
                  s->kind == SL_PATH ? "t: theta = theta_A + t (theta_B - theta_A)" : s->kind == SL_BEZIER ? "t along the Bezier curve" : "coordinate along dir1");
    rc |= make_ds(g, "beta", H5T_NATIVE_DOUBLE, 1, ny, 0, "1", "coordinate along dir2 (one 0 for 1-D slices and paths)");
    for (int v = 0; v < 4; v++)
      rc |= make_ds(g, VALUES[v], H5T_NATIVE_DOUBLE, 2, ny, nx, "1",
                    v % 2 ? "accuracy at theta_c + alpha dir1 + beta dir2, [n_beta, n_alpha]" : "loss (1/2N) sum |f - y|^2 at theta_c + alpha dir1 + beta dir2, [n_beta, n_alpha]");
    if (cfg->landscape_hess_every) {
      rc |= make_ds(g, "grad_norm", H5T_NATIVE_DOUBLE, 2, ny, nx, "1",
                    "|grad L| on the evaluated training samples (full batch for gd, step 0's minibatch for sgd), at every -landscape_hess_every-th point, else NaN");
      rc |= make_ds(g, "hess_top", H5T_NATIVE_DOUBLE, 2, ny, nx, "1", "top eigenvalue of the loss Hessian on the first -landscape_hess_batch training samples at the same points, else NaN");
    }
    rc |= make_ds(g, "done", H5T_NATIVE_INT8, 2, ny, nx, "", "1 once the point's values are written (resume bitmap)");
    rc |= make_ds(g, "dir1", H5T_NATIVE_DOUBLE, 1, (hsize_t)s->P, 0, "1", "first direction, parameter-table order");
    if (s->dim == 2) rc |= make_ds(g, "dir2", H5T_NATIVE_DOUBLE, 1, (hsize_t)s->P, 0, "1", "second direction");
    if (s->kind == SL_BEZIER) {
      rc |= make_ds(g, "dir2", H5T_NATIVE_DOUBLE, 1, (hsize_t)s->P, 0, "1", "theta_B (dir1 is the trained bend)");
      rc |= make_ds(g, "bezier_t", H5T_NATIVE_DOUBLE, 1, (hsize_t)cfg->landscape_bezier_steps, 0, "1", "t of each training step of the bend");
      rc |= make_ds(g, "bezier_loss", H5T_NATIVE_DOUBLE, 1, (hsize_t)cfg->landscape_bezier_steps, 0, "1",
                    "training loss at phi(t) before each step (the evaluated training samples)");
    }
    if (s->kind == SL_SURFACE) {
      const hsize_t nr = (hsize_t)n_recs[k];
      rc |= make_ds(g, "traj_step", H5T_NATIVE_INT64, 1, nr, 0, "steps", "recorded steps of theta projected onto the directions");
      rc |= make_ds(g, "traj_coord", H5T_NATIVE_DOUBLE, 2, nr, 2, "1", "least-squares (alpha, beta) of theta_t - theta_c (beta NaN in 1-D)");
      rc |= make_ds(g, "traj_residual", H5T_NATIVE_DOUBLE, 1, nr, 0, "1", "|theta_t - theta_c - alpha dir1 - beta dir2|");
      if (cfg->landscape_dir == LDIR_HESSIAN || cfg->landscape_dir == LDIR_NTK)
        rc |= make_ds(g, "eigenvalues", H5T_NATIVE_DOUBLE, 1, (hsize_t)s->dim, 0, "1",
                      "eigenvalues of the Hessian (hessian) or of J^T J / N (ntk) along dir1, dir2 at the centre");
      if (cfg->landscape_dir == LDIR_PCA)
        rc |= make_ds(g, "pca_singular_values", H5T_NATIVE_DOUBLE, 1, 2, 0, "1", "singular values of {theta_t - theta_T} along dir1, dir2");
      rc |= make_ds(g, "traj_distance", H5T_NATIVE_DOUBLE, 1, nr, 0, "1", "|theta_t - theta_c|");
    }
    H5Gclose(g);
  }
  if (gs >= 0) H5Gclose(gs);
  if (gp >= 0) H5Gclose(gp);
  return rc ? -1 : 0;
}

static hid_t indep(void)
{
  hid_t x = H5Pcreate(H5P_DATASET_XFER);
  if (x >= 0) H5Pset_dxpl_mpio(x, H5FD_MPIO_INDEPENDENT);
  return x;
}

/* Independent: the whole dataset `name` of group path from buf. */
static int write_all(hid_t f, const char *gpath, const char *name, hid_t mtype, const void *buf)
{
  char path[128];
  snprintf(path, sizeof path, "%s/%s", gpath, name);
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT), x = indep();
  int rc = d >= 0 && x >= 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, x, buf) >= 0 ? 0 : -1;
  if (x >= 0) H5Pclose(x);
  if (d >= 0) H5Dclose(d);
  return rc;
}

/* The bend of a quadratic Bezier curve between theta_A = D->c and theta_B = D->d2 (Garipov et al.
 * 2018): from the midpoint, K gradient steps, step k at t_k = uniform(seed, stream "landscape" +
 * ((2 + path) << 32), k): bend -= lr 2 t (1 - t) grad L(phi(t)), phi the curve, L on the evaluated
 * training samples (their full batch for gd). One rank; t_k and L(phi(t_k)) into ts, ls. */
static int train_bend(const Config *cfg, const RunSpec *run, const Dataset *trv, const Dataset *tev, const Slice *s, Dirs *D, double *ts, double *ls)
{
  RunState rs;
  if (run_state_setup(&rs, MPI_COMM_SELF, cfg, run, trv, tev)) return -1;
  const double lr = cfg->landscape_bezier_lr > 0 ? cfg->landscape_bezier_lr : run->eta;
  for (int k = 0; k < cfg->landscape_bezier_steps; k++) {
    const double t = rng_uniform((uint64_t)cfg->landscape_seed, (uint64_t)RNG_STREAM_LANDSCAPE + ((uint64_t)(2 + s->index) << 32), (uint64_t)k);
    double acc;
    landscape_bezier_point(rs.theta, D->c, D->d1, D->d2, t, (size_t)s->P);
    ls[k] = run_state_gradient(&rs, 0, &acc);
    ts[k] = t;
    const double w = lr * 2 * t * (1 - t);
    for (int64_t p = 0; p < s->P; p++) D->d1[p] -= w * rs.grad[p];
  }
  run_state_teardown(&rs);
  return 0;
}

/* Rank 0 after the layout: coordinates, fills, directions and projections. */
static int write_static(hid_t f, hid_t src, const Config *cfg, const Slice *sl, int n, const RunSpec *runs, const ModelConfig *base, const Dataset *train,
                        const Dataset *trv, const Dataset *tev)
{
  Dirs D = {.slice = -1};
  int rc = 0;
  for (int k = 0; k < n && !rc; k++) {
    const Slice *s = &sl[k];
    char g[64];
    slice_path(s, g, sizeof g);
    const size_t np = (size_t)s->nx * s->ny;
    double *a = malloc(s->nx * sizeof(double)), *b = malloc(s->ny * sizeof(double)), *nan = malloc(np * sizeof(double));
    int8_t *zero = calloc(np, 1);
    if (!a || !b || !nan || !zero) rc = -1;
    for (int i = 0; i < s->nx && !rc; i++) a[i] = coord(s->ax, s->nx, i);
    for (int j = 0; j < s->ny && !rc; j++) b[j] = coord(s->by, s->ny, j);
    for (size_t i = 0; i < np && !rc; i++) nan[i] = NAN;
    rc = rc || write_all(f, g, "alpha", H5T_NATIVE_DOUBLE, a) || write_all(f, g, "beta", H5T_NATIVE_DOUBLE, b) ||
         write_all(f, g, "done", H5T_NATIVE_INT8, zero);
    for (int v = 0; v < (cfg->landscape_hess_every ? 6 : 4) && !rc; v++) rc = write_all(f, g, VALUES[v], H5T_NATIVE_DOUBLE, nan);
    free(a), free(b), free(nan), free(zero);
    Model m;
    ModelConfig mc = *base;
    char err[256];
    mc.width = runs[s->run].width, mc.param = runs[s->run].param;
    mc.in_dim = train->d, mc.out_dim = train->k;
    if (rc || model_build(&m, &mc, err, sizeof err)) return -1;
    rc = make_dirs(cfg, s, k, src, &m, train, &D);
    model_destroy(&m);
    if (!rc && s->kind == SL_BEZIER) {
      const int K = cfg->landscape_bezier_steps;
      double *ts = malloc(K * sizeof(double)), *ls = malloc(K * sizeof(double));
      rc = !ts || !ls || train_bend(cfg, &runs[s->run], trv, tev, s, &D, ts, ls) != 0;
      rc = rc || write_all(f, g, "bezier_t", H5T_NATIVE_DOUBLE, ts) || write_all(f, g, "bezier_loss", H5T_NATIVE_DOUBLE, ls);
      free(ts), free(ls);
    }
    rc = rc || write_all(f, g, "dir1", H5T_NATIVE_DOUBLE, D.d1) ||
         ((s->dim == 2 || s->kind == SL_BEZIER) && write_all(f, g, "dir2", H5T_NATIVE_DOUBLE, D.d2));
    if (!rc && s->kind == SL_SURFACE) {
      if (cfg->landscape_dir == LDIR_PCA) rc = write_all(f, g, "pca_singular_values", H5T_NATIVE_DOUBLE, D.sv);
      if (cfg->landscape_dir == LDIR_HESSIAN || cfg->landscape_dir == LDIR_NTK) rc = write_all(f, g, "eigenvalues", H5T_NATIVE_DOUBLE, D.sv);
      int nr;
      int64_t *steps = theta_steps(src, s->run, &nr);
      double *x = malloc(s->P * sizeof(double)), *co = malloc(2 * (size_t)(nr ? nr : 1) * sizeof(double)),
             *res = malloc((size_t)(nr ? nr : 1) * sizeof(double)), *dist = malloc((size_t)(nr ? nr : 1) * sizeof(double));
      if (!steps || !x || !co || !res || !dist) rc = -1;
      for (int t = 0; t < nr && !rc; t++) {
        rc = read_theta(src, s->run, t, s->P, x);
        if (!rc && landscape_project(co + 2 * t, res + t, dist + t, x, D.c, D.d1, s->dim == 2 ? D.d2 : NULL, (size_t)s->P))
          co[2 * t] = co[2 * t + 1] = res[t] = NAN;
      }
      rc = rc || write_all(f, g, "traj_step", H5T_NATIVE_INT64, steps) || write_all(f, g, "traj_coord", H5T_NATIVE_DOUBLE, co) ||
           write_all(f, g, "traj_residual", H5T_NATIVE_DOUBLE, res) || write_all(f, g, "traj_distance", H5T_NATIVE_DOUBLE, dist);
      free(steps), free(x), free(co), free(res), free(dist);
    }
  }
  free(D.c), free(D.d1), free(D.d2);
  return rc;
}

/* The specification a resumed file must match: the sweep's deck, the landscape options that
 * change values, and the resolved slices with their first-layer path. legacy: as written before
 * the affine first layer existed (no path; such a file is resumed on the plain path). malloc'd. */
static char *spec_text(const Config *cfg, const char *deck_text, const Slice *sl, int n, int64_t ntr, int64_t nte, bool legacy)
{
  size_t cap = strlen(deck_text) + 4096 + (size_t)n * 320;
  char *s = malloc(cap);
  if (!s) return NULL;
  size_t k = (size_t)snprintf(s, cap, "%s-landscape_dir %s\n-landscape_seed %lld\n-landscape_filter %d\n-landscape_bias %d\n"
                              "-landscape_bezier_steps %d\n-landscape_bezier_lr %.17g\n-landscape_hess_every %d\n-landscape_hess_batch %d (hess_batch %d)\n-landscape_tensors %s\n-landscape_train_samples %lld\n-landscape_test_samples %lld\n-landscape_ranks_per_point %d\n",
                              deck_text, landscape_dir_name(cfg->landscape_dir), (long long)cfg->landscape_seed, cfg->landscape_filter,
                              cfg->landscape_bias, cfg->landscape_bezier_steps, cfg->landscape_bezier_lr, cfg->landscape_hess_every, cfg->landscape_hess_batch, cfg->hess_batch, cfg->landscape_tensors, (long long)ntr, (long long)nte, cfg->landscape_ranks_per_point);
  for (int i = 0; i < n && k < cap; i++)
    k += (size_t)snprintf(s + k, cap - k, "slice %d: kind %d run %d rec %d run_b %d rec_b %d dim %d grid %d x %d [%.17g, %.17g] x [%.17g, %.17g]%s%s\n", i,
                          sl[i].kind, sl[i].run, sl[i].rec, sl[i].run_b, sl[i].rec_b, sl[i].dim, sl[i].nx, sl[i].ny, sl[i].ax[0], sl[i].ax[1],
                          sl[i].by[0], sl[i].by[1], legacy ? "" : " first layer ", legacy ? "" : sl[i].affine ? "affine cache" : "plain");
  return s;
}

/* Rank 0: the file's spec (NULL: none or unreadable). */
static char *read_spec(const char *path)
{
  char *s = NULL;
  H5E_BEGIN_TRY
  {
    hid_t f = open_ro(path), a = f >= 0 ? H5Aopen(f, "spec", H5P_DEFAULT) : -1, t = a >= 0 ? H5Aget_type(a) : -1;
    size_t n = t >= 0 ? H5Tget_size(t) : 0;
    if (n && (s = calloc(n + 1, 1)) && H5Aread(a, t, s) < 0) free(s), s = NULL;
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (f >= 0) H5Fclose(f);
  }
  H5E_END_TRY;
  return s;
}

/* Rank 0: the points not yet done, in the job's numbering. */
static int64_t *todo_list(hid_t f, const Slice *sl, int n, int64_t total, int64_t *n_todo)
{
  int64_t *todo = malloc((size_t)(total ? total : 1) * sizeof *todo), m = 0;
  int rc = todo ? 0 : -1;
  for (int k = 0; k < n && !rc; k++) {
    char g[64], path[96];
    slice_path(&sl[k], g, sizeof g);
    snprintf(path, sizeof path, "%s/done", g);
    const size_t np = (size_t)sl[k].nx * sl[k].ny;
    int8_t *done = malloc(np);
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), x = indep();
    if (!done || d < 0 || x < 0 || H5Dread(d, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, x, done) < 0) rc = -1;
    for (size_t i = 0; i < np && !rc; i++)
      if (done[i] != 1) todo[m++] = sl[k].first + (int64_t)i;
    if (x >= 0) H5Pclose(x);
    if (d >= 0) H5Dclose(d);
    free(done);
  }
  if (rc) free(todo), todo = NULL;
  *n_todo = m;
  return todo;
}

/* Group leader: the point's four values, then its done flag. */
static int write_point(hid_t f, const Slice *s, int i, int j, const double *v /* nv */, int nv)
{
  char g[64], path[96];
  slice_path(s, g, sizeof g);
  hsize_t start[2] = {(hsize_t)j, (hsize_t)i}, one[2] = {1, 1};
  hid_t ms = H5Screate_simple(2, one, NULL), x = indep();
  int rc = ms < 0 || x < 0;
  const int8_t flag = 1;
  for (int k = 0; k <= nv && !rc; k++) {
    snprintf(path, sizeof path, "%s/%s", g, k < nv ? VALUES[k] : "done");
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT), fs = d >= 0 ? H5Dget_space(d) : -1;
    rc = fs < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, one, NULL) < 0 ||
         H5Dwrite(d, k < nv ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT8, ms, fs, x, k < nv ? (const void *)&v[k] : (const void *)&flag) < 0;
    if (fs >= 0) H5Sclose(fs);
    if (d >= 0) H5Dclose(d);
  }
  if (ms >= 0) H5Sclose(ms);
  if (x >= 0) H5Pclose(x);
  return rc ? -1 : 0;
}

/* Vectors a slice's parameters combine (landscape_eval.h): theta_c, dir1 (, dir2). */
static int slice_nvec(const Slice *s) { return s->kind == SL_BEZIER || s->dim == 2 ? 3 : 2; }

/* Their coefficients at point (i, j), and the parameters for every tensor (rest_only: all but the
 * first op's, which the affine cache replaces). */
static void params_range(double *theta /* P */, const Slice *s, const Dirs *D, double a, double b, size_t o, size_t n)
{
  if (s->kind == SL_BEZIER) landscape_bezier_point(theta + o, D->c + o, D->d1 + o, D->d2 + o, a, n);
  else landscape_point(theta + o, D->c + o, D->d1 + o, s->dim == 2 ? D->d2 + o : NULL, a, b, n);
}
static void point_params(double *theta /* P */, double *coef /* 3 */, const Model *m, const Slice *s, const Dirs *D, int i, int j, bool rest_only)
{
  const double a = coord(s->ax, s->nx, i), b = coord(s->by, s->ny, j);
  if (s->kind == SL_BEZIER) coef[0] = (1 - a) * (1 - a), coef[1] = 2 * a * (1 - a), coef[2] = a * a;
  else coef[0] = 1, coef[1] = a, coef[2] = s->dim == 2 ? b : 0;
  if (!rest_only) {
    params_range(theta, s, D, a, b, 0, (size_t)s->P);
    return;
  }
  for (int t = 0; t < m->n_tensors; t++)
    if (t != m->ops[0].w && t != m->ops[0].b) params_range(theta, s, D, a, b, m->tensors[t].offset, m->tensors[t].size);
}

/* Which slices take their first layer from the affine cache: an eligible model, and the cache of
 * the largest rank's samples (ceil(n / G) of each set) within -landscape_affine_cache_mb. The same
 * on every rank; the choice is part of the file's spec (it changes values by round-off). A line
 * saying what was chosen goes into note. */
static void choose_first_layer(const Config *cfg, const RunSpec *runs, const Dataset *trv, const Dataset *tev, Slice *sl, int n, int G, char *note,
                               size_t notelen)
{
  const int64_t rows = ((int64_t)trv->n + G - 1) / G + ((int64_t)tev->n + G - 1) / G;
  const double cap = cfg->landscape_affine_cache_mb * 1048576.0;
  double big = 0;
  int n_aff = 0;
  char why[300] = "";
  for (int k = 0; k < n; k++) {
    Slice *s = &sl[k];
    ModelConfig mc = cfg->model;
    Model m;
    char err[256];
    mc.width = runs[s->run].width, mc.param = runs[s->run].param, mc.in_dim = trv->d;
    mc.in_channels = trv->channels, mc.in_height = trv->height, mc.in_width = trv->width, mc.out_dim = trv->k;
    s->affine = 0;
    if (model_build(&m, &mc, err, sizeof err)) continue;
    const double bytes = landscape_affine_bytes(&m, rows, slice_nvec(s));
    if (!landscape_affine_eligible(&m, err, sizeof err)) {
      if (!why[0]) snprintf(why, sizeof why, "%s", err);
    } else if (cap <= 0 || bytes > cap) {
      if (!why[0]) snprintf(why, sizeof why, "the cache would need %.1f MB per rank, over -landscape_affine_cache_mb %g", bytes / 1048576.0, cfg->landscape_affine_cache_mb);
    } else {
      s->affine = 1, n_aff++;
      if (bytes > big) big = bytes;
    }
    model_destroy(&m);
  }
  if (n_aff == n) snprintf(note, notelen, "first layer from the affine cache for all %d slice(s) (at most %.1f MB per rank)", n, big / 1048576.0);
  else if (n_aff) snprintf(note, notelen, "first layer from the affine cache for %d of %d slices (at most %.1f MB per rank); plain forward for the rest: %s", n_aff, n, big / 1048576.0, why);
  else snprintf(note, notelen, "plain forward (no affine first-layer cache): %s", why);
}

static void say(int rank, const char *msg)
{
  if (rank == 0) fprintf(stderr, "ntkhpc: error: %s\n", msg), fflush(stderr);
}

int landscape_run(const Config *cfg, const RunSpec *runs, int n_runs, const Dataset *train, const Dataset *test, const char *source,
                  const char *deck_text, const LandscapeScheduler *hooks, MPI_Comm world)
{
  int rank, size;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  static int registered;
  if (!registered) {
    PetscClassId cls;
    PetscCall(PetscClassIdRegister("ntkhpc landscape", &cls));
    PetscCall(PetscLogEventRegister("LandscapePoint", cls, &EV_POINT));
    PetscCall(PetscLogEventRegister("LandscapeDirs", cls, &EV_DIRS));
    PetscCall(PetscLogEventRegister("LandscapeCache", cls, &EV_CACHE));
    PetscCall(PetscLogEventRegister("LandscapeParams", cls, &EV_PARAMS));
    PetscCall(PetscLogEventRegister("LandscapeEvalAffine", cls, &EV_EVAL));
    registered = 1;
  }
  const int G = cfg->landscape_ranks_per_point;
  char err[4700] = "";
  if (size % G) {
    snprintf(err, sizeof err, "option -landscape_ranks_per_point: %d does not divide the %d ranks", G, size);
    say(rank, err);
    return 2;
  }
  /* The evaluated sample sets: the first n of each subset (views). */
  Dataset trv = *train, tev = *test;
  if (cfg->landscape_train_samples > 0 && cfg->landscape_train_samples < trv.n) trv.n = cfg->landscape_train_samples;
  if (cfg->landscape_test_samples > 0 && cfg->landscape_test_samples < tev.n) tev.n = cfg->landscape_test_samples;

  /* 1. slices, from the source output (rank 0) */
  Slice *sl = calloc(MAX_SLICES, sizeof *sl);
  int n = 0, bad = 0, *n_recs = calloc(MAX_SLICES, sizeof *n_recs);
  if (rank == 0) {
    hid_t src = -1;
    H5E_BEGIN_TRY { src = open_ro(source); }
    H5E_END_TRY;
    if (src < 0 || !ckpt_output_finished(source, deck_text, n_runs))
      snprintf(err, sizeof err, "landscape: %s is not a finished output of this deck (every run done, the same effective deck)", source), bad = 2;
    else if (resolve_slices(cfg, runs, n_runs, src, sl, &n, err, sizeof err)) bad = 2;
    for (int k = 0; k < n && !bad; k++) {
      int nr;
      free(theta_steps(src, sl[k].run, &nr));
      n_recs[k] = nr;
    }
    if (src >= 0) H5Fclose(src);
  }
  MPI_Bcast(&bad, 1, MPI_INT, 0, world);
  if (bad) {
    say(rank, err);
    free(sl), free(n_recs);
    return bad;
  }
  MPI_Bcast(&n, 1, MPI_INT, 0, world);
  MPI_Bcast(sl, (int)(n * sizeof *sl), MPI_BYTE, 0, world);
  MPI_Bcast(n_recs, n, MPI_INT, 0, world);
  const int64_t total = n ? sl[n - 1].first + (int64_t)sl[n - 1].nx * sl[n - 1].ny : 0;
  char note[400];
  choose_first_layer(cfg, runs, &trv, &tev, sl, n, G, note, sizeof note);
  char *spec = spec_text(cfg, deck_text, sl, n, trv.n, tev.n, false);

  /* 2. create, resume or refuse (rank 0 decides) */
  int mode = 0, legacy = 0; /* 0 create, 1 resume */
  const char *path = cfg->landscape_output;
  if (rank == 0) {
    struct stat st;
    if (stat(path, &st) == 0) {
      char *theirs = read_spec(path), *old = theirs ? spec_text(cfg, deck_text, sl, n, trv.n, tev.n, true) : NULL;
      if (theirs && !strcmp(theirs, spec)) mode = 1;
      else if (old && !strcmp(theirs, old)) mode = 1, legacy = 1; /* made before the affine first layer: resumed on the plain path */
      else if (theirs && !cfg->overwrite)
        snprintf(err, sizeof err, "landscape file %s holds other surfaces (another deck or landscape options): give -overwrite to replace it, or another -landscape_output", path), bad = 2;
      free(theirs), free(old); /* no spec: a creation that was killed: made again */
    }
  }
  MPI_Bcast(&bad, 1, MPI_INT, 0, world);
  MPI_Bcast(&mode, 1, MPI_INT, 0, world);
  MPI_Bcast(&legacy, 1, MPI_INT, 0, world);
  if (legacy) {
    for (int k = 0; k < n; k++) sl[k].affine = 0;
    snprintf(note, sizeof note, "plain forward: resuming a file made before the affine first layer (its spec names no path)");
  }
  if (bad) {
    say(rank, err);
    free(sl), free(n_recs), free(spec);
    return 2;
  }
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, world, MPI_INFO_NULL);
  H5Pset_coll_metadata_write(fapl, true);
  hid_t f = -1;
  H5E_BEGIN_TRY { f = mode ? H5Fopen(path, H5F_ACC_RDWR, fapl) : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl); }
  H5E_END_TRY;
  H5Pclose(fapl);
  int fail = f < 0, code = 0;
  MPI_Allreduce(MPI_IN_PLACE, &fail, 1, MPI_INT, MPI_MAX, world);
  if (fail) {
    snprintf(err, sizeof err, "landscape file %s: cannot %s it", path, mode ? "open" : "create");
    say(rank, err);
    if (f >= 0) H5Fclose(f);
    free(sl), free(n_recs), free(spec);
    return 1;
  }
  if (!mode) {
    fail = create_layout(f, cfg, sl, n, source, &trv, &tev, n_recs) != 0;
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    int wr = 0;
    if (rank == 0 && !fail) {
      hid_t src = open_ro(source);
      wr = src < 0 || write_static(f, src, cfg, sl, n, runs, &cfg->model, train, &trv, &tev) != 0;
      if (src >= 0) H5Fclose(src);
    }
    MPI_Allreduce(MPI_IN_PLACE, &wr, 1, MPI_INT, MPI_MAX, world);
    fail |= wr;
    if (!fail) fail = attr_str(f, "spec", spec) != 0; /* last: a file without it was never finished */
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    MPI_Allreduce(MPI_IN_PLACE, &fail, 1, MPI_INT, MPI_MAX, world);
  }
  int64_t n_todo = 0, *todo = NULL;
  if (!fail) {
    if (rank == 0) todo = todo_list(f, sl, n, total, &n_todo), fail = !todo;
    MPI_Bcast(&fail, 1, MPI_INT, 0, world);
  }
  if (fail) {
    say(rank, "landscape: cannot lay out or read the landscape file");
    H5Fclose(f);
    free(sl), free(n_recs), free(spec), free(todo);
    return 1;
  }
  MPI_Bcast(&n_todo, 1, MPI_INT64_T, 0, world);
  if (rank) todo = malloc((size_t)(n_todo ? n_todo : 1) * sizeof *todo);
  MPI_Bcast(todo, (int)n_todo, MPI_INT64_T, 0, world);
  if (rank == 0 && !cfg->quiet) {
    printf("[landscape] %d slice(s), %lld points, %lld to do, into %s\n[landscape] %s\n", n, (long long)total, (long long)n_todo, path, note);
    fflush(stdout);
  }

  /* 3. the points, handed out dynamically */
  MPI_Comm group;
  MPI_Comm_split(world, rank / G, rank, &group);
  int grank;
  MPI_Comm_rank(group, &grank);
  void *sched = hooks->create(world, group, n_todo);
  hid_t src = open_ro(source);
  RunState rs;
  int rs_run = -1, stopped = 0;
  Dirs D = {.slice = -1};
  HessianOperator *hop = NULL;
  LandscapeAffine aff = {0};
  int aff_slice = -1;
  const Dataset *const sets[2] = {&trv, &tev};
  int64_t lo[2], rows[2]; /* this rank's samples of each set (as run_state's evaluations cut them) */
  for (int q = 0; q < 2; q++) {
    const int64_t nq = sets[q]->n;
    lo[q] = nq * grank / G, rows[q] = nq * (grank + 1) / G - lo[q];
  }
  int64_t pos;
  while (!code && (pos = hooks->next(sched)) >= 0) {
    const int64_t item = todo[pos];
    int k = 0;
    while (k + 1 < n && sl[k + 1].first <= item) k++;
    const Slice *s = &sl[k];
    const int64_t q = item - s->first;
    const int i = (int)(q % s->nx), j = (int)(q / s->nx);
    PetscLogEventBegin(EV_POINT, 0, 0, 0, 0);
    int e = 0;
    if (rs_run != s->run) {
      if (hop) PetscCall(hessian_operator_destroy(&hop));
      if (rs_run >= 0) run_state_teardown(&rs);
      rs_run = -1;
      e = run_state_setup(&rs, group, cfg, &runs[s->run], &trv, &tev) != 0;
      if (!e) rs_run = s->run;
      if (!e && cfg->landscape_hess_every) { /* the first -hess_batch training samples, in slices over the group */
        const int gs = G, hb0 = cfg->landscape_hess_batch ? cfg->landscape_hess_batch : cfg->hess_batch, hb = hb0 < train->n ? hb0 : train->n;
        const int64_t lo = (int64_t)hb * grank / gs, hi = (int64_t)hb * (grank + 1) / gs;
        PetscCall(hessian_operator_create(&hop, group, &rs.model, train->x + (size_t)lo * train->d, train->y + (size_t)lo * train->k, (int)(hi - lo),
                                          (int)lo, hb));
      }
    }
    if (!e) e = src < 0 || load_dirs(f, s, k, src, &D) != 0;
    if (!e && s->affine && aff_slice != k) { /* the slice's Z_k, once */
      PetscLogEventBegin(EV_CACHE, 0, 0, 0, 0);
      const double *const vecs[3] = {D.c, D.d1, D.d2};
      e = landscape_affine_build(&aff, &rs.model, vecs, slice_nvec(s), sets, lo, rows) != 0;
      aff_slice = e ? -1 : k;
      PetscLogEventEnd(EV_CACHE, 0, 0, 0, 0);
    }
    MPI_Allreduce(MPI_IN_PLACE, &e, 1, MPI_INT, MPI_MAX, group);
    if (e) {
      if (grank == 0) fprintf(stderr, "ntkhpc: error: landscape: cannot set up slice %d of run %d (source %s)\n", k, s->run, source);
      code = 1;
      hooks->stop(sched);
      PetscLogEventEnd(EV_POINT, 0, 0, 0, 0);
      break;
    }
    double v[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, coef[3];
    const int nv = cfg->landscape_hess_every ? 6 : 4, hk = cfg->landscape_hess_every;
    const bool hess_point = hk && i % hk == 0 && j % hk == 0;
    PetscLogEventBegin(EV_PARAMS, 0, 0, 0, 0);
    point_params(rs.theta, coef, &rs.model, s, &D, i, j, s->affine && !hess_point); /* the cache needs no first layer */
    PetscLogEventEnd(EV_PARAMS, 0, 0, 0, 0);
    if (s->affine) { /* train and test in one sweep of chunks, one group sum */
      double sums[4];
      PetscLogEventBegin(EV_EVAL, 0, 0, 0, 0);
      landscape_affine_eval(sums, &aff, &rs.model, rs.theta, coef, sets, &rs.tape);
      if (G > 1) MPI_Allreduce(MPI_IN_PLACE, sums, 4, MPI_DOUBLE, MPI_SUM, group);
      PetscLogEventEnd(EV_EVAL, 0, 0, 0, 0);
      v[0] = sums[0] / trv.n, v[1] = trv.label[0] >= 0 ? sums[1] / trv.n : NAN;
      v[2] = sums[2] / tev.n, v[3] = tev.label[0] >= 0 ? sums[3] / tev.n : NAN;
    } else {
      run_state_evaluate(&rs, &trv, &v[0], &v[1]);
      run_state_evaluate(&rs, &tev, &v[2], &v[3]);
    }
    if (hess_point) { /* the coarse subgrid: each point from a cold start (no order dependence) */
      double acc, g2 = 0, res;
      int nconv;
      run_state_gradient(&rs, 0, &acc);
      for (int64_t p = 0; p < s->P; p++) g2 += rs.grad[p] * rs.grad[p];
      v[4] = sqrt(g2);
      PetscCall(hessian_reset_warm_start(hop));
      PetscCall(hessian_set_params(hop, rs.theta));
      PetscCall(hessian_top_eigs(hop, 1, &v[5], &res, &nconv));
      if (nconv < 1) v[5] = NAN;
    }
    PetscLogEventEnd(EV_POINT, 0, 0, 0, 0);
    if (grank == 0) {
      char g[64];
      slice_path(s, g, sizeof g);
      if (write_point(f, s, i, j, v, nv)) {
        fprintf(stderr, "ntkhpc: error: landscape file %s: cannot write point (%d, %d) of %s\n", path, i, j, g);
        code = 1;
      } else if (!cfg->quiet) {
        printf("[landscape] %s point %d,%d done: train loss %.6g\n", g + 1, i, j, v[0]);
        fflush(stdout);
      }
      if (ckpt_signal_received()) hooks->stop(sched), stopped = 1;
    }
    MPI_Bcast(&code, 1, MPI_INT, 0, group);
    if (code) hooks->stop(sched);
  }
  if (hop) PetscCall(hessian_operator_destroy(&hop));
  if (rs_run >= 0) run_state_teardown(&rs);
  landscape_affine_free(&aff);
  free(D.c), free(D.d1), free(D.d2);
  if (src >= 0) H5Fclose(src);
  hooks->destroy(sched);
  MPI_Comm_free(&group);
  if (H5Fclose(f) < 0) code = 1;
  MPI_Allreduce(MPI_IN_PLACE, &code, 1, MPI_INT, MPI_MAX, world);
  MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, world);
  if (!code && stopped) {
    if (rank == 0) fprintf(stderr, "ntkhpc: stopped by a signal: the landscape file %s keeps its done points; rerun to resume\n", path);
    code = 3;
  }
  free(sl), free(n_recs), free(spec), free(todo);
  return code;
}
