#!/usr/bin/env bash
# What attribution costs beside decoding: wall-clock seconds for `attnscope translate` of the
# same sentences with no attribution and with each method (one process per row, so model
# loading is included once per row; subtract the first row for the attribution alone).
#
#   scripts/bench-explain.sh                       # bahdanau and transformer
#   scripts/bench-explain.sh luong hard            # other models
#
# Run it on an otherwise idle machine; it builds the release binary first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
models=("$@")
[[ ${#models[@]} -eq 0 ]] && models=(bahdanau transformer)
cargo build --release -p attnscope >&2
bin=target/release/attnscope
input=$(mktemp)
trap 'rm -f "$input"' EXIT
cat > "$input" <<'TEXT'
I am cold.
Where is the train station?
She reads a book every evening.
We will go to the beach tomorrow if it does not rain.
The old man who lives next door gave my sister a beautiful red bicycle for her birthday.
TEXT
printf '| model | attribution | seconds for 5 sentences | target tokens |\n|---|---|---|---|\n'
for m in "${models[@]}"; do
  for e in none gradient_x_input integrated_gradients erasure word_erasure; do
    args=(--model "$m" --format json)
    [[ $e != none ]] && args+=(--explain "$e")
    start=$(date +%s.%N)
    out=$("$bin" translate "${args[@]}" < "$input")
    end=$(date +%s.%N)
    tokens=$(printf '%s\n' "$out" | python3 -c 'import json,sys; print(sum(len(json.loads(l)["target_tokens"]) for l in sys.stdin))')
    printf '| %s | %s | %.2f | %s |\n' "$m" "$e" "$(echo "$end - $start" | bc)" "$tokens"
  done
done
