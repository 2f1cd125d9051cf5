"""Configs: presets round-trip through the official JSON form; unknown keys and unsupported values are refused."""

import dataclasses
import json

import pytest

from ltx_jax.configs import (LTX_2, LTX_2_3, LTX_2_3_TINY, LTX_2_TINY, TINY_UPSAMPLERS, ConfigError,
                             UpsamplerConfig, VocoderConfig, from_metadata, upsampler_from_metadata)
from ltx_jax.checkpoint.schema import checkpoint_schema

PRESETS = {"ltx2": LTX_2, "ltx23": LTX_2_3, "ltx2-tiny": LTX_2_TINY, "ltx23-tiny": LTX_2_3_TINY}


def _shapes(config):
    return {k: s for part in checkpoint_schema(config).values() for k, s in part.items()}


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip_through_metadata(name):
    config = PRESETS[name]
    meta = config.to_metadata()
    assert set(meta) == {"config", "model_version"}
    assert from_metadata(meta, tensor_shapes=_shapes(config)) == config


def test_upsampler_configs_round_trip():
    for kind, config in TINY_UPSAMPLERS.items():
        assert config.kind == kind
        assert upsampler_from_metadata({"config": json.dumps(config.to_dict())}) == config


def test_vocoder_with_bandwidth_extension_round_trips():
    v = LTX_2_3.vocoder
    assert v.bwe is not None and v.bwe.output_sampling_rate == 48000 and v.output_sampling_rate == 16000
    assert VocoderConfig.from_dict(v.to_dict()) == v


def _mutated(section, key, value, base=LTX_2_3):
    config = json.loads(base.to_metadata()["config"])
    if value is dataclasses.MISSING:
        del config[section][key]
    else:
        config[section][key] = value
    return {"config": json.dumps(config)}


@pytest.mark.parametrize("section, key, value, message", [
    ("transformer", "rope_type", "fancy", "transformer.rope_type='fancy'"),
    ("transformer", "dropout", 0.1, "transformer.dropout=0.1"),
    ("transformer", "qk_norm", "layer_norm", "transformer.qk_norm"),
    ("transformer", "brand_new_key", 1, "unknown config key 'transformer.brand_new_key'"),
    ("transformer", "caption_proj_input_norm", True, "caption_proj_input_norm=True"),
    ("transformer", "caption_proj_input_norm", dataclasses.MISSING, "partial feature-extractor V2"),
    ("transformer", "connector_num_learnable_registers", 64, "connector_num_learnable_registers"),
    ("transformer", "use_middle_indices_grid", False, "use_middle_indices_grid"),
    ("vae", "norm_layer", "group_norm", "vae.norm_layer"),
    ("vae", "encoder_blocks", [["attn_res_x", {"num_layers": 1}]], "vae.encoder_blocks[0]"),
    ("vae", "spatial_padding_mode", "mirror", "vae.spatial_padding_mode"),
    ("vae", "latent_log_var", "per_channel", "vae.latent_log_var"),
])
def test_mutated_config_is_refused_naming_the_key(section, key, value, message):
    with pytest.raises(ConfigError) as e:
        from_metadata(_mutated(section, key, value))
    assert message in str(e.value)


def test_unknown_key_can_be_tolerated_but_not_an_unsupported_value():
    with pytest.warns(UserWarning, match="brand_new_key"):
        config = from_metadata(_mutated("transformer", "brand_new_key", 1), strict=False)
    assert config.transformer == LTX_2_3.transformer
    with pytest.raises(ConfigError):
        from_metadata(_mutated("transformer", "rope_type", "fancy"), strict=False)


@pytest.mark.parametrize("metadata, message", [
    ({}, "no 'config'"),
    ({"config": "{not json"}, "not valid JSON"),
    ({"config": json.dumps({"vae": {}})}, "no 'transformer'"),
    ({"config": json.dumps({"transformer": {}, "vea": {}})}, "unknown config section"),
])
def test_bad_metadata(metadata, message):
    with pytest.raises(ConfigError, match=message):
        from_metadata(metadata)


def test_upsampler_refuses_unsupported_scale():
    with pytest.raises(ConfigError, match="spatial_scale"):
        UpsamplerConfig.from_dict({"rational_resampler": True, "spatial_scale": 3.0})
    with pytest.raises(ConfigError, match="one of spatial_upsample"):
        UpsamplerConfig.from_dict({"spatial_upsample": False, "temporal_upsample": False})


def test_text_depth_inferred_from_tensor_shapes():
    config = from_metadata(LTX_2_3_TINY.to_metadata(), tensor_shapes=_shapes(LTX_2_3_TINY))
    assert (config.connector.text_hidden_size, config.connector.text_num_hidden_states) == (48, 3)
    bad = dict(_shapes(LTX_2_3_TINY))
    bad["text_embedding_projection.video_aggregate_embed.weight"] = (64, 145)
    with pytest.raises(ConfigError, match="not a multiple"):
        from_metadata(LTX_2_3_TINY.to_metadata(), tensor_shapes=bad)


def test_released_defaults_differ_from_code_defaults_where_documented():
    # ltx-core defaults to 1; the released configs use 1000 (docs/ltx2-architecture.md 1.1).
    assert LTX_2_3.transformer.av_ca_timestep_scale_multiplier == 1000
    assert LTX_2_3.transformer.rope_type == "split" and LTX_2_3.transformer.double_precision_rope
    assert LTX_2_3.transformer.adaln_coefficients == 9 and LTX_2.transformer.adaln_coefficients == 6
    assert LTX_2.vae.encoder_padding_mode == "zeros" and LTX_2.vae.decoder_padding_mode == "reflect"
