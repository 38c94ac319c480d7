#!/usr/bin/env bash
# Fuzzes Lockstep's readers of user input with libFuzzer (not part of the unit suite):
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# builds the package in Fuzz/ with -sanitize=fuzzer,address (the main package's modules instrumented too) and
# runs each target for SECONDS (default 60) from its seed corpus in Fuzz/Seeds/TARGET (real small files).
# The growing corpus is kept in Fuzz/.build/corpus/TARGET; a crash is written to Fuzz/.build/artifacts/ and makes
# the script exit non-zero. Targets: FuzzSafeTensors FuzzTokenShard FuzzTokenizer FuzzLabeledFile FuzzConfig.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(FuzzSafeTensors FuzzTokenShard FuzzTokenizer FuzzLabeledFile FuzzConfig)
scripts/install-system-packages.sh
# One product per call: given several --product options, swift build builds only the last.
for target in "${targets[@]}"; do
    (cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address --product "$target")
done
bin="$(cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address --show-bin-path)"
mkdir -p Fuzz/.build/artifacts Fuzz/.build/logs
failed=0
printf '%-16s %8s %12s %10s %8s %s\n' target seconds executions exec/s corpus result
for target in "${targets[@]}"; do
    corpus="Fuzz/.build/corpus/$target"
    mkdir -p "$corpus"
    log="Fuzz/.build/logs/$target.log"
    status=0
    # ASan: no leak checks (readers that throw keep nothing; libFuzzer's own leak detection is noisy in Swift).
    ASAN_OPTIONS=detect_leaks=0 "$bin/$target" "$corpus" "Fuzz/Seeds/$target" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="Fuzz/.build/artifacts/$target-" >"$log" 2>&1 || status=$?
    executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    files=$(ls "$corpus" | wc -l)
    if [ "$status" -ne 0 ]; then
        failed=1
        result="FAILED (exit $status): $(grep -m1 -E 'ERROR|Fatal error|SUMMARY' "$log" || true); see $log"
    else
        result=ok
    fi
    printf '%-16s %8s %12s %10s %8s %s\n' "$target" "$seconds" "$executions" "$rate" "$files" "$result"
done
exit $failed
