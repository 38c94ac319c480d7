#!/usr/bin/env python3
"""How much a checkpoint save slows training (issue 18: "checkpoint saves stall training less than 2% of a
step"), on the code path `lockstep train` runs.

For each model size it runs `lockstep train` with 2 workers x 1 thread on random token shards, once without
checkpoints (only the final one, after the measured steps) and once saving every --every steps, alternating the
two --pairs times. A run's step time is the wall time between consecutive train records of its metrics.jsonl
(logged every step), so it holds everything a step costs the coordinator: the handoff of worker 0's state, any
wait for an earlier save, and the background writer competing for the cores. The figures:

  - the median step without checkpoints;
  - the cost per checkpoint: (mean step with - mean step without) x every, from the medians over pairs;
  - that cost as a fraction of a step (the goal: under 2%);
  - the stall the run measures itself, per handoff: the handoff step's `checkpoint_stall_seconds` (the
    coordinator holding the next plan back: waiting for the previous save to be done with the snapshot,
    receiving the state's counters) plus the next step's `handoff_wait_seconds` (the workers waiting, before
    their update, for the state's buffers to be copied out), its median over all handoffs, and that as a
    fraction of a step. The cost per checkpoint also holds what the background writer and the coordinator's
    copy take from the workers' cores; it moves with the machine's noise, which on a shared VM is often larger
    than the effect (compare several pairs).

Usage (after `swift build -c release`; nothing else should be running):
  python3 scripts/bench_checkpoint_stall.py
  python3 scripts/bench_checkpoint_stall.py --sizes tiny --pairs 5 --every 2
"""

import argparse
import os
import statistics
import sys
import tempfile

from lockstep_runs import ROOT, run_train, train_records, write_random_shard, write_train_config

SIZES = {
    # The shakespeare-char preset's shape (0.8 M parameters, byte vocabulary): a short step, the hardest case.
    "tiny": dict(layers=4, heads=4, channels=128, vocab=257, seq=128, micro_batch=16, global_tokens=4096),
    # benchmark.py's small configuration (16 M parameters): 3 x 64 MB of state per checkpoint.
    "small": dict(layers=4, heads=4, channels=256, vocab=50304, seq=64, micro_batch=2, global_tokens=256),
}


def step_seconds(metrics, warmup, steps):
    """Wall seconds between consecutive train records, for steps warmup+1 ... steps-1 (the last step's record
    comes before the final save, which is left out)."""
    records = [r for r in train_records(metrics, 0) if r["step"] < steps]
    times = {r["step"]: r["time"] for r in records}
    return [times[s] - times[s - 1] for s in range(warmup + 1, steps) if s in times and s - 1 in times]


def stalls(metrics):
    """Per handoff step (a train record with checkpoint_stall_seconds): that, plus the handoff_wait_seconds of
    the next step's record (logged every step; none after the last step)."""
    records = {r["step"]: r for r in train_records(metrics, 0)}
    return [r["checkpoint_stall_seconds"] + records.get(step + 1, {}).get("handoff_wait_seconds", 0.0)
            for step, r in sorted(records.items()) if "checkpoint_stall_seconds" in r]


def run(args, work, size, every, index):
    out = os.path.join(work, f"run-{every}-{index}")
    config = os.path.join(work, f"run-{every}-{index}.yaml")
    cfg = SIZES[size]
    write_train_config(config, work=work, out=out, model=cfg, seq=cfg["seq"], steps=args.steps,
                       micro_batch=cfg["micro_batch"], global_tokens=cfg["global_tokens"], workers=2, threads=1)
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("checkpoint: {every: 100000}", f"checkpoint: {{every: {every or 100000}, keep_last: 2}}"))
    code, _, err = run_train(args.binary, config, timeout=1200)
    if code != 0:
        sys.exit(f"bench_checkpoint_stall.py: lockstep train failed ({code}):\n{err[-3000:]}")
    metrics = os.path.join(out, "metrics.jsonl")
    return step_seconds(metrics, args.warmup, args.steps), stalls(metrics)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build/release/lockstep"))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out at the start")
    parser.add_argument("--every", type=int, default=2, help="checkpoint cadence of the measured runs")
    parser.add_argument("--pairs", type=int, default=3, help="alternating runs without and with checkpoints")
    args = parser.parse_args()
    if args.every < 1 or args.steps <= args.warmup + 2 * args.every or args.pairs < 1:
        sys.exit("bench_checkpoint_stall.py: need --every >= 1, --steps > --warmup + 2 x --every, --pairs >= 1")

    print("| model | median step without (s) | mean step without / with (s) | cost per checkpoint (s) | of a step | "
          "stall per checkpoint (s) | of a step |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="lockstep-ckpt-") as work:
            cfg = SIZES[size]
            tokens = max(200_000, cfg["global_tokens"] * (args.steps + 2))
            write_random_shard(os.path.join(work, "train_000000.bin"), cfg["vocab"], tokens, seed=1)
            without, with_saves, medians, handoffs = [], [], [], []
            for index in range(args.pairs):
                order = [0, args.every] if index % 2 == 0 else [args.every, 0]
                for every in order:
                    seconds, stall = run(args, work, size, every, index)
                    (with_saves if every else without).append(statistics.fmean(seconds))
                    if every:
                        handoffs += stall
                    if not every:
                        medians.append(statistics.median(seconds))
        mean_without, mean_with = statistics.median(without), statistics.median(with_saves)
        cost = (mean_with - mean_without) * args.every
        step = statistics.median(medians)
        stall = statistics.median(handoffs) if handoffs else float("nan")
        print(f"| {size} | {step:.4f} | {mean_without:.4f} / {mean_with:.4f} | {cost:.4f} | {100 * cost / step:.1f}% | "
              f"{stall:.6f} | {100 * stall / step:.2f}% |")
        print(f"  {size}: per-run means without {['%.4f' % s for s in without]}, with {['%.4f' % s for s in with_saves]}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
