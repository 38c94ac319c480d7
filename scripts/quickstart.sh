#!/usr/bin/env bash
# The main job, from a fresh Debian machine: install, build, get tiny shakespeare, tokenize it at byte
# level, pretrain a small GPT with mpirun (1 coordinator + 2 workers), and print a generated sample.
#
#   scripts/quickstart.sh [CORPUS.txt]
#
# The corpus comes from the path given, else from $LOCKSTEP_CORPUS_URL (default: tiny shakespeare on GitHub);
# when neither can be had, the script says so and generates a synthetic corpus instead.
# Extra settings: QUICKSTART_STEPS (default 600), QUICKSTART_WORKERS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system-packages.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release
bin="$(swift build -c release --show-bin-path)"

url="${LOCKSTEP_CORPUS_URL:-https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt}"
corpus="${1:-}"
mkdir -p data
if [ -n "$corpus" ]; then
    [ -f "$corpus" ] || { echo "quickstart: $corpus: no such file" >&2; exit 1; }
elif [ -f data/tinyshakespeare.txt ]; then
    corpus=data/tinyshakespeare.txt
elif curl -fsSL --max-time 120 "$url" -o data/tinyshakespeare.txt.part; then
    mv data/tinyshakespeare.txt.part data/tinyshakespeare.txt
    corpus=data/tinyshakespeare.txt
else
    rm -f data/tinyshakespeare.txt.part
    echo "quickstart: no corpus path given and $url could not be downloaded; using a generated corpus" >&2
    scripts/synthetic_corpus.sh data/synthetic.txt
    corpus=data/synthetic.txt
fi

"$bin/lockstep" prepare --input "$corpus" --output data/shakespeare-char
"$bin/lockstep" train --config configs/shakespeare-char.yaml \
    --workers "${QUICKSTART_WORKERS:-2}" --set training.max_steps="${QUICKSTART_STEPS:-600}"
echo
echo "=== sample ==="
"$bin/lockstep" generate --model runs/shakespeare-char/model --prompt "ROMEO:" --max-tokens 300 --seed 1
