#!/usr/bin/env python3
"""A scaling model of Lockstep's data-parallel training (issue 18, item 5), and its check against measurement.

Predicts step time, tokens/s, efficiency and memory per worker for p = 2, 4, ..., 256 workers (one per node)
for GPT-2 124M (12 layers, 768 channels, 12 heads, vocabulary 50257, context 1024: 124,439,808 parameters) and
a 1.3B GPT-2 (24 layers, 2048 channels, 16 heads, same vocabulary and context: 1,313,626,112 parameters), with
replicated or sharded (ZeRO-1) optimizer state, with or without overlap of communication and backward.

Inputs, both measured:
  - compute: a 1-worker `lockstep train` run (the benchmark's "small" model by default: 4 layers, 4 heads,
    256 channels, vocabulary 50304, B = 4, T = 64, random tokens), whose metrics.jsonl train records give
    compute_seconds (forward + backward of a step) and optimizer_seconds (gradient norm + AdamW), medians after
    the warm-up steps. They become an achieved rate F = FLOPs(fwd+bwd) / compute_seconds, with
    FLOPs = (6 N_mm + 6 L T C) B T per step (N_mm: the blocks' matrices and the LM head), and an optimizer
    cost o = optimizer_seconds / parameters. Or --metrics FILE with --metrics-model, or --flops and
    --optimizer-ns-per-param given directly.
  - communication: the alpha / beta fits of scripts/measure_allreduce.py (--allreduce, default
    runs/allreduce.json) per link
    (shm, 10gbit, 1gbit shaped namespace hosts).

Model, per worker, weak scaling (fixed micro-batch B x T per worker, default 4 x 64, as the benchmark; global
batch p B T):
  t_fb = FLOPs / F, t_b = b t_fb, t_f = t_fb - t_b,  t_opt = o N   (N: all parameters; b = 2/3, or
                                     backward_seconds / compute_seconds of the run where the build logs it)
  AR(n, p) = (p - 1) alpha + 2 (p - 1) / p n beta    ring allreduce of n bytes (2 (p - 1) steps; alpha was
                                                     fitted at p = 2, i.e. over 2 steps)
  RS = AG = AR / 2                                   reduce-scatter, allgather: half the latency and bytes each
  buckets as training cuts them (--embedding-bucket end, main at 3acbff2): one per block (12 C^2 + 13 C
  floats), ready during backward, and the embeddings + ln_f (V C + T_ctx C + 2 C floats), ready only at the
  end of backward (tied to the LM head): hidden H = the blocks, window w = 1, exposed E = the embeddings.
  With --embedding-bucket early (main from c5cc7dd on) wte's bucket starts right after the LM head's backward
  and the token lookup's rows (p B T rows of C floats) are exchanged after it: H = wte + ln_f + blocks,
  w = 1 - the head's share of the matrix work, E = wpe + the rows (or, when p B T > V, wte with wpe at the end).
  Each bucket pays (p - 1) alpha.
  replicated, no overlap:  step = t_fb + AR(4N) + t_opt
  replicated, overlap:     step = t_fb + max(0, AR(H) - w t_b) + AR(E) + t_opt
  sharded, no overlap:     step = t_fb + RS(4N) + t_opt / p + AG(4N)
  sharded, overlap:        step = t_fb + max(0, RS(H) - w t_b) + RS(E) + t_opt / p
                                  + AG(E) + max(0, AG(H) - t_f)   (the parameters' allgather hides behind the
                                  next forward, except the exposed part's, needed first)
  tokens/s = p B T / step;  efficiency = tokens/s / (p B T / (t_fb + t_opt))
  memory = 4N params + 4N gradients + 8N AdamW m, v (/ p sharded) + activations (fp32, llm.c's layout:
           L (16 B T C + 2 B H T^2 + 4 B T) + 2 B T C + 2 B T V floats)
Not modelled: the coordinator's control messages (one small message per step), the gradient-norm and
finite-check scalars (a few small allreduces: latency only), contention between workers for a machine's
memory bus (one worker per node is assumed), stragglers, and a network's own latency beyond what alpha saw
(tc here shapes bandwidth only, no netem).

Check (--check): runs real `lockstep train` on random token shards, "small" model, B = 4, T = 64 per worker,
--steps steps: 1 worker (the compute calibration), 2 workers on shared memory, and 2 workers across 2 namespace
hosts shaped at 10gbit and 1gbit (scripts/shaped_hosts.sh); reads tokens/s (median after the warm-up) from
metrics.jsonl and prints predicted against measured, with the relative error, for both overlap variants (the
implementation starts the block buckets during backward; on 2 cores shared by 2 workers little can overlap).
The 2 workers share this machine's cores and memory bus in every 2-worker configuration, which the model
(one worker per node) does not include: a second prediction takes its compute from the shm 2-worker run.
Builds that log peak_rss_bytes (c5cc7dd on) also get the memory estimate compared with the measured peak.

Usage (as root, after `swift build -c release` and `python3 scripts/measure_allreduce.py`):
  python3 scripts/scaling_model.py                          # measures compute, prints the tables, writes the plot
  python3 scripts/scaling_model.py --extra-link 10GbE:50:1.17              # plus a what-if link, as in the docs
  python3 scripts/scaling_model.py --metrics runs/x/metrics.jsonl --metrics-model small   # compute from a run
  python3 scripts/scaling_model.py --check --check-repeats 2              # predictions against measurement
  python3 scripts/scaling_model.py --embedding-bucket early ...          # a build with c5cc7dd's bucket order
  python3 scripts/scaling_model.py --bin /work/bin-snapshot --allreduce /tmp/allreduce.json --json model.json
The plot (docs/img/scaling-model.png by default, --plot) needs matplotlib (pip install matplotlib); without it
the tables are printed and the plot is skipped with a message.
"""

import argparse
import json
import os
import sys
import tempfile

from lockstep_runs import (ROOT, ShapedHosts, median_of_runs, medians, run_train, train_records, write_random_shard,
                           write_train_config)

MODELS = {
    # layers, heads, channels, vocabulary, context (wpe rows)
    "small": dict(layers=4, heads=4, channels=256, vocab=50304, context=64),
    "124M": dict(layers=12, heads=12, channels=768, vocab=50257, context=1024),
    "1.3B": dict(layers=24, heads=16, channels=2048, vocab=50257, context=1024),
}
VARIANTS = [("replicated", False), ("replicated", True), ("sharded", False), ("sharded", True)]


def parameters(m):
    c = m["channels"]
    return m["vocab"] * c + m["context"] * c + m["layers"] * (12 * c * c + 13 * c) + 2 * c


def block_floats(m):
    c = m["channels"]
    return 12 * c * c + 13 * c


def embedding_floats(m):
    c = m["channels"]
    return m["vocab"] * c + m["context"] * c + 2 * c


def flops_per_step(m, batch, seq):
    """Forward + backward FLOPs of B x T tokens: 6 per token per matrix weight (the blocks' and the LM head's),
    plus causal attention's scores and mixing (6 L T C per token)."""
    c, layers = m["channels"], m["layers"]
    matrix_weights = layers * 12 * c * c + m["vocab"] * c
    return (6 * matrix_weights + 6 * layers * seq * c) * batch * seq


def activation_bytes(m, batch, seq):
    c, layers, heads, v = m["channels"], m["layers"], m["heads"], m["vocab"]
    bt = batch * seq
    per_layer = 16 * bt * c + 2 * batch * heads * seq * seq + 4 * bt
    return 4 * (layers * per_layer + 2 * bt * c + 2 * bt * v)


def allreduce_seconds(link, n_bytes, p):
    """Ring allreduce of n bytes over p workers: (p - 1) alpha + 2 (p - 1) / p n beta."""
    if p <= 1:
        return 0.0
    return (p - 1) * link["alpha_s"] + 2 * (p - 1) / p * n_bytes * link["beta_s_per_byte"]


def overlap_buckets(m, p, batch, seq, scheme):
    """(bytes that can hide behind backward, the share of backward left to hide them in, bytes exposed after
    backward) of the overlapping schedule `scheme`:
      end    the blocks' buckets during backward, the embeddings + ln_f bucket at its end (main at 3acbff2);
      early  wte's bucket (with ln_f) right after the LM head's backward, the blocks' as they finish, then wpe at
             the end plus the token lookup's rows of every worker (p B T rows of C floats) when those are fewer
             than the table's V rows, else wte at the end with wpe (main from c5cc7dd on)."""
    c = m["channels"]
    blocks = 4 * block_floats(m) * m["layers"]
    if scheme == "end":
        return blocks, 1.0, 4 * embedding_floats(m)
    wte, wpe, ln_f = 4 * m["vocab"] * c, 4 * m["context"] * c, 4 * 2 * c
    # The LM head's share of backward's matrix work: what has passed when wte's bucket starts.
    head = m["vocab"] * c / (m["layers"] * 12 * c * c + m["vocab"] * c)
    if p * batch * seq <= m["vocab"]:
        return wte + ln_f + blocks, 1 - head, wpe + 4 * p * batch * seq * c
    return ln_f + blocks, 1 - head, wte + wpe


def predict(m, compute, link, p, batch, seq, sharded, overlap, scheme="end"):
    """A dict of the step's parts (s), tokens/s, efficiency and memory per worker (bytes)."""
    n = parameters(m)
    t_fb = flops_per_step(m, batch, seq) / compute["flops"]
    t_b = compute.get("backward_fraction", 2 / 3) * t_fb
    t_f = t_fb - t_b
    t_opt = compute["optimizer_s_per_param"] * n
    hidden, window, exposed = overlap_buckets(m, p, batch, seq, scheme)
    # Latency per bucket: the hidden bytes go in as many buckets as the schedule has (blocks, and wte when early).
    hidden_buckets = m["layers"] + (1 if scheme == "early" else 0)

    def ar(nbytes, calls=1):
        """Allreduce of nbytes in `calls` buckets: each bucket pays the latency."""
        return allreduce_seconds(link, nbytes, p) + (calls - 1) * max(0, p - 1) * link["alpha_s"]

    if not sharded:
        comm = (max(0.0, ar(hidden, hidden_buckets) - window * t_b) + ar(exposed)) if overlap else ar(4 * n)
        opt = t_opt
    else:
        def half(nbytes, calls=1):
            """Reduce-scatter or allgather: half an allreduce."""
            return ar(nbytes, calls) / 2

        if overlap:
            comm = (max(0.0, half(hidden, hidden_buckets) - window * t_b) + half(exposed)
                    + half(exposed) + max(0.0, half(hidden, hidden_buckets) - t_f))
        else:
            comm = 2 * half(4 * n)
        opt = t_opt / p
    step = t_fb + comm + opt
    tokens = p * batch * seq / step
    single = batch * seq / (t_fb + t_opt)
    optimizer_state = 8 * n / (p if sharded else 1)
    memory = 4 * n + 4 * n + optimizer_state + activation_bytes(m, batch, seq)
    return dict(p=p, compute_s=t_fb, communication_s=comm, optimizer_s=opt, step_s=step, tokens_per_s=tokens,
                efficiency=tokens / (p * single), memory_bytes=memory)


# --- measurement -------------------------------------------------------------------------------------------

def lockstep_train(args, work, name, workers, link):
    """Medians of one `lockstep train` run's train records after the warm-up: small model, B x T per worker,
    random tokens; across 2 shaped namespace hosts when link is a tc rate."""
    m = MODELS["small"]
    batch, seq = args.check_batch, args.check_seq
    shard = os.path.join(work, "train_000000.bin")
    if not os.path.exists(shard):
        write_random_shard(shard, m["vocab"], (args.steps + 2) * 2 * batch * seq + 1, seed=1)
    out = os.path.join(work, name)
    config = os.path.join(work, f"{name}.yaml")
    write_train_config(config, work=work, out=out, model=m, seq=seq, steps=args.steps, micro_batch=batch,
                       global_tokens=workers * batch * seq, workers=workers, threads=1)
    binary = os.path.join(args.bin, "lockstep")
    if link not in ("shm", None):
        try:
            with ShapedHosts(link) as hosts:
                code, stdout, stderr = run_train(binary, config, hosts=hosts, timeout=args.timeout)
        except RuntimeError as error:
            sys.exit(f"scaling_model: {error}")
    else:
        code, stdout, stderr = run_train(binary, config, timeout=args.timeout)
    metrics = os.path.join(out, "metrics.jsonl")
    if code != 0 or not os.path.exists(metrics):
        sys.exit(f"scaling_model: lockstep train --config {config} ({link or 'shm'}) failed ({code}):\n"
                 f"{stdout[-3000:]}\n{stderr[-3000:]}")
    figures = medians(train_records(metrics, args.warmup))
    print(f"  {name}: {figures['tokens_per_second']:.0f} tok/s, step {figures['step_seconds']:.3f} s "
          f"(compute {figures['compute_seconds']:.3f}, communication {figures['communication_seconds']:.3f}, "
          f"optimizer {figures['optimizer_seconds']:.3f})", file=sys.stderr)
    return figures


def calibrate(figures, m, batch, seq):
    """Achieved forward+backward FLOP/s and optimizer seconds per parameter of one run's medians."""
    compute = dict(flops=flops_per_step(m, batch, seq) / figures["compute_seconds"],
                   optimizer_s_per_param=figures["optimizer_seconds"] / parameters(m),
                   source=figures.get("source", "measured"))
    if figures.get("backward_seconds"):  # builds from c5cc7dd on log backward's own time
        compute["backward_fraction"] = figures["backward_seconds"] / figures["compute_seconds"]
    return compute


def model_from_name(text):
    if text in MODELS:
        return MODELS[text]
    try:
        layers, heads, channels, vocab, context = (int(x) for x in text.split(","))
    except ValueError:
        sys.exit(f"scaling_model: --metrics-model is one of {', '.join(MODELS)} or L,H,C,V,T_ctx")
    return dict(layers=layers, heads=heads, channels=channels, vocab=vocab, context=context)


# --- output ------------------------------------------------------------------------------------------------

def gib(n):
    return f"{n / 2 ** 30:.2f}"


def print_tables(rows, models, links, batch, seq):
    for name in models:
        m = MODELS[name]
        for link in links:
            print(f"\n**GPT-2 {name}** ({parameters(m):,} parameters), link **{link}**, B = {batch}, T = {seq} per "
                  f"worker (weak scaling). tok/s and efficiency for replicated / sharded optimizer state, without "
                  f"and with overlap; memory per worker (GiB).\n")
            print("| p | step (s) repl. no ovl. | tok/s repl. | eff. repl. | tok/s repl.+ovl. | eff. repl.+ovl. | "
                  "tok/s shard. | eff. shard. | tok/s shard.+ovl. | eff. shard.+ovl. | mem repl. (GiB) | "
                  "mem shard. (GiB) |")
            print("|" + "---|" * 12)
            for p in sorted({r["p"] for r in rows}):
                got = {(r["optimizer_state"], r["overlap"]): r for r in rows
                       if r["model"] == name and r["link"] == link and r["p"] == p}
                cells = [str(p), f"{got[('replicated', False)]['step_s']:.3f}"]
                for variant in VARIANTS:
                    r = got[variant]
                    cells += [f"{r['tokens_per_s']:.0f}", f"{r['efficiency']:.2f}"]
                cells += [gib(got[("replicated", False)]["memory_bytes"]), gib(got[("sharded", False)]["memory_bytes"])]
                print("| " + " | ".join(cells) + " |")


def plot(rows, models, links, path, fits):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"scaling_model: matplotlib not installed (pip install matplotlib): no plot written to {path}",
              file=sys.stderr)
        return
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models) + 2.5, 4.5), sharey=True)
    if len(models) == 1:
        axes = [axes]
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    styles = {("replicated", False): ("-", "o"), ("replicated", True): ("--", "o"),
              ("sharded", False): ("-", "s"), ("sharded", True): ("--", "s")}
    for ax, name in zip(axes, models):
        for colour, link in zip(colours, links):
            for variant in VARIANTS:
                sel = sorted((r for r in rows if r["model"] == name and r["link"] == link
                              and (r["optimizer_state"], r["overlap"]) == variant), key=lambda r: r["p"])
                line, marker = styles[variant]
                what_if = " (what-if)" if fits[link].get("what_if") else ""
                label = f"{link}{what_if}, {variant[0]}{', overlap' if variant[1] else ''}"
                ax.plot([r["p"] for r in sel], [r["efficiency"] for r in sel], line, marker=marker, markersize=3,
                        color=colour, alpha=0.85 if variant[0] == "replicated" else 0.6, label=label)
        ax.set_xscale("log", base=2)
        ps = sorted({r["p"] for r in rows})
        ax.set_xticks(ps)
        ax.set_xticklabels([str(p) for p in ps])
        ax.set_xlabel("workers (nodes)")
        ax.set_title(f"GPT-2 {name} ({parameters(MODELS[name]) / 1e6:,.0f} M parameters)")
        ax.grid(True, which="both", alpha=0.3)
    top = max(1.1, 1.05 * max(r["efficiency"] for r in rows))
    for ax in axes:
        ax.set_ylim(0, top)
        ax.axhline(1.0, color="grey", linewidth=0.8)
    axes[0].set_ylabel("efficiency: tokens/s / (p x one node's)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle("Lockstep scaling model: weak scaling, measured compute and allreduce fits (provisional)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


def check(args, fits):
    """Runs the configurations this machine can run and prints predicted against measured tokens/s."""
    batch, seq = args.check_batch, args.check_seq
    m = dict(MODELS["small"], context=seq)  # the runs' context_length is their sequence length
    links = [link for link in args.check_links.split(",") if link]
    for link in links:
        if link not in fits:
            sys.exit(f"scaling_model: no fit for link {link} in {args.allreduce}: measure it with "
                     f"scripts/measure_allreduce.py --links {link}")
    measured = {}

    def repeated(work, name, workers, link):
        """Each figure's median over --check-repeats runs."""
        return median_of_runs([lockstep_train(args, work, f"{name}-{i}", workers, link)
                               for i in range(args.check_repeats)])

    with tempfile.TemporaryDirectory() as work:
        measured["1 worker"] = repeated(work, "w1", 1, None)
        for link in links:
            measured[f"2 workers, {link}"] = repeated(work, f"w2-{link}", 2, link)
    single = calibrate(measured["1 worker"], m, batch, seq)
    contended = calibrate(measured["2 workers, shm"], m, batch, seq) if "shm" in links else None
    print(f"\nCheck: small model (4 layers, 4 heads, 256 channels, vocabulary 50304, {parameters(m):,} parameters), "
          f"B = {batch}, T = {seq} per worker, {args.steps} steps, medians after step {args.warmup} "
          f"(and over {args.check_repeats} run(s)). Compute from "
          f"the 1-worker run: {single['flops'] / 1e9:.1f} GFLOP/s forward+backward, optimizer "
          f"{single['optimizer_s_per_param'] * 1e9:.2f} ns/parameter"
          + (f"; from the 2-worker shm run: {contended['flops'] / 1e9:.1f} GFLOP/s, "
             f"{contended['optimizer_s_per_param'] * 1e9:.2f} ns/parameter" if contended else "") + ".\n")
    print("| configuration | measured tok/s | measured compute / comm. / optimizer (s) | predicted comm. (s) "
          "no ovl. / ovl. | predicted tok/s, no overlap | error | predicted tok/s, overlap | error |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []

    def row(label, figures, compute, link, p):
        a = predict(m, compute, link, p, batch, seq, False, False, args.embedding_bucket)
        b = predict(m, compute, link, p, batch, seq, False, True, args.embedding_bucket)
        got = figures["tokens_per_second"]
        err_a, err_b = a["tokens_per_s"] / got - 1, b["tokens_per_s"] / got - 1
        print(f"| {label} | {got:.0f} | {figures['compute_seconds']:.3f} / {figures['communication_seconds']:.3f} / "
              f"{figures['optimizer_seconds']:.3f} | {a['communication_s']:.3f} / {b['communication_s']:.3f} | "
              f"{a['tokens_per_s']:.0f} | {err_a:+.0%} | {b['tokens_per_s']:.0f} | {err_b:+.0%} |")
        rows.append(dict(configuration=label, measured=figures, predicted_no_overlap=a, predicted_overlap=b))

    zero = dict(alpha_s=0.0, beta_s_per_byte=0.0)
    row("1 worker", measured["1 worker"], single, zero, 1)
    for link in links:
        row(f"2 workers, {link}", measured[f"2 workers, {link}"], single, fits[link], 2)
    if contended:
        print("\nThe same with compute and optimizer cost taken from the 2-worker shm run (both workers on this "
              "machine's cores and memory bus), so that the error left is the communication model's:\n")
        print("| configuration | measured tok/s | measured compute / comm. / optimizer (s) | predicted comm. (s) "
              "no ovl. / ovl. | predicted tok/s, no overlap | error | predicted tok/s, overlap | error |")
        print("|---|---|---|---|---|---|---|---|")
        for link in links:
            row(f"2 workers, {link} (contended compute)", measured[f"2 workers, {link}"], contended, fits[link], 2)
    peaks = {label: f["peak_rss_bytes"] for label, f in measured.items() if f.get("peak_rss_bytes")}
    if peaks:
        print("\nMemory per worker: predicted (replicated) against the largest peak_rss_bytes of the run's train "
              "records (the largest worker's; the process also holds code, MPI buffers and the data loader):\n")
        print("| configuration | predicted (MiB) | measured peak RSS (MiB) | error |")
        print("|---|---|---|---|")
        for label, peak in peaks.items():
            workers = 1 if label == "1 worker" else 2
            predicted = predict(m, single, dict(alpha_s=0.0, beta_s_per_byte=0.0), workers, batch, seq, False,
                                False)["memory_bytes"]
            print(f"| {label} | {predicted / 2 ** 20:.0f} | {peak / 2 ** 20:.0f} | {predicted / peak - 1:+.0%} |")
    return dict(compute_single=single, compute_contended=contended, rows=rows, peak_rss_bytes=peaks)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"),
                        help="folder of the release binaries (default .build/release)")
    parser.add_argument("--allreduce", default=os.path.join(ROOT, "runs", "allreduce.json"),
                        help="scripts/measure_allreduce.py's output (default runs/allreduce.json)")
    parser.add_argument("--links", help="links to predict for (default: every link of --allreduce but shm)")
    parser.add_argument("--extra-link", action="append", default=[], metavar="NAME:ALPHA_US:GB_PER_S",
                        help="a what-if link not measured here, e.g. 10GbE:50:1.17 (alpha in µs, 1/beta in GB/s)")
    parser.add_argument("--models", default="124M,1.3B")
    parser.add_argument("--embedding-bucket", choices=("end", "early"), default="end",
                        help="overlap schedule: embeddings' bucket at the end of backward (main at 3acbff2), or "
                             "wte's right after the LM head with the lookup rows exchanged after backward (c5cc7dd)")
    parser.add_argument("--batch", type=int, default=4, help="micro-batch per worker (sequences)")
    parser.add_argument("--seq", type=int, default=64, help="sequence length")
    parser.add_argument("--max-workers", type=int, default=256)
    parser.add_argument("--metrics", help="a metrics.jsonl whose train records give the compute (instead of a run)")
    parser.add_argument("--metrics-model", default="small",
                        help="the model of --metrics: small, 124M, 1.3B or L,H,C,V,T_ctx; its run's B and T are "
                             "--metrics-batch and --metrics-seq")
    parser.add_argument("--metrics-batch", type=int, default=4)
    parser.add_argument("--metrics-seq", type=int, default=64)
    parser.add_argument("--flops", type=float, help="forward+backward FLOP/s per worker (with --optimizer-ns-per-param)")
    parser.add_argument("--optimizer-ns-per-param", type=float)
    parser.add_argument("--check", action="store_true", help="compare predictions with real runs on this machine")
    parser.add_argument("--check-links", default="shm,10gbit,1gbit")
    parser.add_argument("--check-repeats", type=int, default=1, help="runs per checked configuration (medians)")
    parser.add_argument("--check-batch", type=int, default=4)
    parser.add_argument("--check-seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps of each measured run")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the medians")
    parser.add_argument("--timeout", type=int, default=900, help="seconds for one training run")
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "img", "scaling-model.png"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--json", help="write predictions (and the check) here")
    args = parser.parse_args()

    try:
        with open(args.allreduce) as f:
            fits = json.load(f)["links"]
    except OSError as error:
        sys.exit(f"scaling_model: {error}; run scripts/measure_allreduce.py first (or pass --allreduce)")
    for text in args.extra_link:
        try:
            name, alpha_us, rate = text.split(":")
            fits[name] = dict(alpha_s=float(alpha_us) * 1e-6, beta_s_per_byte=1 / (float(rate) * 1e9),
                              gb_per_s=float(rate), what_if=True)
        except ValueError:
            sys.exit(f"scaling_model: --extra-link {text}: expected NAME:ALPHA_US:GB_PER_S")
    out = dict(allreduce=fits)
    if args.check:
        if not os.access(os.path.join(args.bin, "lockstep"), os.X_OK):
            sys.exit(f"scaling_model: {args.bin}/lockstep not found; run `swift build -c release` or pass --bin")
        out["check"] = check(args, fits)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        return

    if args.flops and args.optimizer_ns_per_param is not None:
        compute = dict(flops=args.flops, optimizer_s_per_param=args.optimizer_ns_per_param * 1e-9, source="given")
    elif args.metrics:
        figures = medians(train_records(args.metrics, args.warmup))
        compute = calibrate(figures, model_from_name(args.metrics_model), args.metrics_batch, args.metrics_seq)
        compute["source"] = args.metrics
    else:
        if not os.access(os.path.join(args.bin, "lockstep"), os.X_OK):
            sys.exit(f"scaling_model: {args.bin}/lockstep not found; run `swift build -c release`, pass --bin, "
                     "or give --metrics / --flops")
        args.check_batch, args.check_seq = args.metrics_batch, args.metrics_seq
        print("measuring compute: 1-worker lockstep train of the small model", file=sys.stderr)
        with tempfile.TemporaryDirectory() as work:
            figures = lockstep_train(args, work, "w1", 1, None)
        compute = calibrate(figures, MODELS["small"], args.metrics_batch, args.metrics_seq)
        compute["source"] = "1-worker lockstep train, small model"
    out["compute"] = compute
    links = args.links.split(",") if args.links else [link for link in fits if link != "shm"]
    for link in links:
        if link not in fits:
            sys.exit(f"scaling_model: no link {link} in {args.allreduce} (has {', '.join(fits)})")
    models = args.models.split(",")
    for name in models:
        if name not in MODELS:
            sys.exit(f"scaling_model: unknown model {name}; one of {', '.join(MODELS)}")
    ps = []
    p = 2
    while p <= args.max_workers:
        ps.append(p)
        p *= 2
    rows = []
    for name in models:
        for link in links:
            for p in ps:
                for state, overlap in VARIANTS:
                    r = predict(MODELS[name], compute, fits[link], p, args.batch, args.seq, state == "sharded", overlap,
                                args.embedding_bucket)
                    rows.append(dict(model=name, link=link, optimizer_state=state, overlap=overlap, **r))
    print(f"Compute ({compute['source']}): {compute['flops'] / 1e9:.1f} GFLOP/s forward+backward per worker "
          f"(backward {compute.get('backward_fraction', 2 / 3):.0%} of it), optimizer "
          f"{compute['optimizer_s_per_param'] * 1e9:.2f} ns per parameter. Overlap schedule: "
          + ("the embeddings' bucket at the end of backward (--embedding-bucket end)." if args.embedding_bucket == "end"
             else "wte's bucket right after the LM head, lookup rows after backward (--embedding-bucket early)."))
    print("Allreduce fits: " + "; ".join(
        f"{link} alpha {fits[link]['alpha_s'] * 1e6:.0f} µs, 1/beta {fits[link]['gb_per_s']:.3f} GB/s"
        + (" (what-if, not measured)" if fits[link].get("what_if") else "") for link in links))
    for name in models:
        m = MODELS[name]
        t_fb = flops_per_step(m, args.batch, args.seq) / compute["flops"]
        print(f"GPT-2 {name}: one worker's step {t_fb:.2f} s forward+backward + "
              f"{compute['optimizer_s_per_param'] * parameters(m):.2f} s optimizer; gradient {4 * parameters(m) / 1e6:.0f} MB")
    print_tables(rows, models, links, args.batch, args.seq)
    out["predictions"] = rows
    if not args.no_plot:
        plot(rows, models, links, args.plot, fits)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
