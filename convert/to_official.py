#!/usr/bin/env python
"""ltx-jax checkpoint folder (or diffusers folder) -> one official single-file `.safetensors`, bit-identical per
tensor to the file it was converted from (keys, dtypes, order, metadata).

    python convert/to_official.py CKPT OUT.safetensors [--overwrite]

The same as `ltx-jax export` (`ltx_jax.checkpoint.exporter.export`); see convert/README.md.
"""

import sys

from ltx_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
