#!/usr/bin/env bash
# The GPU check (issue 15): `bash bench/gpu_check.sh` from the repository root; installs nothing, < 8 minutes.
# On CUDA, each part bounded by `timeout` so the whole stays under 8 minutes on one GPU:
#   1. bench/gpu_check.py: byte identity of CUDA sampling across two fresh processes (digits MLP and 28x28
#      conv; default copy path and pinned host memory), then bare sampling loops with the uint8 conversion on
#      the host, on the device, and on the device into pinned memory (ABAB rounds);
#   2. bench/train_throughput.py --precision fp32,bf16: training, service vs bare loop, fp32 and bf16 autocast;
#   3. bench/sample_throughput.py: sampling, service vs bare loop, digits and 28x28 conv, on the device.
# Without CUDA it says so and skips the CUDA parts (exit 0), so the script itself is exercised on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device (torch.cuda.is_available() is False): CUDA parts skipped"
  exit 0
fi
started=$SECONDS
status=0
part() {  # part SECONDS COMMAND...: run one bounded part; a part that fails or times out does not stop the rest
  local limit=$1
  shift
  echo "== gpu_check: $* (at most ${limit} s)"
  timeout "$limit" "$@" || { echo "gpu_check: part failed or timed out (exit $?): $*"; status=1; }
}
part 100 "$PY" bench/gpu_check.py
part 200 "$PY" bench/train_throughput.py --device cuda --quick --precision fp32,bf16
part 150 "$PY" bench/sample_throughput.py --device cuda --quick --skip two webdataset s3 prototypes
echo "gpu_check: done in $((SECONDS - started)) s"
exit $status
