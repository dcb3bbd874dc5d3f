#!/usr/bin/env bash
# Installs what building and testing attnscope needs, skipping whatever is already there at
# the right version: the wasm32 target, trunk and a wasm-bindgen-cli matching Cargo.lock;
# wasm-opt from npm's binaryen 132 (Debian's binaryen 108 miscompiles wasm-bindgen 0.2.130's
# reference-type tables), with node and npm from Debian when missing; with --browser also
# Debian's chromium and chromium-driver.
# Tools built from crates.io go to $ATTNSCOPE_TOOLS (default ~/.cache/attnscope/tools).
# Source it (`. scripts/setup.sh`) or run it; either way it prints the PATH to use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${ATTNSCOPE_TOOLS:-$HOME/.cache/attnscope/tools}"
export PATH="$tools/bin:$tools/binaryen/node_modules/.bin:$HOME/.cargo/bin:$PATH"
trunk_version=0.21.14
browser=0
[[ "${1:-}" == "--browser" ]] && browser=1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; return 1; fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    say "no apt-get here: install $* with your package manager"; return 1
  fi
  if [[ $apt_updated -eq 0 ]]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [[ "$(trunk --version 2>/dev/null)" != "trunk $trunk_version" ]]; then
  say "installing trunk $trunk_version into $tools (about 10 minutes, once)"
  cargo install --locked trunk --version "$trunk_version" --root "$tools"
fi

# The CLI must equal the wasm-bindgen library version in Cargo.lock.
wbg_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$here/Cargo.lock")"
if [[ -z "$wbg_version" ]]; then say "cannot find wasm-bindgen in Cargo.lock"; exit 1; fi
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg_version" ]]; then
  say "installing wasm-bindgen-cli $wbg_version into $tools (about 4 minutes, once)"
  # Not --locked: its lockfile pins a crate version this registry lacks.
  cargo install wasm-bindgen-cli --version "$wbg_version" --root "$tools"
fi

# Trunk.toml asks for this exact wasm-opt (it shrinks the app by about a third).
binaryen_version=132
if [[ "$(wasm-opt --version 2>/dev/null)" != "wasm-opt version $binaryen_version"* ]]; then
  if ! command -v npm >/dev/null; then
    say "installing Debian's nodejs and npm (for binaryen's wasm-opt)"
    apt_install nodejs npm
  fi
  say "installing binaryen $binaryen_version (wasm-opt) from npm into $tools/binaryen"
  mkdir -p "$tools/binaryen"
  npm install --silent --no-audit --no-fund --prefix "$tools/binaryen" "binaryen@$binaryen_version.0.0" >&2
fi

if [[ $browser -eq 1 ]]; then
  if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
    say "installing Debian's chromium and chromium-driver"
    apt_install chromium chromium-driver
  fi
fi
# trunk's self-update check would try the network.
export TRUNK_SKIP_VERSION_CHECK=true
say "tools ready: $(trunk --version), $(wasm-bindgen --version), $(wasm-opt --version)"
