"""Build the video VAE encoder / decoder from an official single-file checkpoint.

Counterpart: ltx_pipelines `utils/model_ledger.py` with ltx_core's `VAE_ENCODER_COMFY_KEYS_FILTER` /
`VAE_DECODER_COMFY_KEYS_FILTER`: keys `vae.encoder.*` / `vae.decoder.*`, plus the shared
`vae.per_channel_statistics.*` that both modules hold as `per_channel_statistics.*`.

Unlike ltx_core's non-strict `load_state_dict`, every module variable must come from the file and every
`vae.encoder.*` / `vae.decoder.*` key must be used. Extra statistics buffers some files carry
(`vae.per_channel_statistics.channel`, `mean-of-stds`, ...) are ignored, as ltx_core ignores them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
from flax import nnx

from ltx_jax.configs import ConfigError, Runtime, VideoVAEConfig
from ltx_jax.convert.loading import load_module
from ltx_jax.convert.safetensors_file import SafetensorsFile
from ltx_jax.video_vae.decoder import VideoDecoder
from ltx_jax.video_vae.encoder import VideoEncoder

__all__ = ["vae_config_from_metadata", "load_video_encoder", "load_video_decoder", "STATISTICS_PREFIX"]

STATISTICS_PREFIX = "vae.per_channel_statistics."
_USED_STATISTICS = ("mean-of-means", "std-of-means")


def vae_config_from_metadata(metadata: Mapping[str, str], *, strict: bool = True) -> VideoVAEConfig:
    """The `vae` section of the checkpoint's metadata `config` JSON.

    Raises:
        ConfigError: no config / no vae section, or a key or value the port does not implement.
    """
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"checkpoint metadata has no valid 'config' JSON ({e})") from None
    if "vae" not in config:
        raise ConfigError("checkpoint config has no 'vae' section (not a file with the video VAE)")
    return VideoVAEConfig.from_dict(config["vae"], strict=strict)


def _component_view(tensors: Mapping[str, np.ndarray], part: str) -> dict[str, np.ndarray]:
    """`vae.<part>.*` plus the shared statistics re-keyed as `vae.<part>.per_channel_statistics.*`."""
    prefix = f"vae.{part}."
    out = {k: tensors[k] for k in tensors if k.startswith(prefix)}
    for name in _USED_STATISTICS:
        if STATISTICS_PREFIX + name in tensors:
            out[f"{prefix}per_channel_statistics.{name}"] = tensors[STATISTICS_PREFIX + name]
    return out


def _load(cls, part: str, source: str | os.PathLike | Mapping[str, np.ndarray], config: VideoVAEConfig | None,
          runtime: Runtime | None):
    runtime = runtime or Runtime()
    file = SafetensorsFile(source) if isinstance(source, str | os.PathLike) else source
    if config is None:
        if not isinstance(file, SafetensorsFile):
            raise ConfigError("pass config= when loading from a plain mapping of tensors")
        config = vae_config_from_metadata(file.metadata)
    name = str(source) if isinstance(source, str | os.PathLike) else "tensors"
    return load_module(lambda: cls(config, runtime, rngs=nnx.Rngs(0)), _component_view(file, part),
                       prefix=f"vae.{part}.", source=name)


def load_video_encoder(source: str | os.PathLike | Mapping[str, np.ndarray], runtime: Runtime | None = None, *,
                       config: VideoVAEConfig | None = None) -> VideoEncoder:
    """`VideoEncoder` filled from an official checkpoint (path or {key: array}); config from its metadata.

    Raises:
        LoadError: a key missing, left over or of the wrong shape (all named).
        ConfigError: a config the port does not implement.
    """
    return _load(VideoEncoder, "encoder", source, config, runtime)


def load_video_decoder(source: str | os.PathLike | Mapping[str, np.ndarray], runtime: Runtime | None = None, *,
                       config: VideoVAEConfig | None = None) -> VideoDecoder:
    """`VideoDecoder` filled from an official checkpoint (path or {key: array}); config from its metadata."""
    return _load(VideoDecoder, "decoder", source, config, runtime)
