"""The committed embedded default works (issue 17): `ltx-jax demo` with the files in ltx_jax/data/world_default
generates the first 4 held-out prompts (world seed 1000, never trained on), and the world's analyzer, an
independent judge checked on ground-truth clips in test_world.py, finds each prompt's colour, motion direction
and pitch in the decoded mp4 (its AAC soundtrack).

Shape is not asserted: the default's video VAE turns triangles into soft blobs (the analyzer agrees on shape for
37.5% of its own held-out reconstructions, README "Training the embedded default"); nor is the kind of sound
(beep / buzz), which the trained vocoder makes only partly. Both are still read and reported in the JSON the demo
writes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ltx_jax.world.adherence import held_out_scenes
from ltx_jax.world.package import DEFAULT_DIR

PROMPTS = [s.caption for s in held_out_scenes(4)]


def test_committed_files_match_their_manifest_and_budget():
    manifest = json.loads((DEFAULT_DIR / "manifest.json").read_text())
    on_disk = {str(p.relative_to(DEFAULT_DIR)) for p in DEFAULT_DIR.rglob("*")
               if p.is_file() and p.name != "manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (DEFAULT_DIR / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
    assert manifest["total_bytes"] <= 25_000_000  # issue 17: the committed weights fit in 25 MB


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    from ltx_jax.cli import main

    root = tmp_path_factory.mktemp("demo")
    out = []
    for i, prompt in enumerate(PROMPTS):
        assert main(["demo", prompt, "--out", str(root / str(i)), "--seed", str(i), "--json"]) == 0
        out.append(json.loads((root / str(i) / "distilled.analysis.json").read_text()))
    return root, out


@pytest.mark.parametrize("attribute", ["colour", "direction", "pitch"])
def test_the_distilled_default_draws_what_each_prompt_asks(demos, attribute):
    _, results = demos
    asked = [r["asked"][attribute] for r in results]
    seen = [r["verdicts"][attribute] for r in results]
    assert asked == [getattr(s, attribute) for s in held_out_scenes(4)]  # the prompt parser reads the grammar
    assert seen == asked, (attribute, list(zip(PROMPTS, seen)))


def test_demo_writes_an_mp4_with_sound_and_a_contact_sheet(demos):
    from ltx_jax.world.media import read_clip_mp4

    root, results = demos
    frames, fps, audio, rate = read_clip_mp4(results[0]["files"]["video"])
    assert frames.shape == (9, 64, 64, 3) and fps == 24
    assert audio is not None and audio.shape[0] == 2 and rate == 48000 and audio.shape[1] >= 0.3 * rate
    png = (root / "0" / "distilled.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = np.frombuffer(png[16:24], ">u4")
    assert (height, width) == (3 * 64, 9 * 3 * 64 + 8 * 2)  # the 9 frames side by side at x3, 2 px apart


def test_a_prompt_outside_the_grammar_is_refused_before_anything_runs(tmp_path, capsys):
    from ltx_jax.cli import main

    assert main(["demo", "a photo of a cat", "--out", str(tmp_path / "out")]) == 2
    assert "names nothing the embedded default knows" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
