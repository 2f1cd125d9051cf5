"""Configs of the audio VAE and the vocoder (with LTX-2.3's bandwidth extension).

Counterpart: ltx_core `model/audio_vae/model_configurator.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ltx_jax.configs.base import ConfigError, _freeze, _JsonConfig, _thaw

# ---------------------------------------------------------------------------------------------
# Audio VAE and vocoder (nested JSON in the checkpoint; flattened here)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AudioVAEConfig:
    """Audio VAE (`AudioEncoder`/`AudioDecoder`): the "audio_vae" section's ddconfig + preprocessing."""

    ch: int = 128
    out_ch: int = 2
    in_channels: int = 2
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256
    z_channels: int = 8
    double_z: bool = True
    norm_type: str = "pixel"
    causality_axis: str = "height"
    mid_block_add_attention: bool = False
    mel_bins: int = 64
    sampling_rate: int = 16000
    mel_hop_length: int = 160
    n_fft: int = 1024
    is_causal: bool = True

    _DDCONFIG = ("ch", "out_ch", "in_channels", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution",
                 "z_channels", "double_z", "norm_type", "causality_axis", "mid_block_add_attention", "mel_bins")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, strict: bool = True) -> AudioVAEConfig:
        params = d.get("model", {}).get("params", {})
        dd = params.get("ddconfig", {})
        pre = d.get("preprocessing", {})
        kwargs = {k: _freeze(dd[k]) for k in cls._DDCONFIG if k in dd and dd[k] is not None}
        # ltx-core's configurators default these two to attention ON when the keys are absent.
        kwargs.setdefault("mid_block_add_attention", True)
        kwargs.setdefault("attn_resolutions", (8, 16, 32))
        for key in ("dropout",):
            if dd.get(key, 0.0) != 0.0:
                raise ConfigError(f"audio_vae.model.params.ddconfig.{key}={dd[key]!r} is not supported")
        if dd.get("attn_type", "vanilla") != "vanilla":
            raise ConfigError(f"audio_vae.model.params.ddconfig.attn_type={dd['attn_type']!r} is not supported")
        if dd.get("resamp_with_conv", True) is not True:
            raise ConfigError("audio_vae.model.params.ddconfig.resamp_with_conv=False is not supported")
        if "mel_bins" not in kwargs:
            mel = pre.get("mel", {}).get("n_mel_channels") or d.get("variables", {}).get("mel_bins")
            if mel is not None:
                kwargs["mel_bins"] = mel
        stft = pre.get("stft", {})
        for src, dst in (("hop_length", "mel_hop_length"), ("filter_length", "n_fft"), ("causal", "is_causal")):
            if src in stft:
                kwargs[dst] = stft[src]
        if "sampling_rate" in params:
            kwargs["sampling_rate"] = params["sampling_rate"]
        config = cls(**kwargs)
        if config.norm_type not in ("pixel", "group"):
            raise ConfigError(f"audio_vae ddconfig.norm_type={config.norm_type!r} is not supported")
        if config.causality_axis not in ("height", "width", "none", "width-compatibility"):
            raise ConfigError(f"audio_vae ddconfig.causality_axis={config.causality_axis!r} is not supported")
        return config

    def to_dict(self) -> dict[str, Any]:
        dd = {k: _thaw(getattr(self, k)) for k in self._DDCONFIG}
        return {"model": {"params": {"ddconfig": dd, "sampling_rate": self.sampling_rate}},
                "preprocessing": {"stft": {"hop_length": self.mel_hop_length, "filter_length": self.n_fft,
                                           "causal": self.is_causal},
                                  "mel": {"n_mel_channels": self.mel_bins}}}


@dataclass(frozen=True, kw_only=True)
class VocoderConfig(_JsonConfig):
    """HiFi-GAN (LTX-2) or BigVGAN-v2 (LTX-2.3) generator. `bwe` holds the bandwidth extension."""

    _SECTION = "vocoder"
    _FIXED = {"stereo": True}
    _IGNORED = frozenset({"_class_name"})
    _CHOICES = {"resblock": ("1", "AMP1")}

    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    upsample_rates: tuple[int, ...] = (6, 5, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 15, 8, 4, 4)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_initial_channel: int = 1024
    resblock: str = "1"
    output_sampling_rate: int = 24000
    activation: str = "snake"
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True
    # Bandwidth-extension fields (LTX-2.3 "bwe" section only).
    input_sampling_rate: int | None = None
    n_fft: int | None = None
    hop_length: int | None = None
    num_mels: int | None = None
    win_size: int | None = None
    sampling_rate: int | None = None
    apply_final_activation: bool = True
    bwe: VocoderConfig | None = None

    def validate(self) -> None:
        super().validate()
        # resblock "1" (HiFi-GAN) always uses leaky ReLU; the key only matters for AMP1.
        if self.resblock == "AMP1" and self.activation not in ("snake", "snakebeta"):
            raise ConfigError(f"vocoder.activation={self.activation!r} is not supported (snake, snakebeta)")

    @classmethod
    def from_dict(cls, d, *, strict=True):
        if "bwe" not in d:
            flat = super().from_dict(d, strict=strict)
            if flat.resblock != "1":  # ltx-core's VocoderConfigurator: check_config_value(cfg, "resblock", "1")
                raise ConfigError(f"vocoder.resblock={flat.resblock!r}: a flat vocoder section must be HiFi-GAN "
                                  "resblock '1' (AMP1 generators come with a 'bwe' section)")
            return flat
        unknown = d.keys() - {"vocoder", "bwe"}
        if unknown and strict:
            raise ConfigError(f"unknown config key(s) in vocoder: {sorted(unknown)}")
        bwe = super().from_dict(d["bwe"], strict=strict)
        main = super().from_dict(d.get("vocoder", {}), strict=strict)
        for part, name in ((main, "vocoder.vocoder"), (bwe, "vocoder.bwe")):
            if part.resblock != "AMP1" or part.activation != "snakebeta":
                raise ConfigError(f"{name}: the BWE vocoder needs resblock='AMP1' and activation='snakebeta'")
        for key in ("input_sampling_rate", "output_sampling_rate", "n_fft", "hop_length", "num_mels"):
            if getattr(bwe, key) is None:
                raise ConfigError(f"vocoder.bwe.{key} is missing")
        return dataclasses.replace(main, output_sampling_rate=bwe.input_sampling_rate, bwe=bwe)

    def to_dict(self) -> dict[str, Any]:
        def flat(c: VocoderConfig) -> dict:
            out = super(VocoderConfig, c).to_dict()
            out.pop("bwe")
            return {k: v for k, v in out.items() if v is not None}
        if self.bwe is None:
            return flat(self)
        return {"vocoder": flat(self), "bwe": flat(self.bwe)}


