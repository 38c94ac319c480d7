#!/usr/bin/env python3
"""Allreduce cost between 2 workers, by message size, and its latency-bandwidth fit (issue 18, item 5).

For each link and each message size n (bytes, log-spaced, 4 KB to 512 MB by default) it runs
  mpirun -np 3 lockstep-distributed-check allreduce-bandwidth n/4 1 REPEATS 0
(1 coordinator + 2 workers, the process groups of training, with the ring allreduce `lockstep train` asks
Open MPI for) and takes `raw_seconds`: the median, over REPEATS timed calls after a warm-up, of one in-place
MPI_Allreduce sum of n/4 floats over the workers' communicator, each call's time the slower worker's, started
after a barrier. Links:
  shm      both workers on this machine (Open MPI's shared-memory transport): the memory bus is the cost
  10gbit   2 network-namespace hosts (scripts/shaped_hosts.sh), each host's egress shaped by tc tbf at 10 Gbit/s
  1gbit    the same at 1 Gbit/s;  any tc rate (500mbit...) or "none" (an unshaped veth) works too
It fits the standard ring-allreduce model
  T(n) = alpha + 2 (p - 1) / p * n * beta        (p = 2 here, so T = alpha + n beta)
in two parts: beta, the seconds per byte each worker sends (1 / beta is the link's achieved rate), is the
least-squares slope over the messages of 1 MB and more; alpha, the fixed cost of one allreduce (s), is the
smallest message's T (4 KB) less its bandwidth term. Reduce-scatter and allgather each take half of
both terms. Each size's T is the smallest of --trials medians (separate mpirun runs): on a shared machine the
minimum is the estimate least disturbed by other work. For p workers the ring takes 2 (p - 1)
steps; scripts/scaling_model.py scales alpha by (p - 1) (alpha measured at p = 2 covers 2 steps).

Prints a markdown table per link and the fits, and writes JSON (--output, default runs/allreduce.json, which
git ignores):
  {"links": {"shm": {"alpha_s": .., "beta_s_per_byte": .., "gb_per_s": 1/beta/1e9, "nominal_gb_per_s": ..,
                     "points": [{"bytes": n, "seconds": T, "fitted_seconds": .., "repeats": r, "trials": [..]}, ...]}, ...},
   "workers": 2, "binary_dir": ..., "model": "T(n) = alpha + 2(p-1)/p n beta"}

Needs root for the shaped links (network namespaces, tc). Takes about 7 minutes with the defaults on the 2-core
VM (the 1gbit link's 128 MB points take about 2 s a call); --quick uses fewer sizes, repeats and trials.

Usage (after `swift build -c release`):
  python3 scripts/measure_allreduce.py                                   # shm, 10gbit, 1gbit
  python3 scripts/measure_allreduce.py --links shm --max-bytes 64M --quick
  python3 scripts/measure_allreduce.py --bin /work/bin-snapshot --output /tmp/allreduce.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from lockstep_runs import ROOT, SHAPED, shaped_dir

# What `lockstep train` passes to mpirun: Open MPI's ring allreduce.
RING_ALLREDUCE = ["--mca", "coll_tuned_use_dynamic_rules", "1", "--mca", "coll_tuned_allreduce_algorithm", "4",
                  "--mca", "coll_libnbc_iallreduce_algorithm", "1", "--mca", "coll_libnbc_ireduce_algorithm", "2"]
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_bytes(text):
    """'4K' -> 4096, '512M' -> 536870912, '1000' -> 1000."""
    text = text.strip().upper().rstrip("B")
    unit = text[-1] if text and text[-1] in UNITS else ""
    return int(float(text[:len(text) - len(unit)]) * UNITS[unit])


def human(n):
    for unit in ("G", "M", "K"):
        if n >= UNITS[unit] and n % UNITS[unit] == 0:
            return f"{n // UNITS[unit]} {unit}B"
    return f"{n} B"


def rate_gb_per_s(rate):
    """Nominal bytes per second / 1e9 of a tc rate ('10gbit' -> 1.25), None for shm and none."""
    if rate in ("shm", "none"):
        return None
    units = {"kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "tbit": 1e12 / 8, "bit": 1 / 8}
    for suffix, factor in units.items():
        if rate.lower().endswith(suffix):
            return float(rate[:-len(suffix)]) * factor / 1e9
    sys.exit(f"measure_allreduce: unknown rate '{rate}' (use shm, none, or a tc rate in bit: 10gbit, 1gbit, 500mbit)")


def repeats_for(n, base):
    """More timed calls for small messages, whose times are short and noisy."""
    if n <= 1 << 20:
        return max(base, 20)
    if n <= 64 << 20:
        return max(base, 5)
    return base


def shaped(*args, check=True):
    return subprocess.run([SHAPED, *args], capture_output=True, text=True, check=check)


def allreduce_seconds(binary_dir, link, n, repeats, timeout):
    """Median raw MPI_Allreduce seconds of n bytes between 2 workers over `link`."""
    tool = os.path.join(binary_dir, "lockstep-distributed-check")
    floats = max(1, n // 4)
    mpirun = ["mpirun", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1", *RING_ALLREDUCE]
    if link == "shm":
        mpirun += ["--oversubscribe"]
        prefix = []
    else:
        # Rank 0 (coordinator) and worker 0 on host a, worker 1 on host b: the workers' traffic crosses the link.
        mpirun += ["--hostfile", os.path.join(shaped_dir(), "hostfile")]
        prefix = [SHAPED, "run"]
    command = prefix + ["timeout", "-s", "KILL", str(timeout)] + mpirun + [
        "-np", "3", tool, "allreduce-bandwidth", str(floats), "1", str(repeats), "0"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or len(records) != 1:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return records[0]["raw_seconds"]


def fit(points, workers=2, bandwidth_min=1 << 20):
    """(alpha, beta) of T = alpha + 2(p-1)/p n beta. beta: least-squares slope (absolute error, with an
    intercept) over the messages of at least `bandwidth_min` bytes, where the bandwidth term dominates; alpha:
    the smallest message's T less its bandwidth term, at least 0. (One fit over all sizes lets whichever end
    has more points decide; medium messages that fit in cache move faster than large ones, and on a busy
    machine the regimes disagree further.)"""
    factor = 2 * (workers - 1) / workers
    large = [(factor * p["bytes"], p["seconds"]) for p in points if p["bytes"] >= bandwidth_min]
    if len(large) >= 2:
        mx = statistics.mean(x for x, _ in large)
        mt = statistics.mean(t for _, t in large)
        sxx = sum((x - mx) ** 2 for x, _ in large)
        beta = sum((x - mx) * (t - mt) for x, t in large) / sxx
    else:
        beta = 0.0
    if beta <= 0:  # too few or too noisy: the largest message's rate
        x, t = max((factor * p["bytes"], p["seconds"]) for p in points)
        beta = t / x
    smallest = min(points, key=lambda p: p["bytes"])
    alpha = max(0.0, smallest["seconds"] - factor * smallest["bytes"] * beta)
    return alpha, beta


def measure_link(args, link, sizes):
    points = []
    for n in sizes:
        repeats = repeats_for(n, args.repeats)
        trials = [allreduce_seconds(args.bin, link, n, repeats, args.timeout) for _ in range(args.trials)]
        seconds = min(trials)
        points.append(dict(bytes=n, seconds=seconds, repeats=repeats, trials=trials))
        print(f"  {link}: {human(n):>7}  {seconds * 1e3:10.3f} ms  {n / seconds / 1e9:7.3f} GB/s", file=sys.stderr)
    alpha, beta = fit(points)
    for p in points:
        p["fitted_seconds"] = alpha + p["bytes"] * beta
    return dict(alpha_s=alpha, beta_s_per_byte=beta, gb_per_s=1 / beta / 1e9,
                nominal_gb_per_s=rate_gb_per_s(link), points=points)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"),
                        help="folder of the release binaries (default .build/release)")
    parser.add_argument("--links", default="shm,10gbit,1gbit",
                        help="comma-separated: shm, none (unshaped veth), or tc rates such as 10gbit, 1gbit")
    parser.add_argument("--min-bytes", default="4K")
    parser.add_argument("--max-bytes", default="512M", help="largest message on shm")
    parser.add_argument("--shaped-max-bytes", default="128M", help="largest message across namespace hosts")
    parser.add_argument("--factor", type=int, default=4, help="ratio of successive sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per size (at least 20 up to 1 MB, 5 up to 64 MB)")
    parser.add_argument("--trials", type=int, default=2, help="mpirun runs per size; the smallest median counts")
    parser.add_argument("--quick", action="store_true", help="sizes by factor 16, 2 timed calls per large size, 1 trial")
    parser.add_argument("--timeout", type=int, default=600, help="seconds for one mpirun")
    parser.add_argument("--output", default=os.path.join(ROOT, "runs", "allreduce.json"))
    args = parser.parse_args()
    if args.quick:
        args.factor, args.repeats, args.trials = 16, 2, 1
    tool = os.path.join(args.bin, "lockstep-distributed-check")
    if not os.access(tool, os.X_OK):
        sys.exit(f"measure_allreduce: {tool} not found; run `swift build -c release` or pass --bin")
    links = [link.strip() for link in args.links.split(",") if link.strip()]
    for link in links:
        rate_gb_per_s(link)

    result = dict(model="T(n) = alpha + 2(p-1)/p n beta", workers=2, binary_dir=os.path.abspath(args.bin), links={})
    for link in links:
        top = parse_bytes(args.max_bytes if link == "shm" else args.shaped_max_bytes)
        sizes, n = [], parse_bytes(args.min_bytes)
        while n <= top:
            sizes.append(n)
            n *= args.factor
        if sizes[-1] != top:
            sizes.append(top)
        if link == "shm":
            result["links"][link] = measure_link(args, link, sizes)
            continue
        up = shaped("up", "2", link, check=False)
        if up.returncode != 0:
            sys.exit(f"measure_allreduce: scripts/shaped_hosts.sh up 2 {link} failed:\n{up.stderr}")
        try:
            result["links"][link] = measure_link(args, link, sizes)
        finally:
            shaped("down", check=False)

    print("| link | alpha (µs) | beta (ns/byte) | 1/beta (GB/s) | nominal (GB/s) | 1/beta / nominal |")
    print("|---|---|---|---|---|---|")
    for link, r in result["links"].items():
        nominal = r["nominal_gb_per_s"]
        ratio = f"{r['gb_per_s'] / nominal:.2f}" if nominal else "-"
        print(f"| {link} | {r['alpha_s'] * 1e6:.1f} | {r['beta_s_per_byte'] * 1e9:.3f} | {r['gb_per_s']:.3f} | "
              f"{nominal if nominal else '-'} | {ratio} |")
    print()
    sizes = sorted({p["bytes"] for r in result["links"].values() for p in r["points"]})
    print("| bytes | " + " | ".join(f"{link} measured (ms) | fit | GB/s" for link in result["links"]) + " |")
    print("|---|" + "---|---|---|" * len(result["links"]))
    for n in sizes:
        cells = [human(n)]
        for r in result["links"].values():
            point = next((p for p in r["points"] if p["bytes"] == n), None)
            if point:
                cells += [f"{point['seconds'] * 1e3:.3f}", f"{point['fitted_seconds'] * 1e3:.3f}",
                          f"{n / point['seconds'] / 1e9:.3f}"]
            else:
                cells += ["-", "-", "-"]
        print("| " + " | ".join(cells) + " |")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
