/* Options of the model: architecture, depth, activation, initialisation scales, muP base width and
 * the Wide ResNet's depth and batch norm (options.h describes the table). */
#include "options.h"

static const char *arch_choice(int i) { return arch_name((Architecture)i); }
static const char *act_choice(int i) { return act_name((Activation)i); }
static bool is_wrn(const Config *c) { return c->model.arch == ARCH_WRN; }
static bool has_bn(const Config *c)
{
  return (c->model.arch == ARCH_WRN && c->model.batch_norm) || (c->model.arch == ARCH_FC && c->model.fc_batch_norm);
}
static bool fc_bn(const Config *c) { return c->model.arch == ARCH_FC && c->model.fc_batch_norm; }
static bool no_affine(const Config *c) { return has_bn(c) && c->model.bn_no_affine; }
static bool plain_wrn(const Config *c) { return c->model.arch == ARCH_WRN && !c->wrn_residual; }
static bool has_param(const Config *c, Parameterization p)
{
  for (int i = 0; i < c->n_params; i++)
    if (c->params[i] == p) return true;
  return false;
}
static bool has_abc(const Config *c) { return has_param(c, PARAM_ABC); }
static bool has_limit(const Config *c) { return c->mup_limit; }

/* One layer kind's (a, b, c) of -params abc; the defaults are muP's. */
#define ABC_OPTION(opt, layer, def_, what)                                                                   \
  {.name = opt, .kind = KIND_REAL_LIST, .def = def_, .lo = -64, .hi = 64, .flags = OPTION_NONEMPTY, .entry = "exponent", \
   .rule = "must be within [-64, 64]", .in_deck = has_abc,                                                  \
   .meaning = "-params abc: exponents a,b,c of " what " (h = r^-a W x, W ~ N(0, sigma_w^2/fan_in(n0) r^-2b), lr eta r^-c)", \
   OPTION_LIST(model.abc[layer], n_abc[layer])}

static const OptionDesc opts[] = {
  {.name = "-arch", .kind = KIND_CHOICE, .def = "fc", .n_choices = ARCH_COUNT, .choice = arch_choice,
   .meaning = "Architecture (wrn: pre-activation Wide ResNet, -widths = widening factor k; cnn: -depth 3x3 conv layers of -widths "
              "channels, global average pooling, dense readout: the CNTK's net)", OPTION_FIELD(model.arch)},
  {.name = "-depth", .kind = KIND_INT, .def = "3", .lo = 1, .hi = 1000, .meaning = "Number of hidden layers L (cnn: conv layers)",
   OPTION_FIELD(model.depth)},
  {.name = "-activation", .kind = KIND_CHOICE, .def = "relu", .n_choices = ACT_COUNT, .choice = act_choice,
   .meaning = "Activation phi of the hidden layers", OPTION_FIELD(model.act)},
  {.name = "-bias", .kind = KIND_BOOL, .def = "true", .meaning = "Biases on every dense layer", OPTION_FIELD(model.bias)},
  {.name = "-sigma_w", .kind = KIND_REAL, .def = "1.4142135623730951", .lo = 0, .hi = 1e6, .flags = OPTION_OPEN_LO,
   .meaning = "Weight scale sigma_w (docs/conventions.md table)", OPTION_FIELD(model.sigma_w)},
  {.name = "-sigma_b", .kind = KIND_REAL, .def = "0", .lo = 0, .hi = 1e6, .meaning = "Bias scale sigma_b", OPTION_FIELD(model.sigma_b)},
  {.name = "-base_width", .kind = KIND_INT, .def = "64", .lo = 1, .hi = 1e8,
   .meaning = "Base width n0 of mup, abc and mf (r = width / n0)", OPTION_FIELD(model.base_width)},
  {.name = "-mup_zero_readout", .kind = KIND_BOOL, .def = "false",
   .meaning = "mup, abc, mf: zero-initialise the output layer", OPTION_FIELD(model.mup_zero_readout)},
  {.name = "-mup_limit", .kind = KIND_BOOL, .def = "false", .in_deck = has_limit,
   .meaning = "Also run the exact infinite-width limit of the one-hidden-layer linear muP net (width 0 = inf; docs/mup_limit.md)",
   OPTION_FIELD(mup_limit)},
  ABC_OPTION("-abc_input", ABC_INPUT, "0,0,-1", "the input layer"),
  ABC_OPTION("-abc_hidden", ABC_HIDDEN, "0,0.5,0", "the hidden layers"),
  ABC_OPTION("-abc_output", ABC_OUTPUT, "0,1,1", "the output layer"),
  ABC_OPTION("-abc_bias", ABC_BIAS, "0,0,-1", "the biases (and batch-norm scales and shifts: c only)"),
  {.name = "-wrn_depth", .kind = KIND_INT, .def = "16", .lo = 10, .hi = 100000, .in_deck = is_wrn,
   .meaning = "-arch wrn: depth d = 6n+4 of WRN-d-k (n blocks per group; -widths are the widening factor k)", OPTION_FIELD(model.wrn_depth)},
  {.name = "-batch_norm", .kind = KIND_BOOL, .def = "true", .in_deck = is_wrn,
   .meaning = "-arch wrn: train-mode batch norm before every activation (statistics of the whole batch)", OPTION_FIELD(model.batch_norm)},
  {.name = "-bn_eps", .kind = KIND_REAL, .def = OPTION_STR(BN_EPS_DEFAULT), .lo = 0, .hi = 1, .in_deck = has_bn,
   .meaning = "Batch-norm epsilon (0: exactly scale-invariant, for tests; a batch with a constant unit then divides by 0)",
   OPTION_FIELD(model.bn_eps)},
  {.name = "-fc_batch_norm", .kind = KIND_BOOL, .def = "false", .in_deck = fc_bn,
   .meaning = "-arch fc: train-mode batch norm between each hidden dense layer and its activation (statistics of the whole "
              "data-parallel batch)",
   OPTION_FIELD(model.fc_batch_norm)},
  {.name = "-bn_no_affine", .kind = KIND_BOOL, .def = "false", .in_deck = no_affine,
   .meaning = "Batch norm without its affine parameters gamma and beta", OPTION_FIELD(model.bn_no_affine)},
  {.name = "-wrn_residual", .kind = KIND_BOOL, .def = "true", .in_deck = plain_wrn,
   .meaning = "-arch wrn: keep the residual connections (false: the same blocks without shortcuts, a plain deep net)", OPTION_FIELD(wrn_residual)},
};

static void check(Config *cfg, OptionReader *r)
{
  const ModelConfig *m = &cfg->model;
  const DataKind data = cfg->data.kind;
  cfg->model.wrn_plain = !cfg->wrn_residual;
  if (m->arch != ARCH_WRN && !cfg->wrn_residual) options_fail(r, "option -wrn_residual: only used with -arch wrn");
  if ((m->wrn_depth - 4) % 6 != 0) options_fail(r, "option -wrn_depth: %d is not 6n+4 (10, 16, 22, 28, 40, ...)", m->wrn_depth);
  if (m->arch == ARCH_UV && (cfg->n_params != 1 || cfg->params[0] != PARAM_NTK))
    options_fail(r, "option -params: the uv model is defined in the ntk parameterization only");
  if ((m->arch == ARCH_WRN || m->arch == ARCH_CNN) && (data == DATA_TEACHER || data == DATA_UV))
    options_fail(r, "option -arch: %s needs an image dataset (fashion_mnist, mnist or cifar10), not %s", arch_name(m->arch), data_kind_name(data));
  if (m->arch != ARCH_WRN)
    for (const char *const *o = (const char *const[]){"-wrn_depth", "-batch_norm", NULL}; *o; o++)
      if (options_given(r, *o)) {
        options_fail(r, "option %s: only used with -arch wrn", *o);
        break;
      }
  if (m->arch == ARCH_WRN && !m->batch_norm && options_given(r, "-bn_eps")) options_fail(r, "option -bn_eps: only used with -batch_norm true");
  if (m->arch != ARCH_FC && options_given(r, "-fc_batch_norm")) options_fail(r, "option -fc_batch_norm: only used with -arch fc");
  if (m->arch == ARCH_FC && !m->fc_batch_norm)
    for (const char *const *o = (const char *const[]){"-bn_eps", "-bn_no_affine", NULL}; *o; o++)
      if (options_given(r, *o)) {
        options_fail(r, "option %s: only used with batch norm (-fc_batch_norm true, or -arch wrn)", *o);
        break;
      }
  if ((m->arch == ARCH_UV || m->arch == ARCH_CNN) && (options_given(r, "-bn_eps") || options_given(r, "-bn_no_affine")))
    options_fail(r, "option -bn_eps/-bn_no_affine: only used with batch norm (-fc_batch_norm true, or -arch wrn)");
  static const char *const abc_opt[ABC_KINDS] = {"-abc_input", "-abc_hidden", "-abc_output", "-abc_bias"};
  for (int k = 0; k < ABC_KINDS; k++) {
    if (options_given(r, abc_opt[k]) && !has_abc(cfg)) {
      options_fail(r, "option %s: only used with -params abc", abc_opt[k]);
      break;
    }
    if (cfg->n_abc[k] != 3) {
      options_fail(r, "option %s: needs 3 exponents a,b,c, got %d", abc_opt[k], cfg->n_abc[k]);
      break;
    }
  }
  if (cfg->mup_limit && (cfg->n_params != 1 || cfg->params[0] != PARAM_MUP || m->arch != ARCH_FC || m->depth != 1 ||
                         m->act != ACT_IDENTITY || m->bias))
    options_fail(r, "option -mup_limit: the exact limit is of the one-hidden-layer linear muP net: give -params mup -arch fc "
                    "-depth 1 -activation identity -bias false");
  if (has_param(cfg, PARAM_MF) && (m->arch != ARCH_FC || m->depth != 1))
    options_fail(r, "option -params: mf (mean field) needs -arch fc and -depth 1, not -arch %s -depth %d", arch_name(m->arch), m->depth);
}

const OptionModule options_model = {"Model", NULL, opts, sizeof opts / sizeof *opts, check, NULL, NULL};
