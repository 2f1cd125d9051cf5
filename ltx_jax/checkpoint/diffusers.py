"""Diffusers-format LTX-2 / LTX-2.3 folders read as an official single-file checkpoint (keys, config, metadata).

Counterpart: the key map of diffusers' `scripts/convert_ltx2_to_diffusers.py` (and
`loaders/single_file_utils.py` `convert_ltx2_{transformer,vae}_to_diffusers`), inverted here:

  transformer/  `time_embed` <- `adaln_single`, `audio_time_embed` <- `audio_adaln_single`, `proj_in` <-
                `patchify_proj`, `av_cross_attn_{video_scale_shift,video_a2v_gate,audio_scale_shift,audio_v2a_gate}`
                <- `av_ca_{video_scale_shift,a2v_gate,audio_scale_shift,v2a_gate}_adaln_single`,
                `{video,audio}_a2v_cross_attn_scale_shift_table` <- `scale_shift_table_a2v_ca_{video,audio}`,
                `norm_q/norm_k` <- `q_norm/k_norm`, [2.3] `{audio_,}prompt_adaln` <- `{audio_,}prompt_adaln_single`;
                all under `model.diffusion_model.`
  connectors/   `{video,audio}_connector` <- `model.diffusion_model.{video,audio}_embeddings_connector`,
                `transformer_blocks` <- `transformer_1d_blocks`, `text_proj_in` <- `text_embedding_projection
                .aggregate_embed` [2.0], `{video,audio}_text_proj_in` <- `...{video,audio}_aggregate_embed` [2.3]
  vae/          encoder `down_blocks.i.resnets` <- `down_blocks.2i.res_blocks`, `down_blocks.i.downsamplers.0` <-
                `down_blocks.2i+1`, `mid_block` <- the last block; decoder `mid_block` <- `up_blocks.0`,
                `up_blocks.i.upsamplers.0` <- `up_blocks.2i+1`, `up_blocks.i` <- `up_blocks.2i+2`,
                `time_embedder` / `scale_shift_table` <- `last_time_embedder` / `last_scale_shift_table`,
                `latents_mean/std` <- `per_channel_statistics.{mean,std}-of-means`; all under `vae.`

The official config JSON is rebuilt from the three diffusers `config.json` files (and the VAE multipliers from
the diffusers config, checked against the weights by the converter's strict layout check).

Refused, and why: `audio_vae/`, `vocoder/` (no audio VAE in ltx-jax yet; reported, not converted),
`latent_upsampler/` (convert the official upsampler file instead), `text_encoder/` / `tokenizer/` (Gemma is a
separate download, not part of the LTX checkpoint). Other layouts are refused outright by the converter: ComfyUI
split files and Kijai repackagings (other key prefixes and no `config` metadata, so neither the architecture nor
the key map can be established from the file), and `.ckpt` / `.pt` / `.bin` pickles (loading runs arbitrary code).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.checkpoint.layout import CONNECTOR_PREFIXES, TEXT_PROJECTION_PREFIX, TRANSFORMER_PREFIX
from ltx_jax.checkpoint.source import Index, SafetensorsSource, Source, TensorSpec

__all__ = ["DiffusersError", "DiffusersSource", "is_diffusers_dir", "open_diffusers"]

NOT_CONVERTED = {
    "audio_vae": "no audio VAE in ltx-jax yet", "vocoder": "no vocoder in ltx-jax yet",
    "latent_upsampler": "convert the official upsampler .safetensors file instead",
    "text_encoder": "Gemma is a separate download, not part of the LTX checkpoint", "tokenizer": "not weights",
    "scheduler": "not weights",
}

_TRANSFORMER = [  # (diffusers, official) for the start of a key
    ("time_embed.", "adaln_single."), ("audio_time_embed.", "audio_adaln_single."),
    ("prompt_adaln.", "prompt_adaln_single."), ("audio_prompt_adaln.", "audio_prompt_adaln_single."),
    ("proj_in.", "patchify_proj."), ("audio_proj_in.", "audio_patchify_proj."),
    ("av_cross_attn_video_scale_shift.", "av_ca_video_scale_shift_adaln_single."),
    ("av_cross_attn_video_a2v_gate.", "av_ca_a2v_gate_adaln_single."),
    ("av_cross_attn_audio_scale_shift.", "av_ca_audio_scale_shift_adaln_single."),
    ("av_cross_attn_audio_v2a_gate.", "av_ca_v2a_gate_adaln_single."),
]
_INNER = [(".video_a2v_cross_attn_scale_shift_table", ".scale_shift_table_a2v_ca_video"),
          (".audio_a2v_cross_attn_scale_shift_table", ".scale_shift_table_a2v_ca_audio"),
          (".norm_q.", ".q_norm."), (".norm_k.", ".k_norm.")]


class DiffusersError(ValueError):
    """A diffusers folder this converter cannot read; names the folder and the problem."""


def is_diffusers_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "model_index.json").is_file() or (p / "transformer" / "config.json").is_file()


def _start(key: str, pairs) -> str:
    for new, old in pairs:
        if key.startswith(new):
            return old + key[len(new):]
    return key


def _inner(key: str) -> str:
    for new, old in _INNER:
        key = key.replace(new, old)
    return key


def transformer_key(key: str) -> str:
    return TRANSFORMER_PREFIX + _inner(_start(key, _TRANSFORMER))


def connector_key(key: str) -> str:
    key = _start(key, [("text_proj_in.", TEXT_PROJECTION_PREFIX + "aggregate_embed."),
                       ("video_text_proj_in.", TEXT_PROJECTION_PREFIX + "video_aggregate_embed."),
                       ("audio_text_proj_in.", TEXT_PROJECTION_PREFIX + "audio_aggregate_embed."),
                       ("video_connector.", CONNECTOR_PREFIXES["video"]),
                       ("audio_connector.", CONNECTOR_PREFIXES["audio"])])
    return _inner(key.replace(".transformer_blocks.", ".transformer_1d_blocks."))


def vae_key(key: str, encoder_blocks: int) -> str:
    if key in ("latents_mean", "latents_std"):
        return "vae.per_channel_statistics." + ("mean-of-means" if key == "latents_mean" else "std-of-means")
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", key):
        key = f"encoder.down_blocks.{2 * int(m[1]) + 1}.{m[2]}"
    elif m := re.match(r"encoder\.down_blocks\.(\d+)\.(.*)", key):
        key = f"encoder.down_blocks.{2 * int(m[1])}.{m[2]}"
    elif key.startswith("encoder.mid_block."):
        key = f"encoder.down_blocks.{2 * encoder_blocks}." + key[len("encoder.mid_block."):]
    elif key.startswith("decoder.mid_block."):
        key = "decoder.up_blocks.0." + key[len("decoder.mid_block."):]
    elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
        key = f"decoder.up_blocks.{2 * int(m[1]) + 1}.{m[2]}"
    elif m := re.match(r"decoder\.up_blocks\.(\d+)\.(.*)", key):
        key = f"decoder.up_blocks.{2 * int(m[1]) + 2}.{m[2]}"
    elif key.startswith(("decoder.time_embedder.", "decoder.scale_shift_table")):
        key = "decoder.last_" + key[len("decoder."):]
    return "vae." + key.replace(".resnets.", ".res_blocks.")


def _weight_files(folder: Path) -> list[Path]:
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        names = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".ckpt", ".pth"))
        why = f" (only pickle files {pickles}: not read, they can run code)" if pickles else ""
        raise DiffusersError(f"{folder}: no .safetensors weights{why}")
    return files


def _transformer_config(t: Mapping[str, Any], c: Mapping[str, Any] | None) -> dict[str, Any]:
    """The official `transformer` JSON section (DiT + connector keys) from diffusers' two configs."""
    out: dict[str, Any] = {
        "num_layers": t["num_layers"], "num_attention_heads": t["num_attention_heads"],
        "attention_head_dim": t["attention_head_dim"], "in_channels": t["in_channels"],
        "out_channels": t.get("out_channels") or t["in_channels"], "cross_attention_dim": t["cross_attention_dim"],
        "audio_num_attention_heads": t["audio_num_attention_heads"],
        "audio_attention_head_dim": t["audio_attention_head_dim"], "audio_in_channels": t["audio_in_channels"],
        "audio_out_channels": t.get("audio_out_channels") or t["audio_in_channels"],
        "audio_cross_attention_dim": t["audio_cross_attention_dim"], "caption_channels": t["caption_channels"],
        "norm_eps": t["norm_eps"], "positional_embedding_theta": t["rope_theta"],
        "positional_embedding_max_pos": [t["pos_embed_max_pos"], t["base_height"], t["base_width"]],
        "audio_positional_embedding_max_pos": [t["audio_pos_embed_max_pos"]],
        "timestep_scale_multiplier": t["timestep_scale_multiplier"],
        "av_ca_timestep_scale_multiplier": t["cross_attn_timestep_scale_multiplier"],
        "rope_type": t["rope_type"], "apply_gated_attention": bool(t.get("gated_attn", False)),
        "cross_attention_adaln": bool(t.get("cross_attn_mod", False)),
    }
    if t.get("rope_double_precision"):
        out["frequencies_precision"] = "float64"
    unsupported = {k: t[k] for k in ("patch_size", "patch_size_t", "audio_patch_size", "audio_patch_size_t")
                   if t.get(k, 1) != 1}
    if t.get("use_keyframes_abs_pos_embedding") or not t.get("use_prompt_adaln_single", True):
        unsupported["variant"] = "keyframe position embedding / no prompt AdaLN (LTX-2.5 layouts)"
    if bool(t.get("audio_gated_attn", out["apply_gated_attention"])) != out["apply_gated_attention"]:
        unsupported["audio_gated_attn"] = t.get("audio_gated_attn")
    if unsupported:
        raise DiffusersError(f"transformer config values ltx-core has no counterpart for: {unsupported}")
    if not t.get("use_prompt_embeddings", True):  # LTX-2.3: text projection before the connectors
        out.update(caption_proj_before_connector=True, caption_projection_first_linear=False,
                   caption_proj_input_norm=False, caption_projection_second_linear=False)
    if c is not None:
        if c.get("rope_type", t["rope_type"]) != t["rope_type"]:
            raise DiffusersError("connectors and transformer disagree on rope_type; ltx-core has one value")
        if c.get("caption_channels", t["caption_channels"]) != t["caption_channels"]:
            raise DiffusersError("connectors and transformer disagree on caption_channels")
        out.update(connector_num_attention_heads=c["video_connector_num_attention_heads"],
                   connector_attention_head_dim=c["video_connector_attention_head_dim"],
                   connector_num_layers=c["video_connector_num_layers"],
                   connector_apply_gated_attention=bool(c.get("video_gated_attn", False)),
                   audio_connector_num_attention_heads=c["audio_connector_num_attention_heads"],
                   audio_connector_attention_head_dim=c["audio_connector_attention_head_dim"],
                   audio_connector_num_layers=c["audio_connector_num_layers"],
                   connector_positional_embedding_max_pos=[c["connector_rope_base_seq_len"]],
                   connector_num_learnable_registers=c.get("video_connector_num_learnable_registers"))
    return out


def _vae_config(v: Mapping[str, Any]) -> dict[str, Any]:
    """The official `vae` JSON section; block lists rebuilt from diffusers' per-stage tuples."""
    n_down = len(v["block_out_channels"])
    scaling = v.get("spatio_temporal_scaling", True)
    scaling = [scaling] * n_down if isinstance(scaling, bool) else list(scaling)
    kinds = {"spatial": "space", "temporal": "time", "spatiotemporal": "all"}
    encoder, prev = [], v["latent_channels"]
    for i, n in enumerate(v["layers_per_block"][:-1]):
        encoder.append(["res_x", {"num_layers": n}])
        if not scaling[i]:
            raise DiffusersError(f"vae down block {i} without a downsampler has no ltx-core counterpart")
        out = v["block_out_channels"][i]
        encoder.append([f"compress_{kinds[v['downsample_type'][i]]}_res", {"multiplier": out // prev}])
        prev = out
    encoder.append(["res_x", {"num_layers": v["layers_per_block"][-1]}])
    layers = list(v["decoder_layers_per_block"])
    n_up = len(layers) - 1
    seq = lambda x: [x] * (n_up + 1) if isinstance(x, bool) else list(x)  # noqa: E731
    noise, residual = seq(v.get("decoder_inject_noise", False)), seq(v.get("upsample_residual", False))
    # diffusers reverses every per-stage tuple of the decoder except upsample_type (build order already).
    layers, noise, residual, factor = layers[::-1], noise[::-1], residual[::-1], list(v["upsample_factor"])[::-1]
    built = []
    for i in range(n_up + 1):
        block = {"num_layers": layers[i]} | ({"inject_noise": True} if noise[i] else {})
        built.append(["res_x", block])
        if i < n_up:
            kind = kinds[v["upsample_type"][i]]
            params = {"residual": True} if residual[i] and kind == "all" else {}
            built.append([f"compress_{kind}", params | {"multiplier": factor[i]}])
    pad_e, pad_d = v.get("encoder_spatial_padding_mode", "zeros"), v.get("decoder_spatial_padding_mode", "reflect")
    out = {"dims": 3, "in_channels": v.get("in_channels", 3), "out_channels": v.get("out_channels", 3),
           "latent_channels": v["latent_channels"], "encoder_blocks": encoder, "decoder_blocks": built[::-1],
           "patch_size": v.get("patch_size", 4), "norm_layer": "pixel_norm", "latent_log_var": "uniform",
           "causal_decoder": bool(v.get("decoder_causal", False)),
           "decoder_base_channels": list(v["decoder_block_out_channels"])[-1] // 8,
           "timestep_conditioning": bool(v.get("timestep_conditioning", False))}
    if pad_e == pad_d:
        out["spatial_padding_mode"] = pad_e
    elif (pad_e, pad_d) != ("zeros", "reflect"):  # ltx-core's defaults when the key is absent
        raise DiffusersError(f"vae padding modes encoder={pad_e}, decoder={pad_d}: ltx-core has one key")
    return out


class DiffusersSource(Source):
    """A diffusers-format folder as a `Source` under the official keys (see the module docstring)."""

    layout = "diffusers"

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).absolute()
        self.name = str(self.folder)
        if not (self.folder / "transformer" / "config.json").is_file():
            raise DiffusersError(f"{self.folder}: no transformer/config.json (a diffusers LTX-2 folder has "
                                 "transformer/, connectors/ and vae/ subfolders)")
        self.skipped = {d.name: NOT_CONVERTED[d.name] for d in self.folder.iterdir() if d.name in NOT_CONVERTED}
        configs = {}
        self._files: list[SafetensorsSource] = []
        self._used: list[Path] = []
        self._map: dict[str, tuple[SafetensorsSource, str]] = {}
        for sub in ("transformer", "connectors", "vae"):
            d = self.folder / sub
            if not (d / "config.json").is_file():
                continue
            configs[sub] = json.loads((d / "config.json").read_text())
            self._used.append(d / "config.json")
            for path in _weight_files(d):
                self._used.append(path)
                src = SafetensorsSource(SafetensorsFile(path))
                self._files.append(src)
                n_down = len(configs[sub].get("block_out_channels", ()))
                for key in src.specs():
                    official = (transformer_key(key) if sub == "transformer" else connector_key(key)
                                if sub == "connectors" else vae_key(key, n_down))
                    if official in self._map:
                        raise DiffusersError(f"{path}: {key!r} maps to {official!r}, which another tensor has too")
                    self._map[official] = (src, key)
        try:
            config = {"transformer": _transformer_config(configs["transformer"], configs.get("connectors"))}
            if "vae" in configs:
                config["vae"] = _vae_config(configs["vae"])
        except KeyError as e:
            raise DiffusersError(f"{self.folder}: diffusers config lacks {e}") from None
        except DiffusersError as e:
            raise DiffusersError(f"{self.folder}: {e}") from None
        self.kind = "ltx_checkpoint" if "vae" in configs else "ltx_transformer"
        family = "LTX-2.3" if config["transformer"]["cross_attention_adaln"] else "LTX-2"
        self.description = f"{family} diffusers folder ({', '.join(sorted(configs))})"
        version = "2.3" if family == "LTX-2.3" else "2.0"
        self.metadata = {"config": json.dumps(config), "model_version": f"{version} (from diffusers)"}
        order = sorted(self._map, key=lambda k: (not k.startswith(TRANSFORMER_PREFIX), k))
        self._specs = {k: self._map[k][0].specs()[self._map[k][1]] for k in order}

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        src, name = self._map[key]
        return src.read(name, index)

    def files(self) -> list[Path]:
        """The config and weight files read (not the whole folder: text_encoder/ alone is ~24 GB)."""
        return list(self._used)

    def close(self) -> None:
        for f in self._files:
            f.close()


def open_diffusers(folder: str | os.PathLike) -> DiffusersSource:
    return DiffusersSource(folder)
