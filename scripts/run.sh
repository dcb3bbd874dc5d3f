#!/usr/bin/env bash
# Builds the frontend and starts attnscope with the shipped models on http://127.0.0.1:8080.
# Extra arguments go to `attnscope serve` (e.g. --addr 0.0.0.0:9000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh --no-browser
trunk build --release
exec cargo run --release -p attnscope -- serve "$@"
