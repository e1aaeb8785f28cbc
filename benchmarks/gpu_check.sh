#!/usr/bin/env bash
# One GPU check (never part of CI): the CUDA-marked tests, then the encoder, stage-1 and data benchmarks at sizes
# that fit one GPU in under 8 minutes, one summary table at the end. Run from the repository root:
#   bash benchmarks/gpu_check.sh            # needs CUDA; logs in ${GPU_CHECK_OUT:-/tmp/umt_gpu_check}/
#   bash benchmarks/gpu_check.sh --help
# Without a GPU it says so and exits 2 (nothing is run).
set -uo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${GPU_CHECK_OUT:-/tmp/umt_gpu_check}
export HF_HUB_OFFLINE=1
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing run" >&2
    exit 2
fi
mkdir -p "$OUT"
GPU=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0))")
declare -a ROWS=()

step() {  # step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record status and time
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name: $*"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local status=$?
    local result=ok
    [ $status -eq 0 ] || result="FAILED (exit $status)"
    [ $status -eq 124 ] && result="TIMED OUT after ${limit}s"
    tail -n 12 "$OUT/$name.log"
    ROWS+=("$(printf '%-10s %-24s %5ss' "$name" "$result" $((SECONDS - start)))")
}

step tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_sharded.py
step encoder 80 "$PYTHON" benchmarks/encoder.py --device cuda --dtype bfloat16 --batch-size 8 --frames 8 --repeats 3
step pretrain 150 "$PYTHON" benchmarks/pretrain.py --device cuda --dtype bfloat16 --size b16 l16 --batch 16 --steps 5
step data 60 "$PYTHON" benchmarks/data.py --clips 5 --loader-clips 10

echo
echo "gpu_check on $GPU ($(date -u '+%Y-%m-%d %H:%M UTC')); logs in $OUT/"
printf '%-10s %-24s %6s\n' check result time
printf -- '-%.0s' {1..42}
echo
printf '%s\n' "${ROWS[@]}"
for name in pretrain encoder; do
    echo
    grep -A4 -- "----" "$OUT/$name.log" | sed "s/^/$name | /"
done
! printf '%s\n' "${ROWS[@]}" | grep -q -v " ok "
