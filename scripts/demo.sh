#!/usr/bin/env bash
# Set up (idempotent), then the main job on the embedded default model (SmolLM2-135M):
# analyze -> report -> compress -> evaluate -> compare. Everything lands in out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p out
echo "== analyze: every weight matrix through its spectrum"
eigenscope analyze smollm2-135m --out out/smollm2-analysis.csv --save-spectra out/smollm2-spectra.safetensors
echo "== report: out/smollm2-report.html (self-contained, open it in a browser)"
eigenscope report out/smollm2-spectra.safetensors --out out/smollm2-report.html
echo "== compress: remove 20 % of the block matrices' parameters (whiten, global allocation)"
eigenscope compress smollm2-135m --ratio 0.2 --out out/smollm2-compressed
echo "== evaluate: held-out pydoc text, against the original"
eigenscope evaluate out/smollm2-compressed --reference smollm2-135m
echo "== compare: original vs compressed, out/smollm2-compare.html"
eigenscope compare smollm2-135m out/smollm2-compressed --out out/smollm2-compare.html
