#!/usr/bin/env bash
# The GPU figures in one prepared run (<= 8 minutes on one H100/H200), written to
# benchmarks/results/ with the GPU's name:
#   1. read of 1M points into 9 views at 44x80 (today's read beside the reference, exact)
#   2. latent memory vs RGB path (real Wan2.2 VAE architecture, random weights) at 480x832
#      and 704x1280 after 1..10 chunks: seconds and MiB
#   3. one full-size MirageTransformer (5B dims, side branch, random weights) bf16
#      forward + backward with gradient checkpointing: peak memory and step time
#   4. three chunks of generation at 480x832 with random full-size weights: seconds per stage,
#      the memory's share of chunk time, offload off and on
#
#   bash benchmarks/gpu_suite.sh            # on the GPU machine (cuda)
#   bash benchmarks/gpu_suite.sh --cpu      # every part at reduced size on a CPU: proves the
#                                           # script, writes to /tmp/gpu_suite_cpu, not results/
#
# A machine without diffusers gets it from wheels carried in .whl/ (see the device notes):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)" HF_HUB_OFFLINE=1

if [[ "${1:-}" == "--cpu" ]]; then
    OUT=/tmp/gpu_suite_cpu; mkdir -p "$OUT"; export OMP_NUM_THREADS=1
    DEV=cpu
    READ=(--points 100000 --views 9 --repeats 3)
    COST=(--size 64x128 --chunks 2)
    STEP=(--config wan22 --layers 1 --frames 5 --size 32x32 --batch-size 1 --text-len 8
          --steps 2 --warmup 1 --gradient-checkpointing)
    GEN=(--config wan22 --layers 1 --size 64x64 --frames 17 --chunk-frames 9 --steps 1
         --offload off)
    LIMIT=900
else
    OUT=benchmarks/results; DEV=cuda
    READ=(--points 1000000 --views 9 --repeats 7)
    COST=(--size 480x832 --chunks 10)
    STEP=(--config wan22 --frames 33 --size 480x832 --gradient-checkpointing)
    GEN=(--config wan22 --size 480x832 --frames 97 --chunk-frames 33 --steps 20
         --dtype bfloat16 --offload both)
    LIMIT=240
fi

status=0
part() {  # name, then the command: each part has its own time limit; a failure is reported
    local name=$1; shift
    echo "== $name"
    local t0=$SECONDS
    if ! timeout "$LIMIT" "$@"; then echo "!! $name failed or ran past ${LIMIT}s"; status=1; fi
    echo "   $name: $((SECONDS - t0)) s"
}

part read "$PY" benchmarks/memory_readout.py --compare --device "$DEV" "${READ[@]}" \
    --out-dir "$OUT"
part memory_cost "$PY" benchmarks/memory_cost.py --device "$DEV" "${COST[@]}" --out-dir "$OUT"
[[ "$DEV" == cuda ]] && part memory_cost_704 "$PY" benchmarks/memory_cost.py --device cuda \
    --size 704x1280 --chunks 10 --out-dir "$OUT"
part train_step "$PY" benchmarks/train_step.py --device "$DEV" "${STEP[@]}" --out-dir "$OUT"
part generation "$PY" benchmarks/generation_stages.py --device "$DEV" "${GEN[@]}" \
    --out "$OUT/generation_stages_${DEV}.csv"
exit $status
