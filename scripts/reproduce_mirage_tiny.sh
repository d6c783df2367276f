#!/usr/bin/env bash
# mirage-tiny v2 from scratch on a 2-core CPU, one torch thread per job (about 3 hours):
#   1. the VAE (encoder + decoder), 2. in parallel: the DiT + side branch on that encoder's
#   latents, and the decoder alone fine-tuned on whole 9-frame clips (the encoder stays
#   frozen, so the DiT's shards stay valid), 3. the model folder.
# Every step resumes from its newest checkpoint: run the same command again after an
# interruption. Usage: scripts/reproduce_mirage_tiny.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
W=${1:-out/tiny-v2-repro}
export OMP_NUM_THREADS=1
mkdir -p "$W"

# 1. VAE (the shipped run stopped at its 88-minute cap, step 2287 of 2500)
"$PY" scripts/train_tiny_vae.py --out "$W/vae" --max-minutes 88 > "$W/vae.log" 2>&1

# 2. DiT + side branch (shards from the step-1 encoder) beside the decoder fine-tune
"$PY" scripts/train_mirage_tiny.py --work "$W" --vae "$W/vae/vae" --clips 187 --steps 2000 \
    > "$W/dit.log" 2>&1 &
dit=$!
"$PY" scripts/train_tiny_vae.py --out "$W/decoder" --decoder-from "$W/vae/vae" \
    --max-steps 2000 --max-minutes 110 > "$W/decoder.log" 2>&1 &
dec=$!
wait $dit
wait $dec

# 3. the model folder: fine-tuned decoder (same encoder) + DiT + side branch
"$PY" scripts/assemble_mirage_tiny.py --vae "$W/decoder/vae" --transformer "$W/train/stage0" \
    --out "$W/mirage-tiny" --supersample 2
echo "wrote $W/mirage-tiny; score it: $PY benchmarks/tiny_quality.py --model $W/mirage-tiny"
