"""Pipeline building blocks: models, prompt and noise files, image encoding, one denoising stage.

Counterparts: ltx_pipelines `utils/model_ledger.py` (`ModelLedger`: which weights each stage uses, LoRA
fusion), `utils/helpers.py` (`denoise_audio_video`, `noise_video_state`, `noise_audio_state`,
`combined_image_conditionings`, `encode_prompts`), ltx_core `tools.py` (`create_initial_state`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs import Runtime
from ltx_jax.pipelines.media import ImageCondition, preprocess_image
from ltx_jax.pipelines.options import RunOptions, Stage, StageNoise
from ltx_jax.sampling import (LatentState, audio_positions, audio_token_count, clear_conditioning,
                              condition_by_keyframe, condition_by_latent_index, initial_noise, initial_state,
                              latent_grid, noise_state, patchify_video, unpatchify_video, video_positions)
from ltx_jax.sampling.loops import Sampler, sample
from ltx_jax.sampling.samplers import Prompt, TextContext
from ltx_jax.sharding import ShardingRules
from ltx_jax.types import VideoLatentShape

__all__ = ["Models", "load_models", "load_prompt", "StageNoise", "load_noise", "encode_images", "run_stage",
           "StageOutput", "NOISE_KEYS", "Stage", "RunOptions"]

# Keys of a noise file (ltx-jax layouts: tokens [B, T, C], decoder noise [B, F', H', W', C]); a main
# reference fixture's `fixtures.npz` is accepted too (its `loop.*` arrays, official decoder layout).
NOISE_KEYS = ("stage1.video", "stage1.audio", "stage2.video", "stage2.audio", "decode")


@dataclass
class Models:
    """What the pipelines run. `dit_stage2` is the stage-2 transformer when it differs (dev + distilled LoRA)."""

    dit: tuple[nnx.GraphDef, nnx.State]
    decoder: nnx.Module
    encoder: nnx.Module | None = None
    upsampler: nnx.Module | None = None
    dit_stage2: tuple[nnx.GraphDef, nnx.State] | None = None
    temporal_upsampler: nnx.Module | None = None
    text: tuple[nnx.GraphDef, nnx.State] | None = None
    model_version: str = ""
    audio_decoder: nnx.Module | None = None  # audio VAE decoder + vocoder: None when the file has no audio parts
    vocoder: nnx.Module | None = None
    audio_encoder: nnx.Module | None = None  # audio VAE encoder (audio-to-video): load_models(audio_encoder=True)

    @property
    def config(self):
        """The transformer's `TransformerConfig` (merging a split model copies nothing)."""
        return nnx.merge(*self.dit).config

    @property
    def dtype(self) -> jnp.dtype:
        """The transformer's compute dtype: the pipelines keep latents in it, as the official ones do (bf16)."""
        return jnp.dtype(nnx.merge(*self.dit).compute_dtype)


def load_models(checkpoint: str | os.PathLike, *, upsampler: str | os.PathLike | None = None,
                temporal_upsampler: str | os.PathLike | None = None,
                stage2_loras: Sequence[tuple[str | os.PathLike, float]] = (),
                loras: Sequence[tuple[str | os.PathLike, float]] = (), runtime: Runtime = Runtime(),
                rules: ShardingRules | None = None, text: bool = False, audio: bool = True,
                audio_encoder: bool = False) -> Models:
    """Load a pipeline's components (`ModelLedger`) from an official single file or an ltx-jax checkpoint folder.

    Args:
        checkpoint: transformer + VAE (+ text connectors).
        upsampler, temporal_upsampler: latent upsampler files (spatial x2 or x1.5; temporal x2).
        loras: (path, strength) LoRAs merged into the (stage-1) transformer.
        stage2_loras: when given, a second transformer copy for stage 2 with exactly these LoRAs (like
            `ModelLedger.with_loras`; repeat user LoRAs here): dev two-stage `[(distilled, 1.0)]`, HQ
            `loras=[(distilled, 0.25)], stage2_loras=[(distilled, 0.5)]`.
        runtime: dtypes. rules: restore the transformer straight into this sharding (`ltx_jax.sharding`).
        text: also load the text connectors (for prompt files holding Gemma hidden states).
        audio: also load the audio VAE decoder and the vocoder when the file has them (`audio_vae.decoder.*`,
            `vocoder.*` and their config), so the pipelines return a waveform.
        audio_encoder: also load the audio VAE encoder (`audio_vae.encoder.*`; required then), for audio-to-video.
    """
    from ltx_jax.checkpoint.loader import restore_state
    from ltx_jax.checkpoint.open import open_source
    from ltx_jax.upsampler import load_upsampler
    from ltx_jax.audio_vae import load_audio_decoder, load_audio_encoder, load_vocoder
    from ltx_jax.video_vae import load_video_decoder, load_video_encoder

    import ltx_jax.transformer  # noqa: F401  (binds the transformer and text modules to their layout entries)

    source = open_source(checkpoint)
    dit = restore_state(source, "transformer", runtime=runtime, shardings=rules, loras=list(loras))
    dit2 = restore_state(source, "transformer", runtime=runtime, shardings=rules,
                         loras=list(stage2_loras)) if stage2_loras else None
    keys = source.specs()
    has_audio = audio and any(k.startswith("audio_vae.decoder.") for k in keys) and any(
        k.startswith("vocoder.") for k in keys)
    return Models(dit=dit, dit_stage2=dit2, decoder=load_video_decoder(source, runtime),
                  encoder=load_video_encoder(source, runtime),
                  audio_decoder=load_audio_decoder(source, runtime) if has_audio else None,
                  vocoder=load_vocoder(source, runtime) if has_audio else None,
                  audio_encoder=load_audio_encoder(source, runtime) if audio_encoder else None,
                  upsampler=load_upsampler(upsampler, runtime) if upsampler else None,
                  temporal_upsampler=load_upsampler(temporal_upsampler, runtime) if temporal_upsampler else None,
                  text=restore_state(source, "text_embeddings", runtime=runtime) if text else None,
                  model_version=(source.metadata or {}).get("model_version", "") or "")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
        with SafetensorsFile(path) as f:
            return {k: np.asarray(f[k]) for k in f}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _hidden(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray] | None:
    if prefix + "hidden_states" in arrays:
        return list(arrays[prefix + "hidden_states"])  # stacked [L+1, B, S, G]
    keys = sorted((k for k in arrays if k.startswith(prefix + "hidden_states.")),
                  key=lambda k: int(k.rsplit(".", 1)[1]))
    return [arrays[k] for k in keys] or None


def load_prompt(path: str | os.PathLike, text: tuple[nnx.GraphDef, nnx.State] | None = None,
                dtype=jnp.float32) -> Prompt:
    """A precomputed prompt from `.npz` / `.safetensors`.

    Either the connector outputs `video_context` `[B, S, Dv]` and `audio_context` `[B, S, Da]` (optionally
    `negative_video_context`, `negative_audio_context`), or Gemma's hidden states `hidden_states` `[L+1, B,
    S, G]` (or `hidden_states.0` ... `hidden_states.L`) with `attention_mask` `[B, S]` (optionally with a
    `negative_` prefix), which are run through the checkpoint's text connectors (`text`, from
    `load_models(..., text=True)`).
    """
    from ltx_jax.transformer import encode_text

    path = Path(path)
    arrays = _read_arrays(path)

    def context(prefix: str) -> TextContext | None:
        if f"{prefix}video_context" in arrays:
            return TextContext(jnp.asarray(arrays[f"{prefix}video_context"], dtype),
                               jnp.asarray(arrays[f"{prefix}audio_context"], dtype))
        hidden = _hidden(arrays, prefix)
        if hidden is None:
            return None
        if text is None:
            raise ValueError(f"{path}: holds Gemma hidden states; load the text connectors (load_models(text=True))")
        mask = jnp.asarray(arrays[prefix + "attention_mask"])
        v, a = encode_text(*text, [jnp.asarray(h, dtype) for h in hidden], mask)
        return TextContext(v, a)

    positive = context("")
    if positive is None:
        raise ValueError(f"{path}: no prompt found; expected video_context + audio_context, or hidden_states + "
                         f"attention_mask (keys: {sorted(arrays)[:12]})")
    return Prompt(positive, context("negative_"))


def load_noise(path: str | os.PathLike) -> tuple[dict[str, StageNoise], np.ndarray | None]:
    """({"stage1": StageNoise, "stage2": ...}, decoder noise `[B, F', H', W', C]` or None) from a noise file
    (keys `NOISE_KEYS`) or a reference fixture's `fixtures.npz` (`loop.<stage>.<stream>.noise`, `loop.decode.noise`)."""
    arrays = _read_arrays(Path(path))
    stages = {}
    for stage in ("stage1", "stage2"):
        ours = (arrays.get(f"{stage}.video"), arrays.get(f"{stage}.audio"))
        fixture = (arrays.get(f"loop.{stage}.video.noise"), arrays.get(f"loop.{stage}.audio.noise"))
        for v, a in (ours, fixture):
            if v is not None and a is not None:
                stages[stage] = StageNoise(v, a)
                break
    decode = arrays.get("decode")
    if decode is None and "loop.decode.noise" in arrays:
        decode = np.moveaxis(arrays["loop.decode.noise"], 1, -1)  # official [B, C, F, H, W]
    if not stages:
        raise ValueError(f"{path}: no stage noise (keys {NOISE_KEYS} or loop.<stage>.<stream>.noise)")
    return stages, decode


def encode_images(models: Models, images: Sequence[ImageCondition], height: int, width: int) -> list[jax.Array]:
    """`combined_image_conditionings`' encoding: each image preprocessed at this stage's size and VAE-encoded
    to a one-frame latent `[1, 1, H/32, W/32, C]`."""
    if not images:
        return []
    if models.encoder is None:
        raise ValueError("image conditioning needs the VAE encoder")
    from ltx_jax.video_vae import encode
    return [encode(models.encoder, preprocess_image(img, height, width)) for img in images]


@dataclass
class StageOutput:
    """A stage's result: video latent `[B, F', H', W', C]`, audio tokens `[B, T, C_audio]`, the loop's record."""

    video: jax.Array
    audio: jax.Array
    record: dict | None = None


def run_stage(dit: tuple[nnx.GraphDef, nnx.State], sampler: Sampler, prompt: Prompt, stage: Stage,
              options: RunOptions = RunOptions()) -> StageOutput:
    """`denoise_audio_video`: initial state, conditionings, noising, the loop, `clear_conditioning`, unpatchify.

    `stage` gives the size and starting point (see `Stage`); of `options` only `callbacks`, `rules` and
    `record` apply to one stage. Video positions take `stage.dtype` unless `stage.float32_positions`, as
    ltx-core 1.0.0's `VideoLatentTools` casts them to the model dtype: in a bf16 run the RoPE then sees bf16
    time coordinates, which moves the official bf16 output ~14 % (relative L2) away from its own float32
    output on the tiny models; later ltx-core versions keep them float32. Audio positions are float32 in
    both, and appended keyframe positions (float32) promote the concatenation to float32, as in torch.
    """
    st, dtype, key, noise = stage, stage.dtype, stage.key, stage.noise
    frames, fps, channels = st.frames, st.fps, st.channels
    grid = latent_grid(frames, st.height, st.width)
    shape = VideoLatentShape(1, *grid, channels)
    init_v = None if st.initial_video is None else patchify_video(jnp.asarray(st.initial_video, dtype))
    positions = jnp.asarray(video_positions(*grid, fps=fps), jnp.float32 if st.float32_positions else dtype)
    video = initial_state(positions, init_v, channels=channels, dtype=dtype)
    for img, lat in zip(st.images, st.encoded, strict=True):
        if img.frame_idx == 0:
            video = condition_by_latent_index(video, lat, shape=shape, latent_idx=0, strength=img.strength)
        else:
            video = condition_by_keyframe(video, lat, shape=shape, frame_idx=int(img.frame_idx),
                                          strength=img.strength, fps=fps, attention_strength=img.attention_strength)
    tokens = audio_token_count(frames, fps)
    init_a = None if st.initial_audio is None else jnp.asarray(st.initial_audio, dtype)
    if init_a is not None and init_a.shape[1] != tokens:
        raise ValueError(f"initial audio has {init_a.shape[1]} tokens; this stage has {tokens}")
    audio = initial_state(audio_positions(tokens), init_a, channels=st.audio_channels, dtype=dtype)
    if noise is None:
        if key is None:
            raise ValueError("run_stage needs Stage.noise (explicit draws) or Stage.key")
        nv, na = initial_noise(key, video.latent.shape, audio.latent.shape, video.latent.dtype)
    else:
        nv, na = jnp.asarray(noise.video, dtype), jnp.asarray(noise.audio, dtype)
        for name, n, state in (("video", nv, video), ("audio", na, audio)):
            if n.shape != state.latent.shape:
                raise ValueError(f"{name} noise has shape {n.shape}; this stage's state is {state.latent.shape}")
    if st.frozen_audio:  # `denoise_video_only`: audio noised at scale 0, then its denoise mask zeroed
        if init_a is None:
            raise ValueError("Stage.frozen_audio needs Stage.initial_audio (the encoded audio tokens)")
        audio = audio.replace(denoise_mask=jnp.zeros_like(audio.denoise_mask))
    video = noise_state(video, nv, st.noise_scale)
    audio = noise_state(audio, na, 0.0 if st.frozen_audio else st.noise_scale)
    sde = None if noise is None else noise.sde
    rules = options.rules
    res = sample(dit, sampler, video, audio, prompt, callbacks=options.callbacks, grid_tokens=shape.token_count,
                 key=None if key is None or sde is not None else jax.random.fold_in(key, 7), sde_noise=sde,
                 rules=rules, record=options.record)
    cleared: LatentState = clear_conditioning(res.video, shape.token_count)
    video_out, audio_out = unpatchify_video(cleared.latent, shape), res.audio.latent
    if rules is not None:  # only the loop runs on the mesh; the VAE and upsamplers live on the default device
        video_out, audio_out = jax.device_put((video_out, audio_out), jax.devices()[0])
    return StageOutput(video_out, audio_out, res.record)
