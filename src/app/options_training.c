/* Options of training: optimizer, steps, learning-rate schedule, what is recorded how often,
 * augmentation, and the thresholds that classify a run's phase (options.h describes the table). */
#include <inttypes.h>
#include "augment.h"
#include "grad_reduce.h"
#include "options.h"

static const char *optimizer_choice(int i) { return optimizer_name((OptimizerKind)i); }
static const char *schedule_choice(int i) { return lr_schedule_name((LrSchedule)i); }
static bool is_sgd(const Config *c) { return c->optimizer == OPT_SGD; }
static bool is_step(const Config *c) { return c->lr_schedule == LR_STEP; }
static bool is_cosine(const Config *c) { return c->lr_schedule == LR_COSINE; }
static bool augments(const Config *c) { return c->augment; }
static bool is_exp(const Config *c) { return c->lr_schedule == LR_EXP; }
static bool is_onecycle(const Config *c) { return c->lr_schedule == LR_ONECYCLE; }
static bool has_freeze(const Config *c) { return c->freeze[0] != 0; }
static bool has_vinit(const Config *c) { return c->momentum_init != 0; }
static bool is_xent(const Config *c) { return c->model.loss != LOSS_MSE; }
static const char *loss_choice(int i) { return loss_name((LossKind)i); }
static const char *grad_sum_choice(int i) { return grad_sum_name((GradSum)i); }

static const OptionDesc opts[] = {
  {.name = "-optimizer", .kind = KIND_CHOICE, .def = "gd", .n_choices = 2, .choice = optimizer_choice,
   .meaning = "gd (full batch) or sgd (minibatch, counter-based shuffling)", OPTION_FIELD(optimizer)},
  {.name = "-batch_size", .kind = KIND_INT, .def = "128", .lo = 1, .hi = 1e8, .in_deck = is_sgd,
   .meaning = "SGD minibatch size (at most -n_train)", OPTION_FIELD(batch_size)},
  {.name = "-steps", .kind = KIND_INT64, .def = "100", .lo = 0, .hi = PETSC_MAX_INT, .meaning = "Training steps per run",
   OPTION_FIELD(steps)},
  {.name = "-momentum", .kind = KIND_REAL, .def = "0", .lo = 0, .hi = 0.999999, .meaning = "Heavy-ball momentum mu in [0,1)",
   OPTION_FIELD(momentum)},
  {.name = "-weight_decay", .kind = KIND_REAL, .def = "0", .lo = 0, .hi = 1e6, .meaning = "L2 weight decay added to the gradient",
   OPTION_FIELD(weight_decay)},
  {.name = "-lr_schedule", .kind = KIND_CHOICE, .def = "constant", .n_choices = 5, .choice = schedule_choice,
   .meaning = "Learning-rate schedule", OPTION_FIELD(lr_schedule)},
  {.name = "-warmup_steps", .kind = KIND_INT64, .def = "0", .lo = 0, .hi = PETSC_MAX_INT,
   .meaning = "Linear warm-up steps on top of the schedule (0 = none)", OPTION_FIELD(warmup_steps)},
  {.name = "-lr_step_every", .kind = KIND_INT64, .def = "1000", .lo = 1, .hi = PETSC_MAX_INT, .in_deck = is_step,
   .meaning = "Step schedule: decay every this many steps", OPTION_FIELD(lr_step_every)},
  {.name = "-lr_step_gamma", .kind = KIND_REAL, .def = "0.1", .lo = 0, .hi = 1, .flags = OPTION_OPEN_LO, .in_deck = is_step,
   .meaning = "Step schedule: decay factor", OPTION_FIELD(lr_step_gamma)},
  {.name = "-lr_min_factor", .kind = KIND_REAL, .def = "0", .lo = 0, .hi = 1, .in_deck = is_cosine,
   .meaning = "Cosine schedule: final lr as a fraction of eta", OPTION_FIELD(lr_min_factor)},
  {.name = "-eval_chunk", .kind = KIND_INT, .def = "512", .lo = 1, .hi = 1e8,
   .meaning = "Samples per forward pass (bounds activation memory)", OPTION_FIELD(eval_chunk)},
  {.name = "-grad_overlap", .kind = KIND_BOOL, .def = "true",
   .meaning = "Data-parallel groups: start each gradient bucket's allreduce during the backward pass (same result as false)",
   OPTION_FIELD(grad_overlap)},
  {.name = "-grad_bucket_mb", .kind = KIND_REAL, .def = "8", .lo = 0, .hi = 1e6,
   .meaning = "Data-parallel groups: gradient bucket size in MiB, whole layers (0 = one allreduce after the backward pass)",
   OPTION_FIELD(grad_bucket_mb)},
  {.name = "-grad_sum", .kind = KIND_CHOICE, .def = "node", .n_choices = 2, .choice = grad_sum_choice,
   .meaning = "Data-parallel groups: sum the gradient through the node's shared memory (node; across nodes by slices) or "
              "MPI_Iallreduce buckets (mpi)",
   OPTION_FIELD(grad_sum)},
  {.name = "-grad_node_ranks", .kind = KIND_INT, .def = "0", .lo = 0, .hi = 1e8,
   .meaning = "-grad_sum node: treat every this many ranks of a node as a node of their own (0 = the hardware's nodes; tests)",
   OPTION_FIELD(grad_node_ranks)},
  {.name = "-augment", .kind = KIND_BOOL, .def = "false",
   .meaning = "Augment training batches: random crop with zero padding and horizontal flip (image data only)", OPTION_FIELD(augment)},
  {.name = "-augment_pad", .kind = KIND_INT, .def = "4", .lo = 0, .hi = AUGMENT_MAX_PAD, .in_deck = augments,
   .meaning = "Augmentation: zero padding p of the random crop (offsets uniform in [0, 2p])", OPTION_FIELD(augment_pad)},
  {.name = "-diverge_factor", .kind = KIND_REAL, .def = "1e6", .lo = 1, .hi = 1e300, .flags = OPTION_OPEN_LO,
   .meaning = "Stop a run as divergent when loss > factor * L0 or non-finite", OPTION_FIELD(diverge_factor)},
  {.name = "-catapult_factor", .kind = KIND_REAL, .def = "1", .lo = 1, .hi = 1e300,
   .meaning = "A catapult also needs a loss spike L_peak > factor * L0 within -catapult_window (1 = no spike needed: eta lambda_0 > 2 "
              "and eta lambda_T < 2 decide)",
   OPTION_FIELD(catapult_factor)},
  {.name = "-catapult_window", .kind = KIND_INT64, .def = "100", .lo = 1, .hi = PETSC_MAX_INT,
   .meaning = "Steps in which the loss spike (its strength peak_ratio and its step peak_step) is looked for", OPTION_FIELD(catapult_window)},
  {.name = "-lr_exp_factor", .kind = KIND_REAL, .def = "1", .lo = 0, .hi = 1e3, .flags = OPTION_OPEN_LO, .in_deck = is_exp,
   .meaning = "Exponential schedule: lr_t = eta * factor^t (per-step factor)", OPTION_FIELD(lr_exp_factor)},
  {.name = "-onecycle_pct", .kind = KIND_REAL, .def = "0.3", .lo = 0, .hi = 1, .flags = OPTION_OPEN_LO, .in_deck = is_onecycle,
   .meaning = "One-cycle schedule (torch OneCycleLR, cosine): fraction of -steps rising to eta", OPTION_FIELD(onecycle_pct)},
  {.name = "-onecycle_div", .kind = KIND_REAL, .def = "25", .lo = 1, .hi = 1e12, .in_deck = is_onecycle,
   .meaning = "One-cycle schedule: initial lr = eta / div", OPTION_FIELD(onecycle_div)},
  {.name = "-onecycle_final_div", .kind = KIND_REAL, .def = "1e4", .lo = 1, .hi = 1e12, .in_deck = is_onecycle,
   .meaning = "One-cycle schedule: final lr = eta / (div * final_div)", OPTION_FIELD(onecycle_final_div)},
  {.name = "-freeze", .kind = KIND_STRING, .def = "", .in_deck = has_freeze,
   .meaning = "Comma-separated tensors kept at their initial values (names as dense2.W, or a layer: dense2, fc, bn0); their "
              "learning rate is 0, in the update and in the lr-weighted NTK",
   OPTION_FIELD(freeze)},
  {.name = "-momentum_init", .kind = KIND_REAL, .def = "0", .lo = -1e12, .hi = 1e12, .in_deck = has_vinit,
   .meaning = "Heavy ball: initial velocity v_0 = c theta_0 on the trained tensors (docs/li_arora.md: the exact start of the "
              "exponential schedule)",
   OPTION_FIELD(momentum_init)},
  {.name = "-loss", .kind = KIND_CHOICE, .def = "mse", .n_choices = LOSS_COUNT, .choice = loss_choice, .in_deck = is_xent,
   .meaning = "Training loss: mse (1/2N sum |f-y|^2, the phase theory's) or xent (softmax cross-entropy on one-hot targets)",
   OPTION_FIELD(model.loss)},
};

static void check(Config *cfg, OptionReader *r)
{
  const DataKind k = cfg->data.kind;
  if (cfg->optimizer == OPT_GD && options_given(r, "-batch_size"))
    options_fail(r, "option -batch_size: only used with -optimizer sgd (gd uses the whole training set)");
  if (cfg->lr_schedule != LR_STEP && (options_given(r, "-lr_step_every") || options_given(r, "-lr_step_gamma")))
    options_fail(r, "option -lr_step_every/-lr_step_gamma: only used with -lr_schedule step");
  if (cfg->lr_schedule != LR_COSINE && options_given(r, "-lr_min_factor")) options_fail(r, "option -lr_min_factor: only used with -lr_schedule cosine");
  if (cfg->augment && (k == DATA_TEACHER || k == DATA_UV))
    options_fail(r, "option -augment: needs an image dataset (fashion_mnist, mnist or cifar10), not %s", data_kind_name(k));
  if (!cfg->augment && options_given(r, "-augment_pad")) options_fail(r, "option -augment_pad: only used with -augment true");
  if (cfg->optimizer == OPT_SGD && cfg->data.n_train > 0 && cfg->batch_size > cfg->data.n_train)
    options_fail(r, "option -batch_size: %d exceeds -n_train %d", cfg->batch_size, cfg->data.n_train);
  if (cfg->lr_schedule != LR_EXP && options_given(r, "-lr_exp_factor")) options_fail(r, "option -lr_exp_factor: only used with -lr_schedule exp");
  if (cfg->lr_schedule != LR_ONECYCLE)
    for (const char *const *o = (const char *const[]){"-onecycle_pct", "-onecycle_div", "-onecycle_final_div", NULL}; *o; o++)
      if (options_given(r, *o)) {
        options_fail(r, "option %s: only used with -lr_schedule onecycle", *o);
        break;
      }
  if (cfg->momentum_init != 0 && cfg->momentum <= 0) options_fail(r, "option -momentum_init: only used with -momentum > 0");
  if (cfg->model.loss == LOSS_XENT && (k == DATA_TEACHER || k == DATA_UV || cfg->data.center_targets))
    options_fail(r, "option -loss: xent needs one-hot classification targets (an image dataset without -center_targets), not %s%s",
                 data_kind_name(k), cfg->data.center_targets ? " with -center_targets" : "");
  if (cfg->warmup_steps > cfg->steps && cfg->steps > 0)
    options_fail(r, "option -warmup_steps: %" PRId64 " exceeds -steps %" PRId64, cfg->warmup_steps, cfg->steps);
}

const OptionModule options_training = {"Training", NULL, opts, sizeof opts / sizeof *opts, check, NULL, NULL};
