"""Parity of the distilled two-stage loop of a main fixture (`loop.*`, docs/reference-fixtures.md).

`DistilledPipeline`'s loop, chained from the format's inputs (the recorded noise; no torch RNG): our distilled
schedules (compared as outputs by `ltx_jax.parity.schedules`), stage 1 from our noising of the recorded pre-noise
state, the upsampler the manifest names (`inputs.loop_upsampler`; a fixture that names none fails), the stage-2
pre-noise state (our upsampled latent, our stage-1 audio) and its noising with the recorded noise, stage 2, and the
decode with the recorded decoder noise: errors accumulate through the whole chain as in a real run. Config, grids
and token counts come from the checkpoint metadata and the array shapes, so any small dims work. The loop-fixture
runs are in `ltx_jax.parity.loop_runs`. Counterparts: ltx_pipelines `distilled.py`, `utils/samplers.py`,
`utils/helpers.py`.

Under a mesh (`Fixture.mesh`) the states are noised on the mesh by the sampler's state rules, both stages run the
sharded loop (`sample(..., rules=)`), the upsampler (no sharded path) runs replicated and the decode sharded
(`decode_sharded`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.parity import Check, Fixture
from ltx_jax.parity.mesh import where

__all__ = ["CHECKS", "BOUND", "run_two_stage", "audio_tokens_to_official", "loop_models", "recorded_state",
           "loop_upsampler"]

# float32, max |ours - ref| / max |ref|: measured <= 3.3e-6 (x0 of every step, both tiny configs, 3 seeds)
BOUND = 4e-5
BOUND_DECODE = 2.5e-5  # decoded video of the chained loop: measured <= 2.5e-6
CHECKPOINT = "ltx_checkpoint.safetensors"


def audio_tokens_to_official(tokens: np.ndarray, mel_bins: int) -> np.ndarray:
    """`[B, T, C*mel]` patchified audio tokens -> the official `[B, C, T, mel]` (`b t (c f) -> b c t f`)."""
    b, t, cf = tokens.shape
    return np.asarray(tokens).reshape(b, t, cf // mel_bins, mel_bins).transpose(0, 2, 1, 3)


def _video_official(tokens: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """`[B, F*H*W, C]` -> official `[B, C, F, H, W]`."""
    b, _, c = tokens.shape
    return np.moveaxis(np.asarray(tokens).reshape(b, *grid, c), -1, 1)


@functools.lru_cache(maxsize=4)
def loop_models(path: str):
    """(float32 runtime, split DiT, VAE encoder, VAE decoder) of a fixture directory, cached per directory."""
    from ltx_jax.configs import Runtime
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
    from ltx_jax.transformer import load_transformer
    from ltx_jax.video_vae import load_video_decoder, load_video_encoder

    rt = Runtime(param_dtype="float32", compute_dtype="float32")
    ckpt = SafetensorsFile(Path(path) / CHECKPOINT)
    return rt, nnx.split(load_transformer(ckpt, rt)), load_video_encoder(ckpt, rt), load_video_decoder(ckpt, rt)


def recorded_state(fx: Fixture, prefix: str, latent: str = "noised_latent"):
    """A `LatentState` from `<prefix>.{<latent>, denoise_mask, clean_latent (or pre_noise_latent), positions}`.

    Without a recorded `denoise_mask` the mask is all ones; positions may be under the main fixture's older names
    (`loop.<stage>.video_positions`, `loop.audio_positions`).
    """
    from ltx_jax.sampling import LatentState

    lat = jnp.asarray(fx[f"{prefix}.{latent}"])
    mask = fx[f"{prefix}.denoise_mask"] if f"{prefix}.denoise_mask" in fx else np.ones((*lat.shape[:2], 1), np.float32)
    clean = fx[f"{prefix}.clean_latent"] if f"{prefix}.clean_latent" in fx else fx[f"{prefix}.pre_noise_latent"]
    pos = f"{prefix}.positions"
    if pos not in fx and prefix.startswith("loop."):
        stage, stream = prefix.split(".")[1:3]
        pos = f"loop.{stage}.video_positions" if stream == "video" else "loop.audio_positions"
    return LatentState(latent=lat, denoise_mask=jnp.asarray(mask), positions=jnp.asarray(fx[pos]),
                       clean_latent=jnp.asarray(clean))


def loop_upsampler(fx: Fixture) -> str:
    """The upsampler kind the manifest names for the loop (`inputs.loop_upsampler`); never guessed."""
    from ltx_jax.parity import FixtureError

    named = (fx.manifest.get("inputs") or {}).get("loop_upsampler")
    if not named:
        raise FixtureError("manifest.json names no loop upsampler (inputs.loop_upsampler): the two-stage loop "
                           "cannot be checked without knowing which upsampler the official run used")
    if not (fx.path / f"upsampler_{named}.safetensors").is_file():
        raise FixtureError(f"manifest names loop upsampler {named!r}, but upsampler_{named}.safetensors is missing")
    return named


def run_two_stage(fx: Fixture) -> dict[str, np.ndarray]:
    """Our arrays for every `loop.*` output of a main fixture (see the module docstring)."""
    from ltx_jax.sampling import noise_latent
    from ltx_jax.sampling.loops import distilled_sampler, sample
    from ltx_jax.sampling.samplers import Prompt, TextContext
    from ltx_jax.upsampler import load_upsampler, upsample_video

    kind = loop_upsampler(fx)  # before anything is loaded: a fixture that names none fails at once
    rt, dit, encoder, decoder = loop_models(str(fx.path))
    upsampler = load_upsampler(fx.path / f"upsampler_{kind}.safetensors", rt)
    mesh = fx.mesh
    if mesh is not None:
        mesh.dit_attention(dit)  # a strategy that cannot split the heads fails here, with the reason
        encoder, upsampler = mesh.module(encoder), mesh.module(upsampler)
    prompt = Prompt(TextContext(jnp.asarray(fx["connector.out.video_encoding"]),
                                jnp.asarray(fx["connector.out.audio_encoding"])))
    mel = fx["loop.stage1.out.audio_latent"].shape[-1]
    grids = {s: tuple(fx[f"loop.{s}.out.video_latent"].shape[2:]) for s in ("stage1", "stage2")}
    out: dict[str, np.ndarray] = {}
    step = 0
    pre: dict[str, jax.Array] = {}
    for stage in ("stage1", "stage2"):
        sampler = distilled_sampler(1 if stage == "stage1" else 2)
        states = {}
        for name in ("video", "audio"):
            p = f"loop.{stage}.{name}"
            st = recorded_state(fx, p, latent="pre_noise_latent")
            if stage == "stage2":  # our upsampled latent and our stage-1 audio, as the pipeline chains them
                out[f"{p}.pre_noise_latent"] = np.asarray(pre[name])
                st = st.replace(latent=pre[name], clean_latent=pre[name])
            latent, noise = st.latent, jnp.asarray(fx[f"{p}.noise"])
            if mesh is not None:
                latent, noise = mesh.state(latent, noise, name)
            noised = noise_latent(latent, noise, st.denoise_mask, float(fx[f"{p}.noise_scale"][0]))
            out[f"{p}.noised_latent"] = np.asarray(noised)
            if mesh is not None:
                mesh.note(f"the loop state noised on the mesh: {where(noised)}", rf"^{p}\.noised_latent$")
            states[name] = st.replace(latent=noised)
        res = sample(dit, sampler, states["video"], states["audio"], prompt, record=True,
                     rules=None if mesh is None else mesh.rules)
        if mesh is not None:
            mesh.loop(dit, res, rf"^loop\.(step|{stage}\.out\.|stage2\.audio\.pre_noise)")
        for i in range(sampler.steps):
            for s in ("video", "audio"):
                out[f"loop.step{step + i:02d}.{s}_x0"] = np.asarray(res.record[f"{s}_x0"][i])
        step += sampler.steps
        vtok, atok = np.asarray(res.video.latent), np.asarray(res.audio.latent)
        out[f"loop.{stage}.out.video_latent"] = _video_official(vtok, grids[stage])
        out[f"loop.{stage}.out.audio_latent"] = audio_tokens_to_official(atok, mel)
        if stage == "stage1":
            latent = jnp.asarray(vtok.reshape(vtok.shape[0], *grids["stage1"], vtok.shape[-1]))
            up = upsample_video(latent if mesh is None else mesh.batch(latent), encoder, upsampler)
            if mesh is not None:
                mesh.note(mesh.replicated("the latent upsampler", up),
                          r"^loop\.(upsample\.|stage2\.in\.|stage2\.video\.pre_noise)")
            up = np.asarray(up)
            out["loop.upsample.out.video_latent"] = out["loop.stage2.in.upsampled_latent"] = np.moveaxis(up, -1, 1)
            pre = {"video": jnp.asarray(up.reshape(up.shape[0], -1, up.shape[-1])), "audio": jnp.asarray(atok)}
    latent = jnp.asarray(np.moveaxis(out["loop.stage2.out.video_latent"], 1, -1))
    noise = np.moveaxis(fx["loop.decode.noise"], 1, -1) if decoder.timestep_conditioning else None
    out["loop.decode.out.video"] = np.moveaxis(np.asarray(_decode(fx, decoder, latent, noise, "loop")), -1, 1)
    return out


def _decode(fx: Fixture, decoder, latent, noise, prefix: str):
    """The untiled decode: on one device, or under `fx.mesh` sharded by rows (`decode_sharded`), noted."""
    from ltx_jax.video_vae import decode

    if fx.mesh is None:
        return decode(decoder, latent, noise=noise)
    from ltx_jax.video_vae.sharded import decode_sharded
    out = decode_sharded(decoder, latent, fx.mesh.rules, noise=noise)
    fx.mesh.note(f"sharded decode (decode_sharded): latent rows over the mesh; output {where(out)}",
                 rf"^{prefix}\.decode\.")
    return out


def _two_stage_checks(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    for name, ours in run_two_stage(fx).items():
        if name in fx:
            yield name, ours, BOUND_DECODE if name == "loop.decode.out.video" else BOUND


def _has_two_stage(fx: Fixture) -> bool:
    return fx.kind == "ltx" and "loop.stage1.video.noised_latent" in fx and "connector.out.video_encoding" in fx


NOT_CHECKED = [
    (r"^loop_bf16\.", "the distilled pipeline in bf16 (an extra of our builder): compared end to end through the CLI's "
                      "default bf16 path by cosine and relative L2 in tests/test_bf16_pipeline.py; max-abs bounds "
                      "mean little in bf16"),
]

CHECKS = [
    Check("loop", _has_two_stage, _two_stage_checks,
          covers=r"^loop\.(step\d+\.|stage[12]\.out\.|upsample\.out|decode\.out|stage2\.in\.upsampled_latent$"
                 r"|stage[12]\.(video|audio)\.noised_latent$|stage2\.(video|audio)\.pre_noise_latent$)",
          inputs=((r"^loop\.stage[12]\.(video|audio)\.(noise|noise_scale|positions|denoise_mask)$",
                   "the recorded noise and state of the official loop (replayed, no torch RNG)"),
                  (r"^loop\.stage1\.(video|audio)\.pre_noise_latent$", "the stage-1 state before noising (zeros)"),
                  (r"^loop\.(stage[12]\.video_positions|audio_positions)$", "positions (the format's older names)"),
                  (r"^loop\.decode\.noise$", "the recorded decoder noise"),
                  (r"^loop\.seed$", "the official run's torch seed; its recorded noise is replayed instead"),
                  (r"^connector\.out\.(video|audio)_encoding$", "the text context (compared by the connector check)"))),
]
