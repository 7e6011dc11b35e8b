#!/usr/bin/env bash
# The playground page (examples/playground): builds it for the browser and serves it on
# 127.0.0.1, nothing beyond the local server needed.
#   scripts/web.sh            build, then serve on http://127.0.0.1:8000 (PORT=… for another)
#   scripts/web.sh build      build only, into target/playground
# Needs the wasm32 target (`rustup target add wasm32-unknown-unknown`) and wasm-bindgen-cli
# of the version in Cargo.lock (`cargo install wasm-bindgen-cli --version <it>`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/playground
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
    echo "web.sh: wasm-bindgen-cli $want is needed (found: ${have:-none}):" >&2
    echo "  cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
cargo build --release --example playground --target wasm32-unknown-unknown
rm -rf "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name pkg \
    target/wasm32-unknown-unknown/release/examples/playground.wasm
cp examples/playground/index.html examples/playground/playground.js "$out/"
echo "web.sh: the page is in $out"
if [ "${1:-serve}" = build ]; then
    exit 0
fi
port=${PORT:-8000}
echo "web.sh: open http://127.0.0.1:$port/ (Chromium: WebGPU is on by default; Ctrl-C stops)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$out"
