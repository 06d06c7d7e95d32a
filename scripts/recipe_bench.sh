#!/bin/bash
# docs/results.md "Recipe bench on unseen photo folders": `cnn train DIR --recipe fixed`
# against `cnn train DIR` with no flags on folders the recipe was not tuned on, each
# evaluated on its test split where it has one (`cnn eval RUN DIR/test`).
#   scripts/recipe_bench.sh WORK DIR [DIR ...]        e.g. scripts/recipe_bench.sh /tmp/bench /work/bench/*
#   MODES="fixed auto scratch" scripts/recipe_bench.sh ...
# MODES (default "fixed auto"): fixed = --recipe fixed; auto = no flags (the pretrained
# start for photo-like folders); scratch = --init none (the automatic from-scratch recipe).
# Trains into WORK/runs/SET-MODE (SET = the folder's name; an existing run is retrained),
# appends a row per run to WORK/results.tsv (set, mode, best val acc, epochs, best epoch,
# test acc, wall s, peak RSS KiB) and prints the markdown table of the sets given.
set -eu
WORK=$1; shift
MODES=${MODES:-fixed auto}
CNN=${CNN:-cnn}
mkdir -p "$WORK/runs"
for dir in "$@"; do
  [ -d "$dir" ] || continue
  set_name=$(basename "$dir")
  for mode in $MODES; do
    case $mode in
      fixed) args=(--recipe fixed) ;;
      auto) args=() ;;
      scratch) args=(--init none) ;;
      *) echo "unknown mode $mode (fixed, auto, scratch)" >&2; exit 2 ;;
    esac
    run=$WORK/runs/$set_name-$mode; rm -rf "$run"
    /usr/bin/time -f "%e %M" -o "$run.time" "$CNN" train "$dir" --out "$run" "${args[@]}" -q --json > "$run.json"
    summary=$(python3 -c "import json; d = json.load(open('$run/summary.json')); print(d['best_val_acc'], d['epochs'], d['best_epoch'], sep='\t')")
    test=""
    if [ -d "$dir/test" ]; then
      test=$("$CNN" eval "$run" "$dir/test" --json 2> "$run.eval.log" | python3 -c "import json, sys; print(json.loads(sys.stdin.read())['top1'])")
    fi
    printf "%s\t%s\t%s\t%s\t%s\n" "$set_name" "$mode" "$summary" "$test" "$(tail -1 "$run.time" | tr ' ' '\t')" >> "$WORK/results.tsv"
  done
done
# The table: the last row of each (set, mode) in results.tsv, for the sets given.
python3 - "$WORK/results.tsv" "$MODES" "$@" <<'PY'
import os, sys
path, modes, dirs = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
rows = {}
for line in open(path):
    s, mode, val, epochs, best, test, wall, rss = line.rstrip("\n").split("\t")
    rows[s, mode] = (float(val), epochs, best, float(test) if test else None, float(wall))
pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"
head = ["set"] + [f"{m} val / test" for m in modes] + ["epochs (best)", "wall s"]
print("| " + " | ".join(head) + " |")
print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
for d in dirs:
    s = os.path.basename(d.rstrip("/"))
    got = [rows.get((s, m)) for m in modes]
    if not any(got):
        continue
    cells = [f"{pct(r[0])} / {pct(r[3])}" if r else "-" for r in got]
    epochs = " / ".join(f"{r[1]} ({r[2]})" if r else "-" for r in got)
    wall = " / ".join(f"{r[4]:.0f}" if r else "-" for r in got)
    print("| " + " | ".join([s, *cells, epochs, wall]) + " |")
PY
