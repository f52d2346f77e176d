#!/usr/bin/env bash
# lumen's GPU check (made by `cargo xtask gpu-check`): run from the repository root on a GPU
# machine, with .gpu-check/ carried there. Figures go to $OUT (or ./gpu-check-out); the last
# lines printed are the summary. Budget: under 6 minutes.
set -uo pipefail
out="${OUT:-gpu-check-out}"
mkdir -p "$out"
export LUMEN_CUDA_CACHE="$PWD/.gpu-check/cuda-cache"
export XDG_RUNTIME_DIR="$(mktemp -d)"
bin=.gpu-check/lumen
img=tests/fixtures/images/chelsea.png
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
# The whole script stays inside one device call (600 s at most): each step's timeout is capped
# by what is left of BUDGET seconds, and a step with under 15 s left is skipped and says so.
BUDGET="${LUMEN_GPU_CHECK_BUDGET:-560}"
cap() {
    local left=$(( BUDGET - ($(date +%s) - t0) ))
    [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
step() { # step SECONDS command...: runs it under the capped timeout, or skips it
    local t; t=$(cap "$1"); shift
    if [ "$t" -lt 15 ]; then echo "skipped (time budget): $*"; return 124; fi
    timeout "$t" "$@"
}

# Vulkan: the machine has the NVIDIA driver's ICD but maybe no loader; bring ours.
if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gpu-check/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ] && export VK_DRIVER_FILES="$icd"

# cuBLAS: CUDA 13 ships libcublas.so.13; cudarc looks for libcublas.so (and .so.12).
links="$(mktemp -d)"
for name in cublas cublasLt; do
    lib=$(find /usr/local/cuda*/ /usr/local/cuda*/targets/*/lib /opt /usr/lib -name "lib$name.so.1[0-9]*" \
        -not -name "*.alt*" 2>/dev/null | sort | tail -1)
    [ -n "$lib" ] && ln -sf "$lib" "$links/lib$name.so" && echo "linked $lib"
done
export LD_LIBRARY_PATH="$links${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    $bin devices
} 2>&1 | tee "$out/devices.txt"

# Every op against the CPU oracle, on CUDA and on Vulkan.
stamp "selftest cuda"
step 150 $bin selftest --backend cuda > "$out/selftest-cuda.txt" 2>&1
grep -E "FAILED|passed, " "$out/selftest-cuda.txt" | tail -40 || tail -3 "$out/selftest-cuda.txt"
# FP8 activations (W8A8 on e4m3 tensor cores, cuda/qmatmul_f8.cu): the qmatmul cases again.
stamp "selftest cuda qmatmul with FP8 activations"
LUMEN_CUDA_FP8_ACTIVATIONS=1 step 40 $bin selftest --backend cuda --only qmatmul > "$out/selftest-cuda-fp8-activations.txt" 2>&1
grep -E "FAILED|_fp8_|passed, " "$out/selftest-cuda-fp8-activations.txt" | tail -12
stamp "selftest wgpu"
step 90 $bin selftest --backend wgpu > "$out/selftest-wgpu.txt" 2>&1
grep -E "FAILED|passed, " "$out/selftest-wgpu.txt" | tail -20 || tail -3 "$out/selftest-wgpu.txt"

# The tiny fixtures end to end: logits on cuda vs the CPU oracle, and a short generation.
stamp "fixture models"
for m in qwen3vl-dense qwen3vl-moe; do
    for b in cpu cuda; do
        step 60 $bin logits --model tests/fixtures/$m --image $img --prompt "Describe this image." \
            --backend $b --out "$out/$m-$b.npy" 2>&1 | tail -1
    done
    step 60 $bin run --model tests/fixtures/$m --image $img --prompt "Describe this image." \
        --backend cuda --max-tokens 16 2>&1 | tail -1
done > "$out/models.txt" 2>&1
python3 - "$out" <<'PY' >> "$out/models.txt" 2>&1
import sys, struct, array
def load(path):  # float32 .npy as written by `lumen logits`, without numpy
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<H", data[8:10])
    a = array.array("f")
    a.frombytes(data[10 + hlen:])
    return a
out = sys.argv[1]
for m in ["qwen3vl-dense", "qwen3vl-moe"]:
    try:
        a, b = load(f"{out}/{m}-cpu.npy"), load(f"{out}/{m}-cuda.npy")
        diff = max(abs(x - y) for x, y in zip(a, b))
        same = max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
        print(f"{m}: cuda vs cpu logits max abs diff {diff:.3e}, argmax equal {same}")
    except Exception as e:
        print(f"{m}: no comparison ({e})")
PY
tail -2 "$out/models.txt"

# Speed at real shapes (synthetic bf16 weights made on the device): a 2,048-token prefill
# and 32 batch-1 decode steps; CUDA first, then the serving benchmark on CUDA, then wgpu, then
# HF transformers on the same shapes. Every run with --roofline measures the backend's copy
# bandwidth and bf16 matmul rate in the same process and prints the decode floor (`floor:`) and
# the share of the matmul rate the prefill reached (`matmul:`). The 8B runs also time one
# 1024x1024 image through the vision tower (`vision:`; 30B-A3B has the same tower).
# Decoder layers of the speed runs, lumen and transformers alike (empty: full depth).
layers_8b=""
layers_30b="24"
speed() {
    stamp "bench $1 on $2"
    echo "== $1 on $2 ${*:4}${LUMEN_CUDA_PLAIN:+ (LUMEN_CUDA_PLAIN=1: no tuned kernels)}${LUMEN_CUDA_FP8_ACTIVATIONS:+ (FP8 activations: W8A8)}" >> "$out/bench.txt"
    local layers=$layers_8b
    [ "$1" = qwen3-vl-30b-a3b ] && layers=$layers_30b
    step "$3" $bin bench --synthetic $1 ${layers:+--layers $layers} --backend $2 --prefill 2048 --decode 32 \
        --roofline "${@:4}" >> "$out/bench.txt" 2>&1 \
        || echo "$1 on $2 ${*:4}: failed or timed out (status $?)" >> "$out/bench.txt"
}
speed qwen3-vl-8b cuda 70 --image-size 1024
# The same without lumen's tuned kernels (decode GEMV, tensor-core attention): cuBLAS and the
# plain kernels, side by side in this run.
LUMEN_CUDA_PLAIN=1 speed qwen3-vl-8b cuda 50
# Quantized weights (issue 10): the same run with int8 and int4 linear layers.
speed qwen3-vl-8b cuda 40 --quantize q8
speed qwen3-vl-8b cuda 40 --quantize q4
# Its prefill without the tensor-core quantized GEMM (cuda/qmatmul_tc.cu): the f32 tiles.
LUMEN_CUDA_PLAIN=1 speed qwen3-vl-8b cuda 40 --quantize q4
# FP8 weights: W8A16 (decoded to bf16 tiles) against W8A8 (e4m3 mma), prefill side by side.
speed qwen3-vl-8b cuda 40 --quantize fp8
LUMEN_CUDA_FP8_ACTIVATIONS=1 speed qwen3-vl-8b cuda 40 --quantize fp8
speed qwen3-vl-30b-a3b cuda 60
# Quantized MoE experts (Op::QMoe) at int4.
speed qwen3-vl-30b-a3b cuda 40 --quantize q4
# MLPerf-style Offline and Server (max queries/s under the 12 s p99 bound) at 30B-A3B shapes.
stamp "serve-bench qwen3-vl-30b-a3b on cuda"
step 120 $bin serve-bench --synthetic qwen3-vl-30b-a3b --tokenizer tests/data/qwen3-tokenizer --backend cuda \
    --samples 48 --max-new-tokens 64 --scenario both --find-max-qps --max-search-runs 4 \
    --out "$out/serve-bench.json" --plot "$out/serve-bench.svg" > "$out/serve-bench.txt" 2>&1 \
    || echo "serve-bench: failed or timed out (status $?)" >> "$out/serve-bench.txt"
speed qwen3-vl-8b wgpu 70 --image-size 1024
speed qwen3-vl-30b-a3b wgpu 55
# The baseline: the same configs (from `lumen config`) random-initialised in HF transformers,
# bf16 on CUDA, same prompt length and decode steps.
hf() {
    stamp "hf transformers $1"
    step "$2" python3 scripts/hf_baseline.py $1 ${3:+--layers $3} --lumen $bin --prefill 2048 --decode 32 \
        >> "$out/hf.txt" 2>&1 || echo "hf transformers $1: failed or timed out (status $?)" >> "$out/hf.txt"
}
hf qwen3-vl-8b 90 "$layers_8b"
hf qwen3-vl-30b-a3b 120 "$layers_30b"
stamp "done"
echo "== summary =="
for f in "$out"/selftest-*.txt; do echo "$(basename "$f"): $(grep -h "passed, " "$f" || tail -1 "$f")"; done
tail -2 "$out/models.txt"
grep -E "^==|^synthetic|^weights|^floor:|^matmul:|^vision:|failed or timed out" "$out/bench.txt"
grep -E "^hf transformers|^hf_baseline|failed or timed out" "$out/hf.txt"
grep -E "samples/s|queries/s|latency p50|failed" "$out/serve-bench.txt"
