#!/usr/bin/env python3
"""Lockstep against PyTorch on the same CPU, in one run (issues 8 and 18). Prints markdown tables.

For each configuration (issue 8's small model: 4 layers, 4 heads, 256 channels, vocabulary 50304; and
GPT-2 124M), at B=4, T=64 (the global batch: 2 workers take 2 sequences each), it measures in this order, all
on the same cores:
  - the sgemm peak of the system OpenBLAS (scripts/bench_sgemm.py --source system), 1 and 2 threads;
  - Lockstep's training tokens/s with 1 worker x 1 thread, 1 worker x 2 threads, 2 workers x 1 thread
    (`lockstep train` on random token shards; tokens/s is the median of the per-step figures of
    metrics.jsonl after the warm-up steps, over --repeats runs); the 2-worker runs with
    `distributed.gradient_sync: bucketed` and replicated optimizer state (the defaults);
  - 2 workers x 1 thread again with `gradient_sync: single` (one blocking allreduce after backward: nothing
    overlaps), with `progress_thread: true`, and with `shard_optimizer: true` (ZeRO-1; on one host its workers
    share parameters and gradients in shared memory, `distributed.shared_memory`: the efficiency table's second
    column); a binary that rejects a key as unknown gets "n/a (binary lacks ...)" in that column instead of a
    failure;
  - PyTorch's (scripts/bench_pytorch.py) with 1 and 2 threads, when torch is installed and --skip-pytorch
    is not given;
  - the coordinator's CPU share in the 2 workers x 1 thread runs: the "coordinator CPU time while stepping:
    C s over S s (P% of one core)" line that the coordinator writes to standard error (from the first step
    to the last; start-up, the final checkpoint and the model export are not included);
  - gradient allreduce bandwidth over 2 workers (`mpirun -np 3 lockstep-distributed-check allreduce-bandwidth`:
    1 coordinator + 2 workers, the process groups of training, with the ring allreduce `lockstep train`
    selects) for a buffer of the config's parameter count: the bucketed path training takes (GradientBuckets:
    one bucket per block started during backward, then the embeddings and ln_f with the blocking allreduce;
    the sum, as training folds the 1 / workers into the optimizer) against one raw in-place MPI_Allreduce
    sum of the same floats. GB/s = bytes / seconds; ratio = bucketed / raw.
Then, for each --shaped rate (default 10gbit and 1gbit; needs root) and each --shaped-configs configuration
(default small only): 2 workers x 1 thread, bucketed (polls, and progress thread) and single, across 2 network-namespace hosts whose veth
links tbf shapes at that rate (scripts/shaped_hosts.sh: coordinator and worker 0 on host a, worker 1 on host
b). The hosts of a rate are removed (`shaped_hosts.sh down`) when its runs end, fail or are interrupted; their
namespaces use SHAPED_PREFIX (default lsbench here), so another run's lsh hosts are left alone.
Every figure is the median over --repeats runs (bandwidth: over --repeats timed allreduces after a warm-up).
MFU = 6 x N x tokens/s / sgemm peak (N: non-embedding parameters plus the LM head, as bench_pytorch.py
counts them). Data-parallel efficiency = tokens/s of 2 workers x 1 thread / tokens/s of 1 worker x 2 threads
(the same two cores, split into processes or shared by threads).
Hidden fraction (issue 18, item 1), per configuration and link (shm: one host, shared memory): exposed
communication = median communication_seconds after the warm-up (the gradient averaging left exposed after
backward); hidden fraction = 1 - exposed(bucketed) / exposed(single): the share of the single allreduce's
cost that bucketing hid behind backward (negative when bucketing cost more). Bucketed runs twice: with the
buckets progressed by polls between backward's kernels (the default), and with `progress_thread: true` (a thread
of each worker's own tests them every 200 us). The table also gives backward_seconds (median) and tokens/s of
each.
Peak memory (issue 18): 2 workers x 1 thread, replicated against shard_optimizer: true: peak_rss_bytes (the
largest worker's, the largest over the run's train records; median over runs) and tokens/s of each.

Usage (as root for the shaped hosts, after `swift build -c release`; --binary for other binaries):
  python3 scripts/benchmark.py                       # both configurations; small across 10gbit and 1gbit hosts
  python3 scripts/benchmark.py --configs small --repeats 3
  python3 scripts/benchmark.py --shaped 10gbit 1gbit --shaped-configs small 124M    # 124M across hosts too
  python3 scripts/benchmark.py --configs small --repeats 1 --skip-pytorch --skip-shaped --steps 6 --warmup 2
                                                     # a quick run (without --skip-shaped: ~2 min on 2 cores)
  python3 scripts/benchmark.py --variants bucketed shard shard-single --configs small 124M
                                                     # only 1 worker x 2 threads and the named 2-worker settings
With --variants, the run measures only 1 worker x 2 threads and 2 workers x 1 thread under each named setting
of the `distributed` section (VARIANTS below), the settings interleaved repeat by repeat so that a drift of
the machine's speed touches all of them alike, and prints one table: per setting the median tokens/s, its
data-parallel efficiency, backward, exposed communication and optimizer seconds, and peak memory.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

from lockstep_runs import (ROOT, ShapedHosts, median_of_runs, medians, run_train, train_records, write_random_shard,
                           write_train_config)

CONFIGS = {
    "small": dict(layers=4, heads=4, channels=256, vocab=50304, steps=20, warmup=3),
    "124M": dict(layers=12, heads=12, channels=768, vocab=50304, steps=6, warmup=2),
}
BATCH, SEQ = 4, 64
# The shaped hosts' namespaces: a prefix of their own, so that a scaling_model.py or measure_allreduce.py run
# (prefix lsh) on the same machine is neither disturbed nor removed.
os.environ.setdefault("SHAPED_PREFIX", "lsbench")
SHARD_UNSUPPORTED = "n/a (binary lacks shard_optimizer)"
THREAD_UNSUPPORTED = "n/a (binary lacks progress_thread)"
# The bucketed exchange with a progress thread on each worker (issue 18, item 1).
PROGRESS_THREAD = {"gradient_sync": "bucketed", "progress_thread": True}
# The 2-worker settings --variants can compare (keys of the config's distributed section).
VARIANTS = {
    "bucketed": {"gradient_sync": "bucketed"},
    "single": {"gradient_sync": "single"},
    "thread": PROGRESS_THREAD,
    "shard": {"shard_optimizer": True},
    "shard-single": {"shard_optimizer": True, "gradient_sync": "single"},
    "shard-thread": {"shard_optimizer": True, "progress_thread": True},
}


def run(args, env=None):
    """Standard output of a command that must succeed."""
    return run_both(args, env)[0]


def run_both(args, env=None):
    """(standard output, standard error) of a command that must succeed."""
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"benchmark: {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout, result.stderr


def non_embedding_plus_head(c, layers, vocab):
    per_block = 12 * c * c + 13 * c
    return layers * per_block + 2 * c + vocab * c


def parameter_count(c, layers, vocab, context):
    """Every parameter of the GPT-2 language model, as ParameterLayout lays them out (the gradient's size):
    wte (V, C), wpe (context, C), the blocks, ln_f."""
    return vocab * c + context * c + layers * (12 * c * c + 13 * c) + 2 * c


COORDINATOR_CPU = re.compile(
    r"coordinator CPU time while stepping: ([0-9.]+) s over ([0-9.]+) s \(([0-9.]+)% of one core\)")
# What `lockstep train` passes to mpirun: Open MPI's ring allreduce.
RING_ALLREDUCE = ["--mca", "coll_tuned_use_dynamic_rules", "1", "--mca", "coll_tuned_allreduce_algorithm", "4",
                  "--mca", "coll_libnbc_iallreduce_algorithm", "1", "--mca", "coll_libnbc_ireduce_algorithm", "2"]


class RunFailed(Exception):
    pass


def lockstep_run(args, work, cfg, workers, threads, distributed=None, hosts=None):
    """(the medians of metrics.jsonl's train records after the warm-up, the coordinator's CPU line as
    (cpu s, training s, % of one core) or None) of one `lockstep train` run, global batch B x T split over the
    workers; `distributed`: more keys of that config section; hosts: a ShapedHosts to run across. (None, None)
    when the binary rejects a key of `distributed` as unknown (shard_optimizer, progress_thread)."""
    out = tempfile.mkdtemp(prefix="run-", dir=work)
    config = os.path.join(work, "bench.yaml")
    write_train_config(config, work=work, out=out, model=cfg, seq=SEQ, steps=cfg["steps"],
                       micro_batch=BATCH // workers, global_tokens=BATCH * SEQ, workers=workers, threads=threads,
                       distributed=distributed)
    try:
        code, stdout, stderr = run_train(args.binary, config, threads=threads, hosts=hosts, timeout=args.timeout)
        if code != 0:
            if any(f"{key}: unknown key" in stdout + stderr for key in (distributed or {})):
                return None, None
            where = f" across shaped hosts ({hosts.rate})" if hosts else ""
            raise RunFailed(f"lockstep train{where}, {workers} worker(s) x {threads} thread(s), "
                            f"distributed {distributed or {}}, failed ({code}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
        match = COORDINATOR_CPU.search(stdout + stderr)
        coordinator = tuple(float(x) for x in match.groups()) if match else None
        figures = medians(train_records(os.path.join(out, "metrics.jsonl"), cfg["warmup"]))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if "tokens_per_second" not in figures:
        raise RunFailed(f"no train records after step {cfg['warmup']} in {config}'s metrics.jsonl")
    return figures, coordinator


def repeated(args, work, cfg, workers, threads, distributed=None, hosts=None):
    """(each figure's median over --repeats runs, the runs' coordinator lines); (None, []) when the binary
    lacks shard_optimizer."""
    runs = []
    for _ in range(args.repeats):
        figures, coordinator = lockstep_run(args, work, cfg, workers, threads, distributed, hosts)
        if figures is None:
            return None, []
        runs.append((figures, coordinator))
    return median_of_runs([figures for figures, _ in runs]), [line for _, line in runs if line]


def config_of(name, args):
    cfg = dict(CONFIGS[name])
    if args.steps:
        cfg["steps"] = args.steps
    if args.warmup is not None:
        cfg["warmup"] = args.warmup
    if cfg["steps"] <= cfg["warmup"]:
        sys.exit(f"benchmark: {name}: {cfg['steps']} steps leave none after {cfg['warmup']} warm-up steps")
    return cfg


def write_shard(work, cfg):
    write_random_shard(os.path.join(work, "train_000000.bin"), cfg["vocab"], (cfg["steps"] + 2) * BATCH * SEQ + 1,
                       seed=1)


def seconds(figures, key):
    return f"{figures[key]:.3f}" if figures and key in figures else "-"


def hidden_fraction(bucketed, single):
    try:
        exposed_bucketed, exposed_single = bucketed["communication_seconds"], single["communication_seconds"]
    except (KeyError, TypeError):
        return "-"
    return f"{1 - exposed_bucketed / exposed_single:.2f}" if exposed_single > 0 else "-"


def mib(figures):
    return f"{figures['peak_rss_bytes'] / 2 ** 20:.0f}" if figures and "peak_rss_bytes" in figures else "-"


def allreduce_bandwidth(binary_dir, floats, buckets, repeats, tail):
    """The JSON record of `lockstep-distributed-check allreduce-bandwidth` over 1 coordinator + 2 workers."""
    out = run(["mpirun", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1", *RING_ALLREDUCE,
               "-np", "3", os.path.join(binary_dir, "lockstep-distributed-check"), "allreduce-bandwidth",
               str(floats), str(buckets), str(repeats), str(tail)])
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if len(records) != 1:
        sys.exit(f"benchmark: expected one JSON line from allreduce-bandwidth, got:\n{out}")
    return records[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "lockstep"))
    parser.add_argument("--skip-pytorch", action="store_true", help="leave PyTorch's columns empty (quick runs)")
    parser.add_argument("--steps", type=int, help="steps of every run (default: small 20, 124M 6)")
    parser.add_argument("--warmup", type=int, help="steps left out of the medians (default: small 3, 124M 2)")
    parser.add_argument("--shaped", nargs="+", default=["10gbit", "1gbit"], metavar="RATE",
                        help="tc rates of the 2 shaped namespace hosts of the hidden-fraction runs (default: "
                             "10gbit 1gbit; needs root)")
    parser.add_argument("--shaped-configs", nargs="+", default=["small"], choices=list(CONFIGS),
                        help="configurations run across the shaped hosts, whatever --configs says (default: small; "
                             "124M's 495 MB gradient takes ~5 s per allreduce at 1gbit)")
    parser.add_argument("--skip-shaped", action="store_true", help="no runs across shaped hosts")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds for one training run")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help="only compare these 2-worker settings against 1 worker x 2 threads (no PyTorch, no "
                             "shaped hosts, no bandwidth)")
    args = parser.parse_args()
    distributed_check = os.path.join(os.path.dirname(args.binary), "lockstep-distributed-check")
    for binary in (args.binary, distributed_check):
        if not os.access(binary, os.X_OK):
            sys.exit(f"benchmark: {binary} not found; run `swift build -c release` first")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # SIGTERM as SystemExit, so that the runs' clean-up (process groups, shaped hosts) happens as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("benchmark: terminated"))
    shaped_rates = [] if args.skip_shaped else args.shaped
    if shaped_rates and os.geteuid() != 0:
        print("benchmark: the shaped-host runs need root (ip netns, tc): skipped", file=sys.stderr)
        shaped_rates = []
    try:
        if args.variants:
            variant_table(args)
        else:
            tables(args, shaped_rates)
    except RunFailed as error:
        sys.exit(f"benchmark: {error}")


def variant_table(args):
    """--variants: per configuration, 1 worker x 2 threads and each named 2-worker setting, --repeats rounds
    of one run each, then every figure's median over the rounds."""
    print("| config | setting | tok/s | data-parallel efficiency | backward s | exposed comm. s | optimizer s | "
          "peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.configs:
        cfg = config_of(name, args)
        runs = {variant: [] for variant in ["1x2", *args.variants]}
        with tempfile.TemporaryDirectory() as work:
            write_shard(work, cfg)
            for round_ in range(args.repeats):
                for variant in runs:
                    workers, threads, distributed = (1, 2, None) if variant == "1x2" else (2, 1, VARIANTS[variant])
                    figures, _ = lockstep_run(args, work, cfg, workers, threads, distributed)
                    if figures is None:
                        sys.exit(f"benchmark: the binary lacks a key of {distributed}")
                    runs[variant].append(figures)
                    print(f"benchmark: {name} {variant} round {round_ + 1}: "
                          f"{figures['tokens_per_second']:.0f} tok/s", file=sys.stderr)
        threads = median_of_runs(runs["1x2"])["tokens_per_second"]
        for variant, figures in runs.items():
            figures = median_of_runs(figures)
            print(f"| {name} | {variant} | {figures['tokens_per_second']:.0f} | "
                  f"{figures['tokens_per_second'] / threads:.2f} | {seconds(figures, 'backward_seconds')} | "
                  f"{seconds(figures, 'communication_seconds')} | {seconds(figures, 'optimizer_seconds')} | "
                  f"{mib(figures)} |")


def tables(args, shaped_rates):
    peaks = {}
    for line in run([sys.executable, os.path.join(ROOT, "scripts", "bench_sgemm.py"), "--source", "system",
                     "--json"]).splitlines():
        record = json.loads(line)
        peaks[record["threads"]] = record["gflops_median"]
    have_torch = False
    if args.skip_pytorch:
        print("--skip-pytorch: PyTorch's columns stay empty", file=sys.stderr)
    else:
        try:
            import torch  # noqa: F401
            have_torch = True
        except ImportError:
            print("PyTorch not installed (pip install torch==2.13.0+cpu): its columns stay empty", file=sys.stderr)

    print(f"sgemm peak (system OpenBLAS): {peaks.get(1, 0):.1f} GFLOP/s on 1 thread, {peaks.get(2, 0):.1f} on 2")
    print()
    print("| config | threads | Lockstep tok/s | MFU | PyTorch tok/s | MFU | Lockstep / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    efficiency_rows, coordinator_rows, bandwidth_rows = [], [], []
    hidden_rows, memory_rows = [], []  # (config, link, bucketed, single), (config, replicated, sharded)
    for name in args.configs:
        cfg = config_of(name, args)
        n = non_embedding_plus_head(cfg["channels"], cfg["layers"], cfg["vocab"])
        with tempfile.TemporaryDirectory() as work:
            write_shard(work, cfg)
            ours, coordinator = {}, []
            for workers, threads in [(1, 1), (1, 2), (2, 1)]:
                # 2 workers: the bucketed gradient sync (the default), replicated optimizer state (the default).
                distributed = {"gradient_sync": "bucketed"} if workers == 2 else None
                figures, lines = repeated(args, work, cfg, workers, threads, distributed)
                ours[(workers, threads)] = figures["tokens_per_second"]
                if workers == 2:
                    coordinator, bucketed = lines, figures
            single, _ = repeated(args, work, cfg, 2, 1, {"gradient_sync": "single"})
            threaded, _ = repeated(args, work, cfg, 2, 1, PROGRESS_THREAD)
            hidden_rows.append((name, "shm", bucketed, single, threaded))
            # On one host the sharded workers share parameters and gradients in shared memory (shared_memory:
            # true, the default): the efficiency table's second setting.
            sharded, _ = repeated(args, work, cfg, 2, 1, {"shard_optimizer": True})
            memory_rows.append((name, bucketed, sharded))
        if coordinator:
            coordinator_rows.append((name, *(statistics.median(line[i] for line in coordinator) for i in range(3))))
        else:
            print(f"benchmark: no 'coordinator CPU time' line in the {name} 2-worker runs", file=sys.stderr)
        floats = parameter_count(cfg["channels"], cfg["layers"], cfg["vocab"], SEQ)
        # As training: one bucket per block, started during backward, then the embeddings and ln_f (the tail).
        tail = cfg["vocab"] * cfg["channels"] + SEQ * cfg["channels"] + 2 * cfg["channels"]
        bandwidth_rows.append((name, allreduce_bandwidth(os.path.dirname(args.binary), floats, cfg["layers"] + 1,
                                                         args.repeats, tail)))
        for threads in (1, 2):
            mine = ours[(1, threads)]
            theirs = None
            if have_torch:
                figures = []
                for _ in range(args.repeats):
                    out = run([sys.executable, os.path.join(ROOT, "scripts", "bench_pytorch.py"),
                               "--layers", str(cfg["layers"]), "--heads", str(cfg["heads"]),
                               "--channels", str(cfg["channels"]), "--vocab", str(cfg["vocab"]),
                               "--batch", str(BATCH), "--seq", str(SEQ), "--threads", str(threads),
                               "--warmup-steps", str(cfg["warmup"]), "--steps", str(cfg["steps"]),
                               "--repeats", "1", "--json"])
                    figures.append(json.loads(out)["tokens_per_second_median"])
                theirs = statistics.median(figures)
            peak = peaks[threads] * 1e9
            mfu = 6 * n * mine / peak
            cells = [name, str(threads), f"{mine:.0f}", f"{mfu:.0%}"]
            if theirs:
                cells += [f"{theirs:.0f}", f"{6 * n * theirs / peak:.0%}", f"{mine / theirs:.2f}x"]
            else:
                cells += ["-", "-", "-"]
            print("| " + " | ".join(cells) + " |")
        efficiency_rows.append(
            (name, ours[(2, 1)], sharded["tokens_per_second"] if sharded else None, ours[(1, 2)]))

    # Bucketed against single across 2 shaped namespace hosts: one set of hosts per rate, removed when its runs
    # end, fail or are interrupted.
    for rate in shaped_rates:
        done = len(hidden_rows)
        try:
            with ShapedHosts(rate) as hosts, tempfile.TemporaryDirectory() as work:
                for name in args.shaped_configs:
                    cfg = config_of(name, args)
                    write_shard(work, cfg)
                    print(f"benchmark: {name} across 2 hosts at {rate}", file=sys.stderr)
                    bucketed, _ = repeated(args, work, cfg, 2, 1, {"gradient_sync": "bucketed"}, hosts)
                    single, _ = repeated(args, work, cfg, 2, 1, {"gradient_sync": "single"}, hosts)
                    threaded, _ = repeated(args, work, cfg, 2, 1, PROGRESS_THREAD, hosts)
                    hidden_rows.append((name, rate, bucketed, single, threaded))
        except (RunFailed, RuntimeError) as error:
            print(f"benchmark: shaped hosts at {rate}: {error}", file=sys.stderr)
            measured = {row[0] for row in hidden_rows[done:]}
            hidden_rows += [(name, rate, None, None, None) for name in args.shaped_configs if name not in measured]

    print()
    print("| config | 2 workers x 1 thread tok/s | the same, sharded | 1 worker x 2 threads tok/s | "
          "data-parallel efficiency | the same, sharded |")
    print("|---|---|---|---|---|---|")
    for name, processes, best, threads in efficiency_rows:
        best_cells = [f"{best:.0f}", f"{best / threads:.2f}"] if best else [SHARD_UNSUPPORTED, "-"]
        print(f"| {name} | {processes:.0f} | {best_cells[0]} | {threads:.0f} | {processes / threads:.2f} | "
              f"{best_cells[1]} |")
    print()
    print("| config | coordinator CPU s while stepping | stepping s | coordinator share of one core |")
    print("|---|---|---|---|")
    for name, cpu, seconds_, share in coordinator_rows:
        print(f"| {name} | {cpu:.2f} | {seconds_:.1f} | {share:.1f}% |")
    print()
    print("| config | gradient MB | buckets | bucketed GB/s | raw MPI_Allreduce GB/s | bucketed / raw |")
    print("|---|---|---|---|---|---|")
    for name, record in bandwidth_rows:
        print(f"| {name} | {record['bytes'] / 1e6:.1f} | {record['buckets']} | {record['bucketed_gb_per_s']:.2f} | "
              f"{record['raw_gb_per_s']:.2f} | {record['bucketed_over_raw']:.2f} |")
    print()
    print("| config | link | backward s, bucketed | backward s, thread | backward s, single | "
          "exposed comm. s, bucketed | exposed comm. s, thread | exposed comm. s, single | hidden fraction, bucketed | "
          "hidden fraction, thread | tok/s bucketed | tok/s thread | tok/s single |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, link, bucketed, single, threaded in hidden_rows:
        if bucketed is None or single is None:
            print(f"| {name} | {link} | failed (see standard error) | | | | | | | | | | |")
            continue
        thread_cells = ([seconds(threaded, "backward_seconds"), seconds(threaded, "communication_seconds"),
                         hidden_fraction(threaded, single), f"{threaded['tokens_per_second']:.0f}"]
                        if threaded else [THREAD_UNSUPPORTED] * 4)
        print(f"| {name} | {link} | {seconds(bucketed, 'backward_seconds')} | {thread_cells[0]} | "
              f"{seconds(single, 'backward_seconds')} | {seconds(bucketed, 'communication_seconds')} | "
              f"{thread_cells[1]} | {seconds(single, 'communication_seconds')} | "
              f"{hidden_fraction(bucketed, single)} | {thread_cells[2]} | {bucketed['tokens_per_second']:.0f} | "
              f"{thread_cells[3]} | {single['tokens_per_second']:.0f} |")
    print()
    print("| config | peak RSS MiB, replicated | peak RSS MiB, sharded | sharded / replicated | tok/s replicated | "
          "tok/s sharded |")
    print("|---|---|---|---|---|---|")
    for name, replicated, sharded in memory_rows:
        if sharded is None:
            print(f"| {name} | {mib(replicated)} | {SHARD_UNSUPPORTED} | - | "
                  f"{replicated['tokens_per_second']:.0f} | - |")
            continue
        ratio = (f"{sharded['peak_rss_bytes'] / replicated['peak_rss_bytes']:.2f}"
                 if "peak_rss_bytes" in sharded and "peak_rss_bytes" in replicated else "-")
        print(f"| {name} | {mib(replicated)} | {mib(sharded)} | {ratio} | {replicated['tokens_per_second']:.0f} | "
              f"{sharded['tokens_per_second']:.0f} |")


if __name__ == "__main__":
    main()
