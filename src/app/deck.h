/* The deck and the command line before PETSc sees them (deck.c): the deck is read once (it may be
 * a pipe or FIFO) and checked line by line, the command line is checked for stray arguments and
 * for the PETSc directives and viewer targets that would otherwise fail with a PETSc trace, or only
 * after the run. Each check gives one line into err and returns -1. Rank 0 calls these. */
#ifndef NTK_DECK_H
#define NTK_DECK_H
#include <stdbool.h>
#include <stddef.h>
#include "config.h"

/* The output while it is written: <output>.partial, renamed to <output> when the job ends well. */
#define OUTPUT_PARTIAL ".partial"

typedef struct {
  char *text;   /* the deck's bytes as read, NUL-terminated (a NUL byte inside is refused) */
  size_t len;
  bool regular; /* a regular file: PETSc reads it by name; otherwise deck_argv hands it over */
} Deck;

/* Reads the deck at path once and checks it: blank lines, '#' comments of any length, and lines
 * "-key [value]" with no directive, no NUL byte and no key given twice. */
int deck_read(const char *path, Deck *d, char *err, size_t errlen);
void deck_free(Deck *d);

/* The command line after the deck (argv[0] is the program): no stray positional argument, no
 * -prefix_push/-prefix_pop or YAML options, an -options_file that reads and checks as a deck, and
 * the files of viewer options (-log_view :file, -*_view :file) in writable directories, on the
 * command line and in the deck (NULL: none). */
int args_check(int argc, char **argv, const Deck *deck, char *err, size_t errlen);

/* argv with the deck's options placed after argv[0] and before the command line's (which thus
 * override them, as with a deck file): how a deck that is not a regular file reaches PETSc, so its
 * text is read only once. Every rank calls it with the same text; the array is malloc'd and lives
 * until the program ends (PETSc keeps it). */
char **deck_argv(const char *text, int argc, char **argv, int *new_argc);

/* The files the options name, before anything is written (rank 0): an existing output must be a
 * regular file and neither the deck nor a data file, even with -overwrite (compared by device and
 * inode, so links and other spellings count); an existing checkpoint directory a directory. */
int paths_check(const Config *cfg, const char *deck, char *err, size_t errlen);

/* The job's identity, recorded in its checkpoints (ckpt_sweep_job): the output's absolute path,
 * with its directory resolved (links, "..", the working directory). malloc'd. */
char *output_identity(const char *output);

#endif
