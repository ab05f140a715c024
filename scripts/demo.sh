#!/usr/bin/env bash
# Set up (idempotent), then the main job on the embedded default model: analyze, compress, evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p out
eigenscope analyze smollm2-135m --out out/smollm2-analysis.csv --save-spectra out/smollm2-spectra.safetensors
