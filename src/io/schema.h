/* The schema of what a measurement records along a trajectory, and the rows it records.
 *
 * A measurement declares its datasets once (name, values per record, type, units, one-line
 * description). Everything else follows from that declaration: the HDF5 datasets of every run
 * (output.c), their attributes (which postproc reads instead of field lists of its own), the rows
 * kept for flushing, and the checkpoint's copy of them (checkpoint.c).
 *
 * Records live in memory as rows of doubles: the datasets' values side by side, in declared order
 * (integers are exact in a double up to 2^53). Each row has an index: the row of the output
 * datasets it goes to. A measurement recorded on a regular schedule appends (row i is the i-th
 * record); one recorded at listed steps uses the step's position in its list. */
#ifndef NTK_SCHEMA_H
#define NTK_SCHEMA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { DS_INT64 = 0, DS_FLOAT64 = 1 } DatasetType;

#define SCALAR 0

typedef struct {
  const char *name;        /* dataset name inside the measurement's group */
  DatasetType type;        /* int64 fills with -1, float64 with NaN */
  int64_t width;           /* SCALAR: one value per record, a 1-D dataset [n_records]; w >= 1: a
                              vector of w values per record, a 2-D dataset [n_records, w] */
  const char *units;       /* "1" for dimensionless numbers, "steps", "" when not a quantity */
  const char *description; /* one line */
} DatasetSpec;

#define SCHEMA_MAX_DATASETS 24

typedef struct {
  const char *group;       /* the run's subgroup: /runs/run_%06d/<group> */
  const char *description; /* one line: what the measurement is */
  int64_t n_records;       /* output rows per run; 0: the measurement is off in this deck */
  int n_datasets;
  int overflow;            /* schema_add was called with the table full: a measurement's bug */
  DatasetSpec datasets[SCHEMA_MAX_DATASETS]; /* the first is "step" (int64): written last, so a
                                                row whose step is >= 0 is complete on disk */
} Schema;

/* Appends a dataset to the schema; returns its offset in a record row (with the table full it
 * sets s->overflow instead, which measure_set_declare reports). */
int64_t schema_add(Schema *s, const char *name, DatasetType type, int64_t width, const char *units, const char *description);
/* Values per record of dataset ds (1 for a SCALAR). */
static inline int64_t dataset_values(const DatasetSpec *ds) { return ds->width > 0 ? ds->width : 1; }
/* Values per record row (the sum over the datasets). */
int64_t schema_row_width(const Schema *s);
/* Offset of dataset k in a record row. */
int64_t schema_offset(const Schema *s, int k);
/* Index of the dataset called name, or -1. */
int schema_find(const Schema *s, const char *name);

/* One run's rows of one measurement, in recording order. */
typedef struct {
  const Schema *schema;
  int64_t width;           /* schema_row_width */
  int64_t capacity;        /* rows it can hold (>= n_records) */
  int64_t n;               /* rows recorded */
  int64_t flushed;         /* rows [0, flushed) are in the output file */
  double *rows;            /* capacity x width */
  int64_t *index;          /* capacity: the output row of each recorded row */
} RecordBuffer;

/* 0, or -1 when out of memory. */
int records_init(RecordBuffer *b, const Schema *s);
void records_free(RecordBuffer *b);
/* A new row for output row `index`, filled with the fill values; NULL when the buffer is full
 * (a caller bug: a schema's n_records is the most a run records). */
double *records_append(RecordBuffer *b, int64_t index);
/* Row i of the buffer (0 <= i < n). */
static inline double *records_row(const RecordBuffer *b, int64_t i) { return b->rows + i * b->width; }

/* Fill value of a dataset type, as a double (NaN, or -1 for integers). */
double schema_fill(DatasetType t);

#endif
