"""The official file layout as data: every tensor key and shape an official file holds for a config.

This is the contract the loader and converter check against (nothing missing, nothing left over,
every shape right), the source of the parameter counts per component, and what the demo's tiny
checkpoint is written from. Keys are the file's own (with their prefixes). Tests compare it with
the state dicts of the official ltx-core modules built from the same config.

Counterparts: the `state_dict()` of ltx_core's `LTXModel`, `EmbeddingsProcessor`, `VideoEncoder`,
`VideoDecoder`, `LatentUpsampler` (the TAE's in `tae_layout`), and the key maps in `ltx_pipelines/utils/model_ledger.py`.
"""

from __future__ import annotations

from ltx_jax.checkpoint.layout import CONNECTOR_PREFIXES, TEXT_PROJECTION_PREFIX, TRANSFORMER_PREFIX, VAE_PREFIX
from ltx_jax.checkpoint.tae_layout import tae_schema
from ltx_jax.configs import (ConnectorConfig, LTXConfig, TransformerConfig, UpsamplerConfig,
                             VideoVAEConfig)

__all__ = ["Schema", "checkpoint_schema", "transformer_schema", "transformer_block_schema", "connector_schema",
           "vae_encoder_schema", "vae_decoder_schema", "upsampler_schema", "tae_schema", "num_parameters",
           "TRANSFORMER_PREFIX", "CONNECTOR_PREFIXES", "TEXT_PROJECTION_PREFIX", "VAE_PREFIX"]

Shape = tuple[int, ...]
Schema = dict[str, Shape]

TIMESTEP_CHANNELS = 256  # sinusoidal timestep embedding width (ltx-core `Timesteps(256)`)


def _linear(out: Schema, name: str, fan_in: int, fan_out: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = (fan_out, fan_in)  # PyTorch layout [out, in]
    if bias:
        out[f"{name}.bias"] = (fan_out,)


def _adaln_single(out: Schema, name: str, dim: int, coefficients: int) -> None:
    _linear(out, f"{name}.emb.timestep_embedder.linear_1", TIMESTEP_CHANNELS, dim)
    _linear(out, f"{name}.emb.timestep_embedder.linear_2", dim, dim)
    _linear(out, f"{name}.linear", dim, coefficients * dim)


def _attention(out: Schema, name: str, query_dim: int, context_dim: int, heads: int, head_dim: int,
               gated: bool) -> None:
    inner = heads * head_dim
    out[f"{name}.q_norm.weight"] = (inner,)
    out[f"{name}.k_norm.weight"] = (inner,)
    _linear(out, f"{name}.to_q", query_dim, inner)
    _linear(out, f"{name}.to_k", context_dim, inner)
    _linear(out, f"{name}.to_v", context_dim, inner)
    if gated:
        _linear(out, f"{name}.to_gate_logits", query_dim, heads)
    _linear(out, f"{name}.to_out.0", inner, query_dim)


def _feed_forward(out: Schema, name: str, dim: int, mult: int = 4) -> None:
    _linear(out, f"{name}.net.0.proj", dim, dim * mult)
    _linear(out, f"{name}.net.2", dim * mult, dim)


def transformer_block_schema(t: TransformerConfig) -> Schema:
    """Keys of one `transformer_blocks.N.` block, without that prefix."""
    v, a, gated = t.inner_dim, t.audio_inner_dim, t.apply_gated_attention
    out: Schema = {}
    out["scale_shift_table"] = (t.adaln_coefficients, v)
    out["audio_scale_shift_table"] = (t.adaln_coefficients, a)
    out["scale_shift_table_a2v_ca_audio"] = (5, a)
    out["scale_shift_table_a2v_ca_video"] = (5, v)
    if t.cross_attention_adaln:
        out["prompt_scale_shift_table"] = (2, v)
        out["audio_prompt_scale_shift_table"] = (2, a)
    vh, vd, ah, ad = t.num_attention_heads, t.attention_head_dim, t.audio_num_attention_heads, t.audio_attention_head_dim
    _attention(out, "attn1", v, v, vh, vd, gated)
    _attention(out, "attn2", v, t.cross_attention_dim, vh, vd, gated)
    _feed_forward(out, "ff", v)
    _attention(out, "audio_attn1", a, a, ah, ad, gated)
    _attention(out, "audio_attn2", a, t.audio_cross_attention_dim, ah, ad, gated)
    _feed_forward(out, "audio_ff", a)
    # Cross-modal attention runs at the audio width with the audio head count.
    _attention(out, "audio_to_video_attn", v, a, ah, ad, gated)
    _attention(out, "video_to_audio_attn", a, v, ah, ad, gated)
    return out


def transformer_schema(t: TransformerConfig) -> Schema:
    """`LTXModel` keys as stored in the file (with the `model.diffusion_model.` prefix)."""
    v, a = t.inner_dim, t.audio_inner_dim
    out: Schema = {"scale_shift_table": (2, v), "audio_scale_shift_table": (2, a)}
    _linear(out, "patchify_proj", t.in_channels, v)
    _linear(out, "audio_patchify_proj", t.audio_in_channels, a)
    if t.has_caption_projection:
        cap = t.caption_channels
        _linear(out, "caption_projection.linear_1", cap, v)
        _linear(out, "caption_projection.linear_2", v, v)
        _linear(out, "audio_caption_projection.linear_1", cap, a)
        _linear(out, "audio_caption_projection.linear_2", a, a)
    _adaln_single(out, "adaln_single", v, t.adaln_coefficients)
    _adaln_single(out, "audio_adaln_single", a, t.adaln_coefficients)
    if t.cross_attention_adaln:
        _adaln_single(out, "prompt_adaln_single", v, 2)
        _adaln_single(out, "audio_prompt_adaln_single", a, 2)
    _adaln_single(out, "av_ca_video_scale_shift_adaln_single", v, 4)
    _adaln_single(out, "av_ca_audio_scale_shift_adaln_single", a, 4)
    _adaln_single(out, "av_ca_a2v_gate_adaln_single", v, 1)
    _adaln_single(out, "av_ca_v2a_gate_adaln_single", a, 1)
    _linear(out, "proj_out", v, t.out_channels)
    _linear(out, "audio_proj_out", a, t.audio_out_channels)
    block = transformer_block_schema(t)
    for i in range(t.num_layers):
        out.update({f"transformer_blocks.{i}.{k}": s for k, s in block.items()})
    return {TRANSFORMER_PREFIX + k: s for k, s in out.items()}


def connector_schema(c: ConnectorConfig) -> Schema:
    """Feature extractor and both `Embeddings1DConnector`s, as stored in the file."""
    out: Schema = {}
    flat = c.text_hidden_size * c.text_num_hidden_states
    if c.feature_extractor == "v1":
        _linear(out, TEXT_PROJECTION_PREFIX + "aggregate_embed", flat, c.text_hidden_size, bias=False)
    else:
        _linear(out, TEXT_PROJECTION_PREFIX + "video_aggregate_embed", flat, c.video_inner_dim)
        _linear(out, TEXT_PROJECTION_PREFIX + "audio_aggregate_embed", flat, c.audio_inner_dim)
    shapes = {"video": (c.connector_num_attention_heads, c.connector_attention_head_dim, c.connector_num_layers),
              "audio": (c.audio_heads, c.audio_head_dim, c.audio_num_layers)}
    for which, (heads, head_dim, layers) in shapes.items():
        prefix, dim = CONNECTOR_PREFIXES[which], heads * head_dim
        out[prefix + "learnable_registers"] = (c.num_learnable_registers, dim)
        for i in range(layers):
            _attention(out, f"{prefix}transformer_1d_blocks.{i}.attn1", dim, dim, heads, head_dim,
                       c.connector_apply_gated_attention)
            _feed_forward(out, f"{prefix}transformer_1d_blocks.{i}.ff", dim)
    return out


def _conv3d(out: Schema, name: str, cin: int, cout: int, k: int = 3) -> None:
    out[f"{name}.conv.weight"] = (cout, cin, k, k, k)  # CausalConv3d wraps an nn.Conv3d named `conv`
    out[f"{name}.conv.bias"] = (cout,)


def _params(block_params) -> dict:
    return {"num_layers": block_params} if isinstance(block_params, int) else dict(block_params)


def _resnet(out: Schema, name: str, cin: int, cout: int, inject_noise: bool, timestep: bool) -> None:
    _conv3d(out, f"{name}.conv1", cin, cout)
    _conv3d(out, f"{name}.conv2", cout, cout)
    if inject_noise:
        out[f"{name}.per_channel_scale1"] = (cin, 1, 1)
        out[f"{name}.per_channel_scale2"] = (cin, 1, 1)
    if cin != cout:
        out[f"{name}.conv_shortcut.weight"] = (cout, cin, 1, 1, 1)  # plain 1x1x1 nn.Conv3d
        out[f"{name}.conv_shortcut.bias"] = (cout,)
        out[f"{name}.norm3.weight"] = (cin,)
        out[f"{name}.norm3.bias"] = (cin,)
    if timestep:
        out[f"{name}.scale_shift_table"] = (4, cin)


def _time_embedder(out: Schema, name: str, dim: int) -> None:
    _linear(out, f"{name}.timestep_embedder.linear_1", TIMESTEP_CHANNELS, dim)
    _linear(out, f"{name}.timestep_embedder.linear_2", dim, dim)


def _stats(out: Schema, prefix: str, channels: int) -> None:
    out[prefix + "per_channel_statistics.std-of-means"] = (channels,)
    out[prefix + "per_channel_statistics.mean-of-means"] = (channels,)


def vae_encoder_schema(v: VideoVAEConfig, prefix: str = "vae.encoder.") -> Schema:
    out: Schema = {}
    ch = v.latent_channels  # ltx-core: conv_in maps to latent_channels features
    _conv3d(out, prefix + "conv_in", 3 * 4 * 4, ch)
    for i, (kind, raw) in enumerate(v.encoder_blocks):
        p, name = _params(raw), f"{prefix}down_blocks.{i}"
        if kind == "res_x":
            for j in range(p["num_layers"]):
                _resnet(out, f"{name}.res_blocks.{j}", ch, ch, False, False)
        elif kind == "res_x_y":
            cout = ch * p.get("multiplier", 2)
            _resnet(out, name, ch, cout, False, False)
            ch = cout
        elif kind in ("compress_time", "compress_space", "compress_all"):
            _conv3d(out, name, ch, ch)
        elif kind == "compress_all_x_y":
            cout = ch * p.get("multiplier", 2)
            _conv3d(out, name, ch, cout)
            ch = cout
        else:  # compress_*_res: space-to-depth downsample; conv to out / prod(stride) channels
            stride = {"compress_all_res": 8, "compress_space_res": 4, "compress_time_res": 2}[kind]
            cout = ch * p.get("multiplier", 2)
            _conv3d(out, f"{name}.conv", ch, cout // stride)
            ch = cout
    _conv3d(out, prefix + "conv_out", ch, v.latent_channels + 1)  # means + one shared log-variance
    return out


def vae_decoder_schema(v: VideoVAEConfig, prefix: str = "vae.decoder.") -> Schema:
    out: Schema = {}
    ch, t = v.decoder_base_channels * 8, v.timestep_conditioning
    _conv3d(out, prefix + "conv_in", v.latent_channels, ch)
    for i, (kind, raw) in enumerate(reversed(v.decoder_blocks)):
        p, name = _params(raw), f"{prefix}up_blocks.{i}"
        if kind == "res_x":
            if t:
                _time_embedder(out, f"{name}.time_embedder", ch * 4)
            for j in range(p["num_layers"]):
                _resnet(out, f"{name}.res_blocks.{j}", ch, ch, p.get("inject_noise", False), t)
        elif kind == "res_x_y":
            cout = ch // p.get("multiplier", 2)
            _resnet(out, name, ch, cout, p.get("inject_noise", False), False)
            ch = cout
        else:  # compress_*: depth-to-space upsample
            stride = {"compress_all": 8, "compress_space": 4, "compress_time": 2}[kind]
            reduction = p.get("multiplier", 1)
            _conv3d(out, f"{name}.conv", ch, stride * ch // reduction)
            ch = ch // reduction
    _conv3d(out, prefix + "conv_out", ch, 3 * 4 * 4)
    if t:
        out[prefix + "timestep_scale_multiplier"] = ()
        out[prefix + "last_scale_shift_table"] = (2, ch)
        _time_embedder(out, prefix + "last_time_embedder", ch * 2)
    return out


def upsampler_schema(u: UpsamplerConfig) -> Schema:
    """`LatentUpsampler` keys (its own file, no prefix)."""
    out: Schema = {}
    mid, k = u.mid_channels, (3,) * u.dims

    def conv(name: str, cin: int, cout: int, kernel: tuple[int, ...] = k) -> None:
        out[f"{name}.weight"] = (cout, cin, *kernel)
        out[f"{name}.bias"] = (cout,)

    def res_blocks(name: str) -> None:
        for i in range(u.num_blocks_per_stage):
            for j in (1, 2):
                conv(f"{name}.{i}.conv{j}", mid, mid)
                out[f"{name}.{i}.norm{j}.weight"] = (mid,)
                out[f"{name}.{i}.norm{j}.bias"] = (mid,)

    conv("initial_conv", u.in_channels, mid)
    out["initial_norm.weight"] = (mid,)
    out["initial_norm.bias"] = (mid,)
    res_blocks("res_blocks")
    if u.spatial_upsample and u.temporal_upsample:
        conv("upsampler.0", mid, 8 * mid, (3, 3, 3))
    elif u.temporal_upsample:
        conv("upsampler.0", mid, 2 * mid, (3, 3, 3))
    elif not u.rational_resampler:
        conv("upsampler.0", mid, 4 * mid, (3, 3))
    else:
        num = {0.75: 3, 1.5: 3, 2.0: 2, 4.0: 4}[float(u.spatial_scale)]
        conv("upsampler.conv", mid, num * num * mid, (3, 3))
        out["upsampler.blur_down.kernel"] = (1, 1, 5, 5)
    res_blocks("post_upsample_res_blocks")
    conv("final_conv", mid, u.in_channels)
    return out


def checkpoint_schema(config: LTXConfig) -> dict[str, Schema]:
    """Every component of an official single-file checkpoint: {component: {file key: shape}}.

    Audio VAE and vocoder keys are not described here (no implementation yet); a file's keys
    under `audio_vae.` and `vocoder.` are reported by `inspect` as they are.
    """
    out = {"transformer": transformer_schema(config.transformer),
           "connectors": connector_schema(config.connector)}
    if config.vae is not None:
        out["vae_encoder"] = vae_encoder_schema(config.vae)
        out["vae_decoder"] = vae_decoder_schema(config.vae)
        stats: Schema = {}
        _stats(stats, VAE_PREFIX, config.vae.latent_channels)
        out["vae_statistics"] = stats
    return out


def num_parameters(schema: Schema) -> int:
    total = 0
    for shape in schema.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total
