#!/usr/bin/env python3
"""Lockstep against PyTorch on the same CPU, in one run (issue 8). Prints a markdown table.

For each configuration (issue 8's small model: 4 layers, 4 heads, 256 channels, vocabulary 50304; and
GPT-2 124M), at B=4, T=64, it measures in this order, all on the same cores:
  - the sgemm peak of the system OpenBLAS (scripts/bench_sgemm.py --source system), 1 and 2 threads;
  - Lockstep's training tokens/s with 1 worker x 1 thread, 1 worker x 2 threads, 2 workers x 1 thread
    (`lockstep train` on random token shards; tokens/s is the median of the per-step figures of
    metrics.jsonl after the warm-up steps, over --repeats runs);
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
Every figure is the median over --repeats runs (bandwidth: over --repeats timed allreduces after a warm-up).
MFU = 6 x N x tokens/s / sgemm peak (N: non-embedding parameters plus the LM head, as bench_pytorch.py
counts them). Data-parallel efficiency = tokens/s of 2 workers x 1 thread / tokens/s of 1 worker x 2 threads
(the same two cores, split into processes or shared by threads).

Usage (after `swift build -c release`):
  python3 scripts/benchmark.py                       # both configurations
  python3 scripts/benchmark.py --configs small --repeats 3
  python3 scripts/benchmark.py --configs small --repeats 1 --skip-pytorch     # a quick run
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "small": dict(layers=4, heads=4, channels=256, vocab=50304, steps=20, warmup=3),
    "124M": dict(layers=12, heads=12, channels=768, vocab=50304, steps=6, warmup=2),
}
BATCH, SEQ = 4, 64


def run(args, env=None):
    """Standard output of a command that must succeed."""
    return run_both(args, env)[0]


def run_both(args, env=None):
    """(standard output, standard error) of a command that must succeed."""
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"benchmark: {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout, result.stderr


def write_random_shard(path, vocab, tokens, seed):
    """An llm.c shard (version 1, uint16) of uniformly random tokens."""
    import random
    import struct
    rng = random.Random(seed)
    header = [0] * 256
    header[0], header[1], header[2] = 20240520, 1, tokens
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{tokens}H", *(rng.randrange(vocab) for _ in range(tokens))))


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
RING_ALLREDUCE = ["--mca", "coll_tuned_use_dynamic_rules", "1", "--mca", "coll_tuned_allreduce_algorithm", "4"]


def lockstep_run(binary, work, cfg, workers, threads):
    """(tokens/s, the coordinator's CPU line as (cpu s, training s, % of one core) or None) of one
    `lockstep train` run."""
    config = os.path.join(work, "bench.yaml")
    with open(config, "w") as f:
        f.write(f"""model: {{context_length: {SEQ}, layers: {cfg['layers']}, heads: {cfg['heads']},
  channels: {cfg['channels']}, vocab_size: {cfg['vocab']}}}
data: {{train: "{work}/train_*.bin", shuffle: false}}
training: {{max_steps: {cfg['steps']}, sequence_length: {SEQ}, micro_batch_size: {BATCH // workers},
  global_batch_tokens: {BATCH * SEQ}}}
schedule: {{kind: constant, learning_rate: 1.0e-4}}
output: {{directory: {work}/run, log_every: 1, tensorboard: false}}
checkpoint: {{every: 100000}}
distributed: {{workers: {workers}, threads_per_worker: {threads}, check_replicas_every: 0}}
""")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    out, err = run_both([binary, "train", "--config", config], env=env)
    match = COORDINATOR_CPU.search(out + err)
    coordinator = tuple(float(x) for x in match.groups()) if match else None
    figures = []
    with open(os.path.join(work, "run", "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("kind") == "train" and record["step"] > cfg["warmup"]:
                figures.append(record["tokens_per_second"])
    return statistics.median(figures), coordinator


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
    args = parser.parse_args()
    distributed_check = os.path.join(os.path.dirname(args.binary), "lockstep-distributed-check")
    for binary in (args.binary, distributed_check):
        if not os.access(binary, os.X_OK):
            sys.exit(f"benchmark: {binary} not found; run `swift build -c release` first")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")

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
    for name in args.configs:
        cfg = CONFIGS[name]
        n = non_embedding_plus_head(cfg["channels"], cfg["layers"], cfg["vocab"])
        with tempfile.TemporaryDirectory() as work:
            write_random_shard(os.path.join(work, "train_000000.bin"), cfg["vocab"],
                               (cfg["steps"] + 2) * BATCH * SEQ + 1, seed=1)
            ours, coordinator = {}, []
            for workers, threads in [(1, 1), (1, 2), (2, 1)]:
                runs = [lockstep_run(args.binary, work, cfg, workers, threads) for _ in range(args.repeats)]
                ours[(workers, threads)] = statistics.median(tokens for tokens, _ in runs)
                if workers == 2:
                    coordinator = [line for _, line in runs if line]
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
        efficiency_rows.append((name, ours[(2, 1)], ours[(1, 2)]))
    print()
    print("| config | 2 workers x 1 thread tok/s | 1 worker x 2 threads tok/s | data-parallel efficiency |")
    print("|---|---|---|---|")
    for name, processes, threads in efficiency_rows:
        print(f"| {name} | {processes:.0f} | {threads:.0f} | {processes / threads:.2f} |")
    print()
    print("| config | coordinator CPU s while stepping | stepping s | coordinator share of one core |")
    print("|---|---|---|---|")
    for name, cpu, seconds, share in coordinator_rows:
        print(f"| {name} | {cpu:.2f} | {seconds:.1f} | {share:.1f}% |")
    print()
    print("| config | gradient MB | buckets | bucketed GB/s | raw MPI_Allreduce GB/s | bucketed / raw |")
    print("|---|---|---|---|---|---|")
    for name, record in bandwidth_rows:
        print(f"| {name} | {record['bytes'] / 1e6:.1f} | {record['buckets']} | {record['bucketed_gb_per_s']:.2f} | "
              f"{record['raw_gb_per_s']:.2f} | {record['bucketed_over_raw']:.2f} |")


if __name__ == "__main__":
    main()
