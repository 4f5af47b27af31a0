/* ntkhpc's options: one descriptor per option, one table per module (options_<module>.c), one
 * generic reader, help printer and effective-deck writer (options.c).
 *
 * A descriptor is the only place where an option's name, type, default, range and meaning are
 * written. The reader takes the value from the options database (deck and command line) or, when
 * the option is absent, from the default text, checks it and stores it in Config; each module then
 * checks what involves several options. Every bad value gives ONE line
 * "ntkhpc: error: option -NAME: what is wrong" on rank 0 (only the first error is printed). */
#ifndef NTK_OPTIONS_H
#define NTK_OPTIONS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <mpi.h>
#include <petscsys.h>
#include "config.h"
#include "option_table.h"

typedef struct OptionReader OptionReader;

typedef struct {
  const char *heading;      /* "Model" */
  const char *note;         /* a line under the heading in -help, or NULL */
  const OptionDesc *opts;
  int n_opts;
  void (*check)(Config *cfg, OptionReader *r); /* checks across options and derived values, or NULL */
  /* Creates throw-away PETSc objects with the module's prefixes so their options (-hess_eps_*, ...)
   * are listed by -help and count as used; solver_options names them in messages. Or NULL. */
  PetscErrorCode (*register_solvers)(MPI_Comm comm);
  const char *solver_options;
} OptionModule;

/* The modules, in the order of -help, reading and checking (options_<module>.c). */
extern const OptionModule options_model, options_data, options_training, options_sweep, options_ntk, options_hessian,
  options_output, options_checkpoint, options_landscape;

/* For a module's check: one error line (the first error only) and whether an option was given. */
void options_fail(OptionReader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool options_given(const OptionReader *r, const char *name);
MPI_Comm options_comm(const OptionReader *r);

/* Reads every option (after PetscInitialize) into cfg and validates it. On a bad value prints one
 * line "ntkhpc: error: option -NAME: what is wrong" on rank 0 and returns 1; returns 0 when good. */
int config_read(Config *cfg, MPI_Comm comm);
/* Frees the option strings config_read allocated (OPTION_ALLOC: the paths); cfg's copies share them. */
void config_free(Config *cfg);
/* -ntk_batch once the training set is loaded (n_samples of them, outputs per sample): "train" is
 * the training set; the default is the training set for full-batch GD when its exact Gram matrix
 * fits -gram_max_rows, else min(100, n_samples); -hess_batch, when not given, follows. Writes the
 * number back into ntk_batch_text (the effective deck records it). */
void ntk_batch_resolve(Config *cfg, int n_samples, int outputs);

/* Reads the PETSc solvers' options (-ntk_eps_*, -hess_eps_*, ...) on throw-away objects, so that
 * -help lists them and a bad one fails now in one line (returns 1), not hours later. */
int options_register_solvers(MPI_Comm comm);

/* Fails (one line, returns 1) if any option was given that nothing read: typos are errors. */
int config_check_unused(MPI_Comm comm);

/* The effective deck: every recorded option with its value in force, one "-key value" per line, so
 * that the text is itself a deck that reproduces the job. malloc'd; the caller frees it. The text is
 * stored in the output and compared on restart: its order and format never change. */
char *config_deck_text(const Config *cfg);

/* ntkhpc's -help: every module's heading and options with type, meaning and default. Needs no
 * PETSc, so it is printed before PETSc prints anything. */
void options_print_help(FILE *f);

#endif
