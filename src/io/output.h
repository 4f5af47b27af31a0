/* One parallel HDF5 file per job (layout: docs/output.md).
 *
 * Parallel HDF5 metadata operations are collective, while runs finish at different times on
 * different sub-communicators. So output_create() makes, collectively and up front, every group,
 * dataset and static attribute of every run, sized for the whole trajectory and filled with NaN
 * (-1 for integers); afterwards each run's group leader writes its rows and its summary row
 * independently, touching only raw data. output_close() is collective.
 *
 * A run's trajectory datasets are not listed here: they are the measurements' schemas (schema.h),
 * one group per measurement, created and written from the declaration alone. Each dataset carries
 * its "units" and "description", each group its "description", and the root attribute
 * "measurements" lists the groups, so a reader needs no field list of its own.
 */
#ifndef NTK_OUTPUT_H
#define NTK_OUTPUT_H
#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>
#include <hdf5.h>
#include "config.h"
#include "runs.h"
#include "schema.h"

#define OUTPUT_MAX_SCHEMAS 32

typedef struct {
  hid_t file;
  MPI_Comm comm;        /* the ranks that opened it (output_close is collective over them) */
  int n_runs, n_instances;
  int n_schemas;
  Schema schema[OUTPUT_MAX_SCHEMAS]; /* the measurements recorded in every run */
  char *path;           /* its name (malloc'd; freed by output_close) */
} OutputFile;

/* Collective: the checks output_create makes on the path (existing file without -overwrite, missing
 * or unwritable directory), so a bad path fails before any expensive work. */
int output_check_path(MPI_Comm comm, const Config *cfg, char *err, size_t errlen);

/* Collective over comm. Refuses an existing file unless cfg->overwrite (then it is replaced only
 * after every check has passed). runs: the job's runs (index = position); schemas: what every run
 * records. deck_text: the effective options, one "-key value" per line.
 * Returns 0, or -1 with a one-line message naming the file. */
int output_create(OutputFile *of, MPI_Comm comm, const Config *cfg, const RunSpec *runs, int n_runs, int n_instances, const Schema *schemas,
                  int n_schemas, const char *deck_text, char *err, size_t errlen);

/* Index of the schema of measurement group `group` in of, or -1. */
int output_schema_index(const OutputFile *of, const char *group);

/* Independent (one rank): rows [first, first + count) of the buffer b of run `run`, each to the
 * output row its index names. b->schema must be one of of's (matched by group name). The step
 * dataset is written last: a row whose step is >= 0 is complete on disk. */
int output_write_records(OutputFile *of, int run, const RecordBuffer *b, int64_t first, int64_t count);
int output_write_summary(OutputFile *of, const SummaryRow *row);
int output_write_instance(OutputFile *of, const InstanceRow *row);
/* output_create() flushes the file's metadata collectively before returning, so raw data written
 * independently afterwards is on disk once the write returns: a killed job leaves a readable file
 * whose /summary says which runs finished. */

/* Collective. */
int output_close(OutputFile *of);

#endif
