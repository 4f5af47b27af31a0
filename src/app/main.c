/* ntkhpc: sweeps of wide networks trained across MPI sub-communicators, one HDF5 file per job
 * (app.h, docs/architecture.md). */
#include "app.h"

int main(int argc, char **argv) { return ntkhpc_main(argc, argv); }
