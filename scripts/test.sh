#!/usr/bin/env bash
# The test command: installs what the build needs, builds in release mode (the numerical tests and the
# mpirun training runs are far too slow unoptimised) and runs the whole suite, including real mpirun jobs.
# Extra arguments go to `swift test` (e.g. `scripts/test.sh --filter Tokenizer`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system-packages.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release -Xswiftc -enable-testing
swift test -c release -Xswiftc -enable-testing "$@"
