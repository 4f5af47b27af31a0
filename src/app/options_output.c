/* Options of the output file and of what is printed while the sweep runs (options.h describes the
 * table). */
#include <string.h>
#include "options.h"

static const OptionDesc opts[] = {
  {.name = "-output", .kind = KIND_STRING, .def = "ntkhpc.h5", .flags = OPTION_ALLOC, .meaning = "Output HDF5 file (a path of any length)",
   OPTION_FIELD(output)},
  {.name = "-overwrite", .kind = KIND_BOOL, .def = "false", .meaning = "Replace an existing output file", OPTION_FIELD(overwrite)},
  {.name = "-flush_seconds", .kind = KIND_REAL, .def = "30", .lo = 0, .hi = 1e9, .flags = OPTION_OPEN_LO,
   .meaning = "Write buffered trajectory rows at least this often", OPTION_FIELD(flush_seconds)},
  {.name = "-progress_seconds", .kind = KIND_REAL, .def = "10", .lo = 0, .hi = 1e9, .flags = OPTION_OPEN_LO,
   .meaning = "Print a progress summary at least this often", OPTION_FIELD(progress_seconds)},
  {.name = "-quiet", .kind = KIND_BOOL, .def = "false", .meaning = "Only errors and the final summary", OPTION_FIELD(quiet)},
};

static void check(Config *cfg, OptionReader *r)
{
  if (cfg->output && !cfg->output[0]) options_fail(r, "option -output: empty file name");
}

const OptionModule options_output = {"Output", NULL, opts, sizeof opts / sizeof *opts, check, NULL, NULL};
