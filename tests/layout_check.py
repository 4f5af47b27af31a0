#!/usr/bin/python3
"""Checks an ntkhpc -plan_only listing against an independent computation (docs/scaling.md).

  layout_check.py PLAN.txt --ranks W --batch b --batch-norm 0|1 --gflops r --bandwidth Gbs --latency us
                  [--fc-dims d,n,...,k] [--max-idle x] [--expect-idle x] [--fixed G] [--min-ranks width:G,...]

From the per-run terms the listing prints (flops per sample, batch, steps, evaluations, measurement
FLOPs, bytes, small reductions, I/O bytes) it recomputes t_i(G) with its own alpha-beta formula and
checks: the printed times; the batch rule (max_ranks = b, or b / 4 with batch norm, recomputed from
the deck); every run in exactly one group, its group no larger than the batch rule and no smaller
than the memory rule (min_ranks; with --min-ranks width:G,... the expected value per width, from
needs the test measured); group sizes that
sum to W and cover the ranks in order; each group's runs back to back from 0; the idle fraction
from the groups' ends; the kernel phase from the kernel runs' FLOPs (with --kernel N,M,d,depth
recomputed for a relu fc NTK, prior 0 or 1); the predicted training time at or above the moldable-schedule lower bound
max(max_i min_G t_i(G), sum_i min_G G t_i(G) / W), G from min_ranks to the cap; with --fc-dims the FLOPs per sample of a fully
connected net (2 sum n_in n_out). Prints "N passed, M failed"; exit 1 on a failure.
"""
import argparse
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import expect as check, summary, summary_exit  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("plan")
ap.add_argument("--ranks", type=int, required=True)
ap.add_argument("--batch", type=float, required=True)
ap.add_argument("--batch-norm", type=int, default=0)
ap.add_argument("--gflops", type=float, default=15)
ap.add_argument("--bandwidth", type=float, default=100)
ap.add_argument("--latency", type=float, default=2)
ap.add_argument("--fc-dims", default="")
ap.add_argument("--kernel", default="", help="N,M,d,depth,prior: a relu fc kernel run's cost, recomputed here")
ap.add_argument("--max-idle", type=float, default=1.0)
ap.add_argument("--expect-idle", type=float, default=None)
ap.add_argument("--fixed", type=int, default=0)
ap.add_argument("--min-ranks", default="")
a = ap.parse_args()

text = open(a.plan).read()
runs, groups = {}, {}
for line in text.splitlines():
    m = re.match(r"\[ntkhpc\] plan: group (\d+): ranks (\d+)-(\d+) \((\d+) ranks\), (\d+) runs, ends at (\S+) s:(.*)$", line)
    if m:
        g = int(m.group(1))
        groups[g] = dict(first=int(m.group(2)), last=int(m.group(3)), size=int(m.group(4)), n=int(m.group(5)),
                         runs=[int(x) for x in m.group(7).split()])
        continue
    m = re.match(r"\[ntkhpc\] plan: run (\d+): .*?\| (.*) \| (.*)$", line)
    if m:
        kv = m.group(2).split() + m.group(3).split()
        runs[int(m.group(1))] = {kv[i]: float(kv[i + 1]) for i in range(0, len(kv), 2)}
        continue
    m = re.match(r"\[ntkhpc\] plan: predicted time (\S+) s: kernel phase (\S+) s, lambda_0 phase (\S+) s, training (\S+) s; "
                 r"idle fraction (\S+);", line)
    if m:
        total, kernel, lam0, makespan, idle = (float(m.group(i)) for i in range(1, 6))
check(runs and groups, "the listing has runs and groups")
if not runs or not groups:
    summary()
    sys.exit(1)

rate, alpha, beta = a.gflops * 1e9, a.latency * 1e-6, 8.0 / (a.bandwidth * 1e9)
IO = 1e9


def allreduce(G, n):
    if G <= 1:
        return 0.0
    ring = 2 * (G - 1) * alpha + 2 * (G - 1) / G * n * beta
    rd = math.ceil(math.log2(G)) * (alpha + n * beta)
    return min(ring, rd)


def t(r, G):
    F = r["flops_per_sample"]
    flops = (3 * F * math.ceil(r["batch"] / G) * r["steps"] + F * (math.ceil(r["n_train"] / G) * r["evals_train"] +
             math.ceil(r["n_test"] / G) * r["evals_test"]) + r["measure_flops"] / G)
    lat = math.ceil(math.log2(G)) * alpha if G > 1 else 0.0
    return flops / rate + r["steps"] * (allreduce(G, r["bytes"]) + r["small_reductions"] * lat) + r["io_bytes"] / IO


W = a.ranks
rule = max(1, int(a.batch // (4 if a.batch_norm else 1)))
# every run once, in the group it names, within the batch rule
listed = sorted(i for g in groups.values() for i in g["runs"])
check(listed == sorted(runs), f"every run in exactly one group: {listed} vs {sorted(runs)}")
# the kernel limit's runs (-kernel_regression): no network to train; their instance's preparation is
# phase 0 on every rank: (N(N+1)/2 + M N) entries of 2 d + 50 depth FLOPs (relu; twice with the NNGP
# prior), and 10 N^3 + N^3/3
kruns = {i for i, r in runs.items() if r["kernel_flops"] > 0}
check(abs(total - (kernel + lam0 + makespan)) <= 1e-5 * max(total, 1e-300), f"predicted time {total} = {kernel} + {lam0} + {makespan}")
kflops = max([runs[i]["kernel_flops"] for i in kruns] or [0.0])
check(abs(kernel - kflops / (W * a.gflops * 1e9)) <= 1e-5 * max(kernel, 1e-300), f"kernel phase {kernel} s for {kflops} FLOPs")
if a.kernel:
    N, M, d, depth, prior = (float(x) for x in a.kernel.split(","))
    want = (N * (N + 1) / 2 + M * N) * (2 * d + 50 * depth) * (1 + prior) + (10 + 1 / 3) * N**3
    check(kruns and abs(kflops - want) <= 1e-12 * want, f"kernel FLOPs {kflops}, the relu NTK's count {want}")
for i, r in runs.items():
    g = groups[int(r["group"])]
    check(i in g["runs"] and int(r["ranks"]) == g["size"], f"run {i}: its group {int(r['group'])}")
    if i in kruns:
        check(r["flops_per_sample"] == 0 and r["time"] == 0, f"kernel run {i}: no training time")
        continue
    check(int(r["max_ranks"]) == rule, f"run {i}: max_ranks {int(r['max_ranks'])}, the batch rule gives {rule}")
    if not a.fixed:
        check(g["size"] <= rule, f"run {i}: group of {g['size']} ranks above the batch rule {rule}")
        check(g["size"] >= r["min_ranks"], f"run {i}: group of {g['size']} ranks below the memory rule {int(r['min_ranks'])}")
    if a.fc_dims:
        d = [int(x) for x in a.fc_dims.split(",")]
        F = 2 * sum(d[j] * d[j + 1] for j in range(len(d) - 1))
        check(r["flops_per_sample"] == F, f"run {i}: flops_per_sample {r['flops_per_sample']} vs 2 sum n_in n_out = {F}")
    check(abs(t(r, int(r["ranks"])) - r["time"]) <= 1e-9 * r["time"], f"run {i}: time {r['time']} vs {t(r, int(r['ranks']))}")
    check(abs(t(r, 1) - r["time1"]) <= 1e-9 * r["time1"], f"run {i}: time on one rank")
    check(abs(r["end"] - r["start"] - r["time"]) <= 1e-9 * max(r["end"], 1e-300), f"run {i}: end - start = its time")
    check(all(np.isfinite([r[k] for k in r])), f"run {i}: finite terms")
if a.min_ranks:
    want = {int(w): int(G) for w, G in (x.split(":") for x in a.min_ranks.split(","))}
    for i, r in runs.items():
        w = int(re.search(rf"plan: run {i}: width (\d+)", text).group(1))
        if w in want:
            check(int(r["min_ranks"]) == want[w], f"run {i} (width {w}): min_ranks {int(r['min_ranks'])}, expected {want[w]}")
    check(set(want) <= {int(m) for m in re.findall(r"plan: run \d+: width (\d+)", text)}, f"the widths {sorted(want)} are planned")
# groups: cover 0..W-1 in order, back-to-back runs, the group's end
at = 0
busy = 0.0
for gi in sorted(groups):
    g = groups[gi]
    check(g["first"] == at and g["last"] - g["first"] + 1 == g["size"] and g["size"] >= 1, f"group {gi}: ranks")
    at += g["size"]
    clock = 0.0
    for i in g["runs"]:
        check(abs(runs[i]["start"] - clock) <= 1e-9 * max(clock, 1.0), f"group {gi}: run {i} starts when the previous ends")
        clock = runs[i]["end"]
    busy += g["size"] * clock
check(at == W, f"group sizes sum to {at}, not {W}")
ends = [max([runs[i]["end"] for i in g["runs"]] or [0.0]) for g in groups.values()]
ms = max(ends)
check(abs(ms - makespan) <= 1e-5 * ms, f"training time {makespan} vs the last group's end {ms}")
my_idle = 1 - busy / (W * ms)
check(abs(my_idle - idle) <= 1e-4, f"idle fraction {idle} vs {my_idle}")
# the moldable lower bound: no schedule ends before it
cap = min(W, rule)
lo = {i: min(int(r["min_ranks"]), cap) for i, r in runs.items()}
lb = max(max(min(t(r, G) for G in range(lo[i], cap + 1)) for i, r in runs.items()),
         sum(min(G * t(r, G) for G in range(lo[i], cap + 1)) for i, r in runs.items()) / W)
check(ms >= lb * (1 - 1e-9), f"training time {ms} below the lower bound {lb}")
check(idle <= a.max_idle, f"idle fraction {idle} above {a.max_idle}")
if a.expect_idle is not None:
    check(abs(idle - a.expect_idle) <= 1e-4, f"idle fraction {idle}, expected {a.expect_idle}")
print(f"W {W}: {len(runs)} runs in {len(groups)} groups {sorted(g['size'] for g in groups.values())}, idle {idle:.4f}, "
      f"training {ms:.6g} s >= lower bound {lb:.6g} s (ratio {ms / lb:.4f})")
summary_exit()
