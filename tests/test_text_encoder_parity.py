"""Gemma-3 text path vs the official code (transformers 4.57.1 + ltx-core 1.0.0) on tiny HF-layout folders.

The fixtures (tests/reference/build_gemma.py) hold the official tokenization, plain transformers' hidden states
(float32, SDPA) and ltx-core's whole encoder path (prompt -> connector outputs, float32 and bfloat16) for four
prompts: short, medium (leading/trailing spaces, non-ASCII -> byte fallback), long (past the sliding window) and
overlong (> 1024 tokens, truncated). Our side runs all four prompts as one batch of different lengths.
Two Gemma shapes: the doc's tiny example, and one with heads x head_dim != hidden, query_pre_attn_scalar !=
head_dim, a single KV head and pattern 2.
"""

import json

import numpy as np
from conftest import build_gemma_reference

from ltx_jax.parity import run_parity


def _groups(report) -> dict[str, float]:
    worst: dict[str, float] = {}
    for name, a in report.arrays.items():
        parts = name.split(".")
        key = f"{parts[0]}.{parts[-1]}"
        worst[key] = max(worst.get(key, 0.0), a["max_rel_err"])
    return worst


def test_fixture_covers_the_cases(gemma_reference):
    m = json.loads((gemma_reference / "manifest.json").read_text())
    p = m["prompts"]
    window = m["gemma_config"]["text_config"]["sliding_window"]
    assert p["long"]["valid_tokens"] > 4 * window  # far past the sliding window
    assert p["overlong"]["untruncated_tokens"] > 1024 and p["overlong"]["valid_tokens"] == 1024
    assert any(ord(c) > 127 for c in p["medium"]["text"]) and p["medium"]["text"] != p["medium"]["text"].strip()
    arrays = np.load(gemma_reference / "fixtures.npz")
    ids = arrays["tok.medium.input_ids"][0]
    assert ((ids >= 9) & (ids <= 264)).any()  # byte-fallback tokens <0x00>..<0xFF>
    lengths = {int(arrays[f"tok.{n}.attention_mask"].sum()) for n in p}
    assert len(lengths) == 4  # different lengths in one batch


def test_parity_float32(gemma_reference):
    """Tokens exact; every hidden state <= 2e-5; prompt -> connector outputs <= 1e-4 (max-abs relative)."""
    report = run_parity(gemma_reference, only=r"^(gemma_tokenizer|gemma_hidden_states|gemma_text_path)$")
    assert report.arrays, "no Gemma array was checked"
    failed = {k: v for k, v in report.arrays.items() if not v["ok"]}
    assert not failed, failed
    worst = _groups(report)
    assert worst["tok.input_ids"] == 0 and worst["tok.attention_mask"] == 0
    assert worst["gemma.hidden_states"] <= 2e-5 and worst["gemma.last_layer_prenorm"] <= 2e-5
    assert worst["ltx.video_encoding"] <= 1e-4 and worst["ltx.audio_encoding"] <= 1e-4
    names = {n.split(".")[1] for n in report.arrays if n.startswith("gemma.")}
    assert names == {"short", "medium", "long", "overlong"}
    unchecked = {k: v for k, v in report.skipped.items() if not k.startswith("ltx_bf16.")}
    assert not unchecked, unchecked


def test_parity_bfloat16():
    """bf16 weights and activations against the official bf16 path: loose (the stacks round differently).
    On gemma-tiny only: CPU bf16 is slow, and the float32 parity covers the odd shapes."""
    report = run_parity(build_gemma_reference("gemma-tiny"), only=r"^gemma_text_path_bf16$")
    checked = {k: v for k, v in report.arrays.items() if k.startswith("ltx_bf16.")}
    assert checked and all(v["ok"] for v in checked.values()), checked
    assert max(v["max_rel_err"] for v in checked.values()) <= 5e-2
