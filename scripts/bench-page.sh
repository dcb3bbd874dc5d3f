#!/usr/bin/env bash
# Page benchmarks (docs/BENCHMARKS.md, "The page"): the gzipped size of the built app, and
# the frame times while it streams the translation of a 200-piece input in headless
# Chromium. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh --browser
trunk build --release
for f in dist/*.wasm dist/*.js; do
  printf '%-50s %9d B raw %9d B gzip -9\n' "$f" "$(wc -c < "$f")" "$(gzip -9 -c "$f" | wc -c)"
done
cargo test --release -p attnscope-tests --test browser_views -- --ignored --nocapture frame_time
