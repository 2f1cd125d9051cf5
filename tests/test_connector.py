"""Text side (feature extractor V1 / V2 + video and audio connectors) against the official ltx-core modules:
fixture parity (3 seeds x both variants, float32), the official bf16 path, and batch > 1 (the official
code only handles batch 1, so each sample is run there on its own)."""

from __future__ import annotations

import numpy as np
import pytest

import jax.numpy as jnp

from ltx_jax.parity import Fixture, run_parity
from ltx_jax.parity import transformer as P
from ltx_jax.transformer import encode_text
from ltx_jax.transformer.connector import replace_padding_with_registers
from conftest import run_ref_python


@pytest.mark.reference
def test_connector_parity_float32(reference_seeds):
    report = run_parity(reference_seeds, only="^connector$")
    assert set(report.arrays) == {"connector.out.video_encoding", "connector.out.audio_encoding"}
    assert report.ok and not report.unclaimed, report.to_json()
    for name, a in report.arrays.items():
        assert a["max_rel_err"] <= P.BOUND_CONNECTOR == 6e-6, (name, a)  # measured <= 6.3e-7


@pytest.mark.reference
def test_connector_bf16_against_official_bf16(reference):
    fx = Fixture(reference)
    for name, ours in zip(("video", "audio"), P.run_connector(fx, P.BF16)):
        ref = fx[f"connector.out_bf16.{name}_encoding"].astype(np.float64).ravel()
        o = ours.astype(np.float64).ravel()
        cos = o @ ref / (np.linalg.norm(o) * np.linalg.norm(ref))
        rel = np.linalg.norm(o - ref) / np.linalg.norm(ref)
        assert cos >= 0.999 and rel <= 2e-2, (name, cos, rel)


OFFICIAL_PER_SAMPLE = r"""
import sys
sys.path.insert(0, "tests/reference")
from pathlib import Path
import numpy as np, torch
from ltxref.official import gemma_width
from ltxref.weights import ledger
fixture, inputs, out_path = Path(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
hidden = [torch.from_numpy(inputs[f"h{i}"]) for i in range(int(inputs["count"]))]
with gemma_width(hidden[0].shape[-1], len(hidden) - 1):
    ep = ledger(fixture, torch.float32).gemma_embeddings_processor()
out = {}
with torch.no_grad():
    for b in range(hidden[0].shape[0]):
        r = ep.process_hidden_states(tuple(h[b:b + 1] for h in hidden), torch.from_numpy(inputs["mask"][b:b + 1]))
        out[f"video{b}"], out[f"audio{b}"] = r.video_encoding.numpy(), r.audio_encoding.numpy()
np.savez(out_path, **out)
"""


@pytest.mark.reference
def test_connector_batch3_equals_official_per_sample(reference, tmp_path):
    """Three prompts of different lengths (left padding), one of them unpadded and one 256 tokens long."""
    fx = Fixture(reference)
    count = len(fx.names(r"^connector\.in\.hidden_states\.\d+$"))
    width = fx["connector.in.hidden_states.0"].shape[-1]
    rng = np.random.default_rng(3)
    t = 256  # two register tiles
    hidden = [(rng.standard_normal((3, t, width)) * (1 + i) + 0.1 * i).astype(np.float32) for i in range(count)]
    mask = np.zeros((3, t), np.int64)
    for b, n in enumerate((17, 256, 140)):
        mask[b, t - n:] = 1
    np.savez(tmp_path / "in.npz", count=count, mask=mask, **{f"h{i}": h for i, h in enumerate(hidden)})
    run_ref_python(OFFICIAL_PER_SAMPLE, str(reference), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    ref = np.load(tmp_path / "out.npz")
    _, _, text = P.models(fx, P.F32)
    video, audio = encode_text(*text, [jnp.asarray(h) for h in hidden], jnp.asarray(mask))
    for b in range(3):
        for name, ours in (("video", video), ("audio", audio)):
            r = ref[f"{name}{b}"][0]
            err = np.abs(np.asarray(ours[b]) - r).max() / np.abs(r).max()
            assert err <= 2e-5, (name, b, err)


def test_register_replacement_packs_valid_tokens_first():
    x = jnp.arange(2 * 8, dtype=jnp.float32).reshape(2, 8, 1) + 100
    registers = -jnp.arange(4, dtype=jnp.float32)[:, None] - 1  # [-1, -2, -3, -4]
    mask = jnp.asarray([[0, 0, 0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    out = np.asarray(replace_padding_with_registers(x, mask, registers))[..., 0]
    np.testing.assert_array_equal(out[0], [105, 106, 107, -4, -1, -2, -3, -4])  # register i mod 4 at position i
    np.testing.assert_array_equal(out[1], np.arange(8, 16) + 100)
    with pytest.raises(ValueError, match="multiple of the 4 learnable registers"):
        replace_padding_with_registers(x[:, :6], mask[:, :6], registers)
