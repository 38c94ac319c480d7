#!/usr/bin/env bash
# Text classification from scratch on one machine: pretrain a small language model on the Gutenberg books plus
# the task's unlabeled training texts, fine-tune it as a classifier (a dev set picks each run's best checkpoint),
# and report accuracy on the test set. Each seed's classifier is an ensemble of ENSEMBLE_SIZE fine-tuning runs
# whose probabilities `lockstep evaluate` averages; the script reports each seed's accuracy and their mean and
# spread. Measured times and accuracies are in docs/BENCHMARKS.md.
#
#   scripts/recipe.sh sst2   [SST2_DIR]   [BOOKS_DIR]   # train.tsv, dev.tsv, test.tsv with a sentence<TAB>label header
#   scripts/recipe.sh agnews [AGNEWS_DIR] [BOOKS_DIR]   # dev.tsv (training data), test.tsv: text<TAB>label, no header
#
# The data directories default to ../shared/data/{sst2,agnews,gutenberg}. AG News has no separate dev set, so
# every 10th line of its dev.tsv is held out for model selection and the rest is trained on.
#
# Environment: FINETUNE_SEEDS, the fine-tuning seeds (default "1 2 3" for sst2, "7" for agnews); ENSEMBLE_SIZE,
# the fine-tuning runs K per seed (default 3 for sst2, 1 for agnews): seed S's runs use seeds (S-1)K+1 ... SK,
# so no two runs share a seed (with K = 1, run S uses seed S); TEXT_REPEATS,
# how many copies of the unlabeled training texts the pretraining corpus holds (default 4 for sst2, 1 for
# agnews: SST-2's short movie-review phrases are a fifth of the books' size, and the classifier needs their
# language far more than the books').
#
# Everything is written under runs/TASK/: the pretraining run, finetune-seed-R/ per fine-tuning run (R its
# seed), each seed's test metrics (its ensemble's) in test-metrics-seed-S.json and the summary over seeds in
# test-summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-}
case "$task" in
    sst2) data=${2:-../shared/data/sst2}; inputs="train.tsv dev.tsv test.tsv"; fields=(--text-field sentence --label-field label)
        seeds=${FINETUNE_SEEDS:-1 2 3}; members=${ENSEMBLE_SIZE:-3}; repeats=${TEXT_REPEATS:-4} ;;
    agnews) data=${2:-../shared/data/agnews}; inputs="dev.tsv test.tsv"; fields=()
        seeds=${FINETUNE_SEEDS:-7}; members=${ENSEMBLE_SIZE:-1}; repeats=${TEXT_REPEATS:-1} ;;
    *) echo "usage: scripts/recipe.sh sst2|agnews [DATA_DIR] [BOOKS_DIR]" >&2; exit 2 ;;
esac
books=${3:-../shared/data/gutenberg}
work=runs/$task

if ! [[ "$repeats" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: TEXT_REPEATS must be a positive whole number, got '$repeats'" >&2
    exit 2
fi
if ! [[ "$members" =~ ^[1-9][0-9]{0,2}$ ]]; then
    echo "error: ENSEMBLE_SIZE must be a whole number from 1 to 999, got '$members'" >&2
    exit 2
fi
for seed in $seeds; do
    if ! [[ "$seed" =~ ^[0-9]{1,9}$ ]]; then
        echo "error: FINETUNE_SEEDS must be whole numbers (at most 9 digits) separated by spaces, got '$seed'" >&2
        exit 2
    fi
    if [ "$members" -gt 1 ] && [ "$seed" -eq 0 ]; then
        echo "error: FINETUNE_SEEDS must start at 1 when ENSEMBLE_SIZE is above 1 (seed S's runs use seeds (S-1)K+1 ... SK)" >&2
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
    models=()
    for run in $(seq $(( (seed - 1) * members + 1 )) $(( seed * members ))); do
        stage "fine-tuning, seed $seed: run with seed $run (configs/$task-finetune.yaml)"
        "$bin/lockstep" train --config "configs/$task-finetune.yaml" --set "data.train=$train" --set "data.validation=$dev" \
            --set "model.seed=$run" --set "data.seed=$run" --set "output.directory=$work/finetune-seed-$run"
        models+=(--model "$work/finetune-seed-$run/model")
    done

    stage "test set, seed $seed ($members run(s): ${models[*]})"
    "$bin/lockstep" evaluate "${models[@]}" --data "$data/test.tsv" "${fields[@]}" > "$work/test-metrics-seed-$seed.json"
done

python3 - "$work" "$members" $seeds <<'SUMMARY'
import json, statistics, sys
work, seeds = sys.argv[1], sys.argv[3:]
accuracies = [json.load(open(f"{work}/test-metrics-seed-{seed}.json"))["accuracy"] for seed in seeds]
summary = {"seeds": [int(seed) for seed in seeds], "ensemble_size": int(sys.argv[2]), "accuracy": accuracies,
           "mean": statistics.fmean(accuracies),
           "stdev": statistics.stdev(accuracies) if len(accuracies) > 1 else None}
json.dump(summary, open(f"{work}/test-summary.json", "w"), indent=2)
for seed, accuracy in zip(seeds, accuracies):
    print(f"seed {seed}: test accuracy {accuracy:.4f}")
spread = f" ± {summary['stdev']:.4f} (standard deviation over {len(seeds)} seeds)" if summary["stdev"] is not None else ""
print(f"mean test accuracy {summary['mean']:.4f}{spread}")
SUMMARY
stage "done: $task (per-seed metrics in $work/test-metrics-seed-*.json, summary in $work/test-summary.json)"
