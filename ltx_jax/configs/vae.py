"""Configs of the video VAE, the latent upsamplers and the tiny autoencoder.

Counterparts: ltx_core `model/video_vae/model_configurator.py`, `model/upsampler/model_configurator.py`;
the TAE follows madebyollin/taehv (docs/tae.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ltx_jax.configs.base import ConfigError, _JsonConfig, _thaw

# ---------------------------------------------------------------------------------------------
# Video VAE
# ---------------------------------------------------------------------------------------------

ENCODER_BLOCK_KINDS = ("res_x", "res_x_y", "compress_time", "compress_space", "compress_all",
                       "compress_all_x_y", "compress_all_res", "compress_space_res", "compress_time_res")
DECODER_BLOCK_KINDS = ("res_x", "res_x_y", "compress_time", "compress_space", "compress_all")


@dataclass(frozen=True, kw_only=True)
class VideoVAEConfig(_JsonConfig):
    """Video VAE encoder + decoder (`VideoEncoder`, `VideoDecoder`), the checkpoint's "vae" section.

    Block lists are `((name, params), ...)` as in the JSON, params an int (layers) or a dict.
    """

    _SECTION = "vae"
    _FIXED = {"dims": 3, "in_channels": 3, "out_channels": 3, "patch_size": 4, "norm_layer": "pixel_norm",
              "latent_log_var": "uniform"}
    # ltx-core reads only `spatial_padding_mode`; LTX-2 files also carry `encoder_/decoder_spatial_padding_mode`
    # (zeros / reflect, equal to ltx-core's defaults when `spatial_padding_mode` is absent), which it ignores.
    _IGNORED = frozenset({"_class_name", "_diffusers_version", "scaling_factor", "blocks",
                          "use_quant_conv", "normalize_latent_channels", "spatial_scale", "temporal_scale",
                          "encoder_spatial_padding_mode", "decoder_spatial_padding_mode"})
    _CHOICES = {"spatial_padding_mode": (None, "zeros", "reflect", "replicate", "circular")}

    latent_channels: int = 128
    encoder_blocks: tuple = ()
    decoder_blocks: tuple = ()
    # One JSON key; when absent ltx-core pads the encoder with zeros and the decoder with reflect.
    spatial_padding_mode: str | None = None
    causal_decoder: bool = False
    # ltx-core builds a timestep-conditioned decoder when this key is missing.
    timestep_conditioning: bool = True
    decoder_base_channels: int = 128

    @property
    def encoder_padding_mode(self) -> str:
        return self.spatial_padding_mode or "zeros"

    @property
    def decoder_padding_mode(self) -> str:
        return self.spatial_padding_mode or "reflect"

    def validate(self) -> None:
        super().validate()
        for which, blocks, kinds in (("encoder_blocks", self.encoder_blocks, ENCODER_BLOCK_KINDS),
                                     ("decoder_blocks", self.decoder_blocks, DECODER_BLOCK_KINDS)):
            for i, block in enumerate(blocks):
                if not (isinstance(block, tuple) and len(block) == 2 and block[0] in kinds):
                    raise ConfigError(f"vae.{which}[{i}]={_thaw(block)!r} is not a supported block "
                                      f"(supported names: {kinds})")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.spatial_padding_mode is None:
            del out["spatial_padding_mode"]
        return out


# ---------------------------------------------------------------------------------------------
# Latent upsampler (own file, flat config) and the tiny autoencoder
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UpsamplerConfig(_JsonConfig):
    """`LatentUpsampler`: config from the upsampler file's own metadata."""

    _SECTION = "upsampler"
    _IGNORED = frozenset({"_class_name", "_diffusers_version"})
    _CHOICES = {"dims": (2, 3)}

    in_channels: int = 128
    mid_channels: int = 512
    num_blocks_per_stage: int = 4
    dims: int = 3
    spatial_upsample: bool = True
    temporal_upsample: bool = False
    spatial_scale: float = 2.0
    rational_resampler: bool = False

    @property
    def kind(self) -> str:
        """One of spatial_x2, spatial_x2_rational, spatial_x1_5_rational, temporal_x2, spatiotemporal_x2."""
        if self.spatial_upsample and self.temporal_upsample:
            return "spatiotemporal_x2"
        if self.temporal_upsample:
            return "temporal_x2"
        if not self.rational_resampler:
            return "spatial_x2"
        return {2.0: "spatial_x2_rational", 1.5: "spatial_x1_5_rational"}.get(float(self.spatial_scale),
                                                                              f"spatial_x{self.spatial_scale}_rational")

    def validate(self) -> None:
        super().validate()
        if not (self.spatial_upsample or self.temporal_upsample):
            raise ConfigError("upsampler: one of spatial_upsample / temporal_upsample must be true")
        if self.rational_resampler and float(self.spatial_scale) not in (0.75, 1.5, 2.0, 4.0):
            raise ConfigError(f"upsampler.spatial_scale={self.spatial_scale!r} is not supported by the rational "
                              "resampler (0.75, 1.5, 2.0, 4.0)")


@dataclass(frozen=True, kw_only=True)
class TAEConfig:
    """TAEHV tiny autoencoder for LTX latents (`taeltx_2`, `taeltx2_3`, `taeltx2_3_wide`); docs/tae.md.

    The architecture is read from checkpoint shapes (`ltx_jax.tiny_vae.config_from_shapes`), never from
    file names. `decoder_time_upscale` / `decoder_space_upscale` are runtime preview switches of the
    decoder: a False entry makes that stage's TGrow keep only the later frame (stride 1) or its Upsample
    the identity. Upstream forces them all on for `taeltx*`; they are off only in preview decoders.
    """

    latent_channels: int = 128
    patch_size: int = 4
    encoder_width: int = 64
    decoder_widths: tuple[int, ...] = (256, 128, 64, 64)
    wide: bool = False  # WideMemBlock decoder (taeltx2_3_wide): 1x1 / grouped 3x3 convs
    group_width: int = 64  # channels per group of the wide decoder's grouped 3x3 convs
    decoder_time_upscale: tuple[bool, ...] = (True, True, True)
    decoder_space_upscale: tuple[bool, ...] = (True, True, True)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if len(self.decoder_widths) != 4 or any(int(n) <= 0 for n in self.decoder_widths):
            raise ConfigError(f"tae.decoder_widths={self.decoder_widths!r}: need 4 positive widths")
        for name in ("decoder_time_upscale", "decoder_space_upscale"):
            if len(getattr(self, name)) != 3:
                raise ConfigError(f"tae.{name}={getattr(self, name)!r}: need one flag per decoder stage (3)")
        if self.patch_size < 1 or self.latent_channels < 1 or self.encoder_width < 1:
            raise ConfigError(f"tae: patch_size, latent_channels and encoder_width must be positive ({self})")
        if self.wide:
            for n in self.decoder_widths[:3]:
                if n % self.groups(n):
                    raise ConfigError(f"tae: wide decoder width {n} is not a multiple of its {self.groups(n)} groups")

    def groups(self, width: int) -> int:
        """Groups of the wide decoder's 3x3 convs at this width: max(1, width / 64)."""
        return max(1, width // self.group_width) if self.wide else 1

    @property
    def image_channels(self) -> int:
        """Channels after pixel_unshuffle: 3 * patch^2 (48 for LTX)."""
        return 3 * self.patch_size**2

    @property
    def time_upscale(self) -> int:
        """Decoded frames per latent frame (8 with every TGrow on)."""
        return 2 ** sum(map(bool, self.decoder_time_upscale))

    @property
    def space_upscale(self) -> int:
        """Decoded pixels per latent pixel along H and W (32 with every Upsample on)."""
        return self.patch_size * 2 ** sum(map(bool, self.decoder_space_upscale))

    @property
    def frames_to_trim(self) -> int:
        """Startup frames the decoder drops: t_upscale - 1, so T latents give 8T - 7 frames."""
        return self.time_upscale - 1


# Published TAEHV files for LTX. taeltx_2 and taeltx2_3 share one architecture (only weights differ).
TAELTX_2 = TAEConfig()
TAELTX2_3 = TAEConfig()
TAELTX2_3_WIDE = TAEConfig(decoder_widths=(1024, 512, 256, 64), wide=True)
