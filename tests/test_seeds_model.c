/* The new activations (swish, gelu, mish), the xent loss and fully connected batch norm at the model
 * level, on 1 or several MPI ranks (issue #18).
 * Usage: mpiexec -n R test_seeds_model OUTPUT_FILE
 *
 * For every case (activation x loss x batch norm none / affine / without affine) a depth-2 fc net
 * in the ntk parameterization on a batch of NB samples cut in contiguous slices over the ranks (at
 * 4 ranks the slices hold 1, 2, 2, 2), batch-norm statistics summed by a Reducer over the ranks:
 *   - checks here: the gradient, the JVP J v, the Hessian product H v and the Gauss-Newton product
 *     against central differences of the loss, of f and of the gradient (the last two on the
 *     whole batch in this process), and the distributed products against the one-process ones
 *     (1e-12);
 *   - writes the DISTRIBUTED results (f gathered, parameter products summed) for
 *     torch_seeds_check.py, which recomputes all of them with PyTorch autograd.
 * Format: "cases N", then per case "case act loss bn eps P d n k B sigma_w sigma_b" and the arrays
 * theta x y v f loss grad jv hv gv, each "name count v..." with %.17g. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"
#include "testutil.h"

enum { NB = 7, D_IN = 5, WIDTH = 12, K_OUT = 4, DEPTH = 2 };

static void allreduce(double *buf, int n, void *ctx) { MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx); }

static void write_array(FILE *fp, const char *name, const double *v, size_t n) {
  if (!fp) return;
  fprintf(fp, "%s %zu", name, n);
  for (size_t i = 0; i < n; i++) fprintf(fp, " %.17g", v[i]);
  fputc('\n', fp);
}

/* Loss (divided by NB) and, if g != NULL, g = its gradient: the whole batch in this process. */
static double loss_grad(const Model *m, const double *th, const double *x, const double *y, Tape *t, double *g) {
  double dout[NB * K_OUT];
  const double *f = model_forward(m, th, x, NB, t, NULL);
  const double l = model_loss(m, dout, f, y, NB, 1.0 / NB) / NB;
  if (g) {
    memset(g, 0, m->n_params * sizeof *g);
    model_vjp(m, th, dout, NB, t, g, NULL);
  }
  return l;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm comm = MPI_COMM_WORLD;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const Reducer red = {allreduce, &comm};
  FILE *fp = NULL;
  if (rank == 0 && argc > 1 && !(fp = fopen(argv[1], "w"))) {
    perror(argv[1]);
    MPI_Abort(comm, 2);
  }
  const int lo = NB * rank / size, hi = NB * (rank + 1) / size, nl = hi - lo;
  int counts[64], displs[64];
  for (int r = 0; r < size && r < 64; r++) {
    displs[r] = NB * r / size * K_OUT;
    counts[r] = NB * (r + 1) / size * K_OUT - displs[r];
  }
  const Activation acts[] = {ACT_SWISH, ACT_GELU, ACT_MISH, ACT_TANH};
  const int n_acts = sizeof acts / sizeof *acts, n_cases = n_acts * LOSS_COUNT * 3;
  if (fp) fprintf(fp, "cases %d\n", n_cases);
  int idx = 0;
  double worst_fd_g = 0, worst_fd_j = 0, worst_fd_h = 0, worst_rank = 0;
  for (int a = 0; a < n_acts; a++)
    for (int l = 0; l < LOSS_COUNT; l++)
      for (int bn = 0; bn < 3; bn++, idx++) {
        ModelConfig c = {0};
        c.arch = ARCH_FC, c.in_dim = D_IN, c.out_dim = K_OUT, c.depth = DEPTH, c.width = WIDTH, c.act = acts[a];
        c.bias = true, c.sigma_w = 1.4, c.sigma_b = 0.3, c.param = PARAM_NTK, c.base_width = WIDTH;
        c.loss = (LossKind)l, c.fc_batch_norm = bn > 0, c.bn_no_affine = bn == 2, c.bn_eps = 1e-5;
        Model m;
        Tape tf, tl;
        char err[256];
        if (model_build(&m, &c, err, sizeof err) || tape_create(&tf, &m, NB) || tape_create(&tl, &m, nl > 0 ? nl : 1)) {
          fprintf(stderr, "build: %s\n", err);
          MPI_Abort(comm, 1);
        }
        const size_t P = m.n_params;
        CHECK(model_has_batch_norm(&m) == (bn > 0), "case %d: batch norm %d", idx, bn);
        double *th = malloc(P * 8), *v = malloc(P * 8), *g_ref = calloc(P, 8), *g = calloc(P, 8), *h_ref = calloc(P, 8);
        double *h = calloc(P, 8), *gn_ref = calloc(P, 8), *gn = calloc(P, 8), *gp = malloc(P * 8), *gm = malloc(P * 8);
        double x[NB * D_IN], y[NB * K_OUT], dout[NB * K_OUT], f_ref[NB * K_OUT], jv_ref[NB * K_OUT], jv[NB * K_OUT], f[NB * K_OUT];
        model_init(&m, th, 40 + (uint64_t)idx);
        for (int t = 0; t < m.n_tensors; t++) /* batch-norm gamma, beta away from 1, 0 */
          if (strstr(m.tensors[t].name, ".gamma") || strstr(m.tensors[t].name, ".beta"))
            for (size_t i = 0; i < m.tensors[t].size; i++) th[m.tensors[t].offset + i] += 0.2 * sin(3.0 * (double)i + t);
        rng_normal_fill(v, P, 41 + (uint64_t)idx, RNG_STREAM_PROBE, 0);
        rng_normal_fill(x, NB * D_IN, 42 + (uint64_t)idx, RNG_STREAM_TEACHER_X, 0);
        if (c.loss == LOSS_XENT) { /* one-hot targets */
          memset(y, 0, sizeof y);
          for (int s = 0; s < NB; s++) y[s * K_OUT + (s * 3 + idx) % K_OUT] = 1.0;
        } else {
          rng_normal_fill(y, NB * K_OUT, 42 + (uint64_t)idx, RNG_STREAM_TEACHER_X, 1u << 20);
        }
        /* Reference: the whole batch in this process. */
        const double loss = loss_grad(&m, th, x, y, &tf, g_ref);
        memcpy(f_ref, tf.act[m.out_buf], sizeof f_ref);
        model_jvp(&m, th, v, NB, &tf, jv_ref, NULL);
        model_hvp(&m, th, v, x, y, NB, NB, &tf, h_ref, NULL);
        model_gnvp(&m, th, v, x, NB, NB, &tf, gn_ref, NULL);
        /* Central differences (every rank does the same, rank 0's verdict counts). */
        if (rank == 0) {
          const double eps = 1e-5;
          double *gfd = malloc(P * 8), *tp = malloc(P * 8), fp_[NB * K_OUT], fm_[NB * K_OUT], jfd[NB * K_OUT];
          for (size_t p = 0; p < P; p++) {
            memcpy(tp, th, P * 8);
            tp[p] = th[p] + eps;
            const double lp = loss_grad(&m, tp, x, y, &tf, NULL);
            tp[p] = th[p] - eps;
            gfd[p] = (lp - loss_grad(&m, tp, x, y, &tf, NULL)) / (2 * eps);
          }
          const double eg = tu_rel_err(g_ref, gfd, P);
          for (size_t p = 0; p < P; p++) tp[p] = th[p] + eps * v[p];
          loss_grad(&m, tp, x, y, &tf, gp);
          memcpy(fp_, tf.act[m.out_buf], sizeof fp_);
          for (size_t p = 0; p < P; p++) tp[p] = th[p] - eps * v[p];
          loss_grad(&m, tp, x, y, &tf, gm);
          memcpy(fm_, tf.act[m.out_buf], sizeof fm_);
          for (int i = 0; i < NB * K_OUT; i++) jfd[i] = (fp_[i] - fm_[i]) / (2 * eps);
          for (size_t p = 0; p < P; p++) gfd[p] = (gp[p] - gm[p]) / (2 * eps);
          const double ej = tu_rel_err(jv_ref, jfd, NB * K_OUT), eh = tu_rel_err(h_ref, gfd, P);
          CHECK(eg < 1e-7, "case %d (%s %s bn %d): gradient vs central differences %.3g", idx, act_name(c.act), loss_name(c.loss), bn, eg);
          CHECK(ej < 1e-7, "case %d: JVP vs central differences %.3g", idx, ej);
          CHECK(eh < 1e-6, "case %d: H v vs central differences of the gradient %.3g", idx, eh);
          worst_fd_g = fmax(worst_fd_g, eg), worst_fd_j = fmax(worst_fd_j, ej), worst_fd_h = fmax(worst_fd_h, eh);
          free(gfd), free(tp);
        }
        /* Distributed: this rank's slice, statistics through the Reducer, parameter products summed. */
        const double *fl = model_forward(&m, th, x + lo * D_IN, nl, &tl, &red);
        double lsum = model_loss(&m, dout, fl, y + lo * K_OUT, nl, 1.0 / NB);
        MPI_Gatherv(fl, nl * K_OUT, MPI_DOUBLE, f, counts, displs, MPI_DOUBLE, 0, comm);
        MPI_Bcast(f, NB * K_OUT, MPI_DOUBLE, 0, comm);
        MPI_Allreduce(MPI_IN_PLACE, &lsum, 1, MPI_DOUBLE, MPI_SUM, comm);
        model_vjp(&m, th, dout, nl, &tl, g, &red);
        MPI_Allreduce(MPI_IN_PLACE, g, (int)P, MPI_DOUBLE, MPI_SUM, comm);
        double jl[NB * K_OUT];
        model_jvp(&m, th, v, nl, &tl, jl, &red);
        MPI_Gatherv(jl, nl * K_OUT, MPI_DOUBLE, jv, counts, displs, MPI_DOUBLE, 0, comm);
        MPI_Bcast(jv, NB * K_OUT, MPI_DOUBLE, 0, comm);
        model_hvp(&m, th, v, x + lo * D_IN, y + lo * K_OUT, nl, NB, &tl, h, &red);
        MPI_Allreduce(MPI_IN_PLACE, h, (int)P, MPI_DOUBLE, MPI_SUM, comm);
        model_gnvp(&m, th, v, x + lo * D_IN, nl, NB, &tl, gn, &red);
        MPI_Allreduce(MPI_IN_PLACE, gn, (int)P, MPI_DOUBLE, MPI_SUM, comm);
        lsum /= NB;
        const double er = fmax(fmax(fmax(tu_rel_err(f, f_ref, NB * K_OUT), tu_rel_err(g, g_ref, P)), fmax(tu_rel_err(jv, jv_ref, NB * K_OUT),
                               tu_rel_err(h, h_ref, P))), fmax(tu_rel_err(gn, gn_ref, P), fabs(lsum - loss) / fabs(loss)));
        CHECK(er < 1e-12, "case %d: %d ranks vs one process: rel err %.3g", idx, size, er);
        worst_rank = fmax(worst_rank, er);
        if (fp) {
          fprintf(fp, "case %s %s %d %.17g %zu %d %d %d %d %.17g %.17g\n", act_name(c.act), loss_name(c.loss), bn, c.bn_eps, P, D_IN,
                  WIDTH, K_OUT, NB, c.sigma_w, c.sigma_b);
          write_array(fp, "theta", th, P);
          write_array(fp, "x", x, NB * D_IN);
          write_array(fp, "y", y, NB * K_OUT);
          write_array(fp, "v", v, P);
          write_array(fp, "f", f, NB * K_OUT);
          write_array(fp, "loss", &lsum, 1);
          write_array(fp, "grad", g, P);
          write_array(fp, "jv", jv, NB * K_OUT);
          write_array(fp, "hv", h, P);
          write_array(fp, "gv", gn, P);
        }
        free(th), free(v), free(g_ref), free(g), free(h_ref), free(h), free(gn_ref), free(gn), free(gp), free(gm);
        tape_destroy(&tf);
        tape_destroy(&tl);
        model_destroy(&m);
      }
  if (fp && fclose(fp)) {
    perror(argv[1]);
    MPI_Abort(comm, 2);
  }
  int rc = 0;
  if (rank == 0) {
    printf("%d ranks: worst rel err vs central differences: gradient %.2e, JVP %.2e, HVP %.2e; vs one process %.2e\n", size,
           worst_fd_g, worst_fd_j, worst_fd_h, worst_rank);
    rc = tu_report("test_seeds_model");
  }
  MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
  MPI_Finalize();
  return rc;
}
