"""Prints the official modules' tensor shapes under their single-file keys, built on the meta device.

    .venv-ref/bin/python tests/reference/official_shapes.py CONFIG.json            # or '-' / nothing for stdin
    .venv-ref/bin/python tests/reference/official_shapes.py --upsampler UP.json    # a flat upsampler config
    .venv-ref/bin/python tests/reference/official_shapes.py CONFIG.json --counts   # parameter counts instead

Input: an official-format config `{"transformer": {...}, "vae": {...}}` (other top-level keys are ignored, except
the two extras below). Output: JSON `{component: {file_key: [shape...]}}` with components

  transformer     LTXModel                         model.diffusion_model.*   (connector keys excluded)
  connectors      EmbeddingsProcessor              model.diffusion_model.{video,audio}_embeddings_connector.*,
                  (connectors + feature extractor) text_embedding_projection.*
  vae_encoder     VideoEncoder without statistics  vae.encoder.*
  vae_decoder     VideoDecoder without statistics  vae.decoder.*
  vae_statistics  shared per-channel statistics    vae.per_channel_statistics.*
  upsampler       with --upsampler: the LatentUpsampler's own keys
  upsampler.<kind> one per entry of an optional top-level "upsamplers" {kind: flat config} (the tiny presets)

Extra key `text_encoder: {"hidden_size": H, "num_hidden_layers": N}` sets the Gemma width the feature extractor
is sized from (input width H * (N + 1)); without it the real Gemma-3-12B values (3840, 48 -> 49 states) are used.
Nothing is allocated: every module is built on the meta device, so the full 22B config costs nothing.
"""

import argparse
import json
import math
import sys

from ltxref.components import (
    EMBEDDINGS_PROCESSOR,
    TRANSFORMER,
    VAE_DECODER,
    VAE_ENCODER,
    checkpoint_config,
    meta_file_shapes,
    upsampler_component,
)
from ltxref.official import gemma_width

STATS_PREFIX = "vae.per_channel_statistics."


def shapes_for(config: dict) -> dict[str, dict[str, list[int]]]:
    cfg = checkpoint_config(config)
    te = config.get("text_encoder", {})
    out: dict[str, dict[str, list[int]]] = {}

    def add(component: str, shapes: dict[str, tuple[int, ...]]) -> None:
        out.setdefault(component, {}).update({k: list(v) for k, v in sorted(shapes.items())})

    add("transformer", meta_file_shapes(TRANSFORMER, TRANSFORMER.meta_module(cfg)))
    with gemma_width(te.get("hidden_size"), te.get("num_hidden_layers")):
        add("connectors", meta_file_shapes(EMBEDDINGS_PROCESSOR, EMBEDDINGS_PROCESSOR.meta_module(cfg)))
    for name, comp in (("vae_encoder", VAE_ENCODER), ("vae_decoder", VAE_DECODER)):
        shapes = meta_file_shapes(comp, comp.meta_module(cfg))
        add(name, {k: v for k, v in shapes.items() if not k.startswith(STATS_PREFIX)})
        add("vae_statistics", {k: v for k, v in shapes.items() if k.startswith(STATS_PREFIX)})
    for kind, up_cfg in config.get("upsamplers", {}).items():
        comp = upsampler_component(kind)
        add(f"upsampler.{kind}", meta_file_shapes(comp, comp.meta_module(up_cfg)))
    return out


def upsampler_shapes(flat: dict) -> dict[str, dict[str, list[int]]]:
    comp = upsampler_component("x")
    return {"upsampler": {k: list(v) for k, v in sorted(meta_file_shapes(comp, comp.meta_module(flat)).items())}}


def counts(shapes: dict[str, dict[str, list[int]]]) -> dict[str, int]:
    c = {name: sum(math.prod(s) for s in keys.values()) for name, keys in shapes.items()}
    main = [v for k, v in c.items() if not k.startswith("upsampler")]
    if main:
        c["total_checkpoint"] = sum(main)  # the single-file checkpoint's components (upsamplers are separate files)
    return c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", default="-", help="config JSON file, or '-' for stdin")
    ap.add_argument("--upsampler", action="store_true", help="the input is a flat upsampler config")
    ap.add_argument("--counts", action="store_true", help="print parameter counts per component instead")
    args = ap.parse_args(argv)
    text = sys.stdin.read() if args.config == "-" else open(args.config).read()
    config = json.loads(text)
    if args.upsampler:
        shapes = upsampler_shapes(config)
    else:
        missing = {"transformer", "vae"} - config.keys()
        if missing:
            print(f"official_shapes.py: config lacks {sorted(missing)} (use --upsampler for a flat upsampler config)",
                  file=sys.stderr)
            return 2
        shapes = shapes_for(config)
    json.dump(counts(shapes) if args.counts else shapes, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
