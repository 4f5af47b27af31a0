/* Schemas and record buffers (schema.h). */
#include "schema.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t schema_add(Schema *s, const char *name, DatasetType type, int64_t width, const char *units, const char *description)
{
  const int64_t off = schema_row_width(s);
  if (s->n_datasets < SCHEMA_MAX_DATASETS) s->datasets[s->n_datasets++] = (DatasetSpec){name, type, width, units, description};
  else s->overflow = 1;
  return off;
}

int64_t schema_row_width(const Schema *s)
{
  int64_t w = 0;
  for (int k = 0; k < s->n_datasets; k++) w += dataset_values(&s->datasets[k]);
  return w;
}

int64_t schema_offset(const Schema *s, int k)
{
  int64_t w = 0;
  for (int j = 0; j < k; j++) w += dataset_values(&s->datasets[j]);
  return w;
}

int schema_find(const Schema *s, const char *name)
{
  for (int k = 0; k < s->n_datasets; k++)
    if (strcmp(s->datasets[k].name, name) == 0) return k;
  return -1;
}

double schema_fill(DatasetType t) { return t == DS_INT64 ? -1.0 : NAN; }

int records_init(RecordBuffer *b, const Schema *s)
{
  memset(b, 0, sizeof *b);
  b->schema = s;
  b->width = schema_row_width(s);
  b->capacity = s->n_records;
  b->rows = malloc((size_t)(b->capacity * b->width + 1) * sizeof *b->rows);
  b->index = malloc((size_t)(b->capacity + 1) * sizeof *b->index);
  return b->rows && b->index ? 0 : -1;
}

void records_free(RecordBuffer *b)
{
  free(b->rows);
  free(b->index);
  memset(b, 0, sizeof *b);
}

double *records_append(RecordBuffer *b, int64_t index)
{
  if (b->n >= b->capacity) return NULL;
  double *row = b->rows + b->n * b->width;
  const Schema *s = b->schema;
  for (int64_t k = 0, o = 0; k < s->n_datasets; o += dataset_values(&s->datasets[k]), k++)
    for (int64_t j = 0; j < dataset_values(&s->datasets[k]); j++) row[o + j] = schema_fill(s->datasets[k].type);
  b->index[b->n++] = index;
  return row;
}
