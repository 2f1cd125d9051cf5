#!/usr/bin/env python
"""What a `.safetensors` file is, from its header alone: kind, variant, precision, components with parameter
counts, config summary, and keys the config's official layout expects but the file lacks.

    python convert/inspect_file.py FILE [FILE ...] [--json]

The same as `ltx-jax inspect` (`ltx_jax.checkpoint.inspect`); see convert/README.md.
"""

import sys

from ltx_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["inspect", *sys.argv[1:]]))
