"""The official Gemma text path on a tiny hub folder: tokenizer, plain transformers, and ltx-core's ledger path.

`tiny_ledger_config` overwrites ltx-core's built-in 12B `GEMMA3_CONFIG_FOR_LTX` (which the ledger uses instead
of the folder's config.json) with the folder's config while the encoder is built, and restores it after.
"""

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator
from pathlib import Path

import safetensors.torch
import torch
from transformers import Gemma3ForConditionalGeneration

from ltxref.components import EMBEDDINGS_PROCESSOR, checkpoint_config
from ltxref.official import gemma_width
from ltxref.record import Recorder
from ltxref.weights import init_tensor
from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX, Gemma3RopeScaling
from ltx_core.text_encoders.gemma.embeddings_processor import convert_to_additive_mask
from ltx_core.text_encoders.gemma.tokenizer import LTXVGemmaTokenizer
from ltx_pipelines.utils.model_ledger import ModelLedger

LTX_TEXT_FILE = "ltx_text_checkpoint.safetensors"
MAX_LENGTH = 1024  # hard-coded by ltx-core's module_ops_from_gemma_root


@contextlib.contextmanager
def tiny_ledger_config(config: dict) -> Iterator[None]:
    """Temporarily make GEMMA3_CONFIG_FOR_LTX equal to a hub config.json (text + vision + token indices)."""
    target = GEMMA3_CONFIG_FOR_LTX
    saved = (dataclasses.replace(target.text_config), dataclasses.replace(target.vision_config),
             {k: getattr(target, k) for k in ("boi_token_index", "eoi_token_index", "image_token_index",
                                              "eos_token_id", "mm_tokens_per_image")})
    try:
        text = dict(config["text_config"])
        scaling = text.pop("rope_scaling", None)
        for k, v in text.items():
            if hasattr(target.text_config, k):
                setattr(target.text_config, k, v)
        target.text_config.rope_scaling = (Gemma3RopeScaling(**scaling) if scaling else
                                           Gemma3RopeScaling(factor=1.0, rope_type="default"))
        for k, v in config["vision_config"].items():
            if hasattr(target.vision_config, k):
                setattr(target.vision_config, k, v)
        for k in saved[2]:
            setattr(target, k, config[k])
        yield
    finally:
        target.text_config, target.vision_config = saved[0], saved[1]
        for k, v in saved[2].items():
            setattr(target, k, v)


def write_ltx_text_checkpoint(path: Path, preset: dict, gemma_hidden: int, gemma_layers: int, seed: int) -> dict:
    """The tiny LTX-2.3 text side (feature extractor V2 + connectors) in the official single-file layout."""
    cfg = checkpoint_config(preset)
    with gemma_width(gemma_hidden, gemma_layers):
        meta = EMBEDDINGS_PROCESSOR.meta_module(cfg)
    tensors = {}
    for key, value in meta.state_dict().items():
        file_key = EMBEDDINGS_PROCESSOR.to_file_key(key)
        tensors[file_key] = init_tensor(file_key, tuple(value.shape), seed)
    import json
    safetensors.torch.save_file(tensors, str(path), metadata={"config": json.dumps({"transformer": cfg["transformer"]})})
    return {k: list(v.shape) for k, v in tensors.items()}


def official_tokens(rec: Recorder, folder: Path, prompts: dict[str, str]) -> dict[str, dict]:
    """`tok.<p>.input_ids` / `.attention_mask` `[1, 1024]` from LTXVGemmaTokenizer(folder, 1024)."""
    tok = LTXVGemmaTokenizer(str(folder), MAX_LENGTH)
    info = {}
    for name, text in prompts.items():
        pairs = tok.tokenize_with_weights(text)["gemma"]
        ids = torch.tensor([[int(t) for t, _ in pairs]])
        mask = torch.tensor([[int(w) for _, w in pairs]])
        rec.add(f"tok.{name}.input_ids", ids)
        rec.add(f"tok.{name}.attention_mask", mask)
        valid = int(mask.sum())
        untruncated = len(tok.tokenizer(text.strip())["input_ids"])
        info[name] = {"text": text, "valid_tokens": valid, "untruncated_tokens": untruncated,
                      "first_tokens": ids[0, MAX_LENGTH - valid:][:12].tolist()}
    return info


def plain_transformers(rec: Recorder, folder: Path, prompts: list[str]) -> dict:
    """`gemma.<p>.hidden_states` and `.last_layer_prenorm` (SDPA, float32), and SDPA-vs-eager on valid positions."""
    model, loading = Gemma3ForConditionalGeneration.from_pretrained(
        str(folder), torch_dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True)
    bad = {k: v for k, v in loading.items() if v}
    if bad:
        raise RuntimeError(f"from_pretrained did not load the folder cleanly: {bad}")
    eager = Gemma3ForConditionalGeneration.from_pretrained(str(folder), torch_dtype=torch.float32,
                                                           attn_implementation="eager")
    model.eval(), eager.eval()
    captured = {}
    layers = model.model.language_model.layers
    hook = layers[-1].register_forward_hook(lambda _m, _a, out: captured.__setitem__(
        "prenorm", out[0] if isinstance(out, tuple) else out))
    diffs = {}
    for name in prompts:
        ids, mask = torch.from_numpy(rec.arrays[f"tok.{name}.input_ids"]), torch.from_numpy(
            rec.arrays[f"tok.{name}.attention_mask"])
        hs = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        stacked = torch.stack(hs)
        rec.add(f"gemma.{name}.hidden_states", stacked)
        rec.add(f"gemma.{name}.last_layer_prenorm", captured["prenorm"])
        he = torch.stack(eager.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states)
        valid = mask[0].bool()
        diffs[name] = {"sdpa_vs_eager_max_abs": float((stacked - he)[:, :, valid].abs().max()),
                       "sdpa_vs_eager_pads_max_abs": float((stacked - he)[:, :, ~valid].abs().max())
                       if (~valid).any() else 0.0}
    hook.remove()
    return diffs


def ledger_path(rec: Recorder, root: Path, config: dict, prompts: dict[str, str], dtype: torch.dtype,
                prefix: str) -> None:
    """ltx-core's own path: `ledger.text_encoder().encode(text)` -> `process_hidden_states(hs, mask, "left")`."""
    text = config["text_config"]
    with tiny_ledger_config(config), gemma_width(text["hidden_size"], text["num_hidden_layers"]):
        ledger = ModelLedger(dtype=dtype, device=torch.device("cpu"), checkpoint_path=str(root / LTX_TEXT_FILE),
                             gemma_root_path=str(root / "gemma"))
        encoder = ledger.text_encoder()
        processor = ledger.gemma_embeddings_processor()
    for name, prompt in prompts.items():
        hs, mask = encoder.encode(prompt)
        rec.add(f"{prefix}.{name}.hidden_states", torch.stack(hs))
        video_f, audio_f = processor.feature_extractor(hs, mask, "left")
        rec.add(f"{prefix}.{name}.video_features", video_f)
        rec.add(f"{prefix}.{name}.audio_features", audio_f)
        out = processor.process_hidden_states(hs, mask, "left")
        rec.add(f"{prefix}.{name}.video_encoding", out.video_encoding)
        rec.add(f"{prefix}.{name}.audio_encoding", out.audio_encoding)
        rec.add(f"{prefix}.{name}.binary_mask", out.attention_mask)
        if dtype == torch.float32:
            rec.add(f"{prefix}.{name}.additive_mask", convert_to_additive_mask(mask, torch.float32))
            ids = torch.from_numpy(rec.arrays[f"tok.{name}.input_ids"])
            if not torch.equal(mask.cpu(), torch.from_numpy(rec.arrays[f"tok.{name}.attention_mask"])):
                raise AssertionError(f"{name}: the ledger's mask differs from the tokenizer's")
            del ids


def seed_for(seed: int, what: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(what.encode())) % (2**31)
