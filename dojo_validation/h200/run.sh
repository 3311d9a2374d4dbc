#!/usr/bin/env bash
# Measure bf16 training steps of the suite networks on the lent H200; results land in $OUT.
# Usage (device tool, from the repository root):  bash dojo_validation/h200/run.sh
#   about 4 to 5 minutes: ~20 s of imports and GPU ceilings, then at most BUDGET_S (200) s of networks,
#   each written to $OUT/h200_measured.json as soon as it is measured (a cut-short run keeps them).
# Test here on the CPU:  DRY_RUN=1 OUT=/tmp/h200 bash dojo_validation/h200/run.sh
# Afterwards, on any machine:  python -m dojo_validation.h200.compare_h200 <folder>/h200_measured.json
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
if [ -z "${DRY_RUN:-}" ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
fi
PYTHONPATH="$PWD" timeout "${TIMEOUT_S:-290}" python3 -m dojo_validation.h200.measure_h200 --out "$OUT" \
  --budget-s "${BUDGET_S:-200}" ${DRY_RUN:+--dry-run} 2>&1 | tee "$OUT/measure.log"
