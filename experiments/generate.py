"""Generate a video with a composed pipeline: a thin wrapper of `ltx-jax generate` (ltx_jax/pipelines/command.py).

Run:  .venv/bin/python experiments/generate.py CHECKPOINT --prompt PROMPT.npz --upsampler UPSAMPLER.safetensors
          [--pipeline distilled|dev|dev-one-stage|hq] [--frames 121 --height 1024 --width 1536 --seed 10]
          [--image PATH FRAME STRENGTH] [--noise NOISE.npz] [--out DIR --format npz,png,mp4]
Replay of the official tiny two-stage loop (prints a JSON summary; frames in DIR/video.npz):
  .venv/bin/python experiments/generate.py F/ltx_checkpoint.safetensors --prompt prompt.npz \
      --upsampler F/upsampler_spatial_x2_rational.safetensors --frames 17 --height 256 --width 256 \
      --noise F/fixtures.npz --dtype float32
  (F = a main reference fixture; prompt.npz = its connector.out.{video,audio}_encoding as video_context /
  audio_context). Gave max |uint8 difference| 1 against the official decode, in about 10 s of which ~8 s compile.
"""

import sys

from ltx_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
