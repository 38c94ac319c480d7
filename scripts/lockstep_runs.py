"""Helpers shared by scripts/benchmark.py and scripts/scaling_model.py: random token shards, `lockstep train`
configs and runs, on this host or across the network-namespace hosts of scripts/shaped_hosts.sh, and the
figures of a run's metrics.jsonl.

A run that fails, times out or is interrupted leaves nothing behind: `run_train` kills the command and every
process descended from it (by pid) when it does not return normally, and `ShapedHosts`
(a context manager) calls `shaped_hosts.sh down` on the way out, whatever happened inside.
"""

import json
import os
import signal
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPED = os.path.join(ROOT, "scripts", "shaped_hosts.sh")


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


def write_train_config(path, *, work, out, model, seq, steps, micro_batch, global_tokens, workers, threads,
                       distributed=None):
    """A `lockstep train` config: model (dict of layers, heads, channels, vocab) with context_length = seq,
    the shards work/train_*.bin unshuffled, a constant learning rate, metrics every step into `out`, no
    checkpoints before the end, no replica checks; `distributed` adds keys to that section (gradient_sync,
    shard_optimizer...)."""
    extra = "".join(f", {key}: {json.dumps(value)}" for key, value in (distributed or {}).items())
    with open(path, "w") as f:
        f.write(f"""model: {{context_length: {seq}, layers: {model['layers']}, heads: {model['heads']},
  channels: {model['channels']}, vocab_size: {model['vocab']}}}
data: {{train: "{work}/train_*.bin", shuffle: false}}
training: {{max_steps: {steps}, sequence_length: {seq}, micro_batch_size: {micro_batch},
  global_batch_tokens: {global_tokens}}}
schedule: {{kind: constant, learning_rate: 1.0e-4}}
output: {{directory: {out}, log_every: 1, tensorboard: false}}
checkpoint: {{every: 100000}}
distributed: {{workers: {workers}, threads_per_worker: {threads}, check_replicas_every: 0{extra}}}
""")


def train_records(path, warmup):
    """The train records of a metrics.jsonl after step `warmup`."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r.get("kind") == "train" and r["step"] > warmup]


def medians(records):
    """Medians of the step figures a build logs (tokens_per_second, step_seconds, compute_seconds,
    backward_seconds, communication_seconds, optimizer_seconds), and peak_rss_bytes as the largest of the
    records (each record's is already the largest worker's)."""
    keys = ("tokens_per_second", "step_seconds", "compute_seconds", "backward_seconds", "communication_seconds",
            "optimizer_seconds")
    figures = {k: statistics.median(r[k] for r in records) for k in keys
               if records and all(r.get(k) is not None for r in records)}
    peaks = [r["peak_rss_bytes"] for r in records if r.get("peak_rss_bytes")]
    if peaks:
        figures["peak_rss_bytes"] = max(peaks)
    return figures


def median_of_runs(runs):
    """Each figure's median over several runs' `medians` (the figures every run has)."""
    keys = set(runs[0]).intersection(*runs[1:])
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def shaped_dir():
    """The state folder of scripts/shaped_hosts.sh (its SHAPED_DIR / SHAPED_PREFIX rule)."""
    return os.environ.get("SHAPED_DIR") or f"/tmp/{os.environ.get('SHAPED_PREFIX') or 'lsh'}-hosts"


def shaped_prefix():
    return os.environ.get("SHAPED_PREFIX") or "lsh"


class ShapedHosts:
    """`with ShapedHosts("1gbit") as hosts:` N namespace hosts whose links tbf shapes at the rate (or "none"),
    removed (`shaped_hosts.sh down`: what runs in them killed by pid, namespaces and state folder deleted) when
    the block ends, however it ends. Refuses to start when the prefix's hosts already exist (another run's:
    they are left alone; SHAPED_PREFIX picks another prefix)."""

    def __init__(self, rate, count=2):
        self.rate, self.count = rate, count

    @property
    def hostfile(self):
        return os.path.join(shaped_dir(), "hostfile")

    def __enter__(self):
        if os.geteuid() != 0:
            raise RuntimeError("shaped hosts need root (ip netns, tc)")
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if f"{shaped_prefix()}-s" in namespaces:
            raise RuntimeError(f"namespace {shaped_prefix()}-s exists (another run's hosts?): remove them with "
                               f"SHAPED_PREFIX={shaped_prefix()} scripts/shaped_hosts.sh down, or set SHAPED_PREFIX")
        try:
            up = subprocess.run([SHAPED, "up", str(self.count), self.rate], capture_output=True, text=True)
            if up.returncode != 0:
                raise RuntimeError(f"scripts/shaped_hosts.sh up {self.count} {self.rate} failed:\n{up.stderr}")
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def down(self):
        subprocess.run([SHAPED, "down"], capture_output=True)

    def wrap(self, command):
        """The command run in host a, with Open MPI pointed at the hosts."""
        return [SHAPED, "run", *command]


def run_command(command, env=None, timeout=None):
    """(return code, standard output, standard error) of a command; on a timeout (return code 124) or any
    exception (Ctrl-C included) the command and every process descended from it are killed first, by pid
    (mpirun and the ranks start sessions of their own, so the command's process group is not enough)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        return 124, out, err + f"\n(killed after {timeout} s)"
    except BaseException:
        kill_tree(proc.pid)
        proc.communicate()
        raise


def descendants(pid):
    """The pids of the processes descended from pid (from /proc's parent pids)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    # pid (comm) state ppid ...: comm may hold spaces and parentheses; the last ')' ends it.
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_tree(pid):
    """SIGKILL to pid and its descendants: stopped first (SIGSTOP) so that none forks or is reparented while the
    tree is walked; a second walk catches what started meanwhile."""
    for _ in range(2):
        tree = [pid] + descendants(pid)
        for p in tree:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        for p in tree:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_train(binary, config, threads=1, hosts=None, timeout=None):
    """(return code, standard output, standard error) of `lockstep train --config config`, on this host or,
    with hosts (a ShapedHosts), across them (coordinator and worker 0 on host a, worker k on host k)."""
    command = [binary, "train", "--config", config]
    if hosts is not None:
        command = hosts.wrap(command + ["--hostfile", hosts.hostfile])
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return run_command(command, env=env, timeout=timeout)
