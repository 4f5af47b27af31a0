/* ntkhpc as a function (app/app.c): the whole job, from the deck to the HDF5 file, so that a
 * program can add to it before it runs (tests/test_registry.c registers a measurement first).
 *
 *   mpirun -n R ntkhpc deck.in [-key value ...]
 *
 * The deck is a PETSc options file; command-line options override it. Returns the exit code:
 *   0 success, 1 runtime failure (I/O, out of memory), 2 bad input (deck, option, data file,
 *   checkpoint), 3 stopped by a signal with every run checkpointed (requeue with -restart). */
#ifndef NTK_APP_H
#define NTK_APP_H

int ntkhpc_main(int argc, char **argv);

#endif
