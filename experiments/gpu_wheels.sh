#!/usr/bin/env bash
# Wheels the lent GPU machine lacks, into .whl/ (git-ignored through .git/info/exclude), for `carry: [".whl"]`:
# flax at our pin (the image's may differ) and PyAV (not in the image; the world's mp4 clips need it). The image
# brings jax 0.11.2 with its CUDA plugin, which cannot travel (over the 64 MiB limit).
set -eu
cd "$(dirname "$0")/.."
mkdir -p .git/info .whl && grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
py=${PY:-.venv/bin/python}
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "flax==$($py -c 'import flax; print(flax.__version__)')" "av==$($py -c 'import av; print(av.__version__)')"
ls -la .whl
