/* Per-instance measurements before the sweep trains (app/instance.c): lambda_0 of a model
 * instance, and the divergence boundary eta_max by bisection over short probe runs. */
#ifndef NTK_INSTANCE_H
#define NTK_INSTANCE_H
#include "runs.h"
#include "train.h"

/* Measures lambda_0 of a model instance (any of its runs names it) on ctx->group, and fills row.
 * Collective over ctx->group. */
int instance_measure_lambda0(const TrainContext *ctx, const RunSpec *run, InstanceRow *row);

/* -eta_max_search: bisects eta_factor over short probe runs (-eta_max_steps) of the instance of
 * `run` until the divergence boundary is bracketed to -eta_max_tol; fills row->eta_max_lo/hi and
 * eta_max_probes. Collective over ctx->group. */
int instance_search_eta_max(const TrainContext *ctx, const RunSpec *run, double lambda0, InstanceRow *row);

#endif
