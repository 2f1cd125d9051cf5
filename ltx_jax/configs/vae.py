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
    _IGNORED = frozenset({"_class_name", "_diffusers_version", "scaling_factor", "blocks",
                          "use_quant_conv", "normalize_latent_channels", "spatial_scale", "temporal_scale"})
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
    """TAEHV tiny autoencoder for LTX latents (`taeltx_2`, `taeltx2_3`, `taeltx2_3_wide`)."""

    latent_channels: int = 128
    patch_size: int = 4
    encoder_width: int = 64
    decoder_widths: tuple[int, ...] = (256, 128, 64, 64)
    wide: bool = False  # WideMemBlock decoder (taeltx2_3_wide)
    decoder_time_upscale: tuple[bool, ...] = (True, True, True)
    decoder_space_upscale: tuple[bool, ...] = (True, True, True)

    @property
    def frames_to_trim(self) -> int:
        return 2 ** sum(self.decoder_time_upscale) - 1


