#!/usr/bin/env bash
# The GPU report (bench/gpu_report.py) as one call on a lent GPU machine, from the repository
# root, with the wheels of bench/gpu_wheels.sh carried in .whl/. Writes gpu.json, its log and
# nvidia-smi's line under $OUT (./gpu_out where $OUT is unset). BUDGET: seconds for the report's
# sections (default 400; leave the call ~80 s more for the install and the start).
# SECTIONS="minatar" (names of gpu_report.py --sections) runs only those: a second call.
# DEVICE=cpu QUICK=1 runs the same steps on a CPU, as a check of the script.
set -uo pipefail
ROOT=$(pwd)
OUTDIR="${OUT:-$ROOT/gpu_out}"
mkdir -p "$OUTDIR"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } > "$OUTDIR/nvidia-smi.csv" 2>&1
cd /tmp  # the installed fastdqn, not the checkout's source folder (its fastdqn.kernels is not mapped)
NAME="gpu${SECTIONS:+_${SECTIONS// /_}}"  # gpu.json, or gpu_minatar.json for SECTIONS=minatar
python3 "$ROOT/bench/gpu_report.py" --device "${DEVICE:-cuda}" ${QUICK:+--quick} --out "/tmp/$NAME" \
    --budget "${BUDGET:-400}" ${SECTIONS:+--sections $SECTIONS} 2>&1 | tee "$OUTDIR/$NAME.log"
cp "/tmp/$NAME/gpu.json" "$OUTDIR/$NAME.json"
