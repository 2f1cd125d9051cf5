#!/usr/bin/env bash
# The embedded default's whole recipe (`ltx-jax world-default`) on one lent GPU, for one or more variants side by
# side, as two device calls that share one warm machine: `start` launches each run in its own process session (so it
# outlives the call) and waits up to SECONDS; `wait` (the next call, within the machine's 30 s warm window) waits
# again. For each variant NAME, $OUT gets NAME.tar.part-* (split under the 16 MB per-file limit): the run's
# recipe.json, stages.json, run.log, every stage's metadata and loss curve, and default/ once packaged. Checkpoints
# and caches stay behind (the 8 files / 64 MiB that come back). The lent image runs its own python3 and jax; flax
# and PyAV travel as wheels.
#   device run: bash experiments/gpu_reproduce.sh start 540   (carry .whl), then: bash experiments/gpu_reproduce.sh wait
#   here:       cat OUT/NAME.tar.part-* | tar -x -C DIR
set -u
OUT=${OUT:-/tmp/gpu_reproduce}; RUNS=${RUNS:-/tmp/world_default_runs}; MODE=${1:-start}; BUDGET=${2:-540}
# Variants: NAME -> recipe overrides (`--set STAGE.FIELD=VALUE`); "default" is the committed recipe. The run of
# 2026-12-04 (experiments/results/world_default_gpu.json) compared DiT 4000 + distillation 800 with 6000 + 1000, both
# with the 28 dB VAE stages and a 2400-step decoder stage, before those became the recipe's defaults.
declare -A V=([default]="${SETS:-}")
mkdir -p "$OUT" "$RUNS"
source experiments/gpu_env.sh
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.15  # each run and its two stages beside the DiT
if [ "$MODE" = start ]; then
  for name in "${!V[@]}"; do
    run=$RUNS/$name; rm -rf "$run" "$run.rc"
    args=""; for s in ${V[$name]}; do args="$args --set $s"; done
    setsid nohup bash -c "python3 -m ltx_jax.cli world-default --out $run $args > $run.log 2>&1; \
      echo \$? > $run.rc" > /dev/null 2>&1 &
  done
  python3 -c "import jax, flax, av; print('jax', jax.__version__, 'flax', flax.__version__, 'av', av.__version__, \
    jax.devices())"
fi
end=$((SECONDS + BUDGET))
while [ "$SECONDS" -lt "$end" ]; do
  left=0; for name in "${!V[@]}"; do [ -f "$RUNS/$name.rc" ] || left=1; done
  [ "$left" = 0 ] && break; sleep 5
done
for name in "${!V[@]}"; do
  run=$RUNS/$name
  if [ -f "$run.rc" ]; then echo "== $name finished: rc $(cat "$run.rc")"; else echo "== $name still running"; fi
  cp "$run.log" "$run/run.log" 2>/dev/null
  (cd "$run" && find . -maxdepth 3 -not -path './default/*' -not -path '*/checkpoints/*' -not -path './dit/cache/*' \
    \( -name '*.json' -o -name '*.jsonl' -o -name run.log \) -type f; [ -d default ] && echo default) \
    | tar -C "$run" -czf - -T - | split -b 15m - "$OUT/$name.tar.part-"
  grep -v "^step\|loss \|^\[.*step\|^W[0-9]" "$run.log" | tail -n 8; tail -n 2 "$run.log"
done
echo "after ${SECONDS} s of this call"
