"""The synthetic world (issue 17): grammar, renderer (against the scene's own geometry, computed independently
here), mp4 dataset + CLI, the analyzer's agreement with ground truth, and the word-level tokenizer's tiny Gemma."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ltx_jax.world import (CaptionError, SAMPLE_RATE, analyze_clip, grammar, parse_caption, render_audio,
                           render_frames, sample_scene, vocabulary)
from ltx_jax.world.dataset import WorldSpec, make_clip
from ltx_jax.world.media import read_clip_mp4, write_clip_mp4

GRAMMAR = json.loads((__import__("pathlib").Path(__file__).resolve().parents[1]
                      / "ltx_jax/data/world_grammar.json").read_text())
ATTRS = ("colour", "shape", "direction", "pitch", "sound")


def test_captions_parse_back_and_use_only_the_vocabulary():
    vocab = set(vocabulary())
    for i in range(50):
        scene = sample_scene(np.random.default_rng([3, i]), 64, 96)
        words = re.findall(r"\w+|[^\w\s]", scene.caption)
        assert set(words) <= vocab, scene.caption
        assert parse_caption(scene.caption) == scene.attributes()
        assert scene.pitch == GRAMMAR["pitch_by_shape"][scene.shape]
    assert parse_caption("a red circle moves left on a dark background, high beep")["colour"] == "red"
    with pytest.raises(CaptionError, match="'pink' is not a colour"):
        parse_caption("a pink circle moves left on a dark background, high beep")
    with pytest.raises(CaptionError, match="does not follow the template"):
        parse_caption("a red circle")


def test_clip_shape_rules_refused():
    scene = sample_scene(np.random.default_rng(0), 64, 64)
    with pytest.raises(ValueError, match="1 \\+ 8k"):
        render_frames(scene, 10, 64, 64)
    with pytest.raises(ValueError, match="multiples of 32"):
        render_frames(scene, 9, 48, 64)
    with pytest.raises(ValueError, match="1 \\+ 8k"):
        WorldSpec(frames=24)


@pytest.mark.parametrize("i", range(6))
def test_frames_and_audio_follow_the_scene(i):
    """Object pixels are the named RGB, the background is its grey levels, the covered area and the centroid are
    the shape's analytic area and the scene's start / end; the tone's spectrum peaks at the pitch word's Hz."""
    spec = WorldSpec(seed=11, frames=9, height=64, width=96)
    scene, frames, audio = make_clip(spec, i)
    rgb = np.asarray(GRAMMAR["colours"][scene.colour], np.float64)
    bg = GRAMMAR["backgrounds"][scene.background]
    r = scene.size
    area = {"circle": np.pi * r * r, "square": (1.8 * r) ** 2, "triangle": 2 * r * r}[scene.shape]
    ys, xs = np.mgrid[0:64, 0:96] + 0.5
    for f, t in ((0, 0.0), (8, 1.0)):
        img = frames[f].astype(np.float64)
        grey = img.min(-1)  # where a = coverage: img = grey_bg (1 - a) + rgb a, per channel
        hi, lo = int(np.argmax(rgb)), int(np.argmin(rgb))  # channel difference of an achromatic bg is 0
        a = (img[..., hi] - img[..., lo]) / (rgb[hi] - rgb[lo])
        a = np.clip(a, 0, 1)
        seen = grey[a == 0]
        if bg["kind"] == "plain":
            assert set(np.unique(seen).tolist()) == {float(bg["levels"][0])}
        else:  # smooth textures: every grey between the two levels, and both reached (period <= frame width)
            lo_, hi_ = sorted(bg["levels"])
            assert lo_ - 0.5 <= seen.min() <= lo_ + 2 and hi_ - 2 <= seen.max() <= hi_ + 0.5
            if bg["kind"] == "stripes":  # vertical stripes: constant down every background column
                cols = np.where((a == 0).all(0))[0]
                assert np.ptp(grey[:, cols], axis=0).max() == 0
        assert abs(a.sum() - area) < 0.01 * area + 2
        cx, cy = (xs * a).sum() / a.sum(), (ys * a).sum() / a.sum()
        want = np.add(scene.start, t * np.subtract(scene.end, scene.start))
        if scene.shape == "triangle":  # centroid 1/3 of the height above the base (y = cy + r)
            want = want + [0, r / 3]
        np.testing.assert_allclose([cx, cy], want, atol=0.15)  # 4x4 supersampled edges, uint8 rounding
        assert np.abs(img[a == 1] - rgb).max() <= 0.5
        assert r + 1 <= min(want[0], 96 - want[0], want[1], 64 - want[1]) + (r if scene.shape == "triangle" else 0)
    assert audio.shape == (2, round(9 / 24 * SAMPLE_RATE)) and audio.dtype == np.float32
    x = audio[0].astype(np.float64)
    spec_ = np.abs(np.fft.rfft(x, 8 * x.size))
    peak = np.argmax(spec_) * SAMPLE_RATE / (8 * x.size)
    assert abs(peak - GRAMMAR["pitches"][scene.pitch]) < 3.0


def test_analyzer_agrees_with_ground_truth_on_64_mp4_clips(tmp_path):
    """Generator -> H.264 / AAC mp4 -> decode -> analyzer, on 64 random clips: >= 98% per attribute."""
    spec = WorldSpec(seed=2026, clips=64, frames=9, height=64, width=64)
    agree = {k: 0 for k in ATTRS}
    for i in range(spec.clips):
        scene, frames, audio = make_clip(spec, i)
        write_clip_mp4(tmp_path / "c.mp4", frames, spec.fps, audio, spec.sample_rate)
        frames2, fps, audio2, rate = read_clip_mp4(tmp_path / "c.mp4")
        assert frames2.shape == frames.shape and rate == SAMPLE_RATE and fps == spec.fps
        verdict = analyze_clip(frames2, audio2, rate)
        for k in ATTRS:
            agree[k] += verdict[k] == getattr(scene, k)
    rates = {k: v / spec.clips for k, v in agree.items()}
    print("analyzer agreement on 64 mp4 clips:", rates)
    assert min(rates.values()) >= 0.98, rates


def test_analyzer_says_none_without_an_object_or_sound():
    blank = np.full((9, 64, 64, 3), 40, np.uint8)
    v = analyze_clip(blank, np.zeros((2, 4000), np.float32), SAMPLE_RATE)
    assert v["colour"] is None and v["shape"] is None and v["direction"] is None and v["pitch"] is None


def test_world_command_writes_the_training_input_format(tmp_path):
    import av

    from ltx_jax.cli import main

    out = tmp_path / "ds"
    assert main(["world", "--out", str(out), "--clips", "3", "--seed", "5", "--frames", "9", "--width", "96"]) == 0
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all({"video", "caption"} <= set(r) for r in rows)
    for row in rows:
        assert parse_caption(row["caption"]) == {k: row[k] for k in parse_caption(row["caption"])}
        with av.open(str(out / row["video"])) as c:  # read with PyAV directly, as the training reader does
            (v,), (a,) = c.streams.video, c.streams.audio
            assert (v.codec_context.name, v.height, v.width) == ("h264", 64, 96)
            assert (a.codec_context.name, a.rate, a.channels) == ("aac", SAMPLE_RATE, 2)
            assert len([f for f in c.decode(v)]) == 9
    meta = json.loads((out / "world.json").read_text())
    assert (meta["seed"], meta["clips"], meta["sample_rate"]) == (5, 3, SAMPLE_RATE)
    again = tmp_path / "again"  # deterministic from the seed: same captions, same decoded pixels
    assert main(["world", "--out", str(again), "--clips", "3", "--seed", "5", "--frames", "9", "--width", "96"]) == 0
    assert (again / "captions.jsonl").read_text() == (out / "captions.jsonl").read_text()
    assert np.array_equal(read_clip_mp4(again / rows[2]["video"])[0], read_clip_mp4(out / rows[2]["video"])[0])
    assert main(["world", "--out", str(out), "--clips", "1"]) == 2  # an existing dataset is refused
    assert main(["world", "--out", str(tmp_path / "new"), "--gemma", str(out)]) == 2  # so is an existing folder
    assert not (tmp_path / "new").exists()
    assert main(["world", "--out", str(tmp_path / "bad"), "--frames", "10"]) == 2
    assert not (tmp_path / "bad" / "captions.jsonl").exists()


def test_tiny_gemma_folder_loads_and_tokenizes_a_caption(tmp_path):
    from ltx_jax.text_encoder import load_gemma
    from ltx_jax.world.tokenizer import write_tiny_gemma

    folder = write_tiny_gemma(tmp_path / "gemma", seed=1)
    gemma = load_gemma(folder)
    # Independent expectation: ids are specials (<pad> 0, <eos> 1, <bos> 2, <unk> 3), then words in order of
    # the template's words followed by each attribute group of the grammar JSON.
    words = re.findall(r"\w+|[^\w\s]", re.sub(r"\{\w+\}", " ", GRAMMAR["template"]))
    for group in ("colours", "shapes", "directions", "backgrounds", "pitches", "sounds"):
        words += list(GRAMMAR[group])
    table = {w: 4 + i for i, w in enumerate(dict.fromkeys(words))}
    text = "a red circle moves left on a dark background, high beep"
    ids, mask = gemma.tokenize([text, "  A Red zebra "])
    want = [2] + [table[w] for w in re.findall(r"\w+|[^\w\s]", text)]
    assert ids.shape == (2, 1024) and mask.shape == (2, 1024)
    assert ids[0, -len(want):].tolist() == want and mask[0].sum() == len(want) and not ids[0, :-len(want)].any()
    assert ids[1, -4:].tolist() == [2, table["a"], table["red"], 3]
    assert gemma.num_hidden_states == 3  # hidden states vs transformers: the reference test below
    with pytest.raises(FileExistsError):
        write_tiny_gemma(folder)


_TRANSFORMERS_GEMMA = """
import sys, numpy as np, torch
from transformers import AutoTokenizer, Gemma3ForCausalLM
folder, out, prompts = sys.argv[1], sys.argv[2], sys.argv[3:]
tok = AutoTokenizer.from_pretrained(folder)
enc = tok([p.strip() for p in prompts], padding="max_length", max_length=1024, truncation=True,
          return_tensors="pt", padding_side="left")
model = Gemma3ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
with torch.no_grad():
    hs = model.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                     output_hidden_states=True).hidden_states
np.savez(out, ids=enc.input_ids.numpy(), mask=enc.attention_mask.numpy(), hs=torch.stack(hs).numpy())
print(type(tok).__name__)
"""


@pytest.mark.reference
def test_tiny_gemma_folder_is_a_transformers_gemma3(tmp_path):
    """transformers (reference env) reads the folder as a Gemma-3 with a fast tokenizer: its token ids and masks
    equal ours exactly, and its hidden states equal our float32 encoder's within 2e-5 relative (real tokens)."""
    from conftest import run_ref_python

    from ltx_jax.configs import Runtime
    from ltx_jax.text_encoder import load_gemma
    from ltx_jax.world.tokenizer import write_tiny_gemma

    folder = write_tiny_gemma(tmp_path / "gemma", seed=4)
    prompts = ["a green triangle moves up on a checkered background, mid buzz", "  A Red zebra "]
    assert run_ref_python(_TRANSFORMERS_GEMMA, str(folder), str(tmp_path / "ref.npz"), *prompts).strip() \
        == "GemmaTokenizerFast"
    ref = np.load(tmp_path / "ref.npz")
    gemma = load_gemma(folder, Runtime(param_dtype="float32", compute_dtype="float32"))
    ids, mask = gemma.tokenize(prompts)
    assert np.array_equal(ids, ref["ids"]) and np.array_equal(mask, ref["mask"])
    hs = np.asarray(gemma.hidden_states(ids, mask))
    real = mask.astype(bool)
    assert hs.shape == ref["hs"].shape
    for layer in range(hs.shape[0]):
        want = ref["hs"][layer][real]
        assert np.abs(hs[layer][real] - want).max() <= 2e-5 * np.abs(want).max(), layer


def test_analyzer_holds_under_pixel_and_audio_noise():
    """Generated clips are not clean: Gaussian noise (sigma 10 grey levels on pixels, 0.3 on the waveform, about
    the tone's amplitude) on 32 clips still gives the ground truth on >= 95% per attribute."""
    spec = WorldSpec(seed=99, clips=32, frames=9)
    rng = np.random.default_rng(0)
    agree = {k: 0 for k in ATTRS}
    for i in range(spec.clips):
        scene, frames, audio = make_clip(spec, i)
        frames = np.clip(frames + rng.normal(0, 10, frames.shape), 0, 255).astype(np.uint8)
        audio = audio + rng.normal(0, 0.3, audio.shape).astype(np.float32)
        verdict = analyze_clip(frames, audio, spec.sample_rate)
        for k in ATTRS:
            agree[k] += verdict[k] == getattr(scene, k)
    rates = {k: v / spec.clips for k, v in agree.items()}
    print("analyzer agreement under noise:", rates)
    assert min(rates.values()) >= 0.95, rates


def test_adherence_score_counts_matching_words():
    """`adherence.score` on the generator's own clips is 100% on every attribute; pairing each prompt with the
    next prompt's clip scores exactly the share of neighbours that happen to share the word."""
    from ltx_jax.world.adherence import held_out_scenes, score

    scenes = held_out_scenes(12)
    spec = WorldSpec(seed=1000, clips=12, frames=9, height=64, width=64)
    clips = [{"frames": f, "audio": a, "sample_rate": SAMPLE_RATE} for _, f, a in (make_clip(spec, i)
                                                                                 for i in range(12))]
    assert [s.caption for s in scenes] == [make_clip(spec, i)[0].caption for i in range(12)]
    assert score(scenes, clips, with_audio=True)["scores"] == {a: 100.0 for a in ("colour", "shape", "direction",
                                                                                  "pitch")}
    shifted = score(scenes, clips[1:] + clips[:1], with_audio=False)["scores"]
    assert set(shifted) == {"colour", "shape", "direction"}
    for attr, value in shifted.items():
        same = np.mean([getattr(scenes[i], attr) == getattr(scenes[(i + 1) % 12], attr) for i in range(12)])
        assert value == pytest.approx(100.0 * same)
