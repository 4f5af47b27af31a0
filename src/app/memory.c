/* The up-front memory check (memory.h). The estimate counts the large allocations of a run on one
 * rank of its group, as the code makes them (run_state.c, ops/operator_base.c, ops/ntk.c,
 * ops/hessian.c, measure/ntk_probe.c); small ones (options, schemas, record buffers) are left out. */
#include "memory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <petscsys.h>
#include "hessian.h"
#include "measure.h"
#include "ntk.h"
#include "optimizer.h"

/* Doubles one tape keeps per sample: activations, and with cotangents those of every buffer but
 * the data (opbase_tapes_create's count). */
static double tape_doubles_per_sample(const Model *m, bool cotangents)
{
  double d = 0;
  for (int i = 0; i < m->n_bufs; i++) d += (cotangents ? 2.0 : 1.0) * (double)m->buf_size[i];
  if (cotangents) d -= (double)m->buf_size[0];
  return d;
}

static double option_real(const char *name, double def)
{
  PetscReal v = def;
  PetscBool set = PETSC_FALSE;
  if (PetscOptionsGetReal(NULL, NULL, name, &v, &set) || !set) return def;
  return v;
}

/* An operator's tapes on one rank (opbase_tapes_create): every chunk's tape kept when the slice
 * fits tape_mb, else one chunk's, recomputed per product; plus the per-product workspace. */
static double operator_tapes(const Model *m, int64_t n_global, int G, double chunk, double tape_mb, bool cotangents)
{
  const double n_local = ceil((double)n_global / G), per = tape_doubles_per_sample(m, cotangents) * sizeof(double);
  const double c = fmin(chunk, fmax(n_local, 1.0));
  const bool stored = model_has_batch_norm(m) || n_local * per <= tape_mb * 1048576.0;
  return (stored ? n_local * per : c * per) + c * per; /* the tapes; tangents and cotangents of one chunk */
}

int memory_need(const Config *cfg, const RunSpec *run, const Dataset *train, const Dataset *test, MemoryNeed *need, char *err, size_t errlen)
{
  memset(need, 0, sizeof *need);
  ModelConfig mc = cfg->model;
  mc.width = run->width, mc.param = run->param;
  mc.in_dim = train->d, mc.out_dim = train->k;
  mc.in_channels = train->channels, mc.in_height = train->height, mc.in_width = train->width;
  Model m;
  if (model_build(&m, &mc, err, errlen)) return -1;
  const int G = run->ranks > 0 ? run->ranks : cfg->ranks_per_run > 0 ? cfg->ranks_per_run : 1;
  const double P = (double)m.n_params, D = sizeof(double);
  /* training (run_state_setup): theta, theta_0, gradient (+2), lr scales, the optimizer's state;
   * one training tape of -eval_chunk samples (a batch-norm net: the rank's slice of a batch):
   * activations, in-place relu and residual adds, and a few reused cotangent blocks */
  need->params = P * D * (4.0 + optimizer_for(cfg)->n_state) + 2 * D;
  const double batch = cfg->optimizer == OPT_GD ? train->n : cfg->batch_size;
  const double chunk = model_has_batch_norm(&m) ? ceil(batch / G) : cfg->eval_chunk;
  need->tapes = chunk * (tape_train_doubles_per_sample(&m, 4) + train->d + 2.0 * train->k) * D;
  /* the NTK operator (lambda_0 is measured for every instance): theta and two work vectors of P,
   * its tapes without cotangents; the exact Gram matrix R x R, row-distributed, when it is used,
   * and ScaLAPACK's copy and eigenvectors for a full spectrum; Theta_0 and Theta_t when kept */
  need->params += 3.0 * P * D;
  need->tapes += operator_tapes(&m, cfg->ntk_batch, G, option_real("-ntk_chunk", NTK_DEFAULT_CHUNK), option_real("-ntk_tape_mb", NTK_DEFAULT_TAPE_MB),
                                false);
  const double R = (double)ntk_probe_spectrum_len(cfg, train);
  const NtkVariant v = cfg->ntk_variant ? NTK_TRACED : NTK_FULL;
  const bool gram_ok = ntk_gram_supported(&m) && R <= cfg->gram_max_rows;
  const bool exact = gram_ok && (cfg->ntk_method == NTK_METHOD_EXACT ||
                                 (cfg->ntk_method == NTK_METHOD_AUTO &&
                                  ntk_cost_exact_top(&m, cfg->ntk_batch, v, 40) < ntk_cost_matfree(&m, cfg->ntk_batch, v, 40)));
  double grams = 0;
  if (exact || (gram_ok && (cfg->n_spectrum_steps > 0 || cfg->kernel_distance))) grams = 1;
  if (gram_ok && cfg->n_spectrum_steps > 0) grams += 2;                                   /* MATSCALAPACK copy, eigenvectors */
  if (gram_ok && (cfg->kernel_distance || cfg->features_every > 0)) grams += 2;           /* Theta_0, Theta_t kept */
  need->grams = grams * ceil(R / G) * R * D + (gram_ok ? R * D : 0) + 24.0 * ceil(R / G) * D; /* + spectrum, Krylov basis */
  /* the Hessian operator when any Hessian measurement is on: theta and work vectors of P, tapes
   * with cotangents, a Krylov (or Lanczos) basis of vectors of P / G */
  if (cfg->hess_every > 0 || cfg->n_density_steps > 0) {
    need->params += 4.0 * P * D;
    need->tapes += operator_tapes(&m, cfg->hess_batch, G, option_real("-hess_chunk", HESS_DEFAULT_CHUNK),
                                  option_real("-hess_tape_mb", HESS_DEFAULT_TAPE_MB), true);
    /* SLEPc's Krylov-Schur default ncv = max(2 nev, nev + 15), kept twice (the basis and its
     * restart copy: about 41 vectors of P measured at nev = 1, docs/robustness.md) */
    const double basis = fmax(fmax(2.0 * cfg->hess_nev, cfg->hess_nev + 15.0), cfg->n_density_steps > 0 ? cfg->slq_lanczos : 0.0);
    need->grams += (2.0 * (basis + 1.0) + 2.0) * ceil(P / G) * D;
  }
  need->other = 64.0 * 1048576.0; /* MPI, PETSc, SLEPc, HDF5 and the program itself (about 60 MiB measured) */
  need->data = ((double)train->n * (train->d + train->k) + (double)test->n * (test->d + test->k)) * D + (double)(train->n + test->n) * sizeof(int);
  model_destroy(&m);
  return 0;
}

int memory_parse_limit(const char *text, double *bytes, char *err, size_t errlen)
{
  *bytes = 0;
  if (!text[0]) return 0;
  char *end;
  const double v = strtod(text, &end);
  double mult = 1;
  switch (*end) {
  case 'k': case 'K': mult = 1024.0, end++; break;
  case 'M': mult = 1048576.0, end++; break;
  case 'G': mult = 1073741824.0, end++; break;
  case 'T': mult = 1099511627776.0, end++; break;
  default: break;
  }
  if (end == text || *end || !(v >= 0) || !isfinite(v) || text[0] == '-' || text[0] == '+' || !(v * mult >= 1) || v * mult > 9.2e18) {
    snprintf(err, errlen, "option -memory_limit: '%s' is not a memory size (bytes per rank from 1 to 8E: a number with an optional suffix k, M, G or T)",
             text);
    return -1;
  }
  *bytes = floor(v * mult);
  return 0;
}

/* MemAvailable (or, total, MemTotal) of /proc/meminfo, else the available (all) physical pages; 0
 * if neither is known. */
static double node_memory(bool total)
{
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  double kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, total ? "MemTotal: %lf kB" : "MemAvailable: %lf kB", &kb) == 1) break;
  if (f) fclose(f);
  if (kb > 0) return kb * 1024.0;
#if defined(_SC_AVPHYS_PAGES) && defined(_SC_PHYS_PAGES)
  const long pages = sysconf(total ? _SC_PHYS_PAGES : _SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return (double)pages * (double)page;
#endif
  return 0;
}

static const char *human(double b, char *buf, size_t len)
{
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int i = 0;
  while (b >= 1024.0 && i < 5) b /= 1024.0, i++;
  snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
  return buf;
}

int memory_rank_budget(const Config *cfg, MPI_Comm world, bool stable, double *avail, int *on_node, char *source, size_t len)
{
  MPI_Comm node;
  *on_node = 1;
  if (MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, on_node);
    MPI_Comm_free(&node);
  }
  *avail = cfg->memory_limit;
  snprintf(source, len, "-memory_limit");
  if (*avail > 0) return 0;
  double mine = node_memory(stable) / *on_node;
  MPI_Allreduce(&mine, avail, 1, MPI_DOUBLE, MPI_MIN, world);
  snprintf(source, len, "the node's %s over its %d ranks", stable ? "MemTotal" : "MemAvailable", *on_node);
  if (!(*avail > 0)) *avail = 0; /* the system does not say */
  return 0;
}

int memory_rank_need(const Config *cfg, const RunSpec *run, int G, int on_node, const Dataset *train, const Dataset *test, MemoryNeed *need,
                     double *total, char *err, size_t errlen)
{
  RunSpec r = *run;
  r.ranks = G;
  if (memory_need(cfg, &r, train, test, need, err, errlen)) return -1;
  if (cfg->data_shared) need->data /= on_node; /* one copy per node (shared_data.h): a rank's share */
  *total = need->params + need->tapes + need->grams + need->data + need->other;
  return 0;
}

int memory_check(const Config *cfg, const Sweep *sw, const Dataset *train, const Dataset *test, MPI_Comm world, char *err, size_t errlen)
{
  /* what a rank may use: -memory_limit, or what this node reports over the ranks on it (the
   * smallest over the job's nodes) */
  double avail;
  char source[96];
  int on_node;
  memory_rank_budget(cfg, world, false, &avail, &on_node, source, sizeof source);
  if (!(avail > 0)) return 0; /* nothing to check against */
  int worst = -1;
  MemoryNeed w = {0};
  double worst_total = -1;
  for (int i = 0; i < sw->n_runs; i++) { /* every rank the same estimate: no communication */
    const RunSpec *run = &sw->runs[i];
    if (i > 0 && run->instance == sw->runs[i - 1].instance && run->ranks == sw->runs[i - 1].ranks) continue; /* runs of one instance
                                                                                                             differ only in eta */
    if (cfg->kernel_regression && run->width == MODEL_WIDTH_INF) continue; /* no network: its dense Gram matrices are
                                                                              spread over every rank (docs/infinite_width.md) */
    MemoryNeed n;
    double total;
    const int G = run->ranks > 0 ? run->ranks : cfg->ranks_per_run > 0 ? cfg->ranks_per_run : 1;
    if (memory_rank_need(cfg, run, G, on_node, train, test, &n, &total, err, errlen)) return -1;
    if (total > worst_total) worst = i, w = n, worst_total = total;
  }
  if (worst < 0 || worst_total <= avail) return 0;
  const RunSpec *run = &sw->runs[worst];
  char h[7][32];
  snprintf(err, errlen,
           "option -memory_limit: run %d (width %d, %lld parameters) needs %.0f bytes (%s) per rank: parameters %s, tapes %s, Gram "
           "matrices and bases %s, data %s, libraries %s; %.0f bytes (%s) available per rank (%s)",
           run->index, run->width, (long long)run->n_params, worst_total, human(worst_total, h[0], 32), human(w.params, h[1], 32),
           human(w.tapes, h[2], 32), human(w.grams, h[3], 32), human(w.data, h[4], 32), human(w.other, h[6], 32), avail, human(avail, h[5], 32), source);
  return -1;
}
