/* Options of the data: the dataset, its directory, the subset sizes, preprocessing and the
 * teacher-student set (options.h describes the table). */
#include "options.h"

static const char *data_choice(int i) { return data_kind_name((DataKind)i); }
static const char *act_choice(int i) { return act_name((Activation)i); }
static bool is_teacher(const Config *c) { return c->data.kind == DATA_TEACHER; }

static const char *const teacher_opts[] = {"-teacher_dim", "-teacher_width", "-teacher_outputs", "-teacher_activation",
                                           "-teacher_seed", "-teacher_noise"};

static const OptionDesc opts[] = {
  {.name = "-dataset", .kind = KIND_CHOICE, .def = "fashion_mnist", .n_choices = DATA_COUNT, .choice = data_choice,
   .meaning = "Dataset (teacher: a synthetic teacher-student set; uv: the uv model's single sample)", OPTION_FIELD(data.kind)},
  {.name = "-data_dir", .kind = KIND_STRING, .def = DATA_FASHION_MNIST_DEFAULT_DIR,
   .flags = OPTION_ALLOC, .meaning = "Directory of the dataset files (required for mnist and cifar10)", OPTION_FIELD(data.dir)},
  {.name = "-n_train", .kind = KIND_INT, .def = "1000", .lo = 0, .hi = 1e8,
   .meaning = "Training samples: the first n of the training split (0 = all)", OPTION_FIELD(data.n_train)},
  {.name = "-n_test", .kind = KIND_INT, .def = "1000", .lo = 0, .hi = 1e8,
   .meaning = "Test samples: the first n of the test split (0 = all)", OPTION_FIELD(data.n_test)},
  {.name = "-standardize", .kind = KIND_BOOL, .def = "true", .meaning = "Standardise inputs per feature with the training mean and std",
   OPTION_FIELD(data.standardize)},
  {.name = "-center_targets", .kind = KIND_BOOL, .def = "false", .meaning = "Centre one-hot targets (y - 1/k)",
   OPTION_FIELD(data.center_targets)},
  {.name = "-data_shared", .kind = KIND_BOOL, .def = "true",
   .meaning = "One copy of the training and test sets per node, in an MPI-3 shared-memory window (false: a copy per rank; the results are the same)",
   OPTION_FIELD(data_shared)},
  {.name = "-teacher_dim", .kind = KIND_INT, .def = "32", .lo = 1, .hi = 1e6, .in_deck = is_teacher,
   .meaning = "Teacher-student: input dimension d", OPTION_FIELD(data.teacher_dim)},
  {.name = "-teacher_width", .kind = KIND_INT, .def = "64", .lo = 1, .hi = 1e7, .in_deck = is_teacher,
   .meaning = "Teacher-student: teacher hidden width", OPTION_FIELD(data.teacher_width)},
  {.name = "-teacher_outputs", .kind = KIND_INT, .def = "1", .lo = 1, .hi = 1e5, .in_deck = is_teacher,
   .meaning = "Teacher-student: outputs k", OPTION_FIELD(data.teacher_outputs)},
  {.name = "-teacher_activation", .kind = KIND_CHOICE, .def = "tanh", .n_choices = ACT_COUNT, .choice = act_choice,
   .in_deck = is_teacher, .meaning = "Teacher-student: teacher activation", OPTION_FIELD(data.teacher_act)},
  {.name = "-teacher_seed", .kind = KIND_INT64, .def = "1", .lo = 0, .hi = PETSC_MAX_INT, .in_deck = is_teacher,
   .meaning = "Teacher-student: seed of the teacher and its inputs", OPTION_FIELD(data.teacher_seed)},
  {.name = "-teacher_noise", .kind = KIND_REAL, .def = "0", .lo = 0, .hi = 1e6, .in_deck = is_teacher,
   .meaning = "Teacher-student: std of Gaussian label noise", OPTION_FIELD(data.teacher_noise)},
};

static void check(Config *cfg, OptionReader *r)
{
  const DataKind k = cfg->data.kind;
  bool teacher_given = false;
  for (size_t i = 0; i < sizeof teacher_opts / sizeof *teacher_opts; i++) teacher_given |= options_given(r, teacher_opts[i]);
  if (k != DATA_TEACHER && teacher_given) options_fail(r, "option -teacher_*: only used with -dataset teacher");
  if (k == DATA_TEACHER && cfg->data.n_train == 0) options_fail(r, "option -n_train: the teacher-student set needs an explicit size");
  /* The default directory is Debian's Fashion-MNIST; the synthetic sets read no files. */
  if (!options_given(r, "-data_dir") && k != DATA_FASHION_MNIST && k != DATA_TEACHER && k != DATA_UV)
    options_fail(r, "option -data_dir: required for -dataset %s", data_kind_name(k));
}

const OptionModule options_data = {"Data", NULL, opts, sizeof opts / sizeof *opts, check, NULL, NULL};
