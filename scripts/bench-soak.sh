#!/usr/bin/env bash
# Soak benchmark of the server (docs/BENCHMARKS.md, "Soak"): 64 normal streams for a long
# time, with hostile clients at once (storms of streams dropped after their first bytes,
# slow readers, requests with every option at its limit, half-sent headers), while the
# server's resident memory is sampled every 10 seconds. Every loop is bounded in count and
# time, and every address is on loopback. Run it on an otherwise idle machine.
#
#   scripts/bench-soak.sh            # 10 minutes
#   MINUTES=1 scripts/bench-soak.sh  # a short check
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${MINUTES:-10}
cargo build --release -p attnscope -p attnscope-loadgen
bin=target/release
port=${PORT:-18282}
url="http://127.0.0.1:$port"
out=target/bench
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo '<!doctype html><title>attnscope soak</title>' > "$work/index.html"

"$bin/attnscope" serve --addr "127.0.0.1:$port" --dist "$work" --per-client 1024 \
  2> "$work/server.log" &
pid=$!
for _ in $(seq 100); do
  curl -fs "$url/healthz" > /dev/null 2>&1 && break
  sleep 0.1
done
end=$(( $(date +%s) + minutes * 60 ))

# Resident memory every 10 s until the end.
(
  while [ "$(date +%s)" -lt "$end" ] && kill -0 "$pid" 2>/dev/null; do
    printf '%s %s\n' "$(date +%s)" "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
    sleep 10
  done
) > "$work/rss.txt" &

hostile() { # one round of every kind of bad client, bounded
  for _ in $(seq 20); do # streams dropped after a few milliseconds
    curl -s -N --max-time 0.05 -H 'accept: text/event-stream' -H 'content-type: application/json' \
      -d '{"text":"The children played in the garden until it was dark outside."}' "$url/api/translate" \
      > /dev/null 2>&1 &
  done
  for _ in $(seq 4); do # slow readers
    curl -s -N --max-time 5 --limit-rate 200 -H 'accept: text/event-stream' \
      -H 'content-type: application/json' -d '{"text":"I am cold. Where is the station?"}' \
      "$url/api/translate" > /dev/null 2>&1 &
  done
  curl -s --max-time 10 -H 'content-type: application/json' "$url/api/translate" \
    -d "{\"text\":\"$(printf 'I am cold. %.0s' $(seq 150))\",\"beam\":16,\"max_len\":256}" \
    > /dev/null 2>&1 &
  for _ in $(seq 10); do # half-sent headers
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'POST /api/translate HTTP/1.1\r\nhost: x\r\n' >&3 \
      && sleep 12) 2> /dev/null &
  done
  wait
}
(
  rounds=0
  while [ "$(date +%s)" -lt "$end" ] && [ "$rounds" -lt 10000 ]; do
    hostile
    rounds=$((rounds + 1))
  done
  echo "$rounds" > "$work/rounds.txt"
) &
storm=$!

# The normal clients: 64 streams, as many translations as fit in the time (bounded).
"$bin/attnscope-loadgen" --url "$url" -c 64 -n $((minutes * 60 * 1000)) --ramp-ms 1000 \
  --seconds $((minutes * 60)) --pid "$pid" --json "$out/soak.jsonl" > "$work/loadgen.txt" || true
wait "$storm" 2>/dev/null || true
kill -TERM "$pid"
wait "$pid" || true

echo "normal clients:"
cat "$work/loadgen.txt"
echo "hostile rounds: $(cat "$work/rounds.txt" 2>/dev/null || echo 0)"
rss=$(awk '{print $2}' "$work/rss.txt")
n=$(echo "$rss" | wc -l)
printf 'resident memory (MiB): start %s, middle %s, end %s, max %s (%s samples)\n' \
  "$(echo "$rss" | head -n 1 | awk '{printf "%.0f", $1/1024}')" \
  "$(echo "$rss" | sed -n "$(( (n + 1) / 2 ))p" | awk '{printf "%.0f", $1/1024}')" \
  "$(echo "$rss" | tail -n 1 | awk '{printf "%.0f", $1/1024}')" \
  "$(echo "$rss" | sort -n | tail -n 1 | awk '{printf "%.0f", $1/1024}')" "$n"
cp "$work/rss.txt" "$out/soak-rss.txt"
