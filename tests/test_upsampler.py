"""Latent upsamplers: parity with the official ones (3 seeds x both tiny fixtures, every kind and
`upsample_video`), the key schema, and the variants no fixture holds (dims=2, spatio-temporal)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from ltx_jax.configs import SPATIAL_X2_2, ConfigError, SPATIAL_X2_2_3, TINY_UPSAMPLERS, Runtime, UpsamplerConfig
from ltx_jax.checkpoint.layout import module_keys
from ltx_jax.checkpoint.schema import upsampler_schema
from ltx_jax.parity import run_parity
from ltx_jax.upsampler import LatentUpsampler
from conftest import run_ref_python

F32 = Runtime(param_dtype="float32", compute_dtype="float32")
KINDS = ("spatial_x2", "spatial_x2_rational", "spatial_x1_5_rational", "temporal_x2")


@pytest.mark.reference
def test_upsampler_parity(reference_seeds):
    report = run_parity(reference_seeds, only="^upsampler$")
    assert set(report.arrays) == {f"upsampler.out.{p}{k}" for k in KINDS for p in ("", "upsample_video_")}
    for name, a in report.arrays.items():
        assert a["max_rel_err"] <= 2e-5, (name, a)


CONFIGS = [SPATIAL_X2_2, SPATIAL_X2_2_3, *TINY_UPSAMPLERS.values(),
           UpsamplerConfig(mid_channels=64, temporal_upsample=True),
           UpsamplerConfig(mid_channels=64, dims=2)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-mid{c.mid_channels}-d{c.dims}")
def test_module_state_is_the_official_layout(config):
    state = nnx.state(nnx.eval_shape(lambda: LatentUpsampler(config, F32, rngs=nnx.Rngs(0))))
    assert {k: s for k, (_, s, _) in module_keys(state).items()} == upsampler_schema(config)


# Official LatentUpsampler for configs no fixture covers: random weights, one forward.
OFFICIAL_SCRIPT = r"""
import json, sys
import numpy as np, torch
from ltx_core.model.upsampler import LatentUpsamplerConfigurator
torch.manual_seed(0)
out = {}
for i, cfg in enumerate(json.loads(sys.argv[1])):
    model = LatentUpsamplerConfigurator.from_config(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # GroupNorm affine defaults are 1 / 0; randomize everything
            p.copy_(torch.randn_like(p) * 0.2)
        x = torch.randn(1, cfg["in_channels"], 3, 4, 6)
        out[f"{i}.in"] = x.numpy()
        out[f"{i}.out"] = model(x).numpy()
    out.update({f"{i}.sd.{k}": v.numpy() for k, v in model.state_dict().items()})
np.savez(sys.argv[2], **out)
"""


@pytest.mark.reference
def test_variants_without_fixture_match_official(tmp_path):
    from ltx_jax.upsampler import load_upsampler
    configs = [dict(in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=2, spatial_upsample=True,
                    temporal_upsample=False, spatial_scale=2.0, rational_resampler=False),
               dict(in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=3, spatial_upsample=True,
                    temporal_upsample=True, spatial_scale=2.0, rational_resampler=False)]
    run_ref_python(OFFICIAL_SCRIPT, json.dumps(configs), str(tmp_path / "ref.npz"))
    ref = np.load(tmp_path / "ref.npz")
    for i, cfg in enumerate(configs):
        prefix = f"{i}.sd."
        tensors = {k[len(prefix):]: ref[k] for k in ref.files if k.startswith(prefix)}
        up = load_upsampler(tensors, F32, config=UpsamplerConfig.from_dict(cfg))
        ours = np.moveaxis(np.asarray(up(np.moveaxis(ref[f"{i}.in"], 1, -1))), -1, 1)
        want = ref[f"{i}.out"]
        assert ours.shape == want.shape, (cfg, ours.shape, want.shape)
        assert np.max(np.abs(ours - want)) / np.max(np.abs(want)) <= 2e-5, cfg


@pytest.mark.parametrize("kw", [dict(rational_resampler=True), dict(spatial_upsample=False, temporal_upsample=True)])
def test_dims2_variants_ltx_core_cannot_run_are_refused(kw):
    with pytest.raises(ConfigError, match="dims=2 supports only"):
        LatentUpsampler(UpsamplerConfig(mid_channels=32, dims=2, **kw), F32, rngs=nnx.Rngs(0))
