/* Options of checkpoints and restarts (docs/checkpoint.md; options.h describes the table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "errbuf.h"
#include "options.h"

static const OptionDesc opts[] = {
  {.name = "-checkpoint_dir", .kind = KIND_STRING, .def = "", .def_shown = "<output>.ckpt", .flags = OPTION_ALLOC,
   .meaning = "Checkpoint directory (a path of any length)",
   OPTION_FIELD(checkpoint_dir)},
  {.name = "-checkpoint_every", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Checkpoint running runs every this many steps (0 = off)", OPTION_FIELD(checkpoint_every)},
  {.name = "-checkpoint_minutes", .kind = KIND_REAL, .def = "30", .lo = 0, .hi = 1e9,
   .meaning = "Checkpoint running runs at least this often, in minutes (0 = off)", OPTION_FIELD(checkpoint_minutes)},
  {.name = "-restart", .kind = KIND_BOOL, .def = "false",
   .meaning = "Continue from the checkpoints (finished runs are kept, the output is rebuilt)", OPTION_FIELD(restart)},
  {.name = "-keep_checkpoints", .kind = KIND_BOOL, .def = "false",
   .meaning = "Keep the checkpoint folder when every run is finished (by default it is removed)", OPTION_FIELD(keep_checkpoints)},
  {.name = "-pause_at_step", .kind = KIND_INT64, .def = "-1", .lo = -1, .hi = PETSC_MAX_INT, .flags = OPTION_HIDDEN,
   .meaning = "Test hook: each run pauses at its first step >= this until <output>.paused_run_<run> is removed or a signal arrives "
              "(-1 = off; docs/robustness.md)", OPTION_FIELD(pause_at_step)},
};

static void check(Config *cfg, OptionReader *r)
{
  if (!cfg->checkpoint_dir || cfg->checkpoint_dir[0] || !cfg->output) return; /* given (or out of memory: reported) */
  char *dir = str_printf("%s.ckpt", cfg->output);
  if (!dir) {
    options_fail(r, "option -checkpoint_dir: out of memory");
    return;
  }
  free(cfg->checkpoint_dir);
  cfg->checkpoint_dir = dir;
}

const OptionModule options_checkpoint = {"Checkpoints", NULL, opts, sizeof opts / sizeof *opts, check, NULL, NULL};
