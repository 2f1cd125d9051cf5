"""Parity of stage 2 and the decode of the dev two-stage and HQ pipelines (`dev2.*`, `hq2.*` of a loop fixture;
names in tests/reference/LOOPS.md), against `TI2VidTwoStagesPipeline` / `TI2VidTwoStagesHQPipeline`.

Stage 1 of those pipelines is the loop fixture's `guided` / `res2s` run (compared by `ltx_jax.parity.loop_runs`);
stage 2 starts from that run's official output (stage isolated), then everything is ours and compared: the
upsampled latent (the upsampler the manifest names in `runs.<name>.upsampler`, or fail), the stage-2 state
(pre-noise latent, positions, mask) and its noising with the recorded noise, our stage-2 schedule, every step's x0
(Euler for dev, res_2s with our normalization of the recorded raw SDE draws for HQ), the final latents and the
decode with the recorded decoder noise. Counterparts: ltx_pipelines `ti2vid_two_stages.py`,
`ti2vid_two_stages_hq.py`, `utils/helpers.py`, `utils/samplers.py`; ltx_core `upsample_video`, `VideoDecoder`.
Under a mesh (`Fixture.mesh`) the upsampler runs replicated (it has no sharded path), the stage-2 states are placed
by the sampler's rules and noised there, the loop runs sharded (`sample(..., rules=)`) and so does the decode.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np

from ltx_jax.parity import Check, Fixture, FixtureError
from ltx_jax.parity.mesh import HOST, where

__all__ = ["CHECKS", "run_stage2", "STAGE2_RUNS"]

STAGE2_RUNS = {"dev2": ("guided", "euler"), "hq2": ("res2s", "res2s")}
BOUND = 4e-5  # float32 latents and x0: measured <= 3.5e-6 (ltx23-tiny)
BOUND_DECODE = 2e-5  # measured <= 2.2e-6


def _upsampler(fx: Fixture, name: str) -> str:
    kind = ((fx.manifest.get("runs") or {}).get(name) or {}).get("upsampler")
    if not kind:
        raise FixtureError(f"manifest.json names no upsampler for {name} (runs.{name}.upsampler)")
    if not (fx.path / f"upsampler_{kind}.safetensors").is_file():
        raise FixtureError(f"{name}: upsampler_{kind}.safetensors is missing")
    return kind


def run_stage2(fx: Fixture, name: str) -> dict[str, np.ndarray]:
    """Our arrays for `<name>.*` (see the module docstring)."""
    from ltx_jax.parity.loop import _decode, _video_official, audio_tokens_to_official, loop_models
    from ltx_jax.parity.loop_runs import _fps, _sde_noise, our_contexts
    from ltx_jax.sampling import (audio_positions, distilled_sigmas, initial_state, noise_latent,
                                  patchify_video, video_positions)
    from ltx_jax.sampling.loops import Sampler, sample
    from ltx_jax.sampling.samplers import Prompt
    from ltx_jax.upsampler import load_upsampler, upsample_video

    source, method = STAGE2_RUNS[name]
    kind = _upsampler(fx, name)
    rt, dit, encoder, decoder = loop_models(str(fx.path))
    p, out = f"{name}.stage2", {}
    stage1 = jnp.asarray(np.moveaxis(fx[f"{source}.out.video_latent"], 1, -1))  # the official stage-1 output
    upsampler = load_upsampler(fx.path / f"upsampler_{kind}.safetensors", rt)
    mesh = fx.mesh
    if mesh is not None:
        mesh.dit_attention(dit)  # a strategy that cannot split the heads fails here, with the reason
        stage1, encoder, upsampler = mesh.batch(stage1), mesh.module(encoder), mesh.module(upsampler)
    up = upsample_video(stage1, encoder, upsampler)
    if mesh is not None:
        mesh.note(mesh.replicated("the latent upsampler", up), rf"^{name}\.upsample\.")
    up = np.asarray(up)
    out[f"{name}.upsample.out.video_latent"] = np.moveaxis(up, -1, 1)
    b, f, h, w, c = up.shape
    pre = {"video": patchify_video(jnp.asarray(up)), "audio": jnp.asarray(fx[f"{source}.out.audio_tokens"])}
    positions = {"video": video_positions(f, h, w, fps=_fps(fx), batch=b),
                 "audio": audio_positions(pre["audio"].shape[1], batch=b)}
    sampler = Sampler(distilled_sigmas(2), method=method)
    out[f"{p}.sigmas"] = sampler.sigmas
    states = {}
    for s in ("video", "audio"):
        st = initial_state(positions[s], pre[s], channels=pre[s].shape[-1])
        noise = jnp.asarray(fx[f"{p}.{s}.noise"])
        if mesh is not None:
            st, noise = mesh.latent_state(st, s), mesh.state(noise, noise, s)[0]
        noised = noise_latent(st.latent, noise, st.denoise_mask, float(fx[f"{p}.{s}.noise_scale"][0]))
        if mesh is not None:
            mesh.note(f"stage-2 state placed by the state rules and noised on the mesh: {where(noised)}",
                      rf"^{p}\.{s}\.")
        out[f"{p}.{s}.pre_noise_latent"], out[f"{p}.{s}.noised_latent"] = np.asarray(st.latent), np.asarray(noised)
        out[f"{p}.{s}.positions"], out[f"{p}.{s}.denoise_mask"] = np.asarray(st.positions), np.asarray(st.denoise_mask)
        states[s] = st.replace(latent=noised)
    kw = {}
    if method == "res2s":
        v, a, compared = _sde_noise(fx, p, sampler.steps)
        kw["sde_noise"] = (v, a)
        out.update(compared)
    res = sample(dit, sampler, states["video"], states["audio"], Prompt(our_contexts(fx)["pos"]), record=True, **kw,
                 rules=None if mesh is None else mesh.rules)
    if mesh is not None:
        mesh.loop(dit, res, rf"^{p}\.(step|eval|out)")
        mesh.note(HOST, rf"^{p}\.sigmas$")
    label = "eval" if method == "res2s" else "step"
    for e in range(res.record["video_x0"].shape[0]):
        for s in ("video", "audio"):
            out[f"{p}.{label}{e:02d}.{s}_x0"] = np.asarray(res.record[f"{s}_x0"][e])
    out[f"{p}.out.video_latent"] = _video_official(np.asarray(res.video.latent), (f, h, w))
    out[f"{p}.out.audio_latent"] = audio_tokens_to_official(np.asarray(res.audio.latent),
                                                            fx[f"{p}.out.audio_latent"].shape[-1])
    noise = np.moveaxis(fx[f"{name}.decode.noise"], 1, -1) if decoder.timestep_conditioning else None
    video = _decode(fx, decoder, jnp.asarray(np.moveaxis(out[f"{p}.out.video_latent"], 1, -1)), noise, name)
    out[f"{name}.decode.out.video"] = np.moveaxis(np.asarray(video), -1, 1)
    return out


def _runs(fx: Fixture) -> list[str]:
    return [n for n in STAGE2_RUNS if f"{n}.decode.out.video" in fx]


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    for name in _runs(fx):
        for array, ours in run_stage2(fx, name).items():
            if array in fx:
                exact = array.endswith((".sigmas", ".positions", ".denoise_mask"))
                yield array, ours, 0.0 if exact else (BOUND_DECODE if ".decode." in array else BOUND)


_NAME = r"(dev2|hq2)"
COVERS = (rf"^{_NAME}\.upsample\.out\.|^{_NAME}\.stage2\.(sigmas$|(video|audio)\.(pre_noise_latent|noised_latent|"
          rf"positions|denoise_mask)$|(step|eval)\d+\.|out\.)|^{_NAME}\.decode\.out\.")

CHECKS = [Check("stage2", lambda fx: fx.kind == "ltx" and bool(_runs(fx)), _run, covers=COVERS, inputs=(
    (rf"^{_NAME}\.stage2\.(video|audio)\.(noise|noise_scale)$", "the recorded stage-2 GaussianNoiser draw and scale"),
    (rf"^{_NAME}\.decode\.noise$", "the recorded decoder noise"),
    (r"^hq2\.stage2\.sde_noise_raw\.", "the recorded raw res_2s SDE draws (normalized by us)"),
    (r"^(guided|res2s)\.out\.(video_latent|audio_tokens)$", "stage 1's official output (compared by the loops check)"),
))]
