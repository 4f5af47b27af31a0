/* kernel/: the infinite-width reference run (docs/infinite_width.md). With -kernel_regression the
 * sweep gets one more run per learning rate, of width 0 ("inf"): gradient descent at infinite width,
 * which is kernel regression with the analytic NTK Theta_inf of the deck's fully connected net, or
 * with -kernel_net cntk the CNTK of a plain conv net (src/app/kernel_run.c). Its train/ and test/ rows are the kernel trajectory; this group holds
 * what only that run has: the whole spectrum of Theta_inf, lambda_0(inf) and the converged
 * predictor. The finite runs never record it (their rows stay NaN / -1). */
#include <string.h>
#include "measure.h"

static bool on(const Config *c) { return c->kernel_regression; }

static const char *net_choice(int i) { return i == 0 ? "fc" : i == 1 ? "cntk" : NULL; }

static const OptionDesc options[] = {
  {.name = "-kernel_regression", .kind = KIND_BOOL, .def = "false", .in_deck = on,
   .meaning = "Also run infinite-width gradient descent (kernel regression with the analytic NTK) as width 0 = inf, once per learning rate",
   OPTION_FIELD(kernel_regression)},
  {.name = "-kernel_net", .kind = KIND_CHOICE, .def = "fc", .n_choices = 2, .choice = net_choice, .in_deck = on,
   .meaning = "The kernel: fc = the NTK of the deck's fully connected net; cntk = the CNTK of -depth 3x3 conv + relu layers, global "
              "average pooling and a dense readout (-sigma_w, -sigma_b, -bias)",
   OPTION_FIELD(kernel_net)},
  {.name = "-kernel_tile", .kind = KIND_INT, .def = "64", .lo = 1, .hi = 65536, .in_deck = on,
   .meaning = "Rows and columns of the kernel Gram matrix's tiles (the unit of work and of checkpoints)", OPTION_FIELD(kernel_tile)},
  {.name = "-kernel_prior", .kind = KIND_BOOL, .def = "true", .in_deck = on,
   .meaning = "Also record the kernel run's train and test losses expected over the prior f_0 ~ GP(0, K_NNGP) (assembles the NNGP "
              "Gram matrix too): the curves finite nets approach, averaged over seeds",
   OPTION_FIELD(kernel_prior)},
};

static int validate(const Config *c, char *err, size_t errlen)
{
  if (!c->kernel_regression) return 0;
  const char *why = c->model.arch != ARCH_FC && c->kernel_net == 0 ? "-arch fc, or -kernel_net cntk (the analytic NTK is of fully connected nets)"
                    : c->model.arch == ARCH_CNN && c->kernel_net == 1 && c->model.act != ACT_RELU
                        ? "-activation relu with -arch cnn (the CNTK is the relu net's)"
                    : c->mup_limit          ? "-mup_limit false (both would be width 0)"
                    : c->optimizer != OPT_GD ? "-optimizer gd (kernel regression is full-batch gradient descent)"
                    : c->momentum != 0       ? "-momentum 0"
                    : c->weight_decay != 0   ? "-weight_decay 0"
                    : c->augment             ? "-augment false"
                                             : NULL;
  if (!why) return 0;
  snprintf(err, errlen, "option -kernel_regression: needs %s", why);
  return -1;
}

static void declare(const Config *cfg, const Dataset *train, Schema *s)
{
  s->description = "the infinite-width kernel-regression run (width 0): spectrum of Theta_inf and the converged predictor";
  s->n_records = cfg->kernel_regression ? 1 : 0;
  schema_add(s, "step", DS_INT64, SCALAR, "steps", "last step of the kernel trajectory");
  schema_add(s, "lambda0", DS_FLOAT64, SCALAR, "1", "lambda_0(inf) = lambda_max(Theta_{L+1}(X, X)) / N");
  schema_add(s, "spectrum", DS_FLOAT64, train->n, "1", "every eigenvalue of Theta_inf = Theta_{L+1}(X, X) / N, largest first (ScaLAPACK)");
  schema_add(s, "conv_train_loss", DS_FLOAT64, SCALAR, "1", "train loss of the converged predictor Theta(., X) Theta(X, X)^-1 Y (Cholesky)");
  schema_add(s, "conv_train_accuracy", DS_FLOAT64, SCALAR, "1", "train accuracy of the converged predictor");
  schema_add(s, "conv_test_loss", DS_FLOAT64, SCALAR, "1", "test loss of the converged predictor");
  schema_add(s, "conv_test_accuracy", DS_FLOAT64, SCALAR, "1", "test accuracy of the converged predictor");
  schema_add(s, "assembly_seconds", DS_FLOAT64, SCALAR, "s", "wall time of the distributed Gram assembly (tiles loaded from checkpoints are cheap)");
  if (cfg->kernel_regression && cfg->kernel_prior) {
    schema_add(s, "prior_train_loss", DS_FLOAT64, record_count(cfg->steps, cfg->record_every), "1",
               "train loss expected over f_0 ~ GP(0, K_NNGP) at each train/ record (NaN after a divergence)");
    schema_add(s, "prior_test_loss", DS_FLOAT64, record_count(cfg->steps, cfg->test_every), "1",
               "test loss expected over f_0 ~ GP(0, K_NNGP) at each test/ record (NaN after a divergence)");
  }
}

static bool due(const MeasureRun *r, void *state, const StepInfo *st) { return false; } /* finite runs: never */

static PetscErrorCode measure(MeasureRun *r, void *state, StepInfo *st, RecordBuffer *out) { return 0; }

const MeasurementClass measure_kernel_limit = {
  .name = "kernel", .option_heading = "Infinite width", .options = options, .n_options = sizeof options / sizeof *options,
  .validate = validate, .declare = declare, .due = due, .measure = measure,
};
