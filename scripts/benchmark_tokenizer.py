#!/usr/bin/env python3
"""Compare Lockstep's byte-level BPE with Hugging Face `tokenizers`: training time and encoding throughput.

Both sides get the same documents (the corpus's lines, newlines kept), the same pre-tokenizer (GPT-2's
byte-level pattern, no prefix space), the same vocabulary size and special token, and the same thread count
(Hugging Face through RAYON_NUM_THREADS, Lockstep through --threads). Each figure is the median of
--repeats runs. Encoding starts from a freshly loaded tokenizer each run (empty word caches on both sides).

    swift build -c release --product lockstep
    python3 scripts/benchmark_tokenizer.py                       # tinyshakespeare, vocab 8192
    python3 scripts/benchmark_tokenizer.py --corpus ../shared/data/gutenberg

A directory corpus is the concatenation of its *.txt files (invalid UTF-8 replaced by U+FFFD).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hugging_face(path, vocab_size, repeats):
    """Runs in a child process so that RAYON_NUM_THREADS takes effect; prints one JSON object."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    text = open(path, encoding="utf-8").read()
    lines = text.splitlines(keepends=True)
    train_seconds, encode_seconds, fast_seconds = [], [], []
    saved = tempfile.mkdtemp(prefix="hf-bench-")
    for _ in range(repeats):
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        start = time.perf_counter()
        tokenizer.train([path], trainer)  # read and split into lines by Rust
        train_seconds.append(time.perf_counter() - start)
    tokenizer.save(os.path.join(saved, "tokenizer.json"))
    tokens = 0
    for _ in range(repeats):
        fresh = Tokenizer.from_file(os.path.join(saved, "tokenizer.json"))
        start = time.perf_counter()
        encodings = fresh.encode_batch(lines)
        encode_seconds.append(time.perf_counter() - start)
        tokens = sum(len(e.ids) for e in encodings)
        if hasattr(fresh, "encode_batch_fast"):
            fresh = Tokenizer.from_file(os.path.join(saved, "tokenizer.json"))
            start = time.perf_counter()
            fresh.encode_batch_fast(lines)
            fast_seconds.append(time.perf_counter() - start)
    print(json.dumps({"bytes": len(text.encode("utf-8")), "documents": len(lines), "tokens": tokens,
                      "vocab_size": tokenizer.get_vocab_size(), "train_seconds": train_seconds,
                      "encode_seconds": encode_seconds, "encode_fast_seconds": fast_seconds}))


def run_json(command, env=None):
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def corpus_file(path):
    """A UTF-8 file holding the corpus: the file itself when valid, else a cleaned temporary copy."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".txt"))
        parts = [open(os.path.join(path, n), "rb").read() for n in names]
    else:
        parts = [open(path, "rb").read()]
    data = b"".join(parts)
    try:
        data.decode("utf-8")
        if not os.path.isdir(path):
            return path
    except UnicodeDecodeError:
        pass
    text = "".join(p.decode("utf-8", "replace") for p in parts)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False)
    handle.write(text)
    handle.close()
    return handle.name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"))
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="comma-separated thread counts")
    parser.add_argument("--lockstep", default=os.path.join(ROOT, ".build", "release", "lockstep"))
    parser.add_argument("--hf-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.hf_child:
        hugging_face(args.corpus, args.vocab_size, args.repeats)
        return
    if not os.access(args.lockstep, os.X_OK):
        sys.exit(f"{args.lockstep} not found: run `swift build -c release --product lockstep` first")
    path = corpus_file(args.corpus)
    import tokenizers
    print(f"corpus {args.corpus} ({os.path.getsize(path) / 1e6:.2f} MB), vocab {args.vocab_size}, "
          f"median of {args.repeats}, tokenizers {tokenizers.__version__}, {os.cpu_count()} cores")
    print()
    print("| threads | train HF (s) | train Lockstep (s) | encode HF encode_batch (MB/s) "
          "| encode HF encode_batch_fast (MB/s) | encode Lockstep (MB/s) | tokens HF | tokens Lockstep |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
        hf = run_json([sys.executable, os.path.abspath(__file__), "--hf-child", "--corpus", path,
                       "--vocab-size", str(args.vocab_size), "--repeats", str(args.repeats)], env)
        ours = run_json([args.lockstep, "tokenizer-benchmark", "--input", path, "--vocab-size", str(args.vocab_size),
                         "--threads", str(threads), "--repeats", str(args.repeats)])
        megabytes = ours["bytes"] / 1e6
        fast = f"{megabytes / statistics.median(hf['encode_fast_seconds']):.1f}" if hf["encode_fast_seconds"] else "-"
        print(f"| {threads} | {statistics.median(hf['train_seconds']):.2f} | {statistics.median(ours['train_seconds']):.2f} "
              f"| {megabytes / statistics.median(hf['encode_seconds']):.1f} | {fast} "
              f"| {megabytes / statistics.median(ours['encode_seconds']):.1f} | {hf['tokens']} | {ours['tokens']} |")
    if path != args.corpus:
        os.unlink(path)


if __name__ == "__main__":
    main()
