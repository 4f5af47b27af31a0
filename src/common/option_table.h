/* One option described once (docs/architecture.md "Options"): its name, kind, default written as
 * text, range, meaning and the Config field it fills. The app's tables (src/app/options_*.c) and
 * the measurements' own (MeasurementClass.options) are lists of these; one generic reader
 * (src/app/options.c) reads, checks, documents and records them all. Plain data: no PETSc. */
#ifndef NTK_OPTION_TABLE_H
#define NTK_OPTION_TABLE_H
#include <stdbool.h>
#include <stddef.h>
#include "config.h"

/* (PETSc's petscoptions.h already has OPTION_INT and friends.) */
typedef enum {
  KIND_INT,        /* int field */
  KIND_INT64,      /* int64_t (or uint64_t, with lo >= 0) field */
  KIND_REAL,       /* double field */
  KIND_BOOL,       /* bool field */
  KIND_CHOICE,     /* an enum (int-sized) field, given by name */
  KIND_STRING,     /* char[] field */
  KIND_INT_LIST,   /* int[] field and an int count */
  KIND_INT64_LIST, /* int64_t[] field and an int count */
  KIND_REAL_LIST,  /* double[] field and an int count */
  KIND_CHOICE_LIST /* enum[] field (names) and an int count */
} OptionKind;

enum {
  OPTION_OPEN_LO = 1,    /* range (lo, hi] instead of [lo, hi] */
  OPTION_UNIQUE = 2,     /* lists: no entry twice */
  OPTION_INCREASING = 4, /* lists: strictly increasing */
  OPTION_NONEMPTY = 8,   /* lists: given with no value is an error, not the default */
  OPTION_HIDDEN = 16,    /* a test hook: read and checked like any option, not listed by -help */
  OPTION_ALLOC = 32,     /* KIND_STRING: the field is a char * the reader allocates, of any length
                            (paths: no fixed-size buffers); config_free frees it */
  OPTION_AUTO = 64       /* KIND_INT: the word "auto" is accepted too, stored as 0 (lo is then >= 1)
                            and written back as "auto" */
};

typedef struct {
  const char *name;      /* "-depth" */
  OptionKind kind;
  const char *def;       /* the default, written as in a deck; NULL: none (a list is empty, a number 0) */
  const char *def_shown; /* -help shows this instead when the default is derived ("<output>.ckpt") */
  double lo, hi;         /* numbers and list entries: the allowed range */
  unsigned flags;        /* OPTION_* */
  int n_choices;         /* choices: their names are choice(0 .. n_choices - 1), the enum's own names */
  const char *(*choice)(int);
  const char *entry, *rule; /* lists: one entry's noun and rule, for "width 0 must be a positive integer" */
  const char *meaning;
  size_t at, size;       /* the Config field (offsetof, sizeof); size 0: checked here, read by its module */
  size_t count_at;       /* lists: the int count of entries */
  bool (*in_deck)(const Config *); /* recorded in the effective deck only when this holds (NULL: always) */
} OptionDesc;

/* Where an option goes: .at and .size of a Config field, and for lists the count. */
#define OPTION_FIELD(f) .at = offsetof(Config, f), .size = sizeof(((Config *)0)->f)
#define OPTION_LIST(f, n) OPTION_FIELD(f), .count_at = offsetof(Config, n)
/* A default written as a macro of its module (HESS_DEFAULT_CHUNK, BN_EPS_DEFAULT), as text. */
#define OPTION_STR_(x) #x
#define OPTION_STR(x) OPTION_STR_(x)

#endif
