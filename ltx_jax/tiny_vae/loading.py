"""Load TAEHV checkpoints (`taeltx_2`, `taeltx2_3`, `taeltx2_3_wide` safetensors) into `TinyAutoencoder`: a thin
call of the one restore path, with the constructor bound to the `tae` layout entry.

Counterpart: madebyollin/taehv `taehv.py` (`TAEHV.__init__` building from a state dict,
`patch_tgrow_layers`). Upstream picks the configuration from the file *name*; here it is read from
tensor shapes (`ltx_jax.checkpoint.tae_layout`, docs/tae.md section 6), and the load is strict both ways, so
a file of another model or another TAEHV family is refused with the key or shape that does not fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.checkpoint.errors import LoadError
from ltx_jax.checkpoint.open import SourceArg, open_source
from ltx_jax.checkpoint.loader import bind, restore
from ltx_jax.checkpoint.source import Index, Source, TensorSpec, normalize_index
from ltx_jax.checkpoint.tae_layout import TGROWS, TAECheckpointError, tae_config_from_shapes
from ltx_jax.configs import Runtime
from ltx_jax.tiny_vae.model import TinyAutoencoder

__all__ = ["TAECheckpointError", "config_from_shapes", "load_tae", "state_dict", "with_decoder_options"]

config_from_shapes = tae_config_from_shapes

bind("tae", lambda config, runtime: TinyAutoencoder(config, param_dtype=jnp.dtype(runtime.param_dtype),
                                                    compute_dtype=jnp.dtype(runtime.compute_dtype),
                                                    rngs=nnx.Rngs(0)))


class _LastRows(Source):
    """`base` with some tensors cut to their last rows (a TGrow layer with its time upscale off)."""

    def __init__(self, base: Source, rows: Mapping[str, int]):
        self.base, self.rows, self.name, self.metadata = base, dict(rows), base.name, base.metadata
        self._specs = {k: TensorSpec((rows[k], *s.shape[1:]), s.dtype) if k in rows else s
                       for k, s in base.specs().items()}

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        if key not in self.rows:
            return self.base.read(key, index)
        index = normalize_index(index, self._specs[key].shape)
        skip = self.base.specs()[key].shape[0] - self.rows[key]
        return self.base.read(key, (slice(index[0].start + skip, index[0].stop + skip), *index[1:]))


def load_tae(source: SourceArg, *, param_dtype=jnp.float32, compute_dtype=None,
             decoder_time_upscale: Sequence[bool] | None = None,
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
    base = open_source(source)
    config = config_from_shapes({k: s.shape for k, s in base.specs().items()}, latent_channels=latent_channels)
    options = {}
    if decoder_time_upscale is not None:
        options["decoder_time_upscale"] = tuple(bool(b) for b in decoder_time_upscale)
    if decoder_space_upscale is not None:
        options["decoder_space_upscale"] = tuple(bool(b) for b in decoder_space_upscale)
    if options:
        config = dataclasses.replace(config, **options)
    # A stage with its time upscale off keeps the later of the two frames TGrow makes: the last n rows
    # of the [2n, n, 1, 1] weight (upstream's patch_tgrow_layers).
    rows = {f"decoder.{i}.conv.weight": config.decoder_widths[s]
            for s, i in enumerate(TGROWS) if not config.decoder_time_upscale[s]}
    runtime = Runtime(param_dtype=jnp.dtype(param_dtype).name,
                      compute_dtype=jnp.dtype(compute_dtype or param_dtype).name)
    try:
        return restore(_LastRows(base, rows) if rows else base, "tae", runtime=runtime, config=config)
    except LoadError as e:
        raise LoadError(f"{e} [shapes read as {config}]") from None
    finally:
        if base is not source:
            base.close()


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
