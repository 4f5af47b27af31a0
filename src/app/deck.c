/* The deck and the command line before PETSc sees them (deck.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>
#include "deck.h"

enum { DECK_MAX_BYTES = 16 << 20 };

/* One line of a deck, in place: 0 blank or a comment, 1 an option (key, and value or NULL), -1 not
 * "-key ...", -2 more than one value. PETSc drops everything after '#' and groups words in '"'. */
static int parse_line(char *p, char **key, char **value)
{
  while (*p == ' ' || *p == '\t') p++;
  p[strcspn(p, "#\r\n")] = 0;
  size_t n = strlen(p);
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) p[--n] = 0;
  if (!*p) return 0;
  *key = p;
  if (p[0] != '-' || !(p[1] == '_' || isalpha((unsigned char)p[1]))) return -1;
  int ntok = 0;
  for (const char *q = p; *q;) {
    while (*q == ' ' || *q == '\t') q++;
    if (!*q) break;
    ntok++;
    if (*q == '"') {
      const char *e = strchr(q + 1, '"');
      q = e ? e + 1 : q + strlen(q);
    } else {
      while (*q && *q != ' ' && *q != '\t') q++;
    }
  }
  if (ntok > 2) return -2;
  char *v = p + strcspn(p, " \t");
  *value = NULL;
  if (*v) {
    *v++ = 0;
    while (*v == ' ' || *v == '\t') v++;
    size_t vl = strlen(v);
    if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') v[vl - 1] = 0, v++;
    *value = v;
  }
  return 1;
}

/* PETSc's own directives: executed, not stored, so they have no place in a deck. */
static const char *directive(const char *key)
{
  static const char *const names[] = {"-options_file", "-options_file_yaml", "-options_string_yaml", "-prefix_push", "-prefix_pop"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcasecmp(key, names[i]) == 0) return names[i];
  return NULL;
}

/* The file of a viewer option's value "[type][:file[:format[:mode]]]" must be writable at the
 * start, not only when PETSc opens it at the end of the run. */
static int check_viewer(const char *where, const char *key, const char *value, char *err, size_t errlen)
{
  size_t kl = strlen(key);
  if (kl < 5 || strcasecmp(key + kl - 5, "_view") != 0 || !value) return 0;
  const char *c = strchr(value, ':');
  if (!c) return 0;
  size_t fl = strcspn(c + 1, ":");
  if (!fl) return 0;
  char *file = strndup(c + 1, fl), *dir = strdup(file), *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  struct stat st;
  const char *why = NULL;
  if (stat(file, &st) == 0 && !S_ISREG(st.st_mode)) why = "exists and is not a regular file";
  else if (stat(dir, &st) != 0) why = strerror(errno);
  else if (!S_ISDIR(st.st_mode)) why = "not a directory";
  else if (access(dir, W_OK | X_OK) != 0) why = strerror(errno);
  int rc = 0;
  if (why && strcmp(why, "exists and is not a regular file") == 0) {
    snprintf(err, errlen, "%soption %s: %s %s", where, key, file, why);
    rc = -1;
  } else if (why) {
    snprintf(err, errlen, "%soption %s: cannot write %s: directory %s: %s", where, key, file, dir, why);
    rc = -1;
  }
  free(file), free(dir);
  return rc;
}

/* Reads all of f: NULL and a message when it cannot, or it is too large. */
static char *slurp(FILE *f, const char *path, size_t *len, char *err, size_t errlen)
{
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (cap > DECK_MAX_BYTES) {
        snprintf(err, errlen, "deck %s: larger than %d MiB", path, DECK_MAX_BYTES >> 20);
        free(buf);
        return NULL;
      }
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    snprintf(err, errlen, "deck %s: read error: %s", path, strerror(errno));
    free(buf);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

/* Checks the text of a deck (or of an -options_file: what names it in messages). */
static int check_text(const char *what, const char *path, const char *text, size_t len, char *err, size_t errlen)
{
  typedef struct {
    char *key;
    int line;
  } Seen;
  Seen *seen = NULL;
  int n_seen = 0, cap_seen = 0, lineno = 0, rc = 0;
  for (size_t pos = 0; pos < len && !rc;) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
    lineno++;
    if (memchr(text + pos, 0, ll)) {
      snprintf(err, errlen, "%s %s line %d: contains a NUL byte", what, path, lineno);
      rc = -1;
      break;
    }
    char *line = strndup(text + pos, ll), *key = NULL, *value = NULL;
    pos += ll + 1;
    const int kind = parse_line(line, &key, &value);
    if (kind == -1) {
      snprintf(err, errlen, "%s %s line %d: expected '-key value', got '%.60s'", what, path, lineno, key);
      rc = -1;
    } else if (kind == -2) {
      snprintf(err, errlen, "%s %s line %d: expected '-key value' with one value (quote a value with spaces), got '%.60s'", what, path,
               lineno, key);
      rc = -1;
    } else if (kind == 1 && directive(key)) {
      snprintf(err, errlen, "%s %s line %d: %s is not allowed in a deck", what, path, lineno, directive(key));
      rc = -1;
    } else if (kind == 1) {
      char where[512];
      snprintf(where, sizeof where, "%s %.300s line %d: ", what, path, lineno);
      for (int i = 0; i < n_seen && !rc; i++)
        if (strcasecmp(seen[i].key, key) == 0) {
          snprintf(err, errlen, "%s %s: option %s is given twice (lines %d and %d)", what, path, key, seen[i].line, lineno);
          rc = -1;
        }
      if (!rc && check_viewer(where, key, value, err, errlen)) rc = -1;
      if (!rc) {
        if (n_seen == cap_seen) cap_seen = cap_seen ? 2 * cap_seen : 64, seen = realloc(seen, (size_t)cap_seen * sizeof *seen);
        seen[n_seen++] = (Seen){strdup(key), lineno};
      }
    }
    free(line);
  }
  for (int i = 0; i < n_seen; i++) free(seen[i].key);
  free(seen);
  return rc;
}

/* Opens and reads a deck-like file once: NULL and a message when it cannot. */
static char *read_file(const char *what, const char *path, size_t *len, bool *regular, char *err, size_t errlen)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s %s: is a directory, not a file", what, path);
    fclose(f);
    return NULL;
  }
  *regular = S_ISREG(st.st_mode);
  char *text = slurp(f, path, len, err, errlen);
  fclose(f);
  return text;
}

int deck_read(const char *path, Deck *d, char *err, size_t errlen)
{
  *d = (Deck){0};
  d->text = read_file("deck", path, &d->len, &d->regular, err, errlen);
  if (!d->text) return -1;
  if (check_text("deck", path, d->text, d->len, err, errlen)) return -1;
  return 0;
}

void deck_free(Deck *d)
{
  free(d->text);
  *d = (Deck){0};
}

/* PETSc's rule (PetscOptionsValidKey): '-' or '--' then a letter; "-1" and "-.5" are values. */
static bool is_key(const char *t)
{
  if (t[0] != '-') return false;
  if (t[1] == '-') t++;
  return isalpha((unsigned char)t[1]) != 0;
}

int args_check(int argc, char **argv, const Deck *deck, char *err, size_t errlen)
{
  int after_key = 0; /* the previous argument is a key that may take this one as its value */
  for (int i = 1; i < argc; i++) {
    const char *t = argv[i];
    if (!is_key(t)) {
      if (!after_key) {
        snprintf(err, errlen, "argument '%.200s' is neither an option nor its value (only the deck may come before the options, "
                              "and only one)", t);
        return -1;
      }
      after_key = 0;
      continue;
    }
    after_key = 1;
    const char *value = i + 1 < argc && !is_key(argv[i + 1]) ? argv[i + 1] : NULL;
    const char *dir = directive(t);
    if (dir && strcasecmp(dir, "-options_file") == 0) {
      if (!value) {
        snprintf(err, errlen, "option -options_file: no file given");
        return -1;
      }
      size_t len;
      bool regular;
      char *text = read_file("option -options_file: file", value, &len, &regular, err, errlen);
      if (!text) return -1;
      int rc = 0;
      if (!regular) {
        snprintf(err, errlen, "option -options_file: %s is not a regular file", value);
        rc = -1;
      } else {
        rc = check_text("option -options_file: file", value, text, len, err, errlen);
      }
      free(text);
      if (rc) return -1;
    } else if (dir) {
      snprintf(err, errlen, "option %s: not supported by ntkhpc (give every option its full name in the deck or on the command line)", dir);
      return -1;
    }
    if (check_viewer("", t, value, err, errlen)) return -1;
  }
  (void)deck; /* the deck's viewer options were checked with its lines (check_text) */
  return 0;
}

char **deck_argv(const char *text, int argc, char **argv, int *new_argc)
{
  size_t len = strlen(text);
  int cap = argc + 1, n = 0;
  char **out = malloc((size_t)cap * sizeof *out);
  out[n++] = argv[0];
  for (size_t pos = 0; pos < len;) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
    char *line = strndup(text + pos, ll), *key = NULL, *value = NULL; /* kept: PETSc holds argv */
    pos += ll + 1;
    if (parse_line(line, &key, &value) != 1) {
      free(line);
      continue;
    }
    if (n + 3 > cap) cap = 2 * cap + 4, out = realloc(out, (size_t)cap * sizeof *out);
    out[n++] = key;
    if (value) out[n++] = value;
  }
  out = realloc(out, (size_t)(n + argc) * sizeof *out);
  for (int i = 1; i < argc; i++) out[n++] = argv[i];
  out[n] = NULL;
  *new_argc = n;
  return out;
}

/* ------------------------------------------------------------------ the files the options name */

static const char *file_kind(mode_t m)
{
  return S_ISREG(m) ? "a regular file" : S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a FIFO"
         : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

int paths_check(const Config *cfg, const char *deck, char *err, size_t errlen)
{
  struct stat out, st;
  if (stat(cfg->output, &out) == 0) {
    if (!S_ISREG(out.st_mode)) {
      snprintf(err, errlen, "output file %s exists and is %s: refusing to write there, even with -overwrite", cfg->output,
               file_kind(out.st_mode));
      return -1;
    }
    if (deck && stat(deck, &st) == 0 && st.st_dev == out.st_dev && st.st_ino == out.st_ino) {
      snprintf(err, errlen, "output file %s is the deck %s: refusing to write there, even with -overwrite", cfg->output, deck);
      return -1;
    }
    /* The data files: every file of the data directory (the readers' names, with or without .gz). */
    DIR *d = cfg->data.kind == DATA_TEACHER || cfg->data.kind == DATA_UV ? NULL : opendir(cfg->data.dir);
    for (struct dirent *e; d && (e = readdir(d));) {
      char *path = malloc(strlen(cfg->data.dir) + strlen(e->d_name) + 2);
      sprintf(path, "%s/%s", cfg->data.dir, e->d_name);
      const int same = stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == out.st_dev && st.st_ino == out.st_ino;
      if (same) snprintf(err, errlen, "output file %s is the data file %s: refusing to write there, even with -overwrite", cfg->output, path);
      free(path);
      if (same) {
        closedir(d);
        return -1;
      }
    }
    if (d) closedir(d);
  }
  char *partial = malloc(strlen(cfg->output) + sizeof OUTPUT_PARTIAL);
  sprintf(partial, "%s" OUTPUT_PARTIAL, cfg->output);
  const int bad_partial = stat(partial, &st) == 0 && !S_ISREG(st.st_mode);
  if (bad_partial)
    snprintf(err, errlen, "output file %s: %s exists and is %s: refusing to write there, even with -overwrite", cfg->output, partial,
             file_kind(st.st_mode));
  free(partial);
  if (bad_partial) return -1;
  if (stat(cfg->checkpoint_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "checkpoint directory %s exists and is %s, not a directory", cfg->checkpoint_dir, file_kind(st.st_mode));
    return -1;
  }
  return 0;
}

char *output_identity(const char *output)
{
  const char *slash = strrchr(output, '/');
  char *dir = slash ? strndup(output, slash == output ? 1 : (size_t)(slash - output)) : strdup(".");
  const char *base = slash ? slash + 1 : output;
  char *real = realpath(dir, NULL), *id;
  if (real) {
    id = malloc(strlen(real) + strlen(base) + 2);
    sprintf(id, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base);
  } else {
    id = strdup(output); /* no such directory: the output cannot be created anyway */
  }
  free(real), free(dir);
  return id;
}
