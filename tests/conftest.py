"""Shared test fixtures: official reference fixture directories, built on demand and cached.

The reference builder (tests/reference/build.py) runs in the separate reference environment
(.venv-ref, official ltx-core on CPU torch). Its outputs are cached under .cache/reference/ by a hash
of the builder's sources, configs and requirements, so a second run reuses them. Without the
reference environment, parity tests skip, unless LTX_REQUIRE_REFERENCE=1 (CI), where they fail.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
REFERENCE = ROOT / "tests" / "reference"  # the official-side fixture builders
CACHE = ROOT / ".cache" / "reference"
SHARED = Path(os.environ.get("LTX_SHARED", ROOT.parent / "shared"))  # the project's shared/ folder
CONFIGS = ("ltx2-tiny", "ltx23-tiny")
SEEDS = (0, 1, 2)


def _require_reference() -> bool:
    return os.environ.get("LTX_REQUIRE_REFERENCE") == "1"


def reference_unavailable(why: str):
    """Skip locally, fail in CI: the reference environment is part of the test set-up."""
    if _require_reference():
        pytest.fail(f"reference required (LTX_REQUIRE_REFERENCE=1) but unavailable: {why}")
    pytest.skip(f"reference unavailable: {why}")


def reference_versions() -> list[str]:
    """What the reference environment has installed of the pinned packages (tests/reference/pins.txt), read from
    its files without starting it: `python <pyvenv version>` and the `.dist-info` folder names."""
    root = REF_PYTHON.parents[1]
    out = []
    cfg = root / "pyvenv.cfg"
    if cfg.is_file():
        out += [line.strip() for line in cfg.read_text().splitlines() if line.startswith("version")]
    for name in ("torch", "ltx_core", "ltx_pipelines", "transformers"):
        out += sorted(p.name for p in root.glob(f"lib/python*/site-packages/{name}-*.dist-info"))
    return out


def _builder_hash() -> str:
    """Cache key of the fixtures: the builders' sources, configs, requirements and pins, and the versions the
    reference environment really has (a different torch or Python means different fixtures)."""
    h = hashlib.sha256()
    h.update("\n".join(reference_versions()).encode())
    for p in sorted(REFERENCE.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".json", ".txt") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(REFERENCE)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _cached_build(out: Path, command: Callable[[Path], list[str]], what: str) -> Path:
    """`out` if it was built before, else build it (under a lock shared by every process) and return it.

    `command(root)` is the reference-environment command that writes `out` (and possibly siblings) into
    `root`, the cache folder of the current builder sources; folders of older sources are removed.
    """
    if not REF_PYTHON.exists():
        reference_unavailable(f"{REF_PYTHON} does not exist")
    if (out / "manifest.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "manifest.json").is_file():
            cmd = command(out.parent)
            result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0 or not (out / "manifest.json").is_file():
                pytest.fail(f"{what} build failed: {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        for stale in CACHE.iterdir():
            if stale.is_dir() and stale != out.parent:
                shutil.rmtree(stale, ignore_errors=True)
    return out


def build_reference(config: str, seed: int) -> Path:
    """Main fixture directory (docs/reference-fixtures.md) for (config, seed).

    The first call builds every missing (config, seed) pair in one process (tests/reference/build_all.py,
    a few seconds in all); later calls and later runs reuse the cache.
    """
    def command(root: Path) -> list[str]:
        todo = [(c, s) for c in CONFIGS for s in SEEDS if not (root / f"{c}_seed{s}" / "manifest.json").is_file()]
        return [str(REF_PYTHON), str(REFERENCE / "build_all.py"), "--root", str(root),
                "--configs", ",".join(sorted({c for c, _ in todo} | {config})),
                "--seeds", ",".join(map(str, sorted({s for _, s in todo} | {seed})))]

    return _cached_build(CACHE / _builder_hash() / f"{config}_seed{seed}", command, "reference")


def build_loops_reference(config: str, seed: int = 0) -> Path:
    """Loop fixture directory (docs/reference-fixtures-loops.md) for (config, seed); the first call builds
    `seed` for every tiny config in one process (tests/reference/build_loops.py, about 2 s per directory)."""
    def command(root: Path) -> list[str]:
        todo = [c for c in CONFIGS if not (root / f"{c}_seed{seed}_loops" / "manifest.json").is_file()]
        return [str(REF_PYTHON), str(REFERENCE / "build_loops.py"), "--root", str(root),
                "--configs", ",".join(sorted(set(todo) | {config})), "--seeds", str(seed)]

    return _cached_build(CACHE / _builder_hash() / f"{config}_seed{seed}_loops", command, "loop reference")


def build_lora_reference(config: str, seed: int = 0) -> Path:
    """LoRA fixture folder (docs/reference-fixtures-lora.md) for (config, seed), built from the main fixture of
    the same config and seed (tests/reference/build_lora.py, a few seconds)."""
    main = build_reference(config, seed)
    out = main.parent / f"{config}_seed{seed}_lora"
    return _cached_build(out, lambda root: [str(REF_PYTHON), str(REFERENCE / "build_lora.py"), "--main", str(main),
                                            "--out", str(out)], "LoRA reference")


AUDIO_CONFIGS = ("ltx2-audio-tiny", "ltx23-audio-tiny", "ltx23-audio-odd", "ltx2-audio-odd")


def build_audio_reference(config: str, seed: int = 0) -> Path:
    """Audio fixture directory (docs/reference-fixtures-audio.md); the first call builds every audio config of
    `seed` in one process (tests/reference/build_audio.py, a few seconds each)."""
    def command(root: Path) -> list[str]:
        todo = [c for c in AUDIO_CONFIGS if not (root / f"{c}_seed{seed}" / "manifest.json").is_file()]
        return [str(REF_PYTHON), str(REFERENCE / "build_audio.py"), "--root", str(root),
                "--configs", ",".join(sorted(set(todo) | {config})), "--seeds", str(seed)]

    return _cached_build(CACHE / _builder_hash() / f"{config}_seed{seed}", command, "audio reference")


GEMMA_CONFIGS = ("gemma-tiny", "gemma-tiny-odd")


def build_gemma_reference(config: str, seed: int = 0) -> Path:
    """Gemma text-path fixture directory (docs/reference-fixtures-gemma.md) for (config, seed); the first call
    builds every Gemma config of that seed in one process (tests/reference/build_gemma.py, about 30 s each)."""
    def command(root: Path) -> list[str]:
        todo = [c for c in GEMMA_CONFIGS if not (root / f"{c}_seed{seed}" / "manifest.json").is_file()]
        return [str(REF_PYTHON), str(REFERENCE / "build_gemma.py"), "--root", str(root),
                "--configs", ",".join(sorted(set(todo) | {config})), "--seed", str(seed)]

    return _cached_build(CACHE / _builder_hash() / f"{config}_seed{seed}", command, "Gemma reference")


@pytest.fixture(scope="session", params=GEMMA_CONFIGS)
def gemma_reference(request) -> Path:
    """Gemma fixture directory (seed 0) for each tiny Gemma config."""
    return build_gemma_reference(request.param, 0)


def build_generate_reference(seed: int = 0) -> Path:
    """The official distilled pipeline from a prompt string, bf16, with a tiny Gemma folder (tests/reference/
    build_generate.py), built from the ltx23-tiny main fixture of the same seed (about 30 s)."""
    main = build_reference("ltx23-tiny", seed)
    out = main.parent / f"ltx23-tiny_seed{seed}_generate"
    return _cached_build(out, lambda root: [str(REF_PYTHON), str(REFERENCE / "build_generate.py"), "--main", str(main),
                                            "--out", str(out), "--seed", str(seed)], "generate reference")


@pytest.fixture(scope="session", params=CONFIGS)
def reference(request) -> Path:
    """Fixture directory (seed 0) for each tiny config."""
    return build_reference(request.param, 0)


@pytest.fixture(scope="session", params=[(c, s) for c in CONFIGS for s in SEEDS], ids=lambda p: f"{p[0]}-s{p[1]}")
def reference_seeds(request) -> Path:
    """Fixture directories for each tiny config and seeds 0, 1, 2."""
    return build_reference(*request.param)


@pytest.fixture(scope="session", params=CONFIGS)
def loops_reference(request) -> Path:
    """Loop fixture directory (seed 0) for each tiny config."""
    return build_loops_reference(request.param, 0)


@pytest.fixture(scope="session", params=CONFIGS)
def lora_reference(request) -> Path:
    """LoRA fixture folder (seed 0) for each tiny config."""
    return build_lora_reference(request.param, 0)


@pytest.fixture(scope="session")
def tae_fixture() -> Path:
    path = SHARED / "fixtures" / "taeltx2_3"
    if not (path / "manifest.json").is_file():
        reference_unavailable(f"{path} is missing (set LTX_SHARED to the shared/ folder)")
    return path


def run_ref_python(code: str, *args: str, stdin: str | None = None) -> str:
    """Run Python code in the reference environment; returns stdout."""
    if not REF_PYTHON.exists():
        reference_unavailable(f"{REF_PYTHON} does not exist")
    result = subprocess.run([str(REF_PYTHON), "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                            input=stdin)
    if result.returncode != 0:
        pytest.fail(f"reference script failed:\n{result.stderr[-4000:]}")
    return result.stdout



def pytest_collection_finish(session):
    """Start the slow subprocess fixtures of the selected modules in a second lane (`tests/background.py`)."""
    import background
    background.start_selected({m.__name__ for m in (getattr(item, "module", None) for item in session.items) if m})


def pytest_runtest_setup(item):
    import background
    background.advance()


def pytest_sessionfinish(session, exitstatus):
    import background
    background.stop_all()
