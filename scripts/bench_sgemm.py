#!/usr/bin/env python3
"""Measure the single-precision GEMM (sgemm) peak in GFLOP/s for 1 and 2 threads: a cross-check (issue 8).

The reference peak for Lockstep's MFU is Lockstep's own measurement (Swift calling the system OpenBLAS,
taken in the same harness run). This script is a cross-check from Python with two sources:
  numpy   numpy's matmul on float32. numpy's wheel bundles its own OpenBLAS (scipy-openblas, e.g. 0.3.31
          built with DYNAMIC_ARCH), which is NOT the system library Lockstep links (Debian 12's
          libopenblas0-pthread, 0.3.21); the JSON names the library that was actually loaded and its core.
  system  cblas_sgemm of the system OpenBLAS (libopenblas.so.0), called through ctypes on numpy buffers:
          the same library Lockstep uses, with the kernels Lockstep chooses (OPENBLAS_CORETYPE where OpenBLAS
          does not know the CPU), so its figure should match Lockstep's probe closely.
Each (source, thread count) runs in a fresh subprocess with OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) set
before numpy is imported, which is the robust way to pin OpenBLAS's thread pool (threadpoolctl need not be
installed). For each square size n, C = A B (row-major, alpha 1, beta 0) is timed --repeats times, each
repeat running enough calls to last about --min-seconds; GFLOP/s = 2 n^3 calls / seconds / 1e9. The figure
for a size is the median over repeats, and gflops_median is the best size's median (the peak).

Commands:
  python3 scripts/bench_sgemm.py                                  # numpy and system, threads 1 and 2, text
  python3 scripts/bench_sgemm.py --json                           # one JSON object per (source, threads)
  python3 scripts/bench_sgemm.py --source system --threads 1 2 --sizes 1024 2048 --repeats 5 --json
With --json each line is one object:
  {"source": "system", "threads": 1, "gflops_median": 98.7, "gflops_by_size": {"1024": ..., "2048": ...},
   "library": "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so", "openblas_core": "Zen",
   "openblas_threads": 1, "same_as_system": true, "repeats": 5}
Needs numpy: pip install numpy. The system source needs libopenblas0 (apt-get install libopenblas-dev).
"""

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

SYSTEM_OPENBLAS = "libopenblas.so.0"


def loaded_openblas_path():
    """The path of the first OpenBLAS library mapped into this process, or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if "openblas" in os.path.basename(path).lower():
                    return path
    except OSError:
        pass
    return None


def openblas_info(library):
    """(core name, thread count) from an OpenBLAS handle, trying the plain and scipy-prefixed symbol names."""
    core, threads = None, None
    for prefix in ("openblas_", "scipy_openblas_"):
        for suffix in ("", "64_"):
            try:
                function = getattr(library, f"{prefix}get_corename{suffix}")
                function.restype = ctypes.c_char_p
                core = function().decode()
                function = getattr(library, f"{prefix}get_num_threads{suffix}")
                function.restype = ctypes.c_int
                threads = function()
                return core, threads
            except AttributeError:
                continue
    return core, threads


def loaded_openblas_path_for(name):
    """Resolved path of a library already loaded by soname, read from /proc/self/maps."""
    stem = name.split(".so")[0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and os.path.basename(fields[-1]).startswith(stem):
                return os.path.realpath(fields[-1])
    return None


def time_calls(call, flops_per_call, repeats, min_seconds):
    """Median GFLOP/s over repeats; each repeat runs `count` calls, chosen so a repeat lasts ~min_seconds."""
    call()
    start = time.perf_counter()
    call()
    single = max(time.perf_counter() - start, 1e-6)
    count = max(1, int(min_seconds / single + 0.999))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            call()
        seconds = time.perf_counter() - start
        rates.append(flops_per_call * count / seconds / 1e9)
    return statistics.median(rates)


def core_type_lockstep_sets(core):
    """The OPENBLAS_CORETYPE that `lockstep` sets for itself on this CPU when OpenBLAS took it for a Prescott
    (the rule of Sources/LockstepKernels/OpenBLASEnvironment.swift), or None: the peak Lockstep's MFU is taken
    against must come from the kernels Lockstep runs."""
    if os.environ.get("OPENBLAS_CORETYPE") or (core or "").lower() != "prescott":
        return None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = set(next((line.split(":", 1)[1] for line in cpuinfo if line.startswith("flags")), "").split())
    except OSError:
        return None
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    return "Haswell" if {"avx2", "fma"} <= flags else None


def child(source, sizes, repeats, min_seconds):
    """Runs in a subprocess whose OPENBLAS_NUM_THREADS is already set; prints one JSON object."""
    try:
        import numpy as np
    except ImportError:
        sys.exit("bench_sgemm.py: numpy is not installed; install it with: pip install numpy")

    system_path = None
    if source == "system":
        try:
            blas = ctypes.CDLL(SYSTEM_OPENBLAS)
        except OSError as error:
            sys.exit(f"bench_sgemm.py: cannot load the system OpenBLAS ({SYSTEM_OPENBLAS}): {error}; "
                     "install it with: apt-get install libopenblas-dev")
        core_type = core_type_lockstep_sets(openblas_info(blas)[0])
        if core_type:
            os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, OPENBLAS_CORETYPE=core_type))
        sgemm = blas.cblas_sgemm
        pointer = ctypes.c_void_p
        sgemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_float, pointer, ctypes.c_int, pointer, ctypes.c_int, ctypes.c_float, pointer,
                          ctypes.c_int]
        sgemm.restype = None
        library_path = loaded_openblas_path_for(SYSTEM_OPENBLAS)
        system_path = library_path
    else:
        blas = None
        warm = np.ones((64, 64), dtype=np.float32)
        warm @ warm
        library_path = loaded_openblas_path()
        try:
            blas = ctypes.CDLL(library_path) if library_path else None
        except OSError:
            blas = None
        try:
            probe = ctypes.CDLL(SYSTEM_OPENBLAS)
            del probe
            system_path = loaded_openblas_path_for(SYSTEM_OPENBLAS)
        except OSError:
            system_path = None
    core, threads = openblas_info(blas) if blas is not None else (None, None)

    rng = np.random.default_rng(1234)
    by_size = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        if source == "system":
            pa, pb, pc = (x.ctypes.data_as(ctypes.c_void_p) for x in (a, b, c))

            def call(n=n, pa=pa, pb=pb, pc=pc):
                # 101 = CblasRowMajor, 111 = CblasNoTrans.
                sgemm(101, 111, 111, n, n, n, 1.0, pa, n, pb, n, 0.0, pc, n)
        else:
            def call(a=a, b=b, c=c):
                np.matmul(a, b, out=c)
        by_size[str(n)] = time_calls(call, 2.0 * n * n * n, repeats, min_seconds)
        if source == "system":
            expected = a[:4] @ b
            if not np.allclose(c[:4], expected, rtol=1e-3, atol=1e-2):
                sys.exit(f"bench_sgemm.py: system cblas_sgemm result for n={n} disagrees with numpy")

    resolved = os.path.realpath(library_path) if library_path else None
    print(json.dumps({
        "source": source,
        "threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
        "gflops_median": max(by_size.values()),
        "gflops_by_size": by_size,
        "library": resolved,
        "openblas_core": core,
        "openblas_threads": threads,
        "same_as_system": (resolved is not None and resolved == system_path),
        "repeats": repeats,
        "numpy_version": np.__version__,
        # Other work on these 2 cores distorts timings; a 1-minute load average well above threads says so.
        "load_average_1min": os.getloadavg()[0],
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", choices=["numpy", "system", "both"], default="both",
                        help="numpy's bundled OpenBLAS, the system OpenBLAS via ctypes, or both (default)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="least duration of one repeat")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(n < 1 for n in args.threads + args.sizes) or args.repeats < 1 or args.min_seconds <= 0:
        parser.error("--threads, --sizes and --repeats must be at least 1; --min-seconds positive")

    if args.child:
        child(args.source, args.sizes, args.repeats, args.min_seconds)
        return

    sources = ["system", "numpy"] if args.source == "both" else [args.source]
    for source in sources:
        for threads in args.threads:
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
            command = [sys.executable, os.path.abspath(__file__), "--child", "--source", source,
                       "--sizes", *map(str, args.sizes), "--repeats", str(args.repeats),
                       "--min-seconds", str(args.min_seconds)]
            completed = subprocess.run(command, env=env, capture_output=True, text=True)
            if completed.returncode != 0:
                message = completed.stderr.strip() or f"exit status {completed.returncode}"
                print(f"bench_sgemm.py: {source} with {threads} threads failed: {message}", file=sys.stderr)
                if source == "system" and args.source == "both":
                    continue
                sys.exit(1)
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(result), flush=True)
                continue
            sizes = ", ".join(f"n={n}: {g:.1f}" for n, g in result["gflops_by_size"].items())
            print(f"{source:6s} threads={threads}: peak {result['gflops_median']:.1f} GFLOP/s ({sizes}); "
                  f"{result['library']} core={result['openblas_core']} "
                  f"openblas_threads={result['openblas_threads']} same_as_system={result['same_as_system']} "
                  f"load={result['load_average_1min']:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
