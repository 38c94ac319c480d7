#!/usr/bin/env bash
# The test command: installs what the build needs, builds in release mode (the numerical tests and the
# mpirun training runs are far too slow unoptimised) and runs the whole suite, including real mpirun jobs.
#
#   scripts/test.sh                    # tests needing what is absent here are reported as skipped, with why
#   scripts/test.sh --with-interop     # first makes .venv-test (torch, transformers, tensorboard...) so the
#                                      # interoperability tests run too (a few minutes the first time)
#   LOCKSTEP_REQUIRE_INTEROP=1 scripts/test.sh   # (CI) a test whose requirements are missing fails instead
#
# Other arguments go to `swift test` (e.g. `scripts/test.sh --filter Tokenizer`).
set -euo pipefail
cd "$(dirname "$0")/.."
arguments=()
with_interop=0
for argument in "$@"; do
    if [ "$argument" = "--with-interop" ]; then with_interop=1; else arguments+=("$argument"); fi
done
scripts/install-system-packages.sh
if [ "$with_interop" = 1 ]; then scripts/setup-test-python.sh; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release -Xswiftc -enable-testing
# Swift Testing's closing line does not count skipped tests: list them after it, with their reasons.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
swift test -c release -Xswiftc -enable-testing ${arguments[@]+"${arguments[@]}"} 2>&1 | tee "$log" || status=$?
skipped="$(grep -E '^. Test .* skipped' "$log" || true)"
if [ -n "$skipped" ]; then
    echo "Skipped: $(printf '%s\n' "$skipped" | wc -l) test(s), each with its reason:"
    printf '%s\n' "$skipped"
fi
exit "$status"
