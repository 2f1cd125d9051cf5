"""Size-invariant convolutions for the row-split VAE decode on CPU: compile time, run time and errors of
matmul formulations of the 3-D convolution against `lax.conv`, tiny LTX-2.3 decoder, float32.

Why: XLA:CPU's convolution picks its summation order by problem size, so `decode_sharded` (rows over a mesh)
is 1.1e-6 from one device (docs/sharding.md). XLA:CPU's dots are bit-identical for row slices, so a
convolution written as matmuls, with the pixel norm's channel sum as a matmul with ones, makes each device
compute its rows as the whole decode does.

Outcome: the library adopted doth_pair for the video decoder on the CPU backend (`ltx_jax.nn.conv.size_invariant`):
the row-split decode is 1.92e-7 from one device on 2x4, 1x8 and 4x2 (1.1e-6 with `lax.conv`).

Variants (installed by replacing `Conv.__call__` and `vae_pixel_norm` in this process only, with the
library's own CPU path switched off):
  xla      `lax.conv_general_dilated` (the library's path off CPU).
  dot27    im2col: the 27 shifted views concatenated along channels, one dot `[M, 27 Cin] x [27 Cin, Cout]`.
  doth     the same patches and dot, built one axis at a time (3 concats of 3 slices; same bits as dot27):
           the library's `ltx_jax.nn.conv._conv_as_dot`.
  tapsum   one dot `[M, Cin] x [Cin, 27 Cout]` on the padded input, then the 27 shifted slices summed in order.
  patch1   patches by `lax.conv` with a one-hot kernel on `[N*Cin, ..., 1]` (exact: one non-zero product
           per sum), then one dot.
Every variant except xla also computes the pixel norm's channel sum as a dot with ones; with the suffix
`_pair` (e.g. doth_pair) as a pairwise sum of channel halves instead.

Run: .venv/bin/python experiments/bench_vae_conv.py [--variants xla,doth,...] [--mid 1,3,12,12,16] [--mesh]
Each (variant, shape) runs in a fresh process: lower, compile (timed), one run, best of 2 warm runs.
`--mesh`: one 8-device process per variant: single-device decode vs `decode_sharded` on 2x4, 1x8, 4x2
(max|d|/max|ref|, the count of differing values, and each mesh decode's compile + first run time).
Prints one JSON object.

Measured (one sweep, 2 CPU cores shared with other jobs, load ~3; compile times vary by up to 2x between
sweeps, so compare ratios within one sweep). Tiny decoder, latent [1, 2, 8, 8, 16] -> [1, 9, 256, 256, 3]:
  variant  compile    ratio  warm run   vs xla (one device)
  xla      3.04 s     1.00   0.245 s    0
  dot27    9.69 s     3.19   0.188 s    1.35e-6
  doth     5.72 s     1.88   0.187 s    1.35e-6 (bit-identical to dot27)
  tapsum   4.03 s     1.33   0.564 s    1.12e-6
  patch1   3.43 s     1.13   1.884 s    1.44e-6
  Mid-size latent [1, 3, 12, 12, 16] -> [1, 17, 384, 384, 3], warm run (ratio to xla): xla 0.95 s, dot27 0.83 s
  (0.87), doth 1.03 s (1.09), tapsum 2.51 s (2.64), patch1 8.50 s (8.95).
  Earlier sweeps: doth/xla compile 1.6-2.0x, dot27 2.6-4x.
  Mesh (`--mesh`), dot27 (same bits as doth) vs its own single-device decode: 2.56e-7 on 2x4, 1x8 and 4x2
  (1.39M of 1.77M values differ; xla: 1.106e-6, 1.71M differ), compile+run of one mesh decode 36-42 s vs
  6-10 s for xla (these dot27 mesh numbers from the same code wired into `Conv` directly, load ~6). Layer by layer (1x8) every block output is bit-identical up to the last res_x block
  (8 channels, 64x64 rows), whose output differs in 144k values (1.1e-7), though the same block on a row
  slice in a single-device process is bit-identical, and so are the convolution and channel sum alone at
  that block's shapes in an 8-device process: the remaining difference was not located.
  tapsum on the mesh: 5.77e-7 on all three meshes (1.66M values differ), 39-46 s per mesh decode.
  doth_pair (pairwise channel sum in the pixel norm): 1.92e-7 on all three (1.36M differ), 9.7-10.2 s per
  mesh decode (as xla). So no variant here is bit-exact on the mesh, unlike the 27 per-tap einsums with a
  pairwise channel sum of docs/sharding.md (0 differ, but ~4x compile); all are within 1e-6.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("xla", "dot27", "doth", "tapsum", "patch1")


def install(variant: str) -> None:
    """Replace `Conv.__call__` and the VAE pixel norm in this process by `variant`'s formulation."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ltx_jax.nn import conv as conv_mod
    from ltx_jax.video_vae import decoder as decoder_mod, resnet as resnet_mod

    # The library's decoder turns on its own size-invariant path (doth_pair) on CPU: off here, so that `xla`
    # is `lax.conv` and every other variant is installed over it.
    decoder_mod.size_invariant = lambda enabled=True: conv_mod.size_invariant(False)
    pairwise = variant.endswith("_pair")
    variant = variant.removesuffix("_pair")
    if variant == "xla":
        return

    def slices_concat(x, kernel, pads):
        """The shifted views of the padded input, concatenated along channels in tap order (dot27's patches)."""
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
        out = [x.shape[1 + i] - kernel[i] + 1 for i in range(len(kernel))]
        views = [jax.lax.slice(x, (0, *tap, 0), (x.shape[0], *(t + o for t, o in zip(tap, out)), x.shape[-1]))
                 for tap in np.ndindex(*kernel)]
        return jnp.concatenate(views, axis=-1)

    def conv(x, weight, pads):
        kernel, cout, cin = weight.shape[2:], weight.shape[0], weight.shape[1]
        dims = (((x.ndim - 1,), (0,)), ((), ()))
        if variant == "doth":  # the library's CPU path
            return conv_mod._conv_as_dot(x, weight, pads)
        if variant == "dot27":
            patches = slices_concat(x, kernel, pads)
            w = jnp.moveaxis(weight, (0, 1), (-1, -2)).reshape(-1, cout)  # [*kernel, in, out]
            return jax.lax.dot_general(patches, w, dims)
        if variant == "tapsum":
            w = jnp.moveaxis(weight, 0, -1).reshape(cin, -1)  # [in, *kernel * out]
            yall = jax.lax.dot_general(x, w, dims).reshape(*x.shape[:-1], *kernel, cout)
            yall = jnp.pad(yall, [(0, 0), *pads] + [(0, 0)] * (len(kernel) + 1))  # zero rows give exact zeros
            out = [yall.shape[1 + i] - kernel[i] + 1 for i in range(len(kernel))]
            y = None
            for tap in np.ndindex(*kernel):
                part = jax.lax.slice(yall, (0, *tap, *tap, 0), (yall.shape[0], *(t + o for t, o in zip(tap, out)),
                                                                 *(t + 1 for t in tap), cout))
                part = part.reshape(yall.shape[0], *out, cout)
                y = part if y is None else y + part
            return y
        if variant == "patch1":
            taps, n = math.prod(kernel), x.shape[0]
            xb = jnp.moveaxis(x, -1, 1).reshape(n * cin, *x.shape[1:-1], 1)
            eye = jnp.eye(taps, dtype=x.dtype).reshape(taps, 1, *kernel)
            pt = jax.lax.conv_general_dilated(xb, eye, (1,) * len(kernel), list(pads),
                                              dimension_numbers=("NDHWC", "OIDHW", "NDHWC"))
            pt = jnp.moveaxis(pt.reshape(n, cin, *pt.shape[1:]), 1, -2)
            pt = pt.reshape(*pt.shape[:-2], cin * taps)
            return jax.lax.dot_general(pt, jnp.moveaxis(weight, 0, -1).reshape(-1, cout), dims)
        raise ValueError(f"unknown variant {variant!r}")

    original = conv_mod.Conv.__call__

    def call(self, x):
        if self.groups != 1 or any(s != 1 for s in self.stride) or self.ndim != 3:
            return original(self, x)
        pads = [(p, p) for p in self.padding]
        mode = conv_mod.PADDING_MODES[self.padding_mode]
        if mode is not None and any(self.padding):
            x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode=mode)
            pads = [(0, 0)] * self.ndim
        y = conv(x, self.weight[...].astype(x.dtype), pads)
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)

    library_pixel_norm = resnet_mod.vae_pixel_norm

    def pixel_norm(x):
        if pairwise:  # the library's size-invariant channel sum (halves added elementwise)
            with conv_mod.size_invariant(True):
                return library_pixel_norm(x)
        x32 = x.astype(jnp.float32)
        ones = jnp.ones((x.shape[-1], 1), jnp.float32)
        mean_sq = jax.lax.dot_general(x32 * x32, ones, (((x.ndim - 1,), (0,)), ((), ()))) / x.shape[-1]
        return (x32 / jnp.sqrt(mean_sq + 1e-8)).astype(x.dtype)

    conv_mod.Conv.__call__ = call
    resnet_mod.vae_pixel_norm = decoder_mod.vae_pixel_norm = pixel_norm


def _decoder_and_inputs(shape):
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from ltx_jax.configs import LTX_2_3_TINY, Runtime
    from ltx_jax.video_vae import VideoDecoder

    rng = np.random.default_rng(0)
    dec = VideoDecoder(LTX_2_3_TINY.vae, Runtime(param_dtype="float32", compute_dtype="float32"), rngs=nnx.Rngs(3))
    lat = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    noise = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    return dec, lat, noise


def worker_single(variant: str, shape: tuple[int, ...], save: str | None) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    install(variant)
    dec, lat, noise = _decoder_and_inputs(shape)
    graphdef, state = nnx.split(dec)
    f = jax.jit(lambda s, x, n: nnx.merge(graphdef, s)(x, noise=n))
    lowered = f.lower(state, lat, noise)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    y = compiled(state, lat, noise).block_until_ready()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        compiled(state, lat, noise).block_until_ready()
        times.append(time.perf_counter() - t0)
    if save:
        np.save(save, np.asarray(y))
    return {"compile_s": round(compile_s, 3), "run_s": round(min(times), 4)}


def worker_mesh(variant: str) -> dict:
    import jax
    import numpy as np

    from ltx_jax.sharding import inference_rules, make_mesh
    from ltx_jax.video_vae import decode
    from ltx_jax.video_vae.sharded import decode_sharded

    install(variant)
    dec, lat, noise = _decoder_and_inputs((1, 2, 8, 8, 16))
    ref = np.asarray(decode(dec, lat, noise=noise), np.float64)
    out = {"devices": jax.device_count()}
    for d, c in ((2, 4), (1, 8), (4, 2)):
        t0 = time.perf_counter()
        px = np.asarray(decode_sharded(dec, lat, inference_rules(make_mesh(data=d, context=c)), noise=noise),
                        np.float64)
        out[f"{d}x{c}"] = {"err": float(np.max(np.abs(px - ref)) / np.max(np.abs(ref))),
                           "differing": int(np.sum(px != ref)), "of": int(px.size),
                           "compile_and_run_s": round(time.perf_counter() - t0, 2)}
    return out


def _spawn(args: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **(env or {})))
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--mid", default="1,3,12,12,16", help="a mid-size latent shape for run times")
    ap.add_argument("--mesh", action="store_true", help="also the 8-device mesh errors (slow)")
    ap.add_argument("--worker", choices=("single", "mesh"))
    ap.add_argument("--variant")
    ap.add_argument("--shape")
    ap.add_argument("--save")
    a = ap.parse_args()
    if a.worker == "single":
        print(json.dumps(worker_single(a.variant, tuple(int(v) for v in a.shape.split(",")), a.save)))
        return
    if a.worker == "mesh":
        print(json.dumps(worker_mesh(a.variant)))
        return
    import tempfile

    import numpy as np

    variants = a.variants.split(",")
    result: dict = {"tiny": {}, "mid": {}, "mesh": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            result["tiny"][v] = _spawn(["--worker", "single", "--variant", v, "--shape", "1,2,8,8,16",
                                        "--save", f"{tmp}/{v}.npy"])
        if "xla" in variants:
            ref = np.load(f"{tmp}/xla.npy").astype(np.float64)
            for v in variants:
                y = np.load(f"{tmp}/{v}.npy").astype(np.float64)
                result["tiny"][v]["err_vs_xla"] = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
                result["tiny"][v]["compile_ratio"] = round(result["tiny"][v]["compile_s"]
                                                           / result["tiny"]["xla"]["compile_s"], 2)
        for v in variants:
            result["mid"][v] = _spawn(["--worker", "single", "--variant", v, "--shape", a.mid])
            if "xla" in result["mid"]:
                result["mid"][v]["run_ratio"] = round(result["mid"][v]["run_s"] / result["mid"]["xla"]["run_s"], 2)
    if a.mesh:
        for v in variants:
            result["mesh"][v] = _spawn(["--worker", "mesh", "--variant", v],
                                       {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    result["mid_shape"] = a.mid
    print(json.dumps(result))


if __name__ == "__main__":
    main()
