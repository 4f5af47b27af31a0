/* Names of Config's enums: the option values of the deck and the output's attribute values. */
#include "config.h"

static const char *const optimizer_names[] = {"gd", "sgd"};
static const char *const schedule_names[] = {"constant", "step", "cosine", "exp", "onecycle"};

const char *optimizer_name(OptimizerKind o) { return optimizer_names[o]; }
const char *lr_schedule_name(LrSchedule s) { return schedule_names[s]; }
const char *ntk_method_name(NtkMethod m) { return m == NTK_METHOD_MATFREE ? "matfree" : m == NTK_METHOD_EXACT ? "exact" : "auto"; }
const char *ntk_weighting_name(int w) { return w == 1 ? "plain" : "lr"; }
const char *landscape_dir_name(int k)
{
  static const char *const names[LDIR_COUNT] = {"random", "pca", "hessian", "ntk"};
  return k >= 0 && k < LDIR_COUNT ? names[k] : NULL;
}
