#!/usr/bin/env bash
# The GPU check: the whole test suite and `bench --json` on a machine with a real GPU, in one
# go and well inside 10 minutes, with the results written to a folder. Made for a lent machine
# with a GPU but no Rust, no network and perhaps no Vulkan loader (DEVELOPERS.md, "A real GPU"):
# everything it needs is built and fetched here first, and travels with the working tree.
#
#   scripts/gpu-check.sh prepare     here: release test binaries and examples, stripped and packed
#                                    into .gpu-check/bundle.tar.xz (~20 MB), and the Vulkan/EGL
#                                    loader packages into .gl/ (both ignored by git)
#   scripts/gpu-check.sh run OUT     there, in the repository root: unpacks the loaders when the
#                                    machine has none, runs every test binary with
#                                    WGPU_NN_REQUIRE_GPU=1 and then `bench --json`, into OUT/
#
# With the device tool: run prepare here, then one call with carry [".gl", ".gpu-check"] and
# the command `bash scripts/gpu-check.sh run $OUT`. OUT gets summary.txt (each binary's result
# line and exit code), one log per test binary, bench.log, bench.json (its "adapter" names
# the GPU the run used), narrow.log and narrow.json (the fused step against the layer-by-layer
# one) and gpu.txt (the commit, nvidia-smi's GPUs, the CPU). BACKENDS="vulkan gl" runs the tests on both backends (default: vulkan).
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
    local dir=.gpu-check
    rm -rf "$dir" && mkdir -p "$dir/stage/deps" "$dir/stage/examples"
    echo "== release build of the tests and examples"
    cargo test --release --no-run --message-format=json >"$dir/build.json"
    # The tests find the examples beside their own folder (target/<profile>/examples), as cargo
    # lays them out: the bundle keeps that layout.
    python3 - "$dir" <<'PY'
import json, os, shutil, sys
stage = os.path.join(sys.argv[1], "stage")
for line in open(os.path.join(sys.argv[1], "build.json")):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kind, exe = m["target"]["kind"][0], m["executable"]
        if kind == "test":
            shutil.copy(exe, os.path.join(stage, "deps", os.path.basename(exe)))
        elif kind == "example":
            shutil.copy(exe, os.path.join(stage, "examples", m["target"]["name"]))
PY
    strip "$dir"/stage/deps/* "$dir"/stage/examples/*
    # The tests read the bundled data and fixtures through the path they were built in.
    pwd >"$dir/stage/manifest_dir"
    git rev-parse HEAD >"$dir/stage/commit"
    echo "== packing $(ls "$dir/stage/deps" | wc -l) test binaries and $(ls "$dir/stage/examples" | wc -l) examples"
    tar -C "$dir/stage" -cf - . | xz -9 -T2 >"$dir/bundle.tar.xz"
    rm -rf "$dir/stage" "$dir/build.json"
    if ! ls .gl/*.deb >/dev/null 2>&1; then
        echo "== fetching the Vulkan and EGL loaders (amd64 .debs) into .gl/"
        mkdir -p .gl /tmp/amd64/partial
        local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
        apt-get "${o[@]}" update -qq
        (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    du -sh .gpu-check/bundle.tar.xz .gl
    echo "now, on the GPU machine: bash scripts/gpu-check.sh run OUT (carry .gl and .gpu-check)"
}

run() {
    local out=${1:?"usage: scripts/gpu-check.sh run OUT"}
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    [ -f .gpu-check/bundle.tar.xz ] || { echo "no .gpu-check/bundle.tar.xz: run prepare first" >&2; exit 2; }
    # A machine without a Vulkan loader gets the carried one (unpacked into /, as root).
    if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
        echo "== unpacking the carried loaders"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    # Where NVIDIA's container runtime puts its driver manifests, point the loaders at them.
    local nvidia=/usr/local/nvidia/share
    if [ -f "$nvidia/vulkan/icd.d/nvidia_icd.json" ]; then
        export VK_DRIVER_FILES=$nvidia/vulkan/icd.d/nvidia_icd.json
        export __EGL_VENDOR_LIBRARY_FILENAMES=$nvidia/glvnd/egl_vendor.d/10_nvidia.json
    fi
    local work=/tmp/wgpu-nn-gpu-check
    rm -rf "$work" && mkdir -p "$work"
    xz -dc .gpu-check/bundle.tar.xz | tar -xf - -C "$work"
    local manifest
    manifest=$(cat "$work/manifest_dir")
    if [ "$manifest" != "$(pwd)" ] && [ ! -e "$manifest" ]; then
        mkdir -p "$(dirname "$manifest")" && ln -s "$(pwd)" "$manifest"
    fi
    export WGPU_NN_REQUIRE_GPU=1 XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
    {
        echo "commit $(cat "$work/commit")"
        nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
        lscpu | sed -n 's/^Model name:[[:space:]]*/cpu: /p'
    } >"$out/gpu.txt"
    local failed=0 backend t name rc
    : >"$out/summary.txt"
    for backend in ${BACKENDS:-vulkan}; do
        export WGPU_BACKEND=$backend
        for t in "$work"/deps/*; do
            name=$(basename "$t" | sed 's/-[0-9a-f]*$//')
            rc=0
            timeout 240 "$t" >"$out/test-$backend-$name.log" 2>&1 || rc=$?
            [ "$rc" = 0 ] || failed=1
            echo "$backend $name rc=$rc $(grep -a 'test result' "$out/test-$backend-$name.log" | tail -1)" \
                | tee -a "$out/summary.txt"
        done
    done
    backend=${BACKENDS:-vulkan}
    export WGPU_BACKEND=${backend%% *} # the bench on the first backend
    rc=0
    timeout 300 "$work/examples/bench" --json >"$out/bench.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || failed=1
    tail -n 1 "$out/bench.log" >"$out/bench.json"
    echo "bench rc=$rc" | tee -a "$out/summary.txt"
    # The fused training step of narrow networks against the layer-by-layer path, side by side
    # (issue 26): the first run on a real GPU measures it there.
    rc=0
    timeout 120 "$work/examples/bench" --narrow --json >"$out/narrow.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || failed=1
    tail -n 1 "$out/narrow.log" >"$out/narrow.json"
    echo "bench --narrow rc=$rc" | tee -a "$out/summary.txt"
    return "$failed"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run "${2:-}" ;;
    *)
        echo "usage: scripts/gpu-check.sh prepare | run OUT" >&2
        exit 2
        ;;
esac
