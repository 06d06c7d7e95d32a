#!/bin/bash
# docs/results.md "Defaults that fit the data": `cnn train DIR` with --recipe fixed (before)
# and with no flags (after), on the real datasets of ../shared/data plus sample_data.
#   scripts/recipe_before_after.sh WORK [MODES] [DATASETS]
#     MODES: "fixed auto" (default), "budget10"; DATASETS: default all of
#     "ants_bees sample_data mnist50 fm50 mnist500 fm500 mnist_max fm5000"
# Builds the subsets in WORK/data, trains into WORK/runs, appends a row per run to
# WORK/results.tsv (validation accuracy, epochs / best epoch, held-out test accuracy where
# there is a test set; wall seconds, peak RSS, user and system CPU seconds from /usr/bin/time).
set -eu
WORK=$1; MODES=${2:-fixed auto}
DATASETS=${3:-ants_bees sample_data mnist50 fm50 mnist500 fm500 mnist_max fm5000}
SHARED=$(cd "$(dirname "$0")/../.." && pwd)/shared/data
D=$WORK/data; mkdir -p "$D" "$WORK/runs"
expand() { [ -d "$D/$2" ] || python "$SHARED/expand_idx.py" "$SHARED/$1" "$D/$2" "${@:3}" > /dev/null; }
expand fashion_mnist fm50 --split train --limit-per-class 50
expand fashion_mnist fm500 --split train --limit-per-class 500
expand fashion_mnist fm5000 --split train --limit-per-class 5000
expand fashion_mnist fm_test --split test --limit-per-class 300
expand mnist mnist_all --split test
if [ ! -d "$D/mnist_max" ]; then  # MNIST ships its test split only: disjoint train/test folders
  python - "$D" <<'PY'
import os, shutil, sys
d = sys.argv[1]
for c in map(str, range(10)):
    files = sorted(os.listdir(f"{d}/mnist_all/{c}"))
    # mnist_max: all the split holds outside the test slice (592-835 per class).
    parts = (("mnist50", files[:50]), ("mnist500", files[:500]), ("mnist_test", files[500:800]),
             ("mnist_max", files[:500] + files[800:]))
    for name, part in parts:
        os.makedirs(f"{d}/{name}/{c}", exist_ok=True)
        for f in part:
            shutil.copy(f"{d}/mnist_all/{c}/{f}", f"{d}/{name}/{c}/{f}")
PY
fi
declare -A SRC=([ants_bees]=$SHARED/hymenoptera_data [sample_data]=$(dirname "$0")/../sample_data
  [mnist50]=$D/mnist50 [mnist500]=$D/mnist500 [fm50]=$D/fm50 [fm500]=$D/fm500
  [mnist_max]=$D/mnist_max [fm5000]=$D/fm5000)
declare -A TEST=([mnist50]=$D/mnist_test [mnist500]=$D/mnist_test [fm50]=$D/fm_test [fm500]=$D/fm_test
  [mnist_max]=$D/mnist_test [fm5000]=$D/fm_test)
for ds in $DATASETS; do
  for mode in $MODES; do
    case $mode in fixed) args=(--recipe fixed) ;; auto) args=() ;; budget10) args=(--time-budget 10) ;; esac
    run=$WORK/runs/$ds-$mode; rm -rf "$run"
    /usr/bin/time -f "%e %M %U %S" -o "$run.time" cnn train "${SRC[$ds]}" --out "$run" "${args[@]}" -q --json > "$run.json"
    summary=$(python -c "import json; d = json.load(open('$run/summary.json')); print(d['best_val_acc'], d['epochs'], d['best_epoch'])")
    test=""
    [ -n "${TEST[$ds]:-}" ] && test=$(cnn eval "$run" "${TEST[$ds]}" --json | python -c "import json, sys; print(json.loads(sys.stdin.read())['top1'])")
    printf "%s\t%s\t%s\t%s\t%s\n" "$ds" "$mode" "$summary" "$test" "$(tail -1 "$run.time")" >> "$WORK/results.tsv"
  done
done
