"""Parity of the audio path against an audio fixture directory (docs/reference-fixtures-audio.md).

Checks `audio_decode.*`, `vocoder.*`, `decode_audio.*`, `audio_encode.*` and `audio_encode_wave.*` for every
latent length the fixture holds (array suffix `.T<n>`). Modules load from the fixture's own
`audio_checkpoint.safetensors` through the one restore path, so any config in that format works. Each stage
runs on the stored input of that stage (the decoder on `audio_decode.in.latent`, the vocoder on
`vocoder.in.mel`, ...), and `decode_audio.out.waveform` runs end to end from the latent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

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


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    import jax.numpy as jnp

    from ltx_jax.audio_vae import decode_audio, decode_mel, encode_audio, encode_mel
    from ltx_jax.audio_vae.api import run_jitted
    from ltx_jax.audio_vae.bwe import VocoderWithBWE

    decoder, encoder, vocoder = load(fx)
    for sfx in _lengths(fx):
        def has(name):
            return name + sfx in fx
        if has("audio_decode.mid.latent_unnormalized"):
            yield ("audio_decode.mid.latent_unnormalized" + sfx,
                   np.asarray(run_jitted(decoder, fx["audio_decode.in.latent" + sfx], "denormalize")), BOUND)
        if has("audio_decode.out.mel"):
            yield "audio_decode.out.mel" + sfx, np.asarray(decode_mel(decoder, fx["audio_decode.in.latent" + sfx])), BOUND
        if has("vocoder.out.waveform"):
            mel = jnp.asarray(fx["vocoder.in.mel" + sfx])
            if isinstance(vocoder, VocoderWithBWE):
                stages = run_jitted(vocoder, mel, "stages")
                yield "vocoder.mid.conv_post_out" + sfx, _cl(run_jitted(vocoder.vocoder, mel, "conv_post_out")), BOUND
                for name in ("waveform_16k", "waveform_16k_padded", "bwe_residual", "bwe_skip"):
                    if has("vocoder.mid." + name):
                        yield f"vocoder.mid.{name}{sfx}", _cl(stages[name]), BOUND
                if has("vocoder.mid.bwe_generator_in"):
                    gen_in = np.asarray(stages["bwe_generator_in"])
                    yield "vocoder.mid.bwe_generator_in" + sfx, gen_in, BOUND
                    if has("vocoder.mid.bwe_log_mel"):
                        yield "vocoder.mid.bwe_log_mel" + sfx, gen_in.transpose(0, 1, 3, 2), BOUND
                yield "vocoder.out.waveform" + sfx, _cl(stages["waveform"]), BOUND
            else:
                yield "vocoder.mid.conv_post_out" + sfx, _cl(run_jitted(vocoder, mel, "conv_post_out")), BOUND
                yield "vocoder.out.waveform" + sfx, _cl(run_jitted(vocoder, mel)), BOUND
        if has("decode_audio.out.waveform"):
            wave, _ = decode_audio(decoder, vocoder, fx["audio_decode.in.latent" + sfx])
            yield "decode_audio.out.waveform" + sfx, np.asarray(wave)[0], BOUND
        if has("audio_encode.out.latent"):
            mel = jnp.asarray(fx["audio_encode.in.mel" + sfx])
            if has("audio_encode.mid.conv_out"):
                yield "audio_encode.mid.conv_out" + sfx, np.asarray(run_jitted(encoder, mel, "conv_out_features")), BOUND
            yield "audio_encode.out.latent" + sfx, np.asarray(encode_mel(encoder, mel)), BOUND
    if "audio_encode_wave.out.latent" in fx:
        from ltx_jax.audio_vae.mel import waveform_to_mel
        c = encoder.config
        wave = fx["audio_encode_wave.in.waveform"]
        mel = waveform_to_mel(wave, sample_rate=c.sampling_rate, n_fft=c.n_fft, hop=c.mel_hop_length,
                              n_mels=c.mel_bins)
        yield "audio_encode_wave.mid.mel", np.asarray(mel), BOUND
        yield "audio_encode_wave.out.latent", np.asarray(encode_audio(encoder, wave, c.sampling_rate)), BOUND


CHECKS = [Check("audio", _applies, _run,
                covers=r"^(audio_decode|vocoder|decode_audio|audio_encode|audio_encode_wave)\.(mid|out)\.")]
