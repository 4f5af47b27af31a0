/* Checkpoints, exact restart and signals (docs/checkpoint.md).
 *
 * A checkpoint directory (default <output>.ckpt/) holds
 *   sweep.h5        the instances table (lambda_0, eta_max) and which instances are measured;
 *   run_%06d.h5     one per run: a running run's state (theta, momentum, next step, the statistics
 *                   behind its summary row) or a finished run's summary row, and in both cases every
 *                   trajectory row recorded so far, so the output can be rebuilt from checkpoints.
 * Each file is serial HDF5 written by one rank (a run's group leader, or world rank 0 for
 * sweep.h5) to "<name>.tmp", fsync'ed and renamed: a kill at any instant leaves the previous
 * checkpoint valid. Each stores the effective deck, a format version, a machine signature and a
 * checksum over its data, all checked on reading.
 *
 * All randomness is counter-based (seed, stream, step/epoch), so the step is the RNG position:
 * nothing else of the generators needs storing. Theta_0 and the Gram matrix at initialisation are
 * recomputed from the seed. */
#ifndef NTK_CHECKPOINT_H
#define NTK_CHECKPOINT_H
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "output.h"
#include "runs.h"
#include "schema.h"

#define CKPT_FORMAT_VERSION 3

/* Exit code after a signal: every run's state is checkpointed; requeue the job with -restart. */
#define CKPT_EXIT_SIGNAL 3

/* The running statistics of train_run, in this order. */
enum {
  CKPT_LOSS0, CKPT_PEAK, CKPT_PEAK_WINDOW, CKPT_LAST_LOSS, CKPT_LAST_ACC, CKPT_LAMBDA_FIRST, CKPT_LAMBDA_LAST,
  CKPT_TEST_LOSS_FINAL, CKPT_TEST_ACC_FINAL, CKPT_WALL_SECONDS, CKPT_PEAK_STEP, CKPT_MEASURED /* SummaryMeasured bits */, CKPT_NSTATS
};

/* A named vector of a running run: theta, an optimizer's state ("opt.velocity"), a measurement's
 * warm start ("lambda.warm_ntk"). */
#define CKPT_NAME_LEN 64
#define CKPT_MAX_ARRAYS 160 /* theta, an optimizer's state, every measurement's warm starts */
typedef struct {
  char name[CKPT_NAME_LEN];
  int64_t n;
  double *data;
} CkptArray;

/* The rows one measurement recorded so far (schema.h's RecordBuffer, stored as index + row). */
#define CKPT_MAX_RECORDS OUTPUT_MAX_SCHEMAS
typedef struct {
  char group[CKPT_NAME_LEN];
  int64_t width, n;
  int64_t *index;          /* n */
  double *rows;            /* n x width */
} CkptRecords;

/* One run's checkpoint. For writing, the pointers borrow the caller's buffers; ckpt_read_run
 * allocates them (ckpt_run_free releases). */
typedef struct {
  int32_t run;             /* index of the run in the sweep */
  int32_t status;          /* RUN_RUNNING (resumable), RUN_DONE or RUN_DIVERGED */
  int64_t next_step;       /* first step not yet done */
  int64_t n_params;
  double stats[CKPT_NSTATS];
  int n_arrays;            /* running runs only */
  CkptArray arrays[CKPT_MAX_ARRAYS];
  int n_records;
  CkptRecords records[CKPT_MAX_RECORDS];
  SummaryRow summary;      /* finished runs */
} RunCheckpoint;

/* The array called name, or NULL. */
const CkptArray *ckpt_array(const RunCheckpoint *c, const char *name);
/* The records of measurement group `group`, or NULL. */
const CkptRecords *ckpt_records(const RunCheckpoint *c, const char *group);

/* Paths: dir/sweep.h5 and dir/run_%06d.h5. */
char *ckpt_sweep_path(const char *dir);            /* malloc'd, any length */
char *ckpt_run_path(const char *dir, int run);     /* malloc'd, any length */

/* Creates dir if missing (its parent must exist). 0, or -1 with a message. */
int ckpt_make_dir(const char *dir, char *err, size_t errlen);
/* Removes sweep.h5, run_*.h5 and leftover *.tmp of dir (a fresh start). */
void ckpt_remove_all(const char *dir);

/* At the end of a job whose every run is finished and whose output is closed: removes the run
 * files of runs 0 .. n_runs-1, sweep.h5 and then dir itself, only if dir/sweep.h5 is this deck's
 * checkpoint (n_instances rows) -- never anything else: a directory that holds other files stays.
 * 0 (removed), 1 (not this job's checkpoint folder: untouched), -1 (a file or the folder could not
 * be removed: message). */
int ckpt_remove_finished(const char *dir, const char *deck, int n_runs, int n_instances, char *err, size_t errlen);
/* Is the output file at path a finished job of this deck: an HDF5 file whose /deck equals deck
 * (ckpt_deck_diff) and whose /summary has n_runs rows, each with status done or diverged? 1 yes,
 * 0 no (not a file, not ntkhpc's, another deck, or a run not finished). */
int ckpt_output_finished(const char *path, const char *deck, int n_runs);

/* Writes atomically (tmp file, fsync, rename). 0, or -1 with a message naming the file. */
int ckpt_write_run(const char *dir, const char *deck, const RunCheckpoint *c, char *err, size_t errlen);
/* Reads run `run`: 0 (c filled), 1 (no checkpoint of this run), -1 (unreadable, corrupt, foreign
 * deck or machine: a one-line message naming the file in err). */
int ckpt_read_run(const char *dir, const char *deck, int run, RunCheckpoint *c, char *err, size_t errlen);
void ckpt_run_free(RunCheckpoint *c);

/* The instances table; measured[i] != 0 where instance i's row is valid. job (NULL: none) is the
 * identity of the job writing it, stored as the attribute "job" (ckpt_sweep_job). */
int ckpt_write_sweep(const char *dir, const char *deck, const char *job, int n_instances, const InstanceRow *rows, const int32_t *measured,
                     char *err, size_t errlen);
/* The job that wrote dir/sweep.h5: 0 (job filled), 1 (no sweep.h5, or written before jobs were
 * recorded), -1 (unreadable). */
int ckpt_sweep_job(const char *dir, char **job /* malloc'd, or NULL */);
/* 0, 1 (no sweep.h5), -1 (bad: message). */
int ckpt_read_sweep(const char *dir, const char *deck, int n_instances, InstanceRow *rows, int32_t *measured, char *err, size_t errlen);

/* Compares two effective decks option by option, ignoring the options that do not change results
 * (output paths, progress and flush timing, checkpoint options, -restart, -ranks_per_run). Returns
 * 0 if equal, else 1 with the first differing option's name ("-etas") in key. */
int ckpt_deck_diff(const char *mine, const char *theirs, char *key, size_t keylen);

/* Copies stored records into a RecordBuffer of the same schema (the widths must agree and the
 * rows fit): 0, or -1. */
int ckpt_records_restore(RecordBuffer *b, const CkptRecords *r);

/* Writes a finished run's rows and summary row into the output (independent, one rank). */
int ckpt_refill_output(OutputFile *of, const RunCheckpoint *c);

/* SIGTERM and SIGUSR1 (and SIGUSR2) set a flag, nothing else. */
void ckpt_install_signal_handlers(void);
/* The signal received (0: none). */
int ckpt_signal_received(void);

#endif
