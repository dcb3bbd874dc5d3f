#!/usr/bin/env bash
# Times this checkout against an earlier revision on the same models, interleaved, to show a
# refactor cost nothing: batch-1 greedy latency and batch-32 throughput (attnscope-perf), and
# training steps of the real-size GRU and Transformer (`attnscope train`: 40 steps, by the
# run's own clock in checkpoint.json). Prints a markdown table.
#
#   scripts/bench-before-after.sh 61b3d05            # the commit before the typed refactor
#   ROUNDS=5 scripts/bench-before-after.sh REV
#
# The earlier revision is built in a git worktree beside the repository (../attnscope-before,
# target dir ../attnscope-before-target); run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rev=${1:?give the revision to compare with, e.g. 61b3d05}
rounds=${ROUNDS:-3}
old=../attnscope-before
old_target=$(cd .. && pwd)/attnscope-before-target
if [ ! -d "$old" ]; then
  git worktree add -f "$old" "$rev" > /dev/null
fi
(cd "$old" && git checkout -q "$rev" && CARGO_TARGET_DIR="$old_target" cargo build -q --release -p attnscope -p attnscope-perf)
cargo build -q --release -p attnscope -p attnscope-perf
data=../shared/data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Ten-word English sentences of the Multi30k test set: the same input for both builds.
cut -f1 "$data/multi30k/multi30k-eng-fra.test2016.tsv" | awk 'NF == 10 && n < 40 { print; n++ }' > "$work/sentences.txt"
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}

perf() { # binary-dir model -> "latency_ms throughput"
  "$1/attnscope-perf" --model "models/$2" --reps 3 --batch 32 < "$work/sentences.txt" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["latency_ms_median"], d["throughput_sentences_per_s"])'
}
train_secs() { # binary-dir architecture -> seconds per step over 40 steps (the run's own clock)
  local dir="$work/train-$RANDOM"
  local args=(--models "$dir/models" train --name t --runs "$dir/runs")
  "$1/attnscope" "${args[@]}" --data "$data/tatoeba-eng-fra.tsv" --limit 6000 --epochs 1 \
    --architecture "$2" --dev-sentences 50 --test-sentences 50 --stop-after 1 \
    --checkpoint-every 1000 > /dev/null 2>&1
  local e1 e2
  e1=$(python3 -c "import json; print(json.load(open('$dir/runs/t/checkpoint.json'))['elapsed_seconds'])")
  "$1/attnscope" "${args[@]}" --resume --stop-after 41 > /dev/null 2>&1
  e2=$(python3 -c "import json; print(json.load(open('$dir/runs/t/checkpoint.json'))['elapsed_seconds'])")
  rm -rf "$dir"
  python3 -c "print(($e2 - $e1) / 40)"
}

declare -A sum
for r in $(seq "$rounds"); do
  for side in before after; do
    bin=target/release
    [ "$side" = before ] && bin="$old_target/release"
    for m in bahdanau transformer; do
      read -r lat thr < <(perf "$bin" "$m")
      sum[$side,$m,lat]="${sum[$side,$m,lat]:-} $lat"
      sum[$side,$m,thr]="${sum[$side,$m,thr]:-} $thr"
    done
    for a in gru transformer; do
      sum[$side,$a,train]="${sum[$side,$a,train]:-} $(train_secs "$bin" "$a")"
    done
  done
  echo "bench-before-after: round $r of $rounds done" >&2
done

median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
echo "| measure | $rev (before) | $(git rev-parse --short HEAD) (after) | after / before |"
echo "|---|---|---|---|"
row() { # label key unit
  local b a
  b=$(median ${sum[before,$2]}); a=$(median ${sum[after,$2]})
  python3 -c "print(f'| $1 | {$b:.3g} $3 | {$a:.3g} $3 | {$a / $b:.2f} |')"
}
row "bahdanau, batch-1 greedy latency" bahdanau,lat ms
row "transformer, batch-1 greedy latency" transformer,lat ms
row "bahdanau, batch-32 throughput" bahdanau,thr sent/s
row "transformer, batch-32 throughput" transformer,thr sent/s
row "GRU training step (batch 128)" gru,train s
row "Transformer training step (batch 128)" transformer,train s
