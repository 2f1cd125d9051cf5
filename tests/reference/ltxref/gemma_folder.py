"""A tiny random Gemma-3 written as a hub folder in the released layout (docs/reference-fixtures-gemma.md).

The tokenizer is trained here with `tokenizers` (BPE with byte fallback, Gemma's normalizer), the weights are
a seeded `Gemma3ForConditionalGeneration` with a tiny SigLIP tower, renamed to the released key names
(`language_model.model.*`, `vision_tower.vision_model.*`, `multi_modal_projector.*`, no `lm_head`) and
split in two shards with `model.safetensors.index.json` (shard 1: language model; shard 2: vision + projector).
"""

import json
import math
import struct
from pathlib import Path

import safetensors.torch
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
            "<start_of_image>", "<end_of_image>"]
BYTES = [f"<0x{i:02X}>" for i in range(256)]
IMAGE_TOKEN = "<image_soft_token>"
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<start_of_turn>{{ message['role'] }}\n"
                 "{{ message['content'] if message['content'] is string else '' }}<end_of_turn>\n{% endfor %}"
                 "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")

CORPUS = [
    "A red fox runs through fresh snow at dawn, its breath visible in the cold air.",
    "The camera slowly pans across a quiet harbor where fishing boats rock on gentle waves.",
    "A woman in a yellow raincoat walks down a busy city street under a grey sky.",
    "Close-up of hands kneading bread dough on a wooden table dusted with flour.",
    "Golden light filters through tall trees in an old forest; birds sing in the distance.",
    "blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, grainy",
    "The scene is calm and cinematic, with soft shadows, warm colors and a shallow depth of field.",
    "Two children laugh as they chase a small dog across a green park on a sunny afternoon.",
]


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """Gemma-style BPE: `Replace(" ", "▁")`, `Split(" ")`, byte fallback; specials 0-8, bytes 9-264."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    alphabet = sorted(set("".join(CORPUS).replace(" ", "▁")))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS + BYTES, initial_alphabet=alphabet,
                                  limit_alphabet=len(alphabet), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.add_special_tokens([IMAGE_TOKEN])
    for i, s in enumerate(SPECIALS + BYTES):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, wire: int, payload: bytes) -> bytes:
    return _varint(num << 3 | wire) + payload


def sentencepiece_model(tok: Tokenizer) -> bytes:
    """A SentencePiece `ModelProto` (BPE, byte fallback) with the same pieces and ids; merges scored by -rank.

    Only its presence matters to ltx-core (it locates the tokenizer folder); transformers reads tokenizer.json.
    """
    vocab = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    specials = set(SPECIALS) | {IMAGE_TOKEN}
    out = bytearray()
    for piece, idx in vocab:
        kind = 2 if piece == "<unk>" else 3 if piece in specials else 6 if piece in BYTES else 1  # UNK/CONTROL/BYTE/NORMAL
        score = 0.0 if kind != 1 else -float(idx)
        body = _field(1, 2, _varint(len(piece.encode())) + piece.encode()) + _field(2, 5, struct.pack("<f", score))
        body += _field(3, 0, _varint(kind))
        out += _field(1, 2, _varint(len(body)) + body)
    trainer = _field(3, 0, _varint(2)) + _field(35, 0, _varint(1))  # model_type BPE, byte_fallback
    out += _field(2, 2, _varint(len(trainer)) + trainer)
    return bytes(out)


def write_tokenizer(folder: Path, tok: Tokenizer) -> None:
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer.model").write_bytes(sentencepiece_model(tok))
    specials = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": IMAGE_TOKEN}
    added = {str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True} for s in SPECIALS + [IMAGE_TOKEN]}
    config = {"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added,
              "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
              "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": IMAGE_TOKEN,
              "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                       "image_token": IMAGE_TOKEN},
              "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
              "model_max_length": 1000000000000000019884624838656, "padding_side": "left",
              "processor_class": "Gemma3Processor", "sp_model_kwargs": None, "spaces_between_special_tokens": False,
              "tokenizer_class": "GemmaTokenizer", "use_default_system_prompt": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=1))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_convert_rgb": None, "do_normalize": True, "do_pan_and_scan": None, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Gemma3ImageProcessor", "image_seq_length": 256,
        "image_std": [0.5, 0.5, 0.5], "pan_and_scan_max_num_crops": None, "pan_and_scan_min_crop_size": None,
        "pan_and_scan_min_ratio_to_activate": None, "processor_class": "Gemma3Processor", "resample": 2,
        "rescale_factor": 1 / 255, "size": {"height": 224, "width": 224}}, indent=1))
    (folder / "processor_config.json").write_text(json.dumps({"image_seq_length": 256,
                                                             "processor_class": "Gemma3Processor"}, indent=1))


def hub_config(text: dict, tok: Tokenizer, rows: int) -> dict:
    """config.json in the released spelling (transformers 4.5x keys)."""
    return {
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "boi_token_index": tok.token_to_id("<start_of_image>"), "eoi_token_index": tok.token_to_id("<end_of_image>"),
        "image_token_index": tok.token_to_id(IMAGE_TOKEN), "eos_token_id": [1, tok.token_to_id("<end_of_turn>")],
        "initializer_range": 0.02, "mm_tokens_per_image": 256, "torch_dtype": "float32",
        "transformers_version": "4.57.1",
        "text_config": {"model_type": "gemma3_text", "vocab_size": rows, "rms_norm_eps": 1e-6,
                        "hidden_activation": "gelu_pytorch_tanh", "attn_logit_softcapping": None,
                        "final_logit_softcapping": None, "max_position_embeddings": 131072, **text},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                          "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 224, "patch_size": 14,
                          "num_channels": 3, "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh",
                          "vision_use_head": False},
    }


def _released_key(key: str) -> str | None:
    """transformers 4.57 state-dict key -> the released file's key (None: not stored, lm_head is tied)."""
    for ours, theirs in (("model.language_model.", "language_model.model."), ("model.vision_tower.", "vision_tower."),
                         ("model.multi_modal_projector.", "multi_modal_projector.")):
        if key.startswith(ours):
            return theirs + key[len(ours):]
    if key == "lm_head.weight":
        return None
    raise KeyError(key)


def random_weights(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with O(1) activations: Linear ~ N(0, 1/fan_in), embeddings N(0, 1), every norm weight
    N(0, 0.3) (so `1 + w` matters), released key names."""
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = Gemma3ForConditionalGeneration(Gemma3Config.from_dict(config))
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        name = _released_key(key)
        if name is None:
            continue
        if "norm" in key and key.endswith("weight") and value.ndim == 1:
            t = 0.3 * torch.randn(value.shape, generator=g)
        elif value.ndim >= 2 and "embed_tokens" in key:
            t = torch.randn(value.shape, generator=g)
        elif value.ndim >= 2:
            t = torch.randn(value.shape, generator=g) / math.sqrt(math.prod(value.shape[1:]))
        else:
            t = 0.1 * torch.randn(value.shape, generator=g)
        out[name] = t.to(torch.float32).contiguous()
    return out


def write_weights(folder: Path, weights: dict[str, torch.Tensor]) -> list[str]:
    """Two shards (language model; vision + projector) and the index, as the released folder has."""
    shards = {"model-00001-of-00002.safetensors": {k: v for k, v in weights.items() if k.startswith("language_model.")},
              "model-00002-of-00002.safetensors": {k: v for k, v in weights.items()
                                                   if not k.startswith("language_model.")}}
    weight_map, total = {}, 0
    for name, tensors in shards.items():
        safetensors.torch.save_file(tensors, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=1))
    return list(shards)


def write_folder(folder: Path, text: dict, seed: int, vocab_size: int = 560) -> dict:
    """Write the whole hub folder; returns {"config", "tokenizer_size", "rows"}."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(vocab_size)
    size = tok.get_vocab_size(with_added_tokens=True)
    rows = -(-size // 64) * 64
    write_tokenizer(folder, tok)
    config = hub_config(text, tok, rows)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 2, "cache_implementation": "hybrid", "do_sample": True, "eos_token_id": config["eos_token_id"],
         "pad_token_id": 0, "top_k": 64, "top_p": 0.95, "transformers_version": "4.57.1"}, indent=1))
    files = write_weights(folder, random_weights(config, seed))
    return {"config": config, "tokenizer_size": size, "rows": rows, "files": files}
