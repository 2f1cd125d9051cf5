#!/usr/bin/env python
"""Official LTX-2 / LTX-2.3 file (checkpoint, transformer-only, FP8, upsampler, LoRA, TAE) or diffusers folder
-> ltx-jax checkpoint folder (Orbax + config.json + manifest.json, written atomically).

    python convert/to_ltx_jax.py SRC OUT [--dtype keep|bf16|f32] [--components ...] [--lora PATH[:S]] [--overwrite]

The same as `ltx-jax convert` (`ltx_jax.checkpoint.converter.convert`); see convert/README.md.
"""

import sys

from ltx_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
