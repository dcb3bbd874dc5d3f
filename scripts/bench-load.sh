#!/usr/bin/env bash
# Load benchmark of the streaming API (docs/BENCHMARKS.md, "Server under load").
#
# Builds the release server and attnscope-loadgen, then for each level starts a fresh
# server (so its peak RSS is that level's), runs N concurrent SSE streams against it, and
# prints one Markdown table row per level. Run it on an otherwise idle machine.
#
#   scripts/bench-load.sh            # every level, default model
#   MODELS="bahdanau transformer" scripts/bench-load.sh
#   BATCH_ROWS=1 scripts/bench-load.sh   # every translation decoded alone (no shared batches)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p attnscope -p attnscope-loadgen
bin=target/release
port=${PORT:-18181}
models=${MODELS:-bahdanau}
# The load test needs no frontend: serve a placeholder page.
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
echo '<!doctype html><title>attnscope load test</title>' > "$dist/index.html"

level() { # model streams requests ramp_ms
  "$bin/attnscope" serve --addr "127.0.0.1:$port" --dist "$dist" --default-model "$1" --per-client 1024 \
    --batch-rows "${BATCH_ROWS:-256}" \
    2> "$dist/server.log" &
  local pid=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
    sleep 0.1
  done
  "$bin/attnscope-loadgen" --url "http://127.0.0.1:$port" --model "$1" -c "$2" -n "$3" \
    --ramp-ms "$4" --pid "$pid" --markdown --json "${JSON_OUT:-/dev/null}" | tail -n 1
  kill -TERM "$pid"
  wait "$pid" || true
}

echo "| model | streams | ramp | requests | errors | first step p50 / p99 / max (ms) | translation p50 / p99 (ms) | translations/s | bytes/step | server peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for m in $models; do
  level "$m" 1 200 0
  level "$m" 64 1280 0
  level "$m" 64 1280 1000
  level "$m" 500 1500 0
  level "$m" 500 1500 2000
done
