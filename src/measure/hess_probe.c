/* The loss Hessian of a run, shared by the sharpness and density measurements (measure.h). The
 * operator lives on the run's Hessian batch, the first -hess_batch training samples, cut in
 * contiguous slices over the group; it is linearised (one forward-backward) once per step, however
 * many measurements use that step. */
#include <stdlib.h>
#include "measure.h"

struct HessProbe {
  HessianOperator *op;
  int64_t step;            /* step whose theta the operator holds (-1: none) */
};

PetscErrorCode hess_probe_operator(MeasureRun *r, HessianOperator **op)
{
  if (!r->hess) {
    const Config *cfg = r->cfg;
    const Dataset *tr = r->train;
    HessProbe *p;
    PetscCall(PetscCalloc1(1, &p));
    p->step = -1;
    const int64_t lo = (int64_t)cfg->hess_batch * r->grank / r->gsize, hi = (int64_t)cfg->hess_batch * (r->grank + 1) / r->gsize;
    PetscCall(hessian_operator_create(&p->op, r->group, r->model, tr->x + (size_t)lo * tr->d, tr->y + (size_t)lo * tr->k, (int)(hi - lo), (int)lo,
                                      cfg->hess_batch));
    r->hess = p;
  }
  *op = r->hess->op;
  return 0;
}

PetscErrorCode hess_probe_at(MeasureRun *r, int64_t t, HessianOperator **op)
{
  PetscCall(hess_probe_operator(r, op));
  if (r->hess->step != t) {
    PetscCall(hessian_set_params(*op, r->theta));
    r->hess->step = t;
  }
  return 0;
}

void hess_probe_destroy(HessProbe **pp)
{
  HessProbe *p = *pp;
  if (!p) return;
  if (p->op) hessian_operator_destroy(&p->op);
  PetscFree(p);
  *pp = NULL;
}
