"""Load TAEHV checkpoints (`taeltx_2`, `taeltx2_3`, `taeltx2_3_wide` safetensors) into `TinyAutoencoder`.

Counterpart: madebyollin/taehv `taehv.py` (`TAEHV.__init__` building from a state dict,
`patch_tgrow_layers`). Upstream picks the configuration from the file *name*; here it is read from
tensor shapes (docs/tae.md section 6), and the load is strict both ways, so a file of another model
or another TAEHV family is refused with the key or shape that does not fit.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs.vae import TAEConfig
from ltx_jax.convert.loading import LoadError, load_module
from ltx_jax.convert.safetensors_file import SafetensorsFile
from ltx_jax.tiny_vae.model import TinyAutoencoder

__all__ = ["TAECheckpointError", "config_from_shapes", "load_tae", "state_dict", "with_decoder_options"]

_TGROWS = (7, 13, 19)  # decoder indices of the TGrow layers, one per stage
_TPOOLS = (2, 7, 12)  # encoder indices of the TPool layers
_REQUIRED = ("encoder.0.weight", "encoder.17.weight", "decoder.1.weight", "decoder.8.weight",
             "decoder.14.weight", "decoder.20.weight", "decoder.22.weight")


class TAECheckpointError(LoadError):
    """Not a TAEHV checkpoint for LTX latents, or one whose shapes this code does not implement."""


def config_from_shapes(shapes: Mapping[str, Sequence[int]], *, latent_channels: int = 128) -> TAEConfig:
    """The architecture of a TAEHV state dict, from its tensor shapes (no file names involved).

    Args:
        shapes: file key -> shape (PyTorch OIHW conv weights), e.g. from `SafetensorsFile.infos`.
        latent_channels: of the model the TAE decodes for (LTX: 128; tiny test models have fewer).

    Raises:
        TAECheckpointError: a key the LTX TAEs always have is missing, or the shapes describe another
            TAEHV family (other latent channels, patch size or temporal strides).
    """
    missing = [k for k in _REQUIRED if k not in shapes]
    if missing:
        raise TAECheckpointError(f"not a TAEHV (tiny autoencoder) checkpoint: missing {', '.join(missing)} "
                                 "(expected upstream's encoder.N.* / decoder.N.* keys, both halves in one file)")
    dec1, enc0 = tuple(shapes["decoder.1.weight"]), tuple(shapes["encoder.0.weight"])
    latent, image = dec1[1], shapes["decoder.22.weight"][0]
    patch = int(round((image / 3) ** 0.5))
    problems = []
    if latent != latent_channels or shapes["encoder.17.weight"][0] != latent:
        problems.append(f"latent channels {latent} / {shapes['encoder.17.weight'][0]} (expected: {latent_channels})")
    if 3 * patch * patch != image or patch != 4 or enc0[1] != image:
        problems.append(f"pixel channels {enc0[1]} / {image} (LTX: 48 = 3 x 4 x 4 patch)")
    width = enc0[0]
    pools = [shapes.get(f"encoder.{i}.conv.weight", (0, 0))[1] // width for i in _TPOOLS]
    if pools != [2, 2, 2]:
        problems.append(f"encoder TPool strides {pools} (LTX: 2, 2, 2, i.e. 8x time)")
    widths = tuple(shapes[f"decoder.{i}.weight"][0] for i in (1, 8, 14, 20))
    grows = [shapes.get(f"decoder.{i}.conv.weight", (0,))[0] // widths[s] for s, i in enumerate(_TGROWS)]
    if grows != [2, 2, 2]:
        problems.append(f"decoder TGrow strides {grows} (LTX: 2, 2, 2)")
    if problems:
        raise TAECheckpointError("a TAEHV checkpoint, but not one for LTX latents: " + "; ".join(problems))
    wide = "decoder.3.conv.6.weight" in shapes
    group_width = shapes["decoder.3.conv.2.weight"][1] if wide else 64
    return TAEConfig(latent_channels=latent, patch_size=patch, encoder_width=width, decoder_widths=widths,
                     wide=wide, group_width=group_width)


def _shapes(tensors: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    if isinstance(tensors, SafetensorsFile):  # header only, no data read
        return {k: info.shape for k, info in tensors.infos.items()}
    return {k: tuple(v.shape) for k, v in tensors.items()}


def load_tae(source: str | os.PathLike | Mapping[str, np.ndarray], *, param_dtype=jnp.float32,
             compute_dtype=None, decoder_time_upscale: Sequence[bool] | None = None,
             decoder_space_upscale: Sequence[bool] | None = None, latent_channels: int = 128) -> TinyAutoencoder:
    """Build and fill a `TinyAutoencoder` from a TAEHV safetensors file (or a key -> array mapping).

    Args:
        source: `taeltx_2.safetensors`, `taeltx2_3.safetensors`, `taeltx2_3_wide.safetensors` (float16
            in the published files), or a state dict with those keys.
        param_dtype: parameter dtype (float16 files load exactly into float32 or bfloat16-rounded).
        compute_dtype: activation dtype; default `param_dtype`.
        decoder_time_upscale, decoder_space_upscale: per-stage preview switches (see `TAEConfig`);
            default all on, the full decoder.
        latent_channels: of the model the TAE decodes for (LTX: 128).

    Raises:
        TAECheckpointError: not an LTX TAEHV checkpoint (see `config_from_shapes`).
        LoadError: a key missing, left over or of the wrong shape (every one is named).
    """
    tensors = SafetensorsFile(source) if isinstance(source, str | os.PathLike) else source
    name = str(source) if isinstance(source, str | os.PathLike) else "state dict"
    config = config_from_shapes(_shapes(tensors), latent_channels=latent_channels)
    options = {}
    if decoder_time_upscale is not None:
        options["decoder_time_upscale"] = tuple(bool(b) for b in decoder_time_upscale)
    if decoder_space_upscale is not None:
        options["decoder_space_upscale"] = tuple(bool(b) for b in decoder_space_upscale)
    if options:
        config = dataclasses.replace(config, **options)
    # A stage with its time upscale off keeps the later of the two frames TGrow makes: the last n rows
    # of the [2n, n, 1, 1] weight (upstream's patch_tgrow_layers).
    sliced = {f"decoder.{i}.conv.weight": config.decoder_widths[s]
              for s, i in enumerate(_TGROWS) if not config.decoder_time_upscale[s]}

    def transform(key: str, a: np.ndarray) -> np.ndarray:
        return a[-sliced[key]:] if key in sliced else a

    try:
        return load_module(lambda: TinyAutoencoder(config, param_dtype=param_dtype, compute_dtype=compute_dtype,
                                                   rngs=nnx.Rngs(0)),
                           tensors, dtype=param_dtype, transform=transform, source=name)
    except LoadError as e:
        raise LoadError(f"{e} [shapes read as {config}]") from None


def state_dict(tae: TinyAutoencoder) -> dict[str, jnp.ndarray]:
    """The parameters under upstream's keys (`decoder.3.conv.0.weight`, ...), OIHW, as stored."""
    return {".".join(map(str, path)): v[...] for path, v in nnx.to_flat_state(nnx.state(tae, nnx.Param))}


def with_decoder_options(tae: TinyAutoencoder, *, time_upscale: Sequence[bool] | bool = True,
                         space_upscale: Sequence[bool] | bool = True, param_dtype=None) -> TinyAutoencoder:
    """A copy of `tae` with decoder preview switches set (bool: the same for all three stages).

    `time_upscale=False` gives one frame per latent frame (no startup frames to trim);
    `space_upscale=False` gives 4x latent resolution (pixel shuffle only). `tae` must be a full model.
    """
    if not all(tae.config.decoder_time_upscale):
        raise ValueError("with_decoder_options needs a model loaded with every time upscale on (it slices the "
                         "TGrow weights)")
    as3 = lambda v: (bool(v),) * 3 if isinstance(v, bool) else tuple(v)  # noqa: E731
    if param_dtype is None:
        param_dtype, compute_dtype = tae.decoder[1].weight.dtype, tae.compute_dtype
    else:
        compute_dtype = param_dtype
    return load_tae(state_dict(tae), param_dtype=param_dtype, compute_dtype=compute_dtype,
                    decoder_time_upscale=as3(time_upscale), decoder_space_upscale=as3(space_upscale),
                    latent_channels=tae.config.latent_channels)
