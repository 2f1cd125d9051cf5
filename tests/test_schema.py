"""The official file layout (`convert/schema.py`) equals the official modules' state dicts, key by key.

The reference is ltx-core itself: `tests/reference/official_shapes.py` builds LTXModel, the
EmbeddingsProcessor, VideoEncoder/Decoder and LatentUpsampler on the meta device from the same
config JSON, so the full 22B presets cost nothing.
"""

import json
import subprocess

import pytest

from conftest import REF_PYTHON, ROOT, reference_unavailable
from ltx_jax.configs import LTX_2, LTX_2_3, LTX_2_3_TINY, LTX_2_TINY, SPATIAL_X2_2, SPATIAL_X2_2_3, TINY_UPSAMPLERS
from ltx_jax.checkpoint import schema as S

pytestmark = pytest.mark.reference


def _official(config_json: dict, *extra: str) -> dict:
    if not REF_PYTHON.exists():
        reference_unavailable(f"{REF_PYTHON} does not exist")
    result = subprocess.run([str(REF_PYTHON), str(ROOT / "tests/reference/official_shapes.py"), "-", *extra],
                            input=json.dumps(config_json), capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _assert_same(ours: dict, official: dict, what: str):
    official = {k: tuple(v) for k, v in official.items()}
    assert set(ours) == set(official), (f"{what}: only ours {sorted(set(ours) - set(official))[:5]}, "
                                        f"only official {sorted(set(official) - set(ours))[:5]}")
    wrong = {k: (ours[k], official[k]) for k in ours if ours[k] != official[k]}
    assert not wrong, f"{what}: shapes differ {list(wrong.items())[:5]}"


@pytest.mark.parametrize("name, config", [("LTX-2", LTX_2), ("LTX-2.3", LTX_2_3), ("ltx2-tiny", LTX_2_TINY),
                                          ("ltx23-tiny", LTX_2_3_TINY)])
def test_checkpoint_layout_equals_official_modules(name, config):
    payload = json.loads(config.to_metadata()["config"])
    c = config.connector
    # Gemma width and depth the official feature extractor is sized from (ltx-core hard-codes 3840 x 49).
    payload["text_encoder"] = {"hidden_size": c.text_hidden_size, "num_hidden_layers": c.text_num_hidden_states - 1}
    official = _official(payload)
    ours = S.checkpoint_schema(config)
    assert set(ours) == set(official) - {"upsamplers"}
    for component in ours:
        _assert_same(ours[component], official[component], f"{name} {component}")


@pytest.mark.parametrize("name, config", [*TINY_UPSAMPLERS.items(), ("LTX-2.3 x2", SPATIAL_X2_2_3),
                                          ("LTX-2 x2", SPATIAL_X2_2)])
def test_upsampler_layout_equals_official_module(name, config):
    official = _official(config.to_dict(), "--upsampler")
    _assert_same(S.upsampler_schema(config), official["upsampler"], name)


def test_released_parameter_counts():
    """The counts the README states (computed from shapes; equal to the official modules above)."""
    counts = {k: S.num_parameters(v) for k, v in S.checkpoint_schema(LTX_2_3).items()}
    assert counts == {"transformer": 18_988_838_144, "connectors": 3_172_227_584, "vae_encoder": 318_936_897,
                      "vae_decoder": 407_169_072, "vae_statistics": 256}
    counts = {k: S.num_parameters(v) for k, v in S.checkpoint_schema(LTX_2).items()}
    assert counts["transformer"] == 18_876_174_592 and counts["connectors"] == 1_431_475_200
