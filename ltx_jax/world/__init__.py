"""A synthetic, captioned audio-visual world (issue 17): grammar, renderer, dataset writer, analyzer, and a
word-level tokenizer + tiny Gemma-3 folder over its vocabulary. Sits beside pipelines / training."""

from ltx_jax.world.analyze import analyze_audio, analyze_clip, analyze_frames
from ltx_jax.world.grammar import (CaptionError, Grammar, Scene, caption, grammar, parse_caption, sample_scene,
                                   vocabulary)
from ltx_jax.world.render import SAMPLE_RATE, check_clip_shape, render_audio, render_frames

__all__ = ["analyze_audio", "analyze_clip", "analyze_frames", "CaptionError", "Grammar", "Scene", "caption",
           "grammar", "parse_caption", "sample_scene", "vocabulary", "SAMPLE_RATE", "check_clip_shape",
           "render_audio", "render_frames"]
