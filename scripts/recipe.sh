#!/usr/bin/env bash
# Text classification from scratch on one machine: pretrain a small language model on the Gutenberg books plus
# the task's unlabeled training texts, fine-tune it as a classifier once per seed (a dev set picks each run's
# best checkpoint), and report accuracy on the test set: each seed's and their mean and spread. Measured times
# and accuracies are in docs/BENCHMARKS.md.
#
#   scripts/recipe.sh sst2   [SST2_DIR]   [BOOKS_DIR]   # train.tsv, dev.tsv, test.tsv with a sentence<TAB>label header
#   scripts/recipe.sh agnews [AGNEWS_DIR] [BOOKS_DIR]   # dev.tsv (training data), test.tsv: text<TAB>label, no header
#
# The data directories default to ../shared/data/{sst2,agnews,gutenberg}. AG News has no separate dev set, so
# every 10th line of its dev.tsv is held out for model selection and the rest is trained on.
#
# Environment: FINETUNE_SEEDS, the fine-tuning seeds (default "1 2 3" for sst2, "7" for agnews); TEXT_REPEATS,
# how many copies of the unlabeled training texts the pretraining corpus holds (default 4 for sst2, 1 for
# agnews: SST-2's short movie-review phrases are a fifth of the books' size, and the classifier needs their
# language far more than the books').
#
# Everything is written under runs/TASK/: the pretraining run, finetune-seed-S/ per seed, the test metrics in
# test-metrics-seed-S.json and the summary over seeds in test-summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-}
case "$task" in
    sst2) data=${2:-../shared/data/sst2}; inputs="train.tsv dev.tsv test.tsv"; fields=(--text-field sentence --label-field label)
        seeds=${FINETUNE_SEEDS:-1 2 3}; repeats=${TEXT_REPEATS:-4} ;;
    agnews) data=${2:-../shared/data/agnews}; inputs="dev.tsv test.tsv"; fields=()
        seeds=${FINETUNE_SEEDS:-7}; repeats=${TEXT_REPEATS:-1} ;;
    *) echo "usage: scripts/recipe.sh sst2|agnews [DATA_DIR] [BOOKS_DIR]" >&2; exit 2 ;;
esac
books=${3:-../shared/data/gutenberg}
work=runs/$task

if ! [[ "$repeats" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: TEXT_REPEATS must be a positive whole number, got '$repeats'" >&2
    exit 2
fi
for seed in $seeds; do
    if ! [[ "$seed" =~ ^[0-9]+$ ]]; then
        echo "error: FINETUNE_SEEDS must be whole numbers separated by spaces, got '$seed'" >&2
        exit 2
    fi
done
if [ -z "${seeds// /}" ]; then
    echo "error: FINETUNE_SEEDS is empty; give at least one seed" >&2
    exit 2
fi

for file in $inputs; do
    if [ ! -f "$data/$file" ]; then
        echo "error: $data/$file not found; pass the $task directory ($inputs) as the second argument" >&2
        exit 2
    fi
done
if ! ls "$books"/*.txt >/dev/null 2>&1; then
    echo "error: no .txt books in $books; pass a directory of plain-text books as the third argument" >&2
    exit 2
fi

swift build -c release >/dev/null
bin=.build/release
start=$(date +%s)
stage() { echo "== [$(( $(date +%s) - start )) s] $*"; }

stage "corpus: the books and $repeats copies of the training texts (labels dropped)"
rm -rf "$work"
mkdir -p "$work/corpus"
if [ "$task" = sst2 ]; then
    train=$data/train.tsv dev=$data/dev.tsv
    tail -n +2 "$train" | cut -f1 > "$work/corpus/training-texts.txt"
else
    train=$work/train.tsv dev=$work/holdout.tsv
    awk 'NR % 10 != 0' "$data/dev.tsv" > "$train"
    awk 'NR % 10 == 0' "$data/dev.tsv" > "$dev"
    cut -f1 "$train" > "$work/corpus/training-texts.txt"
fi
for copy in $(seq 2 "$repeats"); do cp "$work/corpus/training-texts.txt" "$work/corpus/training-texts-$copy.txt"; done
for book in "$books"/*.txt; do ln -s "$(realpath "$book")" "$work/corpus/"; done
"$bin/lockstep" prepare --input "$work/corpus" --output "$work/data" --vocab-size 8192 --replace-invalid-utf8

stage "pretraining (configs/$task-pretrain.yaml)"
"$bin/lockstep" train --config "configs/$task-pretrain.yaml"

for seed in $seeds; do
    stage "fine-tuning, seed $seed (configs/$task-finetune.yaml)"
    "$bin/lockstep" train --config "configs/$task-finetune.yaml" --set "data.train=$train" --set "data.validation=$dev" \
        --set "model.seed=$seed" --set "data.seed=$seed" --set "output.directory=$work/finetune-seed-$seed"

    stage "test set, seed $seed"
    "$bin/lockstep" evaluate --model "$work/finetune-seed-$seed/model" --data "$data/test.tsv" "${fields[@]}" \
        > "$work/test-metrics-seed-$seed.json"
done

python3 - "$work" $seeds <<'SUMMARY'
import json, statistics, sys
work, seeds = sys.argv[1], sys.argv[2:]
accuracies = [json.load(open(f"{work}/test-metrics-seed-{seed}.json"))["accuracy"] for seed in seeds]
summary = {"seeds": [int(seed) for seed in seeds], "accuracy": accuracies, "mean": statistics.fmean(accuracies),
           "stdev": statistics.stdev(accuracies) if len(accuracies) > 1 else None}
json.dump(summary, open(f"{work}/test-summary.json", "w"), indent=2)
for seed, accuracy in zip(seeds, accuracies):
    print(f"seed {seed}: test accuracy {accuracy:.4f}")
spread = f" ± {summary['stdev']:.4f} (standard deviation over {len(seeds)} seeds)" if summary["stdev"] is not None else ""
print(f"mean test accuracy {summary['mean']:.4f}{spread}")
SUMMARY
stage "done: $task (per-seed metrics in $work/test-metrics-seed-*.json, summary in $work/test-summary.json)"
