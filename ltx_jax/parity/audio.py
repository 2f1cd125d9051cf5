"""Parity of the audio path against an audio fixture directory (docs/reference-fixtures-audio.md).

Checks `audio_decode.*`, `vocoder.*`, `decode_audio.*`, `audio_encode.*` and `audio_encode_wave.*` for every
latent length the fixture holds (array suffix `.T<n>`). Modules load from the fixture's own
`audio_checkpoint.safetensors` through the one restore path, so any config in that format works. Each stage
runs on the stored input of that stage (the decoder on `audio_decode.in.latent`, the vocoder on
`vocoder.in.mel`, ...), and `decode_audio.out.waveform` runs end to end from the latent (our decoder's mel
into our vocoder). All stages of one length are one compiled program (the vocoder compiles once per length).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.parity import Check, Fixture

BOUND = 1e-4  # float32: max |ours - ref| / max |ref|
CHECKPOINT = "audio_checkpoint.safetensors"
_SUFFIX = re.compile(r"\.T(\d+)$")


def _applies(fx: Fixture) -> bool:
    return (fx.path / CHECKPOINT).is_file() and bool(fx.names(r"^(audio_decode|vocoder|decode_audio|audio_encode)"))


def _lengths(fx: Fixture) -> list[str]:
    return sorted({m.group(0) for n in fx.arrays if (m := _SUFFIX.search(n))}, key=lambda s: int(s[2:]))


def _cl(x) -> np.ndarray:
    """channels-last `[B, L, 2]` -> official `[B, 2, L]`."""
    return np.moveaxis(np.asarray(x, np.float32), -1, 1)


def load(fx: Fixture):
    from ltx_jax.audio_vae import load_audio_decoder, load_audio_encoder, load_vocoder
    from ltx_jax.configs import Runtime
    runtime = Runtime(param_dtype="float32", compute_dtype="float32")
    path = fx.path / CHECKPOINT
    return load_audio_decoder(path, runtime), load_audio_encoder(path, runtime), load_vocoder(path, runtime)


@functools.partial(jax.jit, static_argnames=("graphdefs",))
def _forward(graphdefs, states, latent, mel):
    """Every stage for one latent length in one compiled program: the decoder on the stored latent; the vocoder
    on a batch of [the stored vocoder input, our decoded mel] (the second half is decode_audio end to end);
    the encoder on the stored encoder input."""
    decoder, encoder, vocoder = (nnx.merge(g, s) for g, s in zip(graphdefs, states))
    ours = decoder(latent)
    stages = vocoder.stages(jnp.concatenate([mel, ours.astype(mel.dtype)], axis=0))
    return {"denormalized": decoder.denormalize(latent), "mel": ours, "stages": stages,
            "conv_out": encoder.conv_out_features(mel), "encoded": encoder(mel)}


_VOCODER_MID = ("conv_post_out", "waveform_16k", "waveform_16k_padded", "bwe_residual", "bwe_skip")


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    from ltx_jax.audio_vae import encode_audio, tokens_to_latent

    mesh = fx.mesh  # no sharded path: under a mesh, weights and inputs replicated on it (batch on data)
    modules = load(fx) if mesh is None else tuple(mesh.module(m) for m in load(fx))
    graphdefs, states = zip(*(nnx.split(m) for m in modules))
    encoder = modules[1]
    for sfx in _lengths(fx):
        if "audio_decode.in.latent" + sfx not in fx:
            continue
        latent = jnp.asarray(fx["audio_decode.in.latent" + sfx])
        if "audio_decode.in.tokens" + sfx in fx:  # the pipeline's unpatchify, ours: bit for bit, then decoded
            tokens = jnp.asarray(fx["audio_decode.in.tokens" + sfx])
            latent = tokens_to_latent(tokens if mesh is None else mesh.batch(tokens), latent.shape[1])
            if mesh is not None:
                mesh.note(mesh.replicated("the audio unpatchify", latent))
            yield "audio_decode.in.latent" + sfx, np.asarray(latent), 0.0
        if mesh is not None:
            latent = mesh.batch(latent)
        mel_name = next((n for n in ("vocoder.in.mel", "audio_encode.in.mel") if n + sfx in fx), None)
        mel = jnp.asarray(fx[mel_name + sfx]) if mel_name else None
        if mesh is not None and mel is not None:
            mel = mesh.batch(mel)
        out = _forward(tuple(graphdefs), tuple(states), latent, mel if mel is not None else
                       jnp.zeros((1, 2, 4 * latent.shape[2] - 3, 64), jnp.float32))
        if mesh is not None:
            mesh.note(mesh.replicated("the audio VAE / vocoder", out["mel"]))
        stages = {k: np.asarray(v) for k, v in out["stages"].items()}
        candidates = {
            "audio_decode.mid.latent_unnormalized": np.asarray(out["denormalized"]),
            "audio_decode.out.mel": np.asarray(out["mel"]),
            "vocoder.out.waveform": _cl(stages["waveform"][:1]),
            "decode_audio.out.waveform": _cl(stages["waveform"][1:])[0],
            "audio_encode.mid.conv_out": np.asarray(out["conv_out"]),
            "audio_encode.out.latent": np.asarray(out["encoded"]),
        }
        for name in _VOCODER_MID:
            if name in stages:
                candidates["vocoder.mid." + name] = _cl(stages[name][:1])
        if "bwe_generator_in" in stages:
            candidates["vocoder.mid.bwe_generator_in"] = stages["bwe_generator_in"][:1]
            candidates["vocoder.mid.bwe_log_mel"] = stages["bwe_generator_in"][:1].transpose(0, 1, 3, 2)
        needs_mel = ("vocoder.", "audio_encode.")
        for name, value in candidates.items():
            if name + sfx in fx and (mel_name or not name.startswith(needs_mel)):
                yield name + sfx, value, BOUND
    if "audio_encode_wave.out.latent" in fx:
        from ltx_jax.audio_vae.mel import waveform_to_mel
        c = encoder.config
        wave = fx["audio_encode_wave.in.waveform"] if mesh is None else mesh.batch(fx["audio_encode_wave.in.waveform"])
        mel = waveform_to_mel(wave, sample_rate=c.sampling_rate, n_fft=c.n_fft, hop=c.mel_hop_length,
                              n_mels=c.mel_bins)
        if mesh is not None:
            mesh.note(mesh.replicated("the audio encoder", mel))
        yield "audio_encode_wave.mid.mel", np.asarray(mel), BOUND
        yield "audio_encode_wave.out.latent", np.asarray(encode_audio(encoder, wave, c.sampling_rate)), BOUND


_INPUTS = ((r"^audio_decode\.in\.(tokens|latent)\.", "normalized audio tokens as the transformer emits them (random)"),
           (r"^(vocoder|audio_encode)\.in\.mel\.", "stored mel spectrogram fed to the vocoder / encoder"),
           (r"^audio_encode_wave\.in\.waveform$", "stored waveform fed to the encoder's mel front end"))

CHECKS = [Check("audio", _applies, _run,
                covers=r"^(audio_decode|vocoder|decode_audio|audio_encode|audio_encode_wave)\.(mid|out)\.",
                inputs=_INPUTS)]
