"""Synthetic checkpoints in the official file layout, written from `schema` with seeded random values.

Used by the demo (a bundled tiny checkpoint the project builds itself, no torch involved) and by
benchmarks that need a large file with the real key set. Values are random and only meant to be
well-scaled (weights ~ N(0, 1/fan_in)); they do not come from any trained model.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ltx_jax.configs import LTXConfig, UpsamplerConfig
from ltx_jax.convert import schema as S
from ltx_jax.convert.safetensors_file import save_file


def _audio_buffer(key: str, shape: tuple[int, ...], config: LTXConfig | None) -> np.ndarray | None:
    """Fixed (not learned) audio buffers: the vocoders' anti-aliasing filters and the BWE's STFT / mel bases."""
    if key.endswith(("upsample.filter", "lowpass.filter")):
        from ltx_jax.audio_vae.resample import kaiser_sinc_filter
        return kaiser_sinc_filter(0.25, 0.3, shape[-1]).reshape(shape)  # the x2 Activation1d filters
    if "mel_stft." not in key or config is None or config.vocoder is None or config.vocoder.bwe is None:
        return None
    bwe = config.vocoder.bwe
    if key.endswith("mel_basis"):
        from ltx_jax.audio_vae.mel import slaney_mel_filterbank
        return slaney_mel_filterbank(bwe.input_sampling_rate, bwe.n_fft, bwe.num_mels).T
    n = bwe.n_fft
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    dft = np.fft.fft(np.eye(n))[: n // 2 + 1]
    basis = np.vstack([dft.real, dft.imag]) * window
    return (basis if key.endswith("forward_basis") else np.linalg.pinv(n * basis).T * window)[:, None, :]


def _vocoder_upsample_rate(key: str, config: LTXConfig | None) -> int | None:
    m = re.match(r"vocoder\.(vocoder\.|bwe_generator\.)?ups\.(\d+)\.weight$", key)
    if m is None or config is None or config.vocoder is None:
        return None
    part = config.vocoder.bwe if m.group(1) == "bwe_generator." else config.vocoder
    return part.upsample_rates[int(m.group(2))]


def _tensor(key: str, shape: tuple[int, ...], seed: int, dtype: np.dtype, config: LTXConfig | None = None) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    fixed = _audio_buffer(key, shape, config)
    if fixed is not None:
        value = fixed
    elif key.endswith("std-of-means"):
        value = 0.5 + rng.random(shape)
    elif key.endswith("blur_down.kernel"):
        k = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
        value = (np.outer(k, k) / 256.0).reshape(shape)
    elif key.endswith("timestep_scale_multiplier"):
        value = np.full(shape, 1000.0)
    elif len(shape) >= 2 and not key.endswith(("table", "registers")):
        fan_in = int(np.prod(shape[1:]))
        stride = _vocoder_upsample_rate(key, config)
        if stride:  # ConvTranspose1d [in, out, k]: each output sums in * k / stride terms
            fan_in = shape[0] * shape[2] / stride
        value = rng.standard_normal(shape) / np.sqrt(fan_in)
        if key.startswith("vocoder.") and (".resblocks." in key or key.endswith("conv_post.weight")):
            value *= 0.3  # residual branches and the output conv kept small: a quiet, unsaturated waveform
    else:
        value = 0.1 * rng.standard_normal(shape)
    return value.astype(dtype)


def write_schema_file(schema: Mapping[str, tuple[int, ...]], path: str | Path, metadata: Mapping[str, str],
                      seed: int = 0, dtype: np.dtype | str = np.float32, config: LTXConfig | None = None) -> Path:
    """Write every key of `schema`, tensor by tensor (memory bounded by the largest tensor)."""
    dtype = np.dtype(dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(schema)
    save_file({k: (lambda k=k: _tensor(k, schema[k], seed, dtype, config)) for k in keys}, path, metadata,
              shapes={k: (schema[k], dtype) for k in keys})
    return path


def write_checkpoint(config: LTXConfig, path: str | Path, seed: int = 0, dtype: np.dtype | str = np.float32) -> Path:
    """A single-file checkpoint with transformer, connectors and video VAE (plus the audio VAE and vocoder when
    the config has them), config in the metadata."""
    schema = {k: s for part in S.checkpoint_schema(config).values() for k, s in part.items()}
    schema.update(audio_schema(config))
    return write_schema_file(schema, path, config.to_metadata(), seed, dtype, config)


def audio_schema(config: LTXConfig) -> dict[str, tuple[int, ...]]:
    """{file key: shape} of the audio VAE (decoder, encoder, shared statistics) and the vocoder, read from the
    modules themselves (their paths are the official keys)."""
    from ltx_jax.convert.restore import expected_file_keys
    out = {}
    if config.audio_vae is not None:
        out.update(expected_file_keys("audio_vae_decoder", config.audio_vae))
        out.update(expected_file_keys("audio_vae_encoder", config.audio_vae))
    if config.vocoder is not None:
        out.update(expected_file_keys("vocoder", config.vocoder))
    return out


def write_upsampler(config: UpsamplerConfig, path: str | Path, seed: int = 0,
                    dtype: np.dtype | str = np.float32) -> Path:
    return write_schema_file(S.upsampler_schema(config), path, {"config": json.dumps(config.to_dict())}, seed, dtype)
