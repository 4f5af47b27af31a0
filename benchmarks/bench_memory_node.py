#!/usr/bin/python3
"""Memory per node with one dataset copy per node (-data_shared true, an MPI-3 shared-memory window)
and with a copy per rank (-data_shared false), side by side, for inputs/wrn.in's data: CIFAR-10,
-n_train 10000 -n_test 10000, standardised, float64. See docs/scaling.md "Memory per node". Not
part of CI.

  bench_memory_node.py [--ntkhpc build/ntkhpc] [--np 4] [--n-train 10000] [--n-test 10000]
                       [--model32]

A CIFAR-10-format copy of the right size (5 training batches of 10000 random images and a test
batch) is written to a temporary directory. ntkhpc runs inputs/wrn.in on --np ranks of this node in
one group, with the deck's data options but the network shrunk to a WRN-10-1 and an absolute
learning rate (a WRN-28-10 cannot train here), and is held at step 0 of its first run by the
-pause_at_step test hook: the data are loaded, the model is built, nothing is trained yet. At that
observed event the script reads every rank's /proc/<pid>/status (VmRSS, VmHWM) and
/proc/<pid>/smaps_rollup (Pss: shared pages divided among the processes that map them, so the
node's total counts the window once), then kills the job. The node's memory is the sum of the
ranks' Pss. A run on 100 + 100 images gives the same ranks without the data, so the difference
is what the data cost the node.

--model32 also asks ntkhpc's memory check (memory.c, -memory_limit 1k: it refuses and prints its
estimate per rank) for the real inputs/wrn.in layout, 32 ranks of one node in one group, with and
without the window, and prints the per-node model at 32 ranks per node.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1048576.0


def cifar(dirname, n_train_batch=10000, n_test=10000):
    """CIFAR-10 binary batches: label byte + 3072 pixel bytes per record."""
    r = np.random.default_rng(0)
    for name, n in [(f"data_batch_{b}", n_train_batch) for b in range(1, 6)] + [("test_batch", n_test)]:
        rec = np.empty((n, 3073), np.uint8)
        rec[:, 0] = r.integers(0, 10, n)
        rec[:, 1:] = r.integers(0, 256, (n, 3072))
        rec.tofile(os.path.join(dirname, name + ".bin"))


def deck_without_eta_factors(tmp):
    path = os.path.join(tmp, "wrn.in")
    with open(os.path.join(SRC, "inputs", "wrn.in")) as f, open(path, "w") as g:
        g.writelines(l for l in f if not l.startswith("-eta_factors"))
    return path


def proc_kb(pid, fname, key):
    with open(f"/proc/{pid}/{fname}") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def measure(args, tmp, deck, cdir, n_train, n_test, shared, tag):
    out = os.path.join(tmp, f"{tag}.h5")
    cmd = [args.mpiexec, "-q", "--oversubscribe", "-n", str(args.np), args.ntkhpc, deck, "-data_dir", cdir, "-output", out,
           "-n_train", str(n_train), "-n_test", str(n_test), "-data_shared", "true" if shared else "false",
           "-wrn_depth", "10", "-widths", "1", "-etas", "0.1", "-ranks_per_run", str(args.np), "-ntk_batch", "4",
           "-lambda_every", "0", "-batch_size", str(4 * args.np), "-pause_at_step", "0", "-quiet", "-progress_seconds", "1000"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    log = open(os.path.join(tmp, tag + ".log"), "w")
    job = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    marker = out + ".paused_run_000000"
    try:
        while not os.path.exists(marker):  # the observed event: run 0 is held at step 0
            if job.poll() is not None:
                sys.exit(f"ntkhpc ended before pausing ({tag}); its log: {log.name}")
            time.sleep(0.05)
        ranks = children(job.pid)
        rows = [dict(pid=p, rss=proc_kb(p, "status", "VmRSS"), hwm=proc_kb(p, "status", "VmHWM"),
                     pss=proc_kb(p, "smaps_rollup", "Pss")) for p in ranks]
    finally:
        for p in children(job.pid):
            os.kill(p, signal.SIGKILL)
        job.kill()
        job.wait()
        log.close()
    return rows


def memcheck32(args, tmp, deck, cdir, shared):
    """The memory check's estimate per rank for inputs/wrn.in on 32 ranks (one group)."""
    out = os.path.join(tmp, "m32.h5")
    cmd = [args.mpiexec, "-q", "--oversubscribe", "-n", "32", args.ntkhpc, deck, "-data_dir", cdir, "-output", out,
           "-etas", "0.1", "-n_train", "200", "-n_test", "100", "-memory_limit", "1k", "-data_shared", "true" if shared else "false"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    text = subprocess.run(cmd, env=env, capture_output=True, text=True).stderr
    m = re.search(r"needs (\d+) bytes .*?data ([0-9.]+ \w+),", text)
    if not m:
        sys.exit("no memory estimate from ntkhpc:\n" + text[-2000:])
    return float(m.group(1)), text.strip().splitlines()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ntkhpc", default=os.path.join(SRC, "build", "ntkhpc"))
    ap.add_argument("--mpiexec", default="mpiexec")
    ap.add_argument("--np", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--model32", action="store_true")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        cdir = os.path.join(tmp, "cifar")
        os.mkdir(cdir)
        cifar(cdir)
        deck = deck_without_eta_factors(tmp)
        d, k = 3072, 10
        data = (args.n_train + args.n_test) * ((d + k) * 8 + 4)  # x, y, label of both subsets
        print(f"inputs/wrn.in data: CIFAR-10 n_train {args.n_train} n_test {args.n_test}, float64: {data / MIB:.1f} MiB per copy")
        res = {}
        for shared in (False, True):
            for n_tr, n_te, what in ((args.n_train, args.n_test, "data"), (100, 100, "nodata")):
                tag = f"{what}_{'shared' if shared else 'private'}"
                res[tag] = measure(args, tmp, deck, cdir, n_tr, n_te, shared, tag)
        print(f"\n{args.np} ranks on one node, held at step 0 (WRN-10-1 network; MiB):")
        print(f"{'':28s} {'VmRSS/rank':>22s} {'VmHWM/rank':>22s} {'Pss/rank':>22s} {'node Pss':>9s} {'node RSS':>9s}")
        for tag, rows in res.items():
            f = lambda key: " ".join(f"{r[key] / 1024:6.0f}" for r in rows)
            print(f"{tag:28s} {f('rss'):>22s} {f('hwm'):>22s} {f('pss'):>22s} {sum(r['pss'] for r in rows) / 1024:9.0f} "
                  f"{sum(r['rss'] for r in rows) / 1024:9.0f}")
        node = {t: sum(r["pss"] for r in rows) * 1024.0 for t, rows in res.items()}
        dp = node["data_private"] - node["nodata_private"]
        ds = node["data_shared"] - node["nodata_shared"]
        print(f"\nthe data's cost to the node (node Pss with the data minus without): per rank copies {dp / MIB:.0f} MiB "
              f"({dp / data:.2f} copies), shared window {ds / MIB:.0f} MiB ({ds / data:.2f} copies); ratio {dp / ds:.2f}")
        print(f"node Pss: per rank copies {node['data_private'] / MIB:.0f} MiB, shared window {node['data_shared'] / MIB:.0f} MiB; "
              f"ratio {node['data_private'] / node['data_shared']:.2f}")
        if args.model32:
            need_p, line_p = memcheck32(args, tmp, deck, cdir, False)
            need_s, _ = memcheck32(args, tmp, deck, cdir, True)
            small = (200 + 100) * ((d + k) * 8 + 4)
            base = need_p - small  # the estimate per rank without the data
            print(f"\nmemory check, inputs/wrn.in on 32 ranks (one group): {line_p}")
            for copies, what in ((32, "a copy per rank"), (1, "one copy per node")):
                tot = 32 * base + copies * data
                print(f"model, 32 ranks per node, {what}: 32 x {base / 2**30:.2f} GiB + {copies} x {data / 2**30:.3f} GiB = {tot / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
