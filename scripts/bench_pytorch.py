#!/usr/bin/env python3
"""Measure PyTorch's CPU training throughput on a GPT-2 model, as the reference for Lockstep (issue 8).

The model is written here in plain PyTorch with the same architecture and training step as Lockstep:
learned token and position embeddings; pre-LayerNorm blocks (eps 1e-5) with causal self-attention (biases,
`scaled_dot_product_attention(is_causal=True)`) and a 4x MLP with tanh-approximated GELU; final LayerNorm;
LM head tied to the token embedding; no dropout; weights drawn from N(0, 0.02), biases zero, LayerNorm
weight one. One step = zero grads, forward, mean cross-entropy, backward, global-norm clipping to 1.0 and
AdamW (lr 1e-4, betas 0.9/0.95, weight decay 0.1 on every parameter, PyTorch's default foreach path,
fused=False), all in fp32. Inputs and targets are uniformly random tokens from a seeded generator, made
before timing so only the training step is timed.

Timing: --warmup-steps untimed steps once, then --repeats runs of --steps timed steps each. A run's
tokens/s is steps x batch x seq over the summed step times; the figure reported is the median over runs.
MFU = 6 x N x tokens/s / (--peak-gflops x 1e9), where N counts the transformer blocks and the final
LayerNorm plus the LM head's V x C once (the position embedding is left out); attention's own T^2 FLOPs are
not counted. Without --peak-gflops, MFU is null. Take the peak from scripts/bench_sgemm.py or, better,
from Lockstep's own sgemm probe in the same harness run.

Commands (issue 8's two configurations, 1 and 2 threads; each takes well under two minutes here):
  python3 scripts/bench_pytorch.py --layers 4 --heads 4 --channels 256 --vocab 50304 --batch 4 --seq 64 --threads 1 --json
  python3 scripts/bench_pytorch.py --layers 4 --heads 4 --channels 256 --vocab 50304 --batch 4 --seq 64 --threads 2 --json
  python3 scripts/bench_pytorch.py --layers 12 --heads 12 --channels 768 --vocab 50304 --context 1024 --batch 4 --seq 64 --threads 1 --warmup-steps 2 --steps 4 --json
  python3 scripts/bench_pytorch.py --layers 12 --heads 12 --channels 768 --vocab 50304 --context 1024 --batch 4 --seq 64 --threads 2 --warmup-steps 2 --steps 4 --json
Add --peak-gflops G (the sgemm peak for the same thread count) to get MFU.

With --json prints one JSON object on stdout:
  {"framework": "pytorch", "config": {...}, "threads": n, "tokens_per_second_median": x,
   "tokens_per_second_all": [...], "parameters_non_embedding_plus_head": N, "mfu": m or null, ...}
Needs PyTorch: pip install torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("bench_pytorch.py: PyTorch is not installed; "
             "install it with: pip install torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu")


class Block(nn.Module):
    """Pre-LayerNorm transformer block; input and output are (B, T, C)."""

    def __init__(self, channels, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(channels, eps=1e-5)
        self.c_attn = nn.Linear(channels, 3 * channels)
        self.c_proj = nn.Linear(channels, channels)
        self.ln_2 = nn.LayerNorm(channels, eps=1e-5)
        self.c_fc = nn.Linear(channels, 4 * channels)
        self.mlp_proj = nn.Linear(4 * channels, channels)

    def forward(self, x):
        b, t, c = x.shape
        # q, k, v: (B, heads, T, C / heads), the layout scaled_dot_product_attention wants.
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    """GPT-2: tokens (B, T) -> logits (B, T, V), LM head tied to the token embedding."""

    def __init__(self, layers, heads, channels, vocab, context):
        super().__init__()
        self.wte = nn.Embedding(vocab, channels)
        self.wpe = nn.Embedding(context, channels)
        self.blocks = nn.ModuleList(Block(channels, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(channels, eps=1e-5)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)

    def non_embedding_plus_head_parameters(self):
        """Blocks + final LayerNorm + the LM head (V x C, counted once though it is shared with wte)."""
        blocks = sum(p.numel() for p in self.blocks.parameters())
        return blocks + sum(p.numel() for p in self.ln_f.parameters()) + self.wte.weight.numel()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--context", type=int, default=None,
                        help="rows of the position embedding (default: --seq)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (inter-op is 1)")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="sgemm peak in GFLOP/s for the same thread count, for MFU")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    if args.context is None:
        args.context = args.seq
    problems = []
    for name in ("layers", "heads", "channels", "vocab", "context", "batch", "seq", "threads", "steps",
                 "repeats"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup_steps < 0:
        problems.append("--warmup-steps must be at least 0")
    if args.channels % args.heads != 0:
        problems.append(f"--channels {args.channels} must be divisible by --heads {args.heads}")
    if args.seq > args.context:
        problems.append(f"--seq {args.seq} must not exceed --context {args.context}")
    if args.peak_gflops is not None and args.peak_gflops <= 0:
        problems.append("--peak-gflops must be positive")
    if problems:
        parser.error("; ".join(problems))
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)

    model = GPT(args.layers, args.heads, args.channels, args.vocab, args.context)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=False)

    total_steps = args.warmup_steps + args.repeats * args.steps
    generator = torch.Generator().manual_seed(args.seed + 1)
    # (steps, B, T + 1): inputs are the first T tokens, targets the last T, as in next-token training.
    data = torch.randint(0, args.vocab, (total_steps, args.batch, args.seq + 1), generator=generator)

    def train_step(index):
        tokens = data[index, :, :-1]
        targets = data[index, :, 1:]
        optimizer.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = F.cross_entropy(logits.view(-1, args.vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    first_loss = None
    for index in range(args.warmup_steps):
        loss = train_step(index)
        first_loss = loss if first_loss is None else first_loss

    tokens_per_step = args.batch * args.seq
    throughputs = []
    step_seconds = []
    index = args.warmup_steps
    last_loss = None
    for _ in range(args.repeats):
        elapsed = 0.0
        for _ in range(args.steps):
            start = time.perf_counter()
            last_loss = train_step(index)
            first_loss = last_loss if first_loss is None else first_loss
            seconds = time.perf_counter() - start
            elapsed += seconds
            step_seconds.append(seconds)
            index += 1
        throughputs.append(args.steps * tokens_per_step / elapsed)
    if not (math.isfinite(first_loss) and math.isfinite(last_loss)):
        sys.exit(f"bench_pytorch.py: non-finite loss (first {first_loss}, last {last_loss})")

    median = statistics.median(throughputs)
    parameters = model.non_embedding_plus_head_parameters()
    mfu = None
    if args.peak_gflops is not None:
        mfu = 6.0 * parameters * median / (args.peak_gflops * 1e9)
    config = {"layers": args.layers, "heads": args.heads, "channels": args.channels, "vocab": args.vocab,
              "context": args.context, "batch": args.batch, "seq": args.seq}
    result = {
        "framework": "pytorch",
        "config": config,
        "threads": args.threads,
        "tokens_per_second_median": median,
        "tokens_per_second_all": throughputs,
        "parameters_non_embedding_plus_head": parameters,
        "mfu": mfu,
        "peak_gflops": args.peak_gflops,
        "step_ms_median": 1000.0 * statistics.median(step_seconds),
        "warmup_steps": args.warmup_steps,
        "steps": args.steps,
        "repeats": args.repeats,
        "loss_first": first_loss,
        "loss_last": last_loss,
        "torch_version": torch.__version__,
        # Other work on these 2 cores distorts timings; a 1-minute load average well above --threads says so.
        "load_average_1min": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"pytorch {torch.__version__}: L={args.layers} H={args.heads} C={args.channels} V={args.vocab} "
          f"B={args.batch} T={args.seq} threads={args.threads}")
    print(f"  tokens/s median {median:.1f} over {args.repeats} x {args.steps} steps "
          f"(all: {', '.join(f'{x:.1f}' for x in throughputs)}); step median {result['step_ms_median']:.1f} ms")
    print(f"  non-embedding + head parameters: {parameters:,}")
    if mfu is not None:
        print(f"  MFU {100 * mfu:.1f}% of {args.peak_gflops:.1f} GFLOP/s")
    print(f"  loss {first_loss:.4f} -> {last_loss:.4f}; load average (1 min) {result['load_average_1min']:.2f}")


if __name__ == "__main__":
    main()
