/* Options of the model: architecture, depth, activation, initialisation scales, muP base width and
 * the Wide ResNet's depth and batch norm (options.h describes the table). */
#include "options.h"

static const char *arch_choice(int i) { return arch_name((Architecture)i); }
static const char *act_choice(int i) { return act_name((Activation)i); }
static bool is_wrn(const Config *c) { return c->model.arch == ARCH_WRN; }
static bool has_bn(const Config *c) { return c->model.arch == ARCH_WRN && c->model.batch_norm; }

static const OptionDesc opts[] = {
  {.name = "-arch", .kind = KIND_CHOICE, .def = "fc", .n_choices = ARCH_COUNT, .choice = arch_choice,
   .meaning = "Architecture (wrn: pre-activation Wide ResNet, -widths = widening factor k)", OPTION_FIELD(model.arch)},
  {.name = "-depth", .kind = KIND_INT, .def = "3", .lo = 1, .hi = 1000, .meaning = "Number of hidden layers L",
   OPTION_FIELD(model.depth)},
  {.name = "-activation", .kind = KIND_CHOICE, .def = "relu", .n_choices = ACT_COUNT, .choice = act_choice,
   .meaning = "Activation phi of the hidden layers", OPTION_FIELD(model.act)},
  {.name = "-bias", .kind = KIND_BOOL, .def = "true", .meaning = "Biases on every dense layer", OPTION_FIELD(model.bias)},
  {.name = "-sigma_w", .kind = KIND_REAL, .def = "1.4142135623730951", .lo = 0, .hi = 1e6, .flags = OPTION_OPEN_LO,
   .meaning = "Weight scale sigma_w (docs/conventions.md table)", OPTION_FIELD(model.sigma_w)},
  {.name = "-sigma_b", .kind = KIND_REAL, .def = "0", .lo = 0, .hi = 1e6, .meaning = "Bias scale sigma_b", OPTION_FIELD(model.sigma_b)},
  {.name = "-base_width", .kind = KIND_INT, .def = "64", .lo = 1, .hi = 1e8, .meaning = "muP base width n0 (r = width / n0)",
   OPTION_FIELD(model.base_width)},
  {.name = "-mup_zero_readout", .kind = KIND_BOOL, .def = "false", .meaning = "muP: zero-initialise the output layer",
   OPTION_FIELD(model.mup_zero_readout)},
  {.name = "-wrn_depth", .kind = KIND_INT, .def = "16", .lo = 10, .hi = 100000, .in_deck = is_wrn,
   .meaning = "-arch wrn: depth d = 6n+4 of WRN-d-k (n blocks per group; -widths are the widening factor k)", OPTION_FIELD(model.wrn_depth)},
  {.name = "-batch_norm", .kind = KIND_BOOL, .def = "true", .in_deck = is_wrn,
   .meaning = "-arch wrn: train-mode batch norm before every activation (statistics of the whole batch)", OPTION_FIELD(model.batch_norm)},
  {.name = "-bn_eps", .kind = KIND_REAL, .def = OPTION_STR(BN_EPS_DEFAULT), .lo = 0, .hi = 1, .flags = OPTION_OPEN_LO, .in_deck = has_bn,
   .meaning = "-arch wrn: batch-norm epsilon", OPTION_FIELD(model.bn_eps)},
};

static void check(Config *cfg, OptionReader *r)
{
  const ModelConfig *m = &cfg->model;
  const DataKind data = cfg->data.kind;
  if ((m->wrn_depth - 4) % 6 != 0) options_fail(r, "option -wrn_depth: %d is not 6n+4 (10, 16, 22, 28, 40, ...)", m->wrn_depth);
  if (m->arch == ARCH_UV && (cfg->n_params != 1 || cfg->params[0] != PARAM_NTK))
    options_fail(r, "option -params: the uv model is defined in the ntk parameterization only");
  if (m->arch == ARCH_WRN && (data == DATA_TEACHER || data == DATA_UV))
    options_fail(r, "option -arch: wrn needs an image dataset (fashion_mnist, mnist or cifar10), not %s", data_kind_name(data));
  if (m->arch != ARCH_WRN)
    for (const char *const *o = (const char *const[]){"-wrn_depth", "-batch_norm", "-bn_eps", NULL}; *o; o++)
      if (options_given(r, *o)) {
        options_fail(r, "option %s: only used with -arch wrn", *o);
        break;
      }
  if (m->arch == ARCH_WRN && !m->batch_norm && options_given(r, "-bn_eps")) options_fail(r, "option -bn_eps: only used with -batch_norm true");
}

const OptionModule options_model = {"Model", NULL, opts, sizeof opts / sizeof *opts, check, NULL, NULL};
