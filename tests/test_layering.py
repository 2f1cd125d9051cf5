"""The package's import structure: imports only go down the layers, no cycles, no file over 400 lines.

Every `import` / `from ... import` of `ltx_jax` modules is read with `ast` (those inside functions too: a
deferred import is still a dependency), relative to the module that makes it. Importing `ltx_jax.a.b`
also runs `ltx_jax/a/__init__.py`, so that package counts as imported too (except by its own modules).
Run with `-s` to see the layers and the edges between them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ltx_jax"

# Bottom to top; a module belongs to the longest prefix listed. Imports may stay in a layer or go down.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base: configs, nn, types, sharding", ("ltx_jax.configs", "ltx_jax.nn", "ltx_jax.types", "ltx_jax.sharding",
                                            "ltx_jax.parallel")),
    ("checkpoint I/O", ("ltx_jax.checkpoint",)),
    ("models", ("ltx_jax.transformer", "ltx_jax.video_vae", "ltx_jax.tiny_vae", "ltx_jax.upsampler",
                "ltx_jax.audio_vae", "ltx_jax.text_encoder")),
    ("sampling math", ("ltx_jax.sampling",)),
    ("denoising loops", ("ltx_jax.sampling.loops", "ltx_jax.sampling.samplers")),
    ("pipelines, training, world", ("ltx_jax.pipelines", "ltx_jax.training", "ltx_jax.world")),
    ("command line, public API", ("ltx_jax.cli", "ltx_jax")),
]
LEAVES = ("ltx_jax.parity",)  # test support: may import anything, imported by nothing in the library
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module a dotted name refers to (a module, or the module defining the attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("ltx_jax"):
                continue
            target = _resolve(name)
            if target is None:
                continue
            found.add(target)
            parent = target.rpartition(".")[0]
            while parent and parent != "ltx_jax":  # the parents' __init__ run first
                if not module.startswith(parent + ".") and module != parent:
                    found.add(parent)
                parent = parent.rpartition(".")[0]
    found.discard(module)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _unit(module: str) -> str:
    """The longest LAYERS / LEAVES prefix that contains `module`."""
    best = ""
    for prefix in [p for _, ps in LAYERS for p in ps] + list(LEAVES):
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    assert best, f"{module} is in no layer: add it to LAYERS in tests/test_layering.py"
    return best


def _layer(module: str) -> int:
    unit = _unit(module)
    return next(i for i, (_, prefixes) in enumerate(LAYERS) if unit in prefixes)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for module in MODULES:
        _unit(module)


def test_imports_only_go_down():
    upward = []
    for module, targets in GRAPH.items():
        if _unit(module) in LEAVES:
            continue
        for target in sorted(targets):
            if _unit(target) in LEAVES:
                upward.append(f"{module} -> {target} (parity is test support; the library never imports it)")
            elif _layer(target) > _layer(module) and module != "ltx_jax":
                upward.append(f"{module} [{LAYERS[_layer(module)][0]}] -> {target} [{LAYERS[_layer(target)][0]}]")
    print("\nlayers, bottom to top:")
    for i, (name, prefixes) in enumerate(LAYERS):
        print(f"  {i} {name}: {', '.join(prefixes)}")
    print(f"  leaf (test support): {', '.join(LEAVES)}")
    assert not upward, "imports that go up a layer:\n  " + "\n  ".join(upward)


def test_no_import_cycles_between_modules_or_packages():
    module_cycles = _cycles({m: {t for t in ts if t != "ltx_jax"} for m, ts in GRAPH.items() if m != "ltx_jax"})
    units: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        if module == "ltx_jax":
            continue
        for target in targets:
            if target != "ltx_jax" and _unit(target) != _unit(module):
                units[_unit(module)].add(_unit(target))
    unit_cycles = _cycles(units)
    print("\npackage edges:")
    for unit in sorted(units):
        print(f"  {unit} -> {', '.join(sorted(units[unit]))}")
    assert not module_cycles, f"module import cycles: {module_cycles}"
    assert not unit_cycles, f"package import cycles: {unit_cycles}"


def test_no_file_over_the_line_limit():
    long = {str(p.relative_to(ROOT.parent)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_public_api_resolves():
    """Every name `ltx_jax/__init__.py` lists resolves, and `ltx_jax.restore` works by component name."""
    import ltx_jax
    for name in ltx_jax.__all__:
        assert getattr(ltx_jax, name) is not None, name
    from ltx_jax.checkpoint.layout import LAYOUT
    from ltx_jax.checkpoint.loader import _BUILDERS
    assert set(_BUILDERS) == set(LAYOUT), "a layout entry without a module bound by its model package"
