#!/usr/bin/env bash
# The peers and wgpu-nn's bench side by side, in one go on this machine: burn-wgpu
# (burn-bench/), PyTorch and numpy (pytorch_bench.py), then `bench --json --peers`, which
# prints every peer figure beside ours with the ratio. Run it on an otherwise idle machine:
# lavapipe's and the CPU backend's figures follow the CPU, so compare only within one run.
#
#   scripts/peers/run.sh OUT     writes OUT/cpu.txt (lscpu's model), burn.json, torch.json,
#                                bench.txt (the table, the ratios, then bench's JSON)
#
# Needs python3 with torch and numpy (PYTHON=... picks another interpreter), and builds
# burn-bench the first time (~13 minutes on 2 cores) into BURN_TARGET_DIR (default: its own
# target/, or CARGO_TARGET_DIR when set).
set -euo pipefail
out=${1:?usage: scripts/peers/run.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
{ lscpu | grep 'Model name' || uname -m; } | tee "$out/cpu.txt"

target=${BURN_TARGET_DIR:-${CARGO_TARGET_DIR:-$here/burn-bench/target}}
echo "== burn-wgpu"
(cd "$here/burn-bench" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
"$target/release/burn-bench" 2>/dev/null | tail -1 >"$out/burn.json"
echo "== PyTorch, numpy"
"${PYTHON:-python3}" "$here/pytorch_bench.py" | tail -1 >"$out/torch.json"
echo "== wgpu-nn bench"
cd "$here/../.."
cargo run --release --quiet --example bench -- --json --peers "$out/burn.json" --peers "$out/torch.json" \
    2> >(grep -v XDG_RUNTIME_DIR >&2) | tee "$out/bench.txt"
