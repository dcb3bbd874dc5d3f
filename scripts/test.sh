#!/usr/bin/env bash
# Runs every test: model, protocol and app unit tests, router tests, HTTP tests against a
# real server, the end-to-end tests in headless Chromium (which need the built frontend),
# and the app's component tests (wasm-bindgen-test in headless Chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh --browser
trunk build --release
cargo test --release --workspace "$@"
# Component tests of the app, compiled to wasm and run in headless Chromium.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  CHROMEDRIVER="$(command -v chromedriver)" \
  cargo test -p attnscope-app --target wasm32-unknown-unknown --test components
