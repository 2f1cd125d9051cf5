"""Diffusers-format folders: the tiny official checkpoint converted to diffusers' layout by diffusers 0.42.1's own
converter (`convert_ltx2_{transformer,vae}_to_diffusers` plus the renames of its conversion script for LTX-2.3,
the decoder's `last_*` and the connectors), loaded strictly into diffusers' modules and saved with
`save_pretrained`; then back through our converter: bit-identical tensors under the official keys, the same
config, and the folders that are not converted reported.

diffusers 0.42.1 needs huggingface_hub >= 1.32 while the reference environment pins < 1 for transformers 4.57.1,
so `scripts/env.sh` installs it with `--no-deps` into `.venv-ref/diffusers-site`
(`tests/reference/requirements-diffusers.txt`) and transformers is hidden from it (diffusers only needs it for
pipelines).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest

from ltx_jax.configs import from_metadata
from ltx_jax.checkpoint.converter import convert
from ltx_jax.checkpoint.diffusers import DiffusersError, open_diffusers
from ltx_jax.checkpoint.exporter import export
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from conftest import REF_PYTHON, ROOT, reference_unavailable

pytestmark = pytest.mark.reference
DIFFUSERS_SITE = ROOT / ".venv-ref" / "diffusers-site"

TO_DIFFUSERS = r'''
import importlib.util, json, sys
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] == "transformers" else _find(name, *a)
import safetensors.torch, torch
from diffusers import AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers, convert_ltx2_vae_to_diffusers
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors

src, preset, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sd = safetensors.torch.load_file(src)
t, v, te = preset["transformer"], preset["vae"], preset["text_encoder"]
v23 = bool(t.get("caption_proj_before_connector"))
kind = {"space": "spatial", "time": "temporal", "all": "spatiotemporal"}

# The diffusers configs for this official config (the inverse of what ltx_jax.checkpoint.diffusers reads).
tcfg = dict(in_channels=t["in_channels"], out_channels=t["out_channels"], num_attention_heads=t["num_attention_heads"],
            attention_head_dim=t["attention_head_dim"], cross_attention_dim=t["cross_attention_dim"],
            pos_embed_max_pos=t["positional_embedding_max_pos"][0], base_height=t["positional_embedding_max_pos"][1],
            base_width=t["positional_embedding_max_pos"][2], gated_attn=t.get("apply_gated_attention", False),
            cross_attn_mod=t.get("cross_attention_adaln", False), audio_in_channels=t["audio_in_channels"],
            audio_out_channels=t["audio_out_channels"], audio_num_attention_heads=t["audio_num_attention_heads"],
            audio_attention_head_dim=t["audio_attention_head_dim"],
            audio_cross_attention_dim=t["audio_cross_attention_dim"],
            audio_pos_embed_max_pos=t["audio_positional_embedding_max_pos"][0],
            audio_gated_attn=t.get("apply_gated_attention", False),
            audio_cross_attn_mod=t.get("cross_attention_adaln", False), num_layers=t["num_layers"],
            norm_eps=t["norm_eps"], caption_channels=t["caption_channels"], rope_theta=t["positional_embedding_theta"],
            rope_double_precision=t.get("frequencies_precision") == "float64",
            timestep_scale_multiplier=t["timestep_scale_multiplier"],
            cross_attn_timestep_scale_multiplier=t["av_ca_timestep_scale_multiplier"], rope_type=t["rope_type"],
            use_prompt_embeddings=not v23, perturbed_attn=v23)
ccfg = dict(caption_channels=t["caption_channels"], text_proj_in_factor=te["num_hidden_layers"] + 1,
            video_connector_num_attention_heads=t["connector_num_attention_heads"],
            video_connector_attention_head_dim=t["connector_attention_head_dim"],
            video_connector_num_layers=t["connector_num_layers"], video_connector_num_learnable_registers=128,
            video_gated_attn=t.get("connector_apply_gated_attention", False),
            audio_connector_num_attention_heads=t.get("audio_connector_num_attention_heads") or t["connector_num_attention_heads"],
            audio_connector_attention_head_dim=t.get("audio_connector_attention_head_dim") or t["connector_attention_head_dim"],
            audio_connector_num_layers=t.get("audio_connector_num_layers") or t["connector_num_layers"],
            audio_connector_num_learnable_registers=128, audio_gated_attn=t.get("connector_apply_gated_attention", False),
            connector_rope_base_seq_len=t["connector_positional_embedding_max_pos"][0],
            rope_theta=t["positional_embedding_theta"], rope_double_precision=t.get("frequencies_precision") == "float64",
            rope_type=t["rope_type"], per_modality_projections=v23, proj_bias=v23,
            video_hidden_dim=t["num_attention_heads"] * t["attention_head_dim"],
            audio_hidden_dim=t["audio_num_attention_heads"] * t["audio_attention_head_dim"])
enc, built = v["encoder_blocks"], v["decoder_blocks"][::-1]
res = lambda b: b[1]["num_layers"] if isinstance(b[1], dict) else b[1]
boc, ch = [], v["latent_channels"]
for name, p in enc:
    if name != "res_x":
        ch *= p.get("multiplier", 2)
        boc.append(ch)
ups, ch_in, ch = [], [], v["decoder_base_channels"] * 8
for name, p in built:
    if name != "res_x":
        ups.append((name, p))
        ch_in.append(ch)
        ch //= p.get("multiplier", 1)
pad = v.get("spatial_padding_mode")
vcfg = dict(latent_channels=v["latent_channels"], block_out_channels=tuple(boc),
            layers_per_block=tuple(res(b) for b in enc if b[0] == "res_x"),
            downsample_type=tuple(kind[n.split("_")[1]] for n, _ in enc if n != "res_x"),
            decoder_block_out_channels=tuple(ch_in[::-1]),
            decoder_layers_per_block=tuple(res(b) for b in built if b[0] == "res_x")[::-1],
            decoder_spatio_temporal_scaling=(True,) * len(ups),
            decoder_inject_noise=tuple(bool(b[1].get("inject_noise")) for b in built if b[0] == "res_x")[::-1],
            upsample_type=tuple(kind[n.split("_")[1]] for n, _ in ups),
            upsample_residual=tuple(bool(p.get("residual")) for _, p in ups)[::-1],
            upsample_factor=tuple(p.get("multiplier", 1) for _, p in ups)[::-1],
            timestep_conditioning=v.get("timestep_conditioning", True), decoder_causal=v.get("causal_decoder", False),
            encoder_spatial_padding_mode=pad or "zeros", decoder_spatial_padding_mode=pad or "reflect")

# diffusers' own converters, plus the renames its conversion script adds for LTX-2.3 and the decoder.
PREFIX = "model.diffusion_model."
dit = {k: v for k, v in sd.items() if k.startswith(PREFIX) and "embeddings_connector" not in k}
dit = convert_ltx2_transformer_to_diffusers({k: v for k, v in dit.items()})
dit = {k.replace("audio_prompt_adaln_single", "audio_prompt_adaln").replace("prompt_adaln_single", "prompt_adaln"): v
       for k, v in dit.items()}
vae = convert_ltx2_vae_to_diffusers({k: v for k, v in sd.items() if k.startswith("vae.")})
rename = {"up_blocks.7": "up_blocks.3.upsamplers.0", "up_blocks.8": "up_blocks.3",
          "last_time_embedder": "time_embedder", "last_scale_shift_table": "scale_shift_table"}
def renamed(k):
    for a, b in rename.items():
        k = k.replace(a, b)
    return k
vae = {renamed(k): v for k, v in vae.items()}
con_rename = {"video_embeddings_connector": "video_connector", "audio_embeddings_connector": "audio_connector",
              "transformer_1d_blocks": "transformer_blocks", "text_embedding_projection.aggregate_embed": "text_proj_in",
              "text_embedding_projection.audio_aggregate_embed": "audio_text_proj_in",
              "text_embedding_projection.video_aggregate_embed": "video_text_proj_in", "q_norm": "norm_q", "k_norm": "norm_k"}
con = {}
for k, x in sd.items():
    if "embeddings_connector" in k or k.startswith("text_embedding_projection."):
        k = k[len(PREFIX):] if k.startswith(PREFIX) else k
        for a, b in con_rename.items():
            k = k.replace(a, b)
        con[k] = x
for sub, cls, cfg, state in (("transformer", LTX2VideoTransformer3DModel, tcfg, dit),
                             ("connectors", LTX2TextConnectors, ccfg, con), ("vae", AutoencoderKLLTX2Video, vcfg, vae)):
    model = cls(**cfg)
    model.load_state_dict(state, strict=True)  # diffusers' own modules accept exactly these keys and shapes
    model.save_pretrained(f"{out}/{sub}")
json.dump({"_class_name": "LTX2Pipeline", "_diffusers_version": "0.42.1"}, open(f"{out}/model_index.json", "w"))
print(json.dumps({"tensors": len(dit) + len(con) + len(vae)}))
'''


def _diffusers_folder(reference, out):
    if not DIFFUSERS_SITE.is_dir():
        reference_unavailable(f"{DIFFUSERS_SITE} missing (see this module's docstring to install diffusers 0.42.1)")
    preset = json.loads((reference / "manifest.json").read_text())["config"]
    env = dict(os.environ, PYTHONPATH=str(DIFFUSERS_SITE))
    r = subprocess.run([str(REF_PYTHON), "-c", TO_DIFFUSERS, str(reference / "ltx_checkpoint.safetensors"),
                        json.dumps(preset), str(out)], cwd=ROOT, capture_output=True, text=True, env=env)
    if r.returncode:
        pytest.fail(f"diffusers conversion failed:\n{r.stderr[-5000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_diffusers_folder_round_trip(reference, tmp_path):
    folder = tmp_path / "diffusers"
    made = _diffusers_folder(reference, folder)
    (folder / "vocoder").mkdir()  # reported as not converted
    ours = convert(folder, tmp_path / "ck")
    manifest = json.loads((ours / "manifest.json").read_text())
    assert manifest["source"]["layout"] == "diffusers" and "vocoder" in manifest["not_converted"]
    exported = SafetensorsFile(export(ours, tmp_path / "official.safetensors"))
    original = SafetensorsFile(reference / "ltx_checkpoint.safetensors")
    assert set(exported) == set(original) and len(original) == made["tensors"]
    bad = [k for k in original
           if exported[k].dtype != original[k].dtype or exported[k].tobytes() != original[k].tobytes()]
    assert not bad, bad[:5]
    ours_cfg, ref_cfg = from_metadata(exported.metadata), from_metadata(original.metadata)
    # diffusers stores the RoPE grid precision as a bool: "float32" and False (absent) are the same value.
    def prec(c):
        return dataclasses.replace(c, frequencies_precision="float64" if c.double_precision_rope else False)
    assert prec(ours_cfg.transformer) == prec(ref_cfg.transformer)
    def audio(c):  # absent audio connector sizes mean "as the video connector"; diffusers spells them out
        return dataclasses.replace(prec(c), audio_connector_num_attention_heads=c.audio_heads,
                                   audio_connector_attention_head_dim=c.audio_head_dim,
                                   audio_connector_num_layers=c.audio_num_layers)
    assert audio(ours_cfg.connector) == audio(ref_cfg.connector)
    def blocks(c):  # a False flag and an absent one build the same block
        strip = lambda bs: tuple((n, {k: v for k, v in dict(p).items() if v is not False}) for n, p in bs)  # noqa: E731
        return dataclasses.replace(c, encoder_blocks=strip(c.encoder_blocks), decoder_blocks=strip(c.decoder_blocks))
    assert blocks(ours_cfg.vae) == blocks(ref_cfg.vae)


def test_diffusers_refusals(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"num_layers": 1}))
    (tmp_path / "transformer" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(DiffusersError, match=r"no \.safetensors weights \(only pickle files"):
        open_diffusers(tmp_path)
