#!/usr/bin/env bash
# Both GPU checks in one device call (the lent machine runs its image's python3 and jax; our pinned flax travels
# as a wheel in .whl/ when present). Results land in $OUT: env.txt, sharded.json, fp8.json and their stderr logs.
#   device run: bash experiments/gpu_checks.sh   (carry .whl)
set -u
OUT=${OUT:-/tmp/gpu_checks}; mkdir -p "$OUT"
source experiments/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/env.txt" 2>&1
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" \
  >> "$OUT/env.txt" 2>&1
timeout "${SHARDED_S:-270}" python3 experiments/gpu_check_sharded.py --json > "$OUT/sharded.json" 2> "$OUT/sharded.log"
echo "sharded rc=$?"
timeout "${FP8_S:-200}" python3 experiments/gpu_check_fp8.py > "$OUT/fp8.json" 2> "$OUT/fp8.log"
echo "fp8 rc=$?"
cat "$OUT/env.txt" "$OUT/sharded.json" "$OUT/fp8.json"
tail -n 15 "$OUT/sharded.log" "$OUT/fp8.log"
