/* The affine first layer of a loss landscape's evaluations (landscape_eval.h). */
#include "landscape_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "layers.h"

int landscape_affine_eligible(const Model *m, char *why, size_t whylen)
{
  const char *r = NULL;
  if (m->n_ops < 2 || m->ops[0].kind != OP_DENSE || m->ops[0].in != 0) r = "the first layer is not dense (a convolution is not cached)";
  else if (m->n_readers[0] != 1) r = "the input is read by more than the first layer";
  else if (model_has_batch_norm(m)) r = "batch norm (evaluated per training batch)";
  else if (m->ops[1].in != m->ops[0].out) r = "the second op does not read the first layer's output";
  if (r && why) snprintf(why, whylen, "%s", r);
  return r == NULL;
}

double landscape_affine_bytes(const Model *m, int64_t rows, int nvec)
{
  return landscape_affine_eligible(m, NULL, 0) ? (double)nvec * (double)rows * (double)m->ops[0].n_out * sizeof(double) : 0.0;
}

void landscape_affine_free(LandscapeAffine *c)
{
  free(c->Z);
  memset(c, 0, sizeof *c);
}

int landscape_affine_build(LandscapeAffine *c, const Model *m, const double *const *vecs /* nvec x P */, int nvec,
                           const Dataset *const *sets /* 2 */, const int64_t *lo /* 2 */, const int64_t *rows /* 2 */)
{
  landscape_affine_free(c);
  const Op *op = &m->ops[0];
  const ParamTensor *W = &m->tensors[op->w], *b = op->b >= 0 ? &m->tensors[op->b] : NULL;
  const int64_t R = rows[0] + rows[1];
  c->Z = malloc((size_t)nvec * (size_t)(R ? R : 1) * (size_t)op->n_out * sizeof(double));
  if (!c->Z) return -1;
  c->nvec = nvec, c->width = op->n_out;
  for (int s = 0; s < 2; s++) c->rows[s] = rows[s], c->lo[s] = lo[s];
  for (int k = 0; k < nvec; k++)
    for (int s = 0; s < 2; s++) { /* one GEMM per set: the rows are contiguous in both */
      const int64_t r0 = s ? rows[0] : 0;
      double *out = c->Z + ((size_t)k * R + (size_t)r0) * op->n_out; /* rows[s] x n1 */
      const double *x = sets[s]->x + (size_t)lo[s] * op->n_in;      /* rows[s] x d */
      dense_forward(out, x, vecs[k] + W->offset, b ? vecs[k] + b->offset : NULL, (int)rows[s], op->n_in, op->n_out, W->mult,
                    b ? b->mult : 0.0);
    }
  return 0;
}

/* z[B x n1] = sum_k coef_k Z_k[r0 .. r0 + B) */
static void combine(double *z /* B x n1 */, const LandscapeAffine *c, const double *coef /* nvec */, int64_t r0, int B)
{
  const size_t n = (size_t)B * c->width, R = (size_t)(c->rows[0] + c->rows[1]) * c->width, off = (size_t)r0 * c->width;
  const double *Z0 = c->Z + off, *Z1 = Z0 + R, *Z2 = c->nvec > 2 ? Z1 + R : NULL;
  const double a0 = coef[0], a1 = coef[1], a2 = c->nvec > 2 ? coef[2] : 0.0;
  if (Z2)
    for (size_t q = 0; q < n; q++) z[q] = a0 * Z0[q] + a1 * Z1[q] + a2 * Z2[q];
  else
    for (size_t q = 0; q < n; q++) z[q] = a0 * Z0[q] + a1 * Z1[q];
}

void landscape_affine_eval(double *sums /* 4 */, const LandscapeAffine *c, const Model *m, const double *theta /* P */,
                           const double *coef /* nvec */, const Dataset *const *sets /* 2 */, Tape *t)
{
  const int k = m->cfg.out_dim, chunk = t->capacity;
  const int64_t R = c->rows[0] + c->rows[1];
  double *z = t->act[m->ops[1].in]; /* the second op's input buffer: combined in place, no copy */
  memset(sums, 0, 4 * sizeof(double));
  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int B = (int)(R - r0 < chunk ? R - r0 : chunk);
    combine(z, c, coef, r0, B);
    const double *f = model_forward_from(m, theta, 1, z, B, t, NULL); /* B x k */
    for (int s = 0; s < 2; s++) { /* the chunk's rows of set s */
      const int64_t a = s ? (r0 > c->rows[0] ? r0 : c->rows[0]) : r0, e = s ? r0 + B : (r0 + B < c->rows[0] ? r0 + B : c->rows[0]);
      if (e <= a) continue;
      const int64_t i0 = c->lo[s] + a - (s ? c->rows[0] : 0); /* index in the set */
      const double *fs = f + (size_t)(a - r0) * k;
      sums[2 * s] += model_loss(m, NULL, fs, sets[s]->y + (size_t)i0 * k, (int)(e - a), 1.0);
      sums[2 * s + 1] += count_correct(fs, sets[s]->label + i0, (int)(e - a), k);
    }
  }
}

void landscape_affine_eval_ref(double *sums /* 4 */, const Model *m, const double *theta /* P */, const Dataset *const *sets /* 2 */,
                               const int64_t *lo /* 2 */, const int64_t *rows /* 2 */, Tape *t)
{
  const int k = m->cfg.out_dim;
  memset(sums, 0, 4 * sizeof(double));
  for (int s = 0; s < 2; s++)
    for (int64_t a = 0; a < rows[s]; a += t->capacity) {
      const int B = (int)(rows[s] - a < t->capacity ? rows[s] - a : t->capacity);
      const int64_t i0 = lo[s] + a;
      const double *f = model_forward(m, theta, sets[s]->x + (size_t)i0 * sets[s]->d, B, t, NULL);
      sums[2 * s] += model_loss(m, NULL, f, sets[s]->y + (size_t)i0 * k, B, 1.0);
      sums[2 * s + 1] += count_correct(f, sets[s]->label + i0, B, k);
    }
}
