#!/usr/bin/env bash
# Issue 17's 28 dB on one GPU: four stage-1 + decoder-stage variants of the world VAE (experiments/world_vae_sweep.py)
# as four processes side by side, a 2 x 2 of latent channels (16, 32) and step counts (the recipe's, twice that),
# all with object weight 3 and the scene read-out (the best CPU variant, ow3s2). Answers: is the remaining gap one
# of steps or of latent width? Results in $OUT/NAME.json (the sweep's summary, or the finished stages' metadata
# when a run was cut off) and $OUT/NAME.log.   device run: bash experiments/gpu_vae_probe.sh   (carry .whl)
set -u
OUT=${OUT:-/tmp/gpu_vae_probe}; mkdir -p "$OUT"; RUNS=${RUNS:-/tmp/vae_probe}; LIMIT=${LIMIT:-470}
source experiments/gpu_env.sh
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2  # four processes share the GPU
base='"object_weight": 3, "scene_weight": 1'
declare -A V=(
  [lc16_x1]="{\"vae\": {$base}}"
  [lc32_x1]="{\"vae\": {$base, \"latent_channels\": 32}}"
  [lc16_x2]="{\"vae\": {$base, \"steps\": ${STEPS2:-3200}}, \"decoder\": {\"steps\": ${DSTEPS2:-2400}}}"
  [lc32_x2]="{\"vae\": {$base, \"latent_channels\": 32, \"steps\": ${STEPS2:-3200}},
              \"decoder\": {\"steps\": ${DSTEPS2:-2400}}}"
)
for name in "${!V[@]}"; do
  timeout "$LIMIT" python3 experiments/world_vae_sweep.py --out "$RUNS/$name" --variant "$name" "${V[$name]}" \
    > /dev/null 2> "$OUT/$name.log" &
done
wait
for name in "${!V[@]}"; do
  if [ -f "$RUNS/$name/summary.json" ]; then cp "$RUNS/$name/summary.json" "$OUT/$name.json"
  else python3 - "$RUNS/$name" "$OUT/$name.json" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1]) / sys.argv[1].rsplit("/", 1)[-1]
meta = {s: json.loads((run / s / "video_vae.json").read_text()) for s in ("vae", "decoder")
        if (run / s / "video_vae.json").exists()}
Path(sys.argv[2]).write_text(json.dumps({"cut_off": True, **meta}, indent=1))
PY
  fi
  echo "== $name"; grep -o '"held_out_psnr": [0-9.]*' "$OUT/$name.json" | tr '\n' ' '; echo; tail -n 2 "$OUT/$name.log"
done
