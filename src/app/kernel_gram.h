/* Distributed assembly of an infinite-width kernel's Gram matrix (docs/infinite_width.md).
 *
 * The samples are the N training samples followed by the M test samples. The blocks needed by
 * kernel regression are Theta(X, X) (N x N, symmetric) and Theta(X*, X) (M x N). Both are cut into
 * square tiles of -kernel_tile rows: the train-train tiles (I, J) with J <= I only (a symmetric
 * tile is computed once and mirrored), and every test-train tile. The tiles are handed out by the
 * sweep's dynamic scheduler (an MPI_Fetch_and_op counter, sweep.h) with every rank its own group,
 * in chunks of consecutive tiles (about 16 chunks per rank), so a rank that finishes early
 * takes the next chunk. Each computed tile is checkpointed to its own
 * file (written, synced and renamed); a rerun after a kill loads the tiles found instead of
 * recomputing them. Every entry is computed by the same tile whatever the rank count, so the
 * assembled matrices are identical on any number of ranks.
 *
 * The results are distributed dense PETSc matrices (MATDENSE, rows split across the ranks),
 * convertible to MATSCALAPACK. */
#ifndef NTK_KERNEL_GRAM_H
#define NTK_KERNEL_GRAM_H
#include <stddef.h>
#include <stdint.h>
#include <slepceps.h>

/* A kernel evaluated on a block of sample pairs: out[i * n2 + j] = k(x1_i, x2_j). */
typedef void (*KernelBlockFn)(double *out /* n1 x n2 */, const double *x1 /* n1 x d */, int n1, const double *x2 /* n2 x d */, int n2,
                              int d, const void *spec);

typedef struct {
  const char *name;        /* "ntk_fc", "cntk": part of the checkpoint key */
  KernelBlockFn block;
  const void *spec;        /* the kernel's parameters ... */
  size_t spec_bytes;       /* ... hashed into the checkpoint key (plain data: no pointers, no padding bytes) */
} KernelFn;

typedef struct {
  int tile;                /* rows and columns per tile */
  const char *ckpt_dir;    /* tiles go to <ckpt_dir>/kernel_tiles/ (NULL or "": no checkpoints) */
  /* optional hook, called on the rank that saved a tile after its file is renamed into place */
  void (*tile_saved)(void *ctx, int tile_index, int n_saved_here);
  void *hook_ctx;
  double progress_seconds; /* rank 0 reports the tiles handed out at most this often (0: never) */
} KernelGramOptions;

typedef struct {
  int n_tiles, computed, loaded; /* over the world */
  int stopped;                   /* a signal stopped the assembly: every finished tile is saved */
  double seconds, max_rank_busy, mean_rank_busy; /* wall time; per-rank compute time max and mean */
} KernelGramStats;

/* Collective over comm. x: the N training then M test samples, replicated on every rank.
 * G: N x N, C: M x N (NULL when M == 0), MATDENSE over comm. On a stop (st->stopped), G and C are
 * not created. */
PetscErrorCode kernel_gram_assemble(MPI_Comm comm, const KernelFn *k, const double *x /* (N + M) x d */, int N, int M, int d,
                                    const KernelGramOptions *opt, Mat *G, Mat *C, KernelGramStats *st);

/* Removes the tile files of <ckpt_dir>/kernel_tiles and the folder (one rank). */
void kernel_gram_remove_tiles(const char *ckpt_dir);

/* The fully connected net's NTK Theta_{L+1} (inf_kernels.h) as a KernelBlockFn; spec is an
 * InfKernelSpec. */
void kernel_block_ntk_fc(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec);

/* The CNTK (cntk.h) as a KernelBlockFn; spec is a CntkSpec. */
void kernel_block_cntk(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec);

/* Their NNGP kernels K_{L+1}: the covariance of the infinite-width net's outputs at initialisation
 * (spec an InfKernelSpec, a CntkSpec). */
void kernel_block_nngp_fc(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec);
void kernel_block_cnngp(double *out, const double *x1, int n1, const double *x2, int n2, int d, const void *spec);

#endif
