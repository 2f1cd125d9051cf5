"""Named presets: the released LTX-2 (19B) and LTX-2.3 (22B) configs, and the tiny test configs."""

from __future__ import annotations

import dataclasses

from ltx_jax.configs.audio import AudioVAEConfig, VocoderConfig
from ltx_jax.configs.base import _freeze
from ltx_jax.configs.checkpoint import LTXConfig
from ltx_jax.configs.transformer import ConnectorConfig, TransformerConfig
from ltx_jax.configs.vae import UpsamplerConfig, VideoVAEConfig

# ---------------------------------------------------------------------------------------------
# Presets. Values from docs/ltx2-architecture.md (the released files' configs as transcribed by
# diffusers' converter); a real file's own metadata always wins over these.
# ---------------------------------------------------------------------------------------------


def _res(n: int) -> tuple:
    return ("res_x", _freeze({"num_layers": n}))


def _blk(name: str, **params) -> tuple:
    return (name, _freeze(params))


_AUDIO_VAE = AudioVAEConfig()

LTX_2 = LTXConfig(
    transformer=TransformerConfig(
        av_ca_timestep_scale_multiplier=1000, rope_type="split", frequencies_precision="float64"),
    connector=ConnectorConfig(
        connector_positional_embedding_max_pos=(4096,), rope_type="split", frequencies_precision="float64"),
    vae=VideoVAEConfig(
        encoder_blocks=(_res(4), _blk("compress_space_res", multiplier=2), _res(6),
                        _blk("compress_time_res", multiplier=2), _res(6), _blk("compress_all_res", multiplier=2),
                        _res(2), _blk("compress_all_res", multiplier=2), _res(2)),
        decoder_blocks=(_res(5), _blk("compress_all", residual=True, multiplier=2), _res(5),
                        _blk("compress_all", residual=True, multiplier=2), _res(5),
                        _blk("compress_all", residual=True, multiplier=2), _res(5)),
        timestep_conditioning=False),
    audio_vae=_AUDIO_VAE,
    vocoder=VocoderConfig(activation="leaky_relu"),
    model_version="2.0.0",
)

LTX_2_3 = LTXConfig(
    transformer=dataclasses.replace(
        LTX_2.transformer, apply_gated_attention=True, cross_attention_adaln=True, caption_proj_before_connector=True),
    connector=dataclasses.replace(
        LTX_2.connector, connector_num_attention_heads=32, connector_attention_head_dim=128, connector_num_layers=8,
        connector_apply_gated_attention=True, audio_connector_num_attention_heads=32,
        audio_connector_attention_head_dim=64, audio_connector_num_layers=8, feature_extractor="v2"),
    vae=VideoVAEConfig(
        encoder_blocks=(_res(4), _blk("compress_space_res", multiplier=2), _res(6),
                        _blk("compress_time_res", multiplier=2), _res(4), _blk("compress_all_res", multiplier=2),
                        _res(2), _blk("compress_all_res", multiplier=1), _res(2)),
        decoder_blocks=(_res(4), _blk("compress_space", multiplier=2), _res(6), _blk("compress_time", multiplier=2),
                        _res(4), _blk("compress_all", multiplier=1), _res(2), _blk("compress_all", multiplier=2),
                        _res(2)),
        spatial_padding_mode="zeros", timestep_conditioning=False),
    audio_vae=_AUDIO_VAE,
    vocoder=VocoderConfig(
        upsample_rates=(5, 2, 2, 2, 2, 2), upsample_kernel_sizes=(11, 4, 4, 4, 4, 4), upsample_initial_channel=1536,
        resblock="AMP1", activation="snakebeta", use_tanh_at_final=False, use_bias_at_final=False,
        output_sampling_rate=16000,
        bwe=VocoderConfig(
            upsample_rates=(6, 5, 2, 2, 2), upsample_kernel_sizes=(12, 11, 4, 4, 4), upsample_initial_channel=512,
            resblock="AMP1", activation="snakebeta", use_tanh_at_final=False, use_bias_at_final=False,
            apply_final_activation=False, input_sampling_rate=16000, output_sampling_rate=48000, n_fft=512,
            hop_length=80, win_size=512, num_mels=64)),
    model_version="2.3.0",
)

SPATIAL_X2_2_3 = UpsamplerConfig(mid_channels=1024)
SPATIAL_X2_2 = UpsamplerConfig(mid_channels=1024, rational_resampler=True)

# Tiny test presets: exactly the configs of the reference fixtures (tests/reference/configs/*-tiny.json;
# docs/reference-fixtures.md): 2 layers, video 4 heads x 16, audio 4 x 8, 16 latent channels, the
# released VAE block lists with 1 layer per res block, a 48-wide "Gemma" with 3 hidden states.
_TINY_TEXT = dict(text_hidden_size=48, text_num_hidden_states=3)


def _tiny_blocks(blocks: tuple, **res_params) -> tuple:
    return tuple((k, _freeze({"num_layers": 1, **res_params})) if k == "res_x" else (k, p) for k, p in blocks)


LTX_2_TINY = LTXConfig(
    transformer=dataclasses.replace(
        LTX_2.transformer, num_attention_heads=4, attention_head_dim=16, in_channels=16, out_channels=16, num_layers=2,
        cross_attention_dim=64, caption_channels=48, audio_num_attention_heads=4, audio_attention_head_dim=8,
        audio_cross_attention_dim=32, rope_type="interleaved", frequencies_precision="float32"),
    connector=dataclasses.replace(
        LTX_2.connector, connector_num_attention_heads=4, connector_attention_head_dim=12, connector_num_layers=2,
        rope_type="interleaved", frequencies_precision="float32", **_TINY_TEXT),
    vae=dataclasses.replace(LTX_2.vae, latent_channels=16, decoder_base_channels=8,
                            encoder_blocks=_tiny_blocks(LTX_2.vae.encoder_blocks),
                            decoder_blocks=_tiny_blocks(LTX_2.vae.decoder_blocks, inject_noise=False)),
    model_version="2.0.0-tiny",
)

LTX_2_3_TINY = LTXConfig(
    transformer=dataclasses.replace(
        LTX_2_TINY.transformer, apply_gated_attention=True, cross_attention_adaln=True,
        caption_proj_before_connector=True, rope_type="split", frequencies_precision="float64"),
    connector=dataclasses.replace(
        LTX_2_TINY.connector, connector_num_attention_heads=4, connector_attention_head_dim=16,
        audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8, audio_connector_num_layers=2,
        connector_apply_gated_attention=True, feature_extractor="v2", rope_type="split",
        frequencies_precision="float64"),
    vae=dataclasses.replace(
        LTX_2_3.vae, latent_channels=16, decoder_base_channels=8, timestep_conditioning=True,
        encoder_blocks=_tiny_blocks(LTX_2_3.vae.encoder_blocks),
        # compress_all with residual=True so the residual path is exercised.
        decoder_blocks=_tiny_blocks(tuple((k, _freeze({**dict(p), "residual": True})) if k == "compress_all" else (k, p)
                                          for k, p in LTX_2_3.vae.decoder_blocks))),
    model_version="2.3.0-tiny",
)

_TINY_UP = dict(in_channels=16, mid_channels=32, num_blocks_per_stage=4)
TINY_UPSAMPLERS = {
    "spatial_x2": UpsamplerConfig(**_TINY_UP),
    "spatial_x2_rational": UpsamplerConfig(**_TINY_UP, rational_resampler=True),
    "spatial_x1_5_rational": UpsamplerConfig(**_TINY_UP, rational_resampler=True, spatial_scale=1.5),
    "temporal_x2": UpsamplerConfig(**_TINY_UP, spatial_upsample=False, temporal_upsample=True),
}

# Tiny audio parts for the bundled demo checkpoint (`LTX_2_3_TINY_AV`): the audio VAE keeps ch 128 (its
# statistics are sized by ch) with ch_mult (1, 1, 2) and 1 res block; the released rates (16 kHz stage 1,
# BWE to 48 kHz) with one resblock kernel per stage and widths 64 / 32.
TINY_AUDIO_VAE = AudioVAEConfig(ch_mult=(1, 1, 2), num_res_blocks=1)
TINY_VOCODER_2_3 = dataclasses.replace(
    LTX_2_3.vocoder, upsample_initial_channel=64, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3, 5),),
    bwe=dataclasses.replace(LTX_2_3.vocoder.bwe, upsample_initial_channel=32, resblock_kernel_sizes=(3,),
                            resblock_dilation_sizes=((1, 3, 5),)))
LTX_2_3_TINY_AV = dataclasses.replace(LTX_2_3_TINY, audio_vae=TINY_AUDIO_VAE, vocoder=TINY_VOCODER_2_3)
