"""The TAEHV (`taeltx_2`, `taeltx2_3`, `taeltx2_3_wide`) file layout: the architecture read from tensor shapes,
and every key and shape a config implies.

Counterpart: madebyollin/taehv `taehv.py` (`TAEHV.__init__`, which picks the configuration from the file
*name*; here it comes from tensor shapes, docs/tae.md section 6). Keys are upstream's `encoder.N.*` /
`decoder.N.*`, N the index in its `nn.Sequential` (parameter-free layers included), no prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ltx_jax.checkpoint.errors import LoadError
from ltx_jax.configs.vae import TAEConfig

__all__ = ["TAECheckpointError", "tae_config_from_shapes", "tae_schema", "TGROWS"]

TGROWS = (7, 13, 19)  # decoder indices of the TGrow layers, one per stage
_TPOOLS = (2, 7, 12)  # encoder indices of the TPool layers
_REQUIRED = ("encoder.0.weight", "encoder.17.weight", "decoder.1.weight", "decoder.8.weight",
             "decoder.14.weight", "decoder.20.weight", "decoder.22.weight")


class TAECheckpointError(LoadError):
    """Not a TAEHV checkpoint for LTX latents, or one whose shapes this code does not implement."""


def tae_config_from_shapes(shapes: Mapping[str, Sequence[int]], *, latent_channels: int = 128) -> TAEConfig:
    """The architecture of a TAEHV state dict, from its tensor shapes (no file names involved).

    Args:
        shapes: file key -> shape (PyTorch OIHW conv weights), e.g. from `SafetensorsFile.infos`.

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
        problems.append(f"latent channels {latent} / {shapes['encoder.17.weight'][0]} (expected: {latent_channels}; "
                        "LTX: 128, tiny test models fewer)")
    if 3 * patch * patch != image or patch != 4 or enc0[1] != image:
        problems.append(f"pixel channels {enc0[1]} / {image} (LTX: 48 = 3 x 4 x 4 patch)")
    width = enc0[0]
    pools = [shapes.get(f"encoder.{i}.conv.weight", (0, 0))[1] // width for i in _TPOOLS]
    if pools != [2, 2, 2]:
        problems.append(f"encoder TPool strides {pools} (LTX: 2, 2, 2, i.e. 8x time)")
    widths = tuple(shapes[f"decoder.{i}.weight"][0] for i in (1, 8, 14, 20))
    grows = [shapes.get(f"decoder.{i}.conv.weight", (0,))[0] // widths[s] for s, i in enumerate(TGROWS)]
    if grows != [2, 2, 2]:
        problems.append(f"decoder TGrow strides {grows} (LTX: 2, 2, 2)")
    if problems:
        raise TAECheckpointError("a TAEHV checkpoint, but not one for LTX latents: " + "; ".join(problems))
    wide = "decoder.3.conv.6.weight" in shapes
    group_width = shapes["decoder.3.conv.2.weight"][1] if wide else 64
    return TAEConfig(latent_channels=latent, patch_size=patch, encoder_width=width, decoder_widths=widths,
                     wide=wide, group_width=group_width)


def _conv(out: dict, name: str, cin: int, cout: int, k: int = 3, bias: bool = True, groups: int = 1) -> None:
    out[f"{name}.weight"] = (cout, cin // groups, k, k)  # OIHW
    if bias:
        out[f"{name}.bias"] = (cout,)


def tae_schema(c: TAEConfig) -> dict[str, tuple[int, ...]]:
    """{file key: shape} of a full TAE (every time upscale on, as the files store it)."""
    out: dict[str, tuple[int, ...]] = {}
    n, i = c.encoder_width, 0
    _conv(out, "encoder.0", c.image_channels, n)
    i = 2
    for _ in range(3):  # TPool (1x1 n*2 -> n), stride-2 conv, 3 MemBlocks
        _conv(out, f"encoder.{i}.conv", 2 * n, n, 1, bias=False)
        _conv(out, f"encoder.{i + 1}", n, n, bias=False)
        for j in range(3):
            _conv(out, f"encoder.{i + 2 + j}.conv.0", 2 * n, n)
            _conv(out, f"encoder.{i + 2 + j}.conv.2", n, n)
            _conv(out, f"encoder.{i + 2 + j}.conv.4", n, n)
        i += 5
    _conv(out, f"encoder.{i}", n, c.latent_channels)
    w = c.decoder_widths
    _conv(out, "decoder.1", c.latent_channels, w[0])
    i = 3
    for s in range(3):  # 3 memory blocks, Upsample, TGrow (1x1 n -> 2n), conv to the next width
        for j in range(3):
            name = f"decoder.{i + j}.conv"
            if c.wide:
                g = c.groups(w[s])
                _conv(out, f"{name}.0", 2 * w[s], w[s], 1)
                _conv(out, f"{name}.2", w[s], w[s], 3, groups=g)
                _conv(out, f"{name}.4", w[s], w[s], 1)
                _conv(out, f"{name}.6", w[s], w[s], 3, groups=g)
            else:
                _conv(out, f"{name}.0", 2 * w[s], w[s])
                _conv(out, f"{name}.2", w[s], w[s])
                _conv(out, f"{name}.4", w[s], w[s])
        _conv(out, f"decoder.{i + 4}.conv", w[s], 2 * w[s], 1, bias=False)
        _conv(out, f"decoder.{i + 5}", w[s], w[s + 1], bias=False)
        i += 6
    _conv(out, f"decoder.{i + 1}", w[3], c.image_channels)
    return out
