/* Loss-landscape directions and coordinates (landscape_dirs.h). */
#include "landscape_dirs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "rng.h"

int landscape_tensor_slices(const Model *m, int t, bool *is_1d)
{
  for (int o = 0; o < m->n_ops; o++) {
    const Op *op = &m->ops[o];
    if (op->w == t && op->kind == OP_DENSE) return *is_1d = false, op->n_out;
    if (op->w == t && op->kind == OP_CONV) return *is_1d = false, op->conv.C_out;
    if (op->w == t || op->b == t) return *is_1d = true, 1; /* biases, batch-norm gamma and beta */
  }
  *is_1d = m->tensors[t].size <= 1;
  return 1;
}

static double norm2(const double *x /* n */, size_t n)
{
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i] * x[i];
  return sqrt(s);
}

/* One slice: d <- d |w| / (|d| + 1e-10). */
static void scale_slice(double *d /* n */, const double *w /* n */, size_t n)
{
  const double f = norm2(w, n) / (norm2(d, n) + 1e-10);
  for (size_t i = 0; i < n; i++) d[i] *= f;
}

void landscape_filter_normalize(double *dir, const Model *m, const double *theta, bool with_1d)
{
  for (int t = 0; t < m->n_tensors; t++) {
    const ParamTensor *pt = &m->tensors[t];
    bool one_d;
    const int ns = landscape_tensor_slices(m, t, &one_d);
    double *d = dir + pt->offset;
    const double *w = theta + pt->offset;
    if (one_d && !with_1d) {
      memset(d, 0, pt->size * sizeof *d);
      continue;
    }
    const size_t len = pt->size / (size_t)ns;
    for (int s = 0; s < ns; s++) scale_slice(d + (size_t)s * len, w + (size_t)s * len, len);
  }
}

/* The definition element by element, for the tests: every slice's norms summed from scratch. */
void landscape_filter_normalize_ref(double *dir, const Model *m, const double *theta, bool with_1d)
{
  for (int t = 0; t < m->n_tensors; t++) {
    const ParamTensor *pt = &m->tensors[t];
    bool one_d;
    const int ns = landscape_tensor_slices(m, t, &one_d);
    const size_t len = pt->size / (size_t)ns;
    if (one_d && !with_1d)
      for (size_t i = 0; i < pt->size; i++) dir[pt->offset + i] = 0;
    if (one_d && !with_1d) continue;
    for (int s = 0; s < ns; s++) {
      double dd = 0, ww = 0;
      for (size_t i = 0; i < len; i++) {
        const size_t p = pt->offset + (size_t)s * len + i;
        dd += dir[p] * dir[p], ww += theta[p] * theta[p];
      }
      for (size_t i = 0; i < len; i++) {
        const size_t p = pt->offset + (size_t)s * len + i;
        dir[p] = dir[p] * sqrt(ww) / (sqrt(dd) + 1e-10);
      }
    }
  }
}

void landscape_random_direction(double *dir, const Model *m, const double *theta, uint64_t seed, int which, bool filter, bool with_1d)
{
  rng_normal_fill(dir, m->n_params, seed, (uint64_t)RNG_STREAM_LANDSCAPE + ((uint64_t)which << 32), 0);
  if (filter) {
    landscape_filter_normalize(dir, m, theta, with_1d);
    return;
  }
  for (int t = 0; t < m->n_tensors && !with_1d; t++) {
    bool one_d;
    landscape_tensor_slices(m, t, &one_d);
    if (one_d) memset(dir + m->tensors[t].offset, 0, m->tensors[t].size * sizeof *dir);
  }
}

void landscape_point(double *out, const double *c, const double *d1, const double *d2, double a, double b, size_t P)
{
  if (d2)
    for (size_t p = 0; p < P; p++) out[p] = c[p] + a * d1[p] + b * d2[p];
  else
    for (size_t p = 0; p < P; p++) out[p] = c[p] + a * d1[p];
}

void landscape_point_ref(double *out, const double *c, const double *d1, const double *d2, double a, double b, size_t P)
{
  for (size_t p = 0; p < P; p++) {
    double v = c[p];
    v += a * d1[p];
    if (d2) v += b * d2[p];
    out[p] = v;
  }
}

void landscape_bezier_point(double *out, const double *a, const double *bend, const double *b, double t, size_t P)
{
  const double wa = (1 - t) * (1 - t), wm = 2 * t * (1 - t), wb = t * t;
  for (size_t p = 0; p < P; p++) out[p] = wa * a[p] + wm * bend[p] + wb * b[p];
}

void landscape_bezier_point_ref(double *out, const double *a, const double *bend, const double *b, double t, size_t P)
{
  for (size_t p = 0; p < P; p++) out[p] = (1 - t) * ((1 - t) * a[p] + t * bend[p]) + t * ((1 - t) * bend[p] + t * b[p]); /* de Casteljau */
}

int landscape_project(double *ab, double *resid, double *dist, const double *x, const double *c, const double *d1, const double *d2, size_t P)
{
  double g11 = 0, g12 = 0, g22 = 0, r1 = 0, r2 = 0, xx = 0;
  for (size_t p = 0; p < P; p++) {
    const double e = x[p] - c[p], u = d1[p], v = d2 ? d2[p] : 0;
    g11 += u * u, g12 += u * v, g22 += v * v, r1 += u * e, r2 += v * e, xx += e * e;
  }
  *dist = sqrt(xx);
  double a, b = NAN;
  if (!d2) {
    if (!(g11 > 0)) return -1;
    a = r1 / g11;
  } else {
    const double det = g11 * g22 - g12 * g12;
    if (!(det > 1e-14 * g11 * g22)) return -1;
    a = (g22 * r1 - g12 * r2) / det, b = (g11 * r2 - g12 * r1) / det;
  }
  double rr = 0; /* the residual summed explicitly (not xx - a r1 - b r2: no cancellation) */
  for (size_t p = 0; p < P; p++) {
    const double e = x[p] - c[p] - a * d1[p] - (d2 ? b * d2[p] : 0);
    rr += e * e;
  }
  ab[0] = a, ab[1] = b, *resid = sqrt(rr);
  return 0;
}

void landscape_sym_eig(double *w, double *V, double *A, int n)
{
  for (int i = 0; i < n * n; i++) V[i] = 0;
  for (int i = 0; i < n; i++) V[i * n + i] = 1;
  for (int sweep = 0; sweep < 100; sweep++) {
    double off = 0, tot = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        if (i == j) tot += A[i * n + j] * A[i * n + j];
        else off += A[i * n + j] * A[i * n + j];
      }
    if (off <= 1e-30 * (tot + off) || off == 0) break;
    for (int p = 0; p < n; p++)
      for (int q = p + 1; q < n; q++) {
        const double apq = A[p * n + q];
        if (apq == 0) continue;
        const double th = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1)), cs = 1 / sqrt(t * t + 1), sn = t * cs;
        for (int k = 0; k < n; k++) { /* columns p, q */
          const double akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = cs * akp - sn * akq, A[k * n + q] = sn * akp + cs * akq;
        }
        for (int k = 0; k < n; k++) { /* rows p, q */
          const double apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = cs * apk - sn * aqk, A[q * n + k] = sn * apk + cs * aqk;
        }
        for (int k = 0; k < n; k++) {
          const double vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = cs * vkp - sn * vkq, V[k * n + q] = sn * vkp + cs * vkq;
        }
      }
  }
  for (int i = 0; i < n; i++) w[i] = A[i * n + i];
  for (int i = 0; i < n; i++) { /* selection sort, descending, columns of V along */
    int m = i;
    for (int j = i + 1; j < n; j++)
      if (w[j] > w[m]) m = j;
    if (m == i) continue;
    const double tw = w[i];
    w[i] = w[m], w[m] = tw;
    for (int k = 0; k < n; k++) {
      const double tv = V[k * n + i];
      V[k * n + i] = V[k * n + m], V[k * n + m] = tv;
    }
  }
}

int landscape_pca(double *pc, double *sv, const double *rows, int n, size_t P, int n_pc)
{
  const int q = n - 1; /* X_t = theta_t - theta_T for t < n - 1 (the last row is zero) */
  if (q < n_pc) return -1;
  double *G = malloc((size_t)q * q * sizeof *G), *V = malloc((size_t)q * q * sizeof *V), *w = malloc((size_t)q * sizeof *w);
  if (!G || !V || !w) {
    free(G), free(V), free(w);
    return -1;
  }
  const double *T = rows + (size_t)(n - 1) * P;
  for (int i = 0; i < q; i++)
    for (int j = 0; j <= i; j++) {
      const double *a = rows + (size_t)i * P, *b = rows + (size_t)j * P;
      double s = 0;
      for (size_t p = 0; p < P; p++) s += (a[p] - T[p]) * (b[p] - T[p]);
      G[i * q + j] = G[j * q + i] = s;
    }
  landscape_sym_eig(w, V, G, q);
  int rc = 0;
  for (int k = 0; k < n_pc && !rc; k++) {
    if (!(w[k] > 1e-28 * (w[0] > 0 ? w[0] : 1)) || !(w[0] > 0)) {
      rc = -1;
      break;
    }
    sv[k] = sqrt(w[k]);
    double *v = pc + (size_t)k * P;
    for (size_t p = 0; p < P; p++) v[p] = 0;
    for (int i = 0; i < q; i++) { /* v = X^T u_k / s_k */
      const double u = V[i * q + k] / sv[k], *a = rows + (size_t)i * P;
      for (size_t p = 0; p < P; p++) v[p] += u * (a[p] - T[p]);
    }
    const double nv = norm2(v, P);
    size_t big = 0;
    for (size_t p = 0; p < P; p++) {
      v[p] /= nv;
      if (fabs(v[p]) > fabs(v[big])) big = p;
    }
    if (v[big] < 0)
      for (size_t p = 0; p < P; p++) v[p] = -v[p];
  }
  free(G), free(V), free(w);
  return rc;
}
