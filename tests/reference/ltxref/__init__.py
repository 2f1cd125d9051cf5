"""Official reference fixture builder for ltx-jax (runs only in .venv-ref, never imports ltx_jax).

Modules:
  official   imports of ltx-core / ltx-pipelines 1.0.0 in the one order that works, the Gemma-width patch
  components the official components: configurators, SDOps, file-key <-> module-key maps, meta builds
  weights    seeded random weights for every file key, checkpoint writing, load-back round trip
  record     the array recorder behind fixtures.npz / manifest.json
  cases      connector, transformer (+ extra cases, bf16), VAE and upsampler runs
  loop       the two-stage distilled loop, with noise and x0 recording (reusable for later loop fixtures)
  fp8        the FP8 file and its three runs
  loops_record  recording wrappers for the loop fixtures (passes, evaluations, steppers, SDE noise)
  loops_cases   the loop fixture runs: schedules, contexts, guided, i2v, keyframe (+ attention strength), res_2s
  pins       the pinned reference versions (tests/reference/pins.txt), checked on import of this package
"""

from ltxref.pins import check_environment

check_environment()  # before any builder touches the official code: exactly the pinned versions, or a clear error
