#!/usr/bin/env python3
"""Plot Lockstep training curves from one or more JSONL metrics files.

Each line of a metrics file is one JSON object (see Sources/LockstepTraining/MetricsLog.swift):
  {"kind": "train", "step": S, "loss": ..., "lr": ..., "grad_norm": ..., "tokens_per_second": ..., "time": ...}
  {"kind": "eval",  "step": S, "val_loss": ..., "val_perplexity": ... (pretraining)}
  {"kind": "eval",  "step": S, "val_loss": ..., "accuracy": ..., "macro_f1": ..., "ece": ... (fine-tuning)}
Non-finite numbers are written as null and are left out of the plots; a partial last line (a crash while
writing) is skipped with a warning.

Writes into --output (default: the current directory):
  loss.png           train loss and validation loss against step
  learning_rate.png  learning rate against step
  accuracy.png       validation (and train) accuracy, only when some record has "accuracy"
With several files each run gets its own colour, labelled by the file's parent directory (or its name).

Usage:
  scripts/plot_metrics.py runs/shakespeare/metrics.jsonl runs/other/metrics.jsonl --output plots/
Needs matplotlib (pip install matplotlib).
"""

import argparse
import json
import math
import os
import sys


def load_records(path):
    """Returns the list of records in one metrics file; exits with a message naming file and line on bad input."""
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as error:
        sys.exit(f"error: cannot read {path}: {error.strerror}")
    last = len(lines) - 1
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number - 1 == last:  # no newline after it: a partial write
                print(f"warning: {path}:{number}: skipping a partial last line", file=sys.stderr)
                continue
            sys.exit(f"error: {path}:{number}: not a JSON object: {error.msg} at column {error.colno}")
        if not isinstance(record, dict):
            sys.exit(f"error: {path}:{number}: expected a JSON object, found {type(record).__name__}")
        records.append(record)
    return records


def series(records, kind, key):
    """(steps, values) of `key` in records of this kind, skipping nulls and non-numbers, ordered by step."""
    points = []
    for record in records:
        if record.get("kind") != kind:
            continue
        step, value = record.get("step"), record.get(key)
        if isinstance(step, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                points.append((step, value))
    points.sort(key=lambda p: p[0])
    return [p[0] for p in points], [p[1] for p in points]


def run_label(path, all_paths):
    """A short name for a run: its directory's name, or the file name when directories repeat."""
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    parents = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in all_paths]
    if parent and parents.count(parent) == 1:
        return parent
    return path


def main():
    parser = argparse.ArgumentParser(description="Plot Lockstep metrics.jsonl files as PNG curves.")
    parser.add_argument("files", nargs="+", help="metrics.jsonl files (one per run)")
    parser.add_argument("--output", default=".", help="directory for the PNG files (created if missing)")
    parser.add_argument("--log-loss", action="store_true", help="log scale for the loss axis")
    args = parser.parse_args()

    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("error: plot_metrics.py needs matplotlib: pip install matplotlib")

    runs = [(run_label(path, args.files), load_records(path)) for path in args.files]
    os.makedirs(args.output, exist_ok=True)
    written = []

    def save(figure, axes, name, ylabel, log=False):
        axes.set_xlabel("step")
        axes.set_ylabel(ylabel)
        if log:
            axes.set_yscale("log")
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        path = os.path.join(args.output, name)
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # Loss: train as a thin line, validation as a thicker line with markers, same colour per run.
    figure, axes = plt.subplots(figsize=(9, 5))
    drew = False
    for index, (label, records) in enumerate(runs):
        colour = colours[index % len(colours)]
        steps, values = series(records, "train", "loss")
        if steps:
            axes.plot(steps, values, color=colour, linewidth=0.8, alpha=0.7, label=f"{label} train")
            drew = True
        steps, values = series(records, "eval", "val_loss")
        if steps:
            axes.plot(steps, values, color=colour, linewidth=2, marker="o", markersize=3, label=f"{label} validation")
            drew = True
    if drew:
        axes.set_title("loss")
        save(figure, axes, "loss.png", "loss", log=args.log_loss)
    else:
        plt.close(figure)
        print("warning: no loss values found", file=sys.stderr)

    # Learning rate.
    figure, axes = plt.subplots(figsize=(9, 4))
    drew = False
    for index, (label, records) in enumerate(runs):
        steps, values = series(records, "train", "lr")
        if steps:
            axes.plot(steps, values, color=colours[index % len(colours)], label=label)
            drew = True
    if drew:
        axes.set_title("learning rate")
        axes.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        save(figure, axes, "learning_rate.png", "learning rate")
    else:
        plt.close(figure)

    # Accuracy, when some run has it.
    figure, axes = plt.subplots(figsize=(9, 5))
    drew = False
    for index, (label, records) in enumerate(runs):
        colour = colours[index % len(colours)]
        for kind, name, style in (("train", "train", "-"), ("eval", "validation", "-o")):
            steps, values = series(records, kind, "accuracy")
            if steps:
                axes.plot(steps, values, style, color=colour, markersize=3, label=f"{label} {name}")
                drew = True
    if drew:
        axes.set_title("accuracy")
        save(figure, axes, "accuracy.png", "accuracy")
    else:
        plt.close(figure)

    if not written:
        sys.exit("error: nothing to plot: no train or eval records with loss or lr in " + ", ".join(args.files))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
