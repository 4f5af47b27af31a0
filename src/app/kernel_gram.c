/* Distributed, checkpointed assembly of a kernel's Gram matrix (kernel_gram.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "checkpoint.h"
#include "cntk.h"
#include "inf_kernels.h"
#include "kernel_gram.h"
#include "progress.h"
#include "sweep.h"

#define TILE_DIR "kernel_tiles"
static const char tile_magic[8] = {'N', 'T', 'K', 'T', 'I', 'L', 'E', '1'};

void kernel_block_ntk_fc(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec)
{
  inf_kernel_block(NULL, out, x1, n1, x2, n2, d, (const InfKernelSpec *)spec); /* self-pairs exact there */
}

void kernel_block_nngp_fc(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec)
{
  inf_kernel_block(out, NULL, x1, n1, x2, n2, d, (const InfKernelSpec *)spec);
}

void kernel_block_cnngp(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec)
{
  cntk_block(out, NULL, x1, n1, x2, n2, (const CntkSpec *)spec);
}

void kernel_block_cntk(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec)
{
  cntk_block(NULL, out, x1, n1, x2, n2, (const CntkSpec *)spec);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

typedef struct {
  int r0, nr, c0, nc; /* rows: sample index (train 0..N-1, test N..N+M-1); columns: train index */
  int diag;           /* a train-train tile on the diagonal (symmetric) */
  int mirror;         /* a train-train tile below the diagonal: also written transposed */
} Tile;

/* Train-train tiles (I, J <= I) first, then test-train tiles, row by row. */
static int tiles_build(Tile **out, int N, int M, int T)
{
  const int nbt = (N + T - 1) / T, nbs = (M + T - 1) / T;
  const int n = nbt * (nbt + 1) / 2 + nbs * nbt;
  Tile *t = malloc((size_t)(n ? n : 1) * sizeof *t);
  int k = 0;
  for (int bi = 0; bi < nbt; bi++)
    for (int bj = 0; bj <= bi; bj++) {
      const int r0 = bi * T, c0 = bj * T;
      t[k++] = (Tile){r0, N - r0 < T ? N - r0 : T, c0, N - c0 < T ? N - c0 : T, bi == bj, bi != bj};
    }
  for (int bi = 0; bi < nbs; bi++)
    for (int bj = 0; bj < nbt; bj++) {
      const int r0 = bi * T, c0 = bj * T;
      t[k++] = (Tile){N + r0, M - r0 < T ? M - r0 : T, c0, N - c0 < T ? N - c0 : T, 0, 0};
    }
  *out = t;
  return n;
}

/* Named by kernel as well: the NTK's and the NNGP's tiles of one job share the folder. */
static void tile_path(char *p, size_t len, const char *dir, const char *kernel, int i)
{
  snprintf(p, len, "%s/" TILE_DIR "/tile_%s_%07d.bin", dir, kernel, i);
}

typedef struct {
  char magic[8];
  uint64_t key;
  int32_t index, r0, nr, c0, nc, pad;
} TileHeader;

/* 1 if the tile's file exists and is complete, of this kernel and these samples (key). */
static int tile_load(const char *dir, const char *kernel, int i, const Tile *t, uint64_t key, double *v)
{
  char path[4400];
  tile_path(path, sizeof path, dir, kernel, i);
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  TileHeader h;
  uint64_t sum = 0;
  const size_t n = (size_t)t->nr * t->nc;
  int ok = fread(&h, sizeof h, 1, f) == 1 && memcmp(h.magic, tile_magic, 8) == 0 && h.key == key && h.index == i && h.r0 == t->r0 &&
           h.nr == t->nr && h.c0 == t->c0 && h.nc == t->nc && fread(v, sizeof *v, n, f) == n && fread(&sum, sizeof sum, 1, f) == 1 &&
           sum == fnv(14695981039346656037ull, v, n * sizeof *v) && fgetc(f) == EOF;
  fclose(f);
  return ok;
}

/* Written to a temporary name, synced, renamed: a kill leaves either no file or a whole one. */
static int tile_save(const char *dir, const char *kernel, int i, const Tile *t, uint64_t key, const double *v)
{
  char path[4400], tmp[4420];
  tile_path(path, sizeof path, dir, kernel, i);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  TileHeader h = {{0}, key, i, t->r0, t->nr, t->c0, t->nc, 0};
  memcpy(h.magic, tile_magic, 8);
  const size_t n = (size_t)t->nr * t->nc;
  const uint64_t sum = fnv(14695981039346656037ull, v, n * sizeof *v);
  int bad = write(fd, &h, sizeof h) != (ssize_t)sizeof h || write(fd, v, n * sizeof *v) != (ssize_t)(n * sizeof *v) ||
            write(fd, &sum, sizeof sum) != (ssize_t)sizeof sum || fsync(fd) != 0;
  bad |= close(fd) != 0;
  if (!bad) bad = rename(tmp, path) != 0;
  if (bad) unlink(tmp);
  return bad ? -1 : 0;
}

void kernel_gram_remove_tiles(const char *ckpt_dir)
{
  if (!ckpt_dir || !ckpt_dir[0]) return;
  char dir[4400], path[4700];
  snprintf(dir, sizeof dir, "%s/" TILE_DIR, ckpt_dir);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strncmp(e->d_name, "tile_", 5) == 0) {
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
  closedir(d);
  rmdir(dir);
}

static PetscLogEvent ev_tile, ev_assemble;

static PetscErrorCode register_events(void)
{
  static int done;
  if (done) return 0;
  PetscClassId id;
  PetscCall(PetscClassIdRegister("KernelGram", &id));
  PetscCall(PetscLogEventRegister("KernelTile", id, &ev_tile));
  PetscCall(PetscLogEventRegister("KernelAssemble", id, &ev_assemble));
  done = 1;
  return 0;
}

/* Every tile row goes to the rank that owns it, packed as (matrix, row, first column, count,
 * values) in one MPI_Alltoallv, and is copied into the owner's dense array: no per-entry stash. A
 * mirrored tile also sends its columns as rows of the upper triangle. */
static PetscErrorCode deliver_rows(MPI_Comm comm, Mat G, Mat C, int N, const Tile *tiles, const int *mine, double *const *vals, int n_mine)
{
  int size, rank;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  const PetscInt *rg, *rc = NULL;
  PetscCall(MatGetOwnershipRanges(G, &rg));
  if (C) PetscCall(MatGetOwnershipRanges(C, &rc));
  /* owner of row r of matrix m (0 = G, 1 = C) */
#define OWNER(m, r, o)                                         \
  do {                                                         \
    const PetscInt *R = (m) ? rc : rg;                         \
    int lo = 0, hi = size - 1;                                 \
    while (lo < hi) {                                          \
      const int mid = (lo + hi + 1) / 2;                       \
      if (R[mid] <= (r)) lo = mid;                             \
      else hi = mid - 1;                                       \
    }                                                          \
    (o) = lo;                                                  \
  } while (0)
  /* pass 0 counts the doubles per destination, pass 1 packs them (sb, at sd[o] + fill[o]) */
  size_t *cnt = calloc((size_t)size, sizeof *cnt), *fill = calloc((size_t)size, sizeof *fill), tot = 0;
  int *sc = malloc((size_t)size * sizeof *sc), *sd = malloc((size_t)size * sizeof *sd), *rcn = malloc((size_t)size * sizeof *rcn),
      *rd = malloc((size_t)size * sizeof *rd);
  double *sb = NULL;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      for (int r = 0; r < size; r++) {
        PetscCheck(cnt[r] < (size_t)INT32_MAX, PETSC_COMM_SELF, PETSC_ERR_SUP, "kernel tiles: more than 2^31 values for one rank in one exchange");
        sc[r] = (int)cnt[r], sd[r] = (int)tot, tot += cnt[r];
      }
      sb = malloc((tot ? tot : 1) * sizeof *sb);
    }
    for (int q = 0; q < n_mine; q++) {
      const Tile *t = &tiles[mine[q]];
      const int m = t->r0 >= N, r0 = t->r0 - (m ? N : 0);
      if (m && !C) continue;
      for (int side = 0; side < (t->mirror ? 2 : 1); side++) { /* side 1: the mirror's rows are the tile's columns */
        const int nrow = side ? t->nc : t->nr, ncol = side ? t->nr : t->nc, row0 = side ? t->c0 : r0, col0 = side ? r0 : t->c0;
        for (int i = 0; i < nrow; i++) {
          int o;
          OWNER(side ? 0 : m, row0 + i, o);
          if (pass == 1) {
            double *d = sb + sd[o] + fill[o];
            d[0] = side ? 0 : m, d[1] = row0 + i, d[2] = col0, d[3] = ncol;
            if (side)
              for (int j = 0; j < ncol; j++) d[4 + j] = vals[q][(size_t)j * t->nc + i];
            else memcpy(d + 4, vals[q] + (size_t)i * t->nc, (size_t)ncol * sizeof *d);
          }
          (pass ? fill : cnt)[o] += 4 + (size_t)ncol;
        }
      }
    }
  }
#undef OWNER
  PetscCallMPI(MPI_Alltoall(sc, 1, MPI_INT, rcn, 1, MPI_INT, comm));
  size_t rtot = 0;
  for (int r = 0; r < size; r++) {
    PetscCheck(rtot + rcn[r] < (size_t)INT32_MAX, PETSC_COMM_SELF, PETSC_ERR_SUP, "kernel tiles: more than 2^31 values to receive in one exchange");
    rd[r] = (int)rtot, rtot += rcn[r];
  }
  double *rb = malloc((rtot ? rtot : 1) * sizeof *rb);
  PetscCallMPI(MPI_Alltoallv(sb, sc, sd, MPI_DOUBLE, rb, rcn, rd, MPI_DOUBLE, comm));
  free(sb), free(fill), free(cnt), free(sc), free(sd), free(rcn), free(rd);
  double *ga, *ca = NULL;
  PetscInt lg, lc = 0, gs, ge, cs = 0, ce = 0;
  PetscCall(MatGetOwnershipRange(G, &gs, &ge));
  PetscCall(MatDenseGetLDA(G, &lg));
  PetscCall(MatDenseGetArrayWrite(G, &ga));
  if (C) {
    PetscCall(MatGetOwnershipRange(C, &cs, &ce));
    PetscCall(MatDenseGetLDA(C, &lc));
    PetscCall(MatDenseGetArrayWrite(C, &ca));
  }
  for (size_t k = 0; k < rtot;) {
    const int m = (int)rb[k], nc = (int)rb[k + 3];
    const PetscInt row = (PetscInt)rb[k + 1], c0 = (PetscInt)rb[k + 2];
    double *a = m ? ca : ga;
    const PetscInt lda = m ? lc : lg, r = row - (m ? cs : gs);
    for (int j = 0; j < nc; j++) a[r + (c0 + j) * lda] = rb[k + 4 + j];
    k += 4 + (size_t)nc;
  }
  free(rb);
  PetscCall(MatDenseRestoreArrayWrite(G, &ga));
  if (C) PetscCall(MatDenseRestoreArrayWrite(C, &ca));
  (void)ge, (void)ce;
  return 0;
}

/* Rank 0's progress line, at its own chunk fetches: the scheduler's counter is global, so cpos /
 * n_chunks is the share of the whole job's tiles handed out (the last size chunks of it may still
 * be in work). The time left extrapolates the rate so far; tiles loaded from checkpoints make it
 * optimistic. */
static void report_progress(const char *name, int N, int M, int cpos, int n_chunks, double t_start, double *t_report)
{
  const double now = MPI_Wtime(), el = now - t_start, f = (double)cpos / n_chunks;
  char s_el[32], s_left[32];
  progress_format_duration(s_el, sizeof s_el, el);
  progress_format_duration(s_left, sizeof s_left, f > 0 ? el * (1 - f) / f : -1);
  printf("[ntkhpc] infinite width: %s %d x %d kernel (+ %d test rows): %.0f%% of the tiles handed out, %s elapsed, ~%s left\n", name,
         N, N, M, 100 * f, s_el, s_left);
  fflush(stdout);
  *t_report = now;
}

PetscErrorCode kernel_gram_assemble(MPI_Comm comm, const KernelFn *k, const double *x, int N, int M, int d, const KernelGramOptions *opt,
                                    Mat *G, Mat *C, KernelGramStats *st)
{
  PetscFunctionBeginUser;
  PetscCall(register_events());
  memset(st, 0, sizeof *st);
  *G = NULL;
  if (C) *C = NULL;
  const double t_start = MPI_Wtime();
  int rank;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  const int T = opt->tile > 0 ? opt->tile : 64;
  const char *dir = opt->ckpt_dir && opt->ckpt_dir[0] ? opt->ckpt_dir : NULL;
  Tile *tiles;
  const int nt = tiles_build(&tiles, N, M, T);
  st->n_tiles = nt;
  /* the checkpoint key: kernel, its parameters, the tiling and every sample's bytes */
  uint64_t key = fnv(14695981039346656037ull, k->name, strlen(k->name));
  key = fnv(key, k->spec, k->spec_bytes);
  const int dims[4] = {N, M, d, T};
  key = fnv(key, dims, sizeof dims);
  key = fnv(key, x, (size_t)(N + M) * d * sizeof *x);
  if (dir && rank == 0) {
    char sub[4400];
    snprintf(sub, sizeof sub, "%s/" TILE_DIR, dir);
    if (mkdir(sub, 0755) != 0 && errno != EEXIST) dir = NULL; /* reported below: every rank must agree */
  }
  int have_dir = dir != NULL;
  PetscCallMPI(MPI_Bcast(&have_dir, 1, MPI_INT, 0, comm));
  if (!have_dir) dir = NULL;
  PetscCheck(have_dir || !(opt->ckpt_dir && opt->ckpt_dir[0]), comm, PETSC_ERR_FILE_OPEN, "checkpoint directory %s: cannot create %s/" TILE_DIR,
             opt->ckpt_dir, opt->ckpt_dir);

  /* the tiles this rank takes, in the scheduler's order */
  int *mine = malloc((size_t)(nt ? nt : 1) * sizeof *mine), n_mine = 0;
  double **vals = malloc((size_t)(nt ? nt : 1) * sizeof *vals);
  Scheduler sched;
  /* The scheduler hands out chunks of consecutive tiles, about 16 per rank: a fetch from the counter
   * on rank 0 completes only when rank 0 enters MPI (no asynchronous progress), i.e. between its own
   * chunks, so one fetch per tile would leave the other ranks waiting for rank 0's tiles. */
  int size;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  const int chunk = nt / (16 * size) > 1 ? nt / (16 * size) : 1, n_chunks = (nt + chunk - 1) / chunk;
  PetscCheck(scheduler_create(&sched, comm, PETSC_COMM_SELF, n_chunks) == 0, comm, PETSC_ERR_LIB, "cannot create the tile scheduler's MPI window");
  int computed = 0, loaded = 0, save_failed = 0, cpos = -1, pos = 0, cend = 0;
  double busy = 0, t_report = t_start;
  for (;;) {
    if (pos >= cend) { /* the next chunk */
      if (ckpt_signal_received()) scheduler_request_stop(&sched);
      if ((cpos = scheduler_next(&sched)) < 0) break;
      pos = cpos * chunk, cend = pos + chunk < nt ? pos + chunk : nt;
      if (rank == 0 && opt->progress_seconds > 0 && MPI_Wtime() - t_report >= opt->progress_seconds)
        report_progress(k->name, N, M, cpos, n_chunks, t_start, &t_report);
    }
    const Tile *t = &tiles[pos];
    double *v = malloc((size_t)t->nr * t->nc * sizeof *v);
    PetscCheck(v, PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory for a %d x %d kernel tile", t->nr, t->nc);
    const double t0 = MPI_Wtime();
    if (dir && tile_load(dir, k->name, pos, t, key, v)) loaded++;
    else {
      PetscCall(PetscLogEventBegin(ev_tile, 0, 0, 0, 0));
      k->block(v, x + (size_t)t->r0 * d, t->nr, x + (size_t)t->c0 * d, t->nc, d, k->spec);
      if (t->diag) /* one value per symmetric pair: the lower triangle's */
        for (int i = 0; i < t->nr; i++)
          for (int j = i + 1; j < t->nc; j++) v[(size_t)i * t->nc + j] = v[(size_t)j * t->nc + i];
      PetscCall(PetscLogEventEnd(ev_tile, 0, 0, 0, 0));
      computed++;
      if (dir) {
        if (tile_save(dir, k->name, pos, t, key, v)) save_failed = 1;
        else if (opt->tile_saved) opt->tile_saved(opt->hook_ctx, pos, computed);
      }
    }
    busy += MPI_Wtime() - t0;
    mine[n_mine] = pos++;
    vals[n_mine++] = v;
  }
  int stopped = scheduler_stop_requested(&sched);
  scheduler_destroy(&sched);
  int cnt[4] = {computed, loaded, stopped, save_failed};
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, cnt, 4, MPI_INT, MPI_SUM, comm));
  st->computed = cnt[0], st->loaded = cnt[1], st->stopped = cnt[2] > 0;
  double bmax = busy, bsum = busy;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &bmax, 1, MPI_DOUBLE, MPI_MAX, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &bsum, 1, MPI_DOUBLE, MPI_SUM, comm));
  st->max_rank_busy = bmax, st->mean_rank_busy = bsum / size;
  if (cnt[3] && rank == 0) PetscCall(PetscPrintf(PETSC_COMM_SELF, "ntkhpc: warning: some kernel tiles could not be checkpointed in %s/" TILE_DIR "\n", dir));

  if (!st->stopped) {
    PetscCall(PetscLogEventBegin(ev_assemble, 0, 0, 0, 0));
    PetscCall(MatCreateDense(comm, PETSC_DECIDE, PETSC_DECIDE, N, N, NULL, G));
    PetscCall(MatSetOption(*G, MAT_SYMMETRIC, PETSC_TRUE));
    if (C && M > 0) PetscCall(MatCreateDense(comm, PETSC_DECIDE, PETSC_DECIDE, M, N, NULL, C));
    PetscCall(deliver_rows(comm, *G, C ? *C : NULL, N, tiles, mine, vals, n_mine));
    PetscCall(MatAssemblyBegin(*G, MAT_FINAL_ASSEMBLY));
    PetscCall(MatAssemblyEnd(*G, MAT_FINAL_ASSEMBLY));
    if (C && *C) {
      PetscCall(MatAssemblyBegin(*C, MAT_FINAL_ASSEMBLY));
      PetscCall(MatAssemblyEnd(*C, MAT_FINAL_ASSEMBLY));
    }
    PetscCall(PetscLogEventEnd(ev_assemble, 0, 0, 0, 0));
  }
  for (int q = 0; q < n_mine; q++) free(vals[q]);
  free(vals), free(mine), free(tiles);
  st->seconds = MPI_Wtime() - t_start;
  PetscFunctionReturn(0);
}
