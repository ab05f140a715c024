#!/usr/bin/env bash
# Set up (idempotent) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium for the report's browser test (skipped with a reason where it is absent).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
    >/dev/null 2>&1 || echo "chromium could not be installed; the browser test will be skipped"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# the browser test's screenshots (test artifacts) land here
export EIGENSCOPE_ARTIFACTS="${EIGENSCOPE_ARTIFACTS:-$PWD/artifacts}"
python3 -m pytest -q -p no:cacheprovider "$@"
