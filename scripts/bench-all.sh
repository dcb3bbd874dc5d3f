#!/usr/bin/env bash
# The whole performance picture in one run: the numbers at the top of docs/BENCHMARKS.md.
#
#   scripts/bench-all.sh                 # everything (about 40 minutes on 2 cores)
#   scripts/bench-all.sh --rounds 3      # extra arguments go to bench/perf.py
#
# 1. candle against PyTorch (bench/perf.py): the identical-translation check, then
#    inference latency and throughput, training throughput, and matmul GFLOP/s, timed
#    interleaved;
# 2. the wire size of a Transformer step (a real server, bench/reference/wire_size.py);
# 3. the server under load (scripts/bench-load.sh), in shared batches and each translation
#    alone;
# 4. the page: bundle size and frame times in headless Chromium (scripts/bench-page.sh);
# 5. what attribution costs beside a greedy translation (scripts/bench-explain.sh);
# then bench/report.py writes them between the markers in docs/BENCHMARKS.md.
# Raw results stay in target/bench/. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=bench/reference/.venv
if [ ! -x "$venv/bin/python" ]; then
  echo "bench-all: creating $venv (PyTorch, about 5 GB; see bench/reference/README.md)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -r bench/reference/requirements.txt
fi
out=target/bench
mkdir -p "$out"
cargo build --release -p attnscope -p attnscope-perf -p attnscope-loadgen

echo "bench-all: 1/5 candle against PyTorch" >&2
"$venv/bin/python" bench/perf.py "$@" > /dev/null

echo "bench-all: 2/5 wire size of a Transformer step" >&2
port=${PORT:-18182}
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
echo '<!doctype html><title>attnscope benchmark</title>' > "$dist/index.html"
target/release/attnscope serve --addr "127.0.0.1:$port" --dist "$dist" 2> "$dist/server.log" &
server=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
  sleep 0.1
done
curl -fs -H 'content-type: application/json' "http://127.0.0.1:$port/api/translate" \
  -d '{"text": "We will go to the beach tomorrow if it does not rain, and then we will eat.", "model": "transformer"}' \
  | "$venv/bin/python" bench/reference/wire_size.py > "$out/wire.txt"
kill -TERM "$server"
wait "$server" || true

echo "bench-all: 3/5 server under load" >&2
scripts/bench-load.sh > "$out/load.md"
BATCH_ROWS=1 scripts/bench-load.sh > "$out/load-alone.md"

echo "bench-all: 4/5 the page" >&2
scripts/bench-page.sh > "$out/page.txt" 2>&1

echo "bench-all: 5/5 what attribution costs" >&2
scripts/bench-explain.sh > "$out/explain.md"

"$venv/bin/python" bench/report.py
echo "bench-all: docs/BENCHMARKS.md updated; raw results in $out/" >&2
