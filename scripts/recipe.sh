#!/usr/bin/env bash
# Text classification from scratch on one machine: pretrain a small GPT-2 on the Gutenberg books plus the
# task's unlabeled training texts, fine-tune it as a classifier (a dev set picks the best checkpoint), and
# report accuracy on the test set. Measured times and accuracies are in docs/BENCHMARKS.md.
#
#   scripts/recipe.sh sst2   [SST2_DIR]   [BOOKS_DIR]   # train.tsv, dev.tsv, test.tsv with a sentence<TAB>label header
#   scripts/recipe.sh agnews [AGNEWS_DIR] [BOOKS_DIR]   # dev.tsv (training data), test.tsv: text<TAB>label, no header
#
# The data directories default to ../shared/data/{sst2,agnews,gutenberg}. AG News has no separate dev set, so
# every 10th line of its dev.tsv is held out for model selection and the rest is trained on. Everything is
# written under runs/TASK/; the test metrics end up in runs/TASK/test-metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-}
case "$task" in
    sst2) data=${2:-../shared/data/sst2}; inputs="train.tsv dev.tsv test.tsv"; fields=(--text-field sentence --label-field label) ;;
    agnews) data=${2:-../shared/data/agnews}; inputs="dev.tsv test.tsv"; fields=() ;;
    *) echo "usage: scripts/recipe.sh sst2|agnews [DATA_DIR] [BOOKS_DIR]" >&2; exit 2 ;;
esac
books=${3:-../shared/data/gutenberg}
work=runs/$task

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

stage "corpus: the books and the training texts (labels dropped)"
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
for book in "$books"/*.txt; do ln -s "$(realpath "$book")" "$work/corpus/"; done
"$bin/lockstep" prepare --input "$work/corpus" --output "$work/data" --vocab-size 8192 --replace-invalid-utf8

stage "pretraining (configs/$task-pretrain.yaml)"
"$bin/lockstep" train --config "configs/$task-pretrain.yaml"

stage "fine-tuning (configs/$task-finetune.yaml)"
"$bin/lockstep" train --config "configs/$task-finetune.yaml" --set "data.train=$train" --set "data.validation=$dev"

stage "test set"
"$bin/lockstep" evaluate --model "$work/finetune/model" --data "$data/test.tsv" "${fields[@]}" > "$work/test-metrics.json"
accuracy=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['accuracy'])" "$work/test-metrics.json")
stage "done: $task test accuracy $accuracy (metrics in $work/test-metrics.json)"
