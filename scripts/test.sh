#!/usr/bin/env bash
# Runs every test: model, protocol and app unit tests, router tests, HTTP tests against a
# real server, and the end-to-end test in headless Chromium (which needs the built frontend).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh --browser
trunk build --release
cargo test --release --workspace "$@"
