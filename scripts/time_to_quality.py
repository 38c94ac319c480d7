#!/usr/bin/env python3
"""Time to quality: Lockstep's speedrun config against nanoGPT's CPU recipe on tiny shakespeare (issue 17).

Both systems train a character-level model on the same data (nanoGPT's own `prepare.py`: train.bin/val.bin,
headerless uint16 tokens, vocabulary 65) on the same cores, and each is judged by its wall time from launch to
exit (the process has saved its model when it exits) and by its loss on the WHOLE of val.bin.

Steps:
  1. Clone nanoGPT (--nanogpt: a local clone or a git URL) into the work directory, copy --text to
     `data/shakespeare_char/input.txt` (so `prepare.py` never downloads) and run `prepare.py`. `prepare.py`
     imports `requests` even when it does not download; where that module is missing, a one-line stub on
     PYTHONPATH stands in for it.
  2. Alternate runs, --repeats times each: nanoGPT, Lockstep, nanoGPT, Lockstep, ... so that load on the
     machine hits both alike. Each run starts from scratch in its own output directory.
     - nanoGPT: the CPU example of its README, as issue 17 gives it:
         python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
           --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
           --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0 --out_dir=OUT
       (the config's own `always_save_checkpoint = False` applies: ckpt.pt is written at the evaluations,
       every 250 iterations, whose 20-batch validation estimate improved; that saved model is nanoGPT's result).
     - Lockstep: lockstep train --config configs/shakespeare-char-speedrun.yaml --set data.format=nanogpt
         --set data.train=TRAIN_BIN --set data.validation=VAL_BIN --set output.directory=OUT
       (the config evaluates only once, at the end, with `evaluation.max_windows: 0`, i.e. on all windows).
     Wall time = time.perf_counter() around the subprocess, from launch to exit. Both are timed with their
     standard output and error going to a log file in the run's directory.
  3. Whole-val losses, both computed the same way: val.bin (N tokens) is cut into (N - 1) // T non-overlapping
     windows, window i holding tokens [i*T, i*T + T + 1): the first T are the inputs and the last T the targets,
     so consecutive windows share a boundary token, every token but the first (and a tail shorter than a window)
     is predicted exactly once, each with its full window of context from the window's start. The loss is the
     mean next-token cross-entropy (natural log) over all (N - 1) // T * T predicted positions.
     - nanoGPT: T = its block_size (64). Its ckpt.pt is loaded into its own model.py (GPT(GPTConfig(**
       model_args)), state dict with any `_orig_mod.` prefix removed), model.eval(), in fp32 on the CPU under
       torch.no_grad(); batches of windows through GPT.forward(x, y), whose loss is the mean cross-entropy of
       the batch; the batch means are weighted by their number of positions. This runs after the timed run,
       outside its wall time.
     - Lockstep: T = the config's training.sequence_length. The run's own final evaluation: with
       `evaluation.max_windows: 0` the coordinator spreads all (N - 1) // T windows of data.validation (cut
       exactly as above, TokenWindowDataset) over the workers, sums the workers' window losses, and writes the
       mean over all windows' positions as `val_loss` in the last `{"kind": "eval"}` record of the run's
       metrics.jsonl (its `tokens` field is the count of predicted positions, checked here against
       (N - 1) // T * T). This evaluation is part of Lockstep's timed run (nanoGPT's whole-val loss is not part
       of nanoGPT's).
  4. Print a markdown table: median wall time and whole-val loss (median over runs) of each, the ratio of
     Lockstep's median wall time to nanoGPT's, the per-run figures, the load average before and after, and the
     exact commands. The same is written to OUT/time_to_quality.md, and the raw figures to
     OUT/time_to_quality.json.

Usage (from the repository root, after `swift build -c release`):
  python3 scripts/time_to_quality.py --nanogpt https://github.com/karpathy/nanoGPT.git \
      --text /work/shared/data/tinyshakespeare.txt --python .venv-test/bin/python --repeats 3 --out /tmp/ttq
  python3 scripts/time_to_quality.py --nanogpt ~/src/nanoGPT --text tinyshakespeare.txt --repeats 1 \
      --nanogpt-runs 0     # Lockstep alone, a quick look
The goal (issue 17, item 4): Lockstep's whole-val loss no worse than nanoGPT's in at most half its wall time.
Wall times are only comparable on an otherwise idle machine: look at the load averages printed with them.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NANOGPT_ARGS = [
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
    "--lr_decay_iters=2000", "--dropout=0.0",
]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "shakespeare-char-speedrun.yaml")

# Runs inside nanoGPT's directory with --python: nanoGPT's whole-val loss with its own model code.
NANOGPT_EVAL = r"""
import json, sys
import numpy as np
import torch
from model import GPT, GPTConfig
ckpt_path, val_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
checkpoint = torch.load(ckpt_path, map_location="cpu")
model = GPT(GPTConfig(**checkpoint["model_args"]))
state = {k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k: v for k, v in checkpoint["model"].items()}
model.load_state_dict(state)
model.eval()
T = checkpoint["model_args"]["block_size"]
data = np.fromfile(val_path, dtype=np.uint16).astype(np.int64)
windows = (len(data) - 1) // T
total, positions = 0.0, 0
with torch.no_grad():
    for start in range(0, windows, batch):
        rows = range(start, min(start + batch, windows))
        x = torch.from_numpy(np.stack([data[i * T:i * T + T] for i in rows]))
        y = torch.from_numpy(np.stack([data[i * T + 1:i * T + T + 1] for i in rows]))
        _, loss = model(x, y)
        total += loss.item() * y.numel()
        positions += y.numel()
print(json.dumps({"loss": total / positions, "windows": windows, "positions": positions, "block_size": T,
                  "iter_num": checkpoint.get("iter_num"), "best_val_loss": float(checkpoint.get("best_val_loss"))}))
"""


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(command, cwd, log_path, env=None):
    """Runs command to its exit with output to log_path; returns its wall seconds. Raises on failure."""
    with open(log_path, "w") as log:
        start = time.perf_counter()
        status = subprocess.call(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
    if status != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"{' '.join(command)} exited with {status} (log {log_path}):\n{tail}")
    return seconds


def prepare_nanogpt(source, text, python, work):
    """Clones nanoGPT into work/nanoGPT and prepares shakespeare_char; returns (directory, train.bin, val.bin)."""
    directory = os.path.join(work, "nanoGPT")
    if os.path.exists(directory):
        shutil.rmtree(directory)
    subprocess.check_call(["git", "clone", "--quiet", source, directory])
    data = os.path.join(directory, "data", "shakespeare_char")
    shutil.copyfile(text, os.path.join(data, "input.txt"))
    env = dict(os.environ)
    if subprocess.call([python, "-c", "import requests"], stderr=subprocess.DEVNULL) != 0:
        stub = os.path.join(work, "stub")
        os.makedirs(stub, exist_ok=True)
        with open(os.path.join(stub, "requests.py"), "w") as f:
            f.write("# stand-in: input.txt is present, so prepare.py never downloads\n")
        env["PYTHONPATH"] = stub + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.check_call([python, "prepare.py"], cwd=data, env=env, stdout=subprocess.DEVNULL)
    return directory, os.path.join(data, "train.bin"), os.path.join(data, "val.bin")


def nanogpt_run(directory, python, out_dir, val_bin):
    command = [python, "train.py", *NANOGPT_ARGS, f"--out_dir={out_dir}"]
    os.makedirs(out_dir, exist_ok=True)
    seconds = timed(command, directory, os.path.join(out_dir, "train.log"))
    result = subprocess.run(
        [python, "-c", NANOGPT_EVAL, os.path.join(out_dir, "ckpt.pt"), val_bin, "64"],
        cwd=directory, check=True, capture_output=True, text=True)
    evaluation = json.loads(result.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, **evaluation}


def lockstep_command(binary, config, train_bin, val_bin, out_dir):
    return [binary, "train", "--config", config, "--set", "data.format=nanogpt", "--set", f"data.train={train_bin}",
            "--set", f"data.validation={val_bin}", "--set", f"output.directory={out_dir}"]


def sequence_length(config):
    """training.sequence_length of a Lockstep config (read with a pattern: the script needs no YAML module)."""
    section = None
    with open(config) as f:
        for line in f:
            stripped = line.split("#")[0].rstrip()
            if stripped and not stripped.startswith(" "):
                section = stripped.rstrip(":")
            elif section == "training" and stripped.strip().startswith("sequence_length:"):
                return int(stripped.split(":")[1])
    raise SystemExit(f"{config}: no training.sequence_length")


def lockstep_run(binary, config, train_bin, val_bin, out_dir):
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    command = lockstep_command(binary, config, train_bin, val_bin, out_dir)
    seconds = timed(command, None, os.path.join(out_dir, "..", os.path.basename(out_dir) + ".log"))
    evals = []
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("kind") == "eval":
                evals.append(record)
    if not evals:
        raise SystemExit(f"{out_dir}/metrics.jsonl has no eval record")
    final = evals[-1]
    if not os.path.isdir(os.path.join(out_dir, "model")):
        raise SystemExit(f"{out_dir}/model is missing: the run saved no model")
    time_steps = sequence_length(config)
    expected = (os.path.getsize(val_bin) // 2 - 1) // time_steps * time_steps
    if final["tokens"] != expected:
        raise SystemExit(f"the final evaluation covered {final['tokens']} positions, not all {expected} of val.bin")
    return {"seconds": seconds, "loss": final["val_loss"], "positions": final["tokens"], "step": final["step"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nanogpt", required=True, help="nanoGPT: a local clone or a git URL")
    parser.add_argument("--text", required=True, help="tiny shakespeare's input.txt")
    parser.add_argument("--lockstep", default=os.path.join(REPO_ROOT, ".build", "release", "lockstep"))
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="Lockstep's run config")
    parser.add_argument("--python", default=sys.executable, help="a Python with torch and numpy, for nanoGPT")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating; medians are reported")
    parser.add_argument("--nanogpt-runs", type=int, default=None,
                        help="run nanoGPT this many times (default: --repeats); 0 for Lockstep alone")
    parser.add_argument("--out", default=None, help="work directory (default: a temporary one, kept)")
    args = parser.parse_args()

    work = os.path.abspath(args.out or tempfile.mkdtemp(prefix="time_to_quality."))
    os.makedirs(work, exist_ok=True)
    binary = os.path.abspath(args.lockstep)
    config = os.path.abspath(args.config)
    python = args.python if os.sep not in args.python else os.path.abspath(args.python)
    nanogpt_repeats = args.repeats if args.nanogpt_runs is None else args.nanogpt_runs
    source = os.path.abspath(args.nanogpt) if os.path.isdir(args.nanogpt) else args.nanogpt
    directory, train_bin, val_bin = prepare_nanogpt(source, os.path.abspath(args.text), python, work)
    val_tokens = os.path.getsize(val_bin) // 2

    load_before = load_average()
    nano, lock = [], []
    for k in range(max(args.repeats, nanogpt_repeats)):
        if k < nanogpt_repeats:
            r = nanogpt_run(directory, python, os.path.join(work, f"nanogpt-{k}"), val_bin)
            r["load"] = load_average()
            nano.append(r)
            print(f"nanoGPT run {k}: {r['seconds']:.1f} s, whole-val loss {r['loss']:.4f} (load {r['load']})",
                  flush=True)
        if k < args.repeats:
            r = lockstep_run(binary, config, train_bin, val_bin, os.path.join(work, f"lockstep-{k}"))
            r["load"] = load_average()
            lock.append(r)
            print(f"Lockstep run {k}: {r['seconds']:.1f} s, whole-val loss {r['loss']:.4f} (load {r['load']})",
                  flush=True)
    load_after = load_average()

    lines = ["| system | runs | wall time, median (s) | whole-val loss, median | per run (s / loss) |",
             "|---|---|---|---|---|"]
    medians = {}
    for name, runs in (("nanoGPT", nano), ("Lockstep", lock)):
        if not runs:
            continue
        seconds = statistics.median(r["seconds"] for r in runs)
        loss = statistics.median(r["loss"] for r in runs)
        medians[name] = (seconds, loss)
        per_run = ", ".join(f"{r['seconds']:.1f} / {r['loss']:.4f}" for r in runs)
        lines.append(f"| {name} | {len(runs)} | {seconds:.1f} | {loss:.4f} | {per_run} |")
    if "nanoGPT" in medians and "Lockstep" in medians:
        ratio = medians["Lockstep"][0] / medians["nanoGPT"][0]
        verdict = "met" if ratio <= 0.5 and medians["Lockstep"][1] <= medians["nanoGPT"][1] else "not met"
        lines.append("")
        lines.append(f"Wall-time ratio Lockstep / nanoGPT: {ratio:.3f}; loss difference Lockstep - nanoGPT: "
                     f"{medians['Lockstep'][1] - medians['nanoGPT'][1]:+.4f}; goal (ratio <= 0.5, loss no worse): "
                     f"{verdict}.")
    positions = {r["positions"] for r in nano + lock}
    lines.append("")
    lines.append(f"val.bin: {val_tokens} tokens; predicted positions per evaluation: "
                 f"{', '.join(str(p) for p in sorted(positions))}. Load average (1, 5, 15 min) before: "
                 f"{load_before}; after: {load_after}; {os.cpu_count()} CPUs.")
    lines.append("")
    lines.append("Commands (OUT: each run's own directory):")
    lines.append("```")
    lines.append(f"cd {directory} && {python} train.py {' '.join(NANOGPT_ARGS)} --out_dir=OUT")
    lines.append(" ".join(lockstep_command(binary, config, train_bin, val_bin, "OUT")))
    lines.append("```")
    table = "\n".join(lines)
    print()
    print(table)
    with open(os.path.join(work, "time_to_quality.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(work, "time_to_quality.json"), "w") as f:
        json.dump({"nanogpt": nano, "lockstep": lock, "load_before": load_before, "load_after": load_after,
                   "val_tokens": val_tokens}, f, indent=2)


if __name__ == "__main__":
    main()
