"""The package's layers, as whisper_quant/__init__.py documents them, checked on the imports.

Every module of src/whisper_quant is read with `ast` (nothing is imported), and each of its
imports of another module of the package, at the top or inside a function, must point to its
own layer or to one its layer may use. A module that is in no layer fails the test too, so a
new module is placed deliberately.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "whisper_quant"

# Module -> layer. Keep in step with the package docstring (src/whisper_quant/__init__.py).
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "__init__",
        "layout",
        "manifest",
        "models",
        "shapes",
        "recipes",
        "hardware",
        "roofline",
        "audio",
        "tokens",
        "graphs",
        "logit_filters",
        "token_decoders",
        "decoding",
        "longform_options",
        "vad",
        "longform",
        "longform_batched",
        "measure",
        "metrics",
        "stats",
    ),
    "build": ("ct2", "weights", "onnx_files", "quantizers", "smoothing", "build", "fetch"),
    "runtime": (
        "torch_window",
        "engines",
        "engines.names",
        "engines.base",
        "engines.onnx",
        "engines.original",
        "engines.pytorch",
        "engines.faster_whisper",
        "workers",
        "worker_preload",
        "budget",
        "compare",
    ),
    "evaluation": (
        "coverage",
        "clip_groups",
        "per_language",
        "bench_methods",
        "bench_stats",
        "bench",
        "report",
        "report_markdown",
        "plots",
        "datasets",
        "batch",
    ),
    "app": (
        "subtitles",
        "settings",
        "options",
        "views",
        "service",
        "run_report",
        "launch",
        "cli",
    ),
}
# The layers each layer may import from (its own included). The build and the runtime are
# siblings: the engines never import the build pipeline, nor the build an engine.
MAY_USE: dict[str, set[str]] = {
    "core": {"core"},
    "build": {"core", "build"},
    "runtime": {"core", "runtime"},
    "evaluation": {"core", "runtime", "evaluation"},
    "app": {"core", "build", "runtime", "evaluation", "app"},
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def module_name(path: Path) -> str:
    """`engines/onnx.py` -> "engines.onnx"; a package's `__init__.py` names the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def package_of(path: Path) -> list[str]:
    return list(path.relative_to(PACKAGE).parent.parts)


def imported_modules(path: Path) -> set[str]:
    """The package's modules that `path` imports, by their names in LAYERS."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("whisper_quant.")]
            found.update(name.removeprefix("whisper_quant.") for name in names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("whisper_quant"):
                    base = node.module.split(".")[1:]
                    found.update(_targets(base, node))
                continue
            package = package_of(path)
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                base = base + node.module.split(".")
            found.update(_targets(base, node))
    return {name for name in found if name}


def _targets(base: list[str], node: ast.ImportFrom) -> set[str]:
    """`from <base> import a, b`: the module base, or base.a where a is itself a module."""
    targets = set()
    for alias in node.names:
        candidate = ".".join([*base, alias.name])
        if candidate in LAYER_OF or (PACKAGE / Path(*base, alias.name + ".py")).is_file():
            targets.add(candidate)
        else:
            targets.add(".".join(base) or "__init__")
    return targets


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = sorted(module_name(path) for path in MODULES if module_name(path) not in LAYER_OF)
    assert not unplaced, f"Place these modules in a layer (tests/test_layers.py): {unplaced}"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_module_imports_from_a_higher_layer(path):
    module = module_name(path)
    layer = LAYER_OF.get(module)
    if layer is None:
        pytest.fail(f"{module} is in no layer (see test_every_module_has_a_layer)")
    wrong = sorted(
        f"{target} ({LAYER_OF.get(target, 'no layer')})"
        for target in imported_modules(path)
        if LAYER_OF.get(target) not in MAY_USE[layer]
    )
    assert not wrong, f"{module} ({layer}) imports {', '.join(wrong)}"


def test_the_modules_import_no_cycle():
    """Top-level and function-level imports together form no cycle."""
    graph = {module_name(path): imported_modules(path) - {module_name(path)} for path in MODULES}
    # A package's submodule importing its own package's __init__ is how Python loads it.
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + (module,)
            pytest.fail("Import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_the_docstring_lists_every_module_under_its_layer():
    """The package docstring's code map names each module under the layer LAYERS gives it."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8")))
    sections = dict(re.findall(r"^(\w+):\n(.*?)(?:\n\n|\Z)", doc, flags=re.M | re.S))
    assert set(sections) == set(LAYERS)
    for path in MODULES:
        module = module_name(path)
        if module == "__init__":
            continue
        layer = LAYER_OF.get(module)
        if layer is None:
            continue  # test_every_module_has_a_layer names it
        shown = path.relative_to(PACKAGE).as_posix()
        assert re.search(rf"^\s+{re.escape(shown)}\s", sections[layer], flags=re.M), (
            f"{shown} is not listed under {layer} in src/whisper_quant/__init__.py"
        )


SCRIPTS = sorted((PACKAGE.parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_import_names_the_package_has(path):
    """A script run by hand (benchmarks, sensitivity, the eval set) is not run by the suite: a
    name moved between modules would break it silently. Every `from whisper_quant.X import n`
    in it must still resolve."""
    import importlib
    import importlib.util

    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("whisper_quant"):
            module = importlib.import_module(node.module)
            missing += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if not hasattr(module, alias.name)
                and not (
                    hasattr(module, "__path__")
                    and importlib.util.find_spec(f"{node.module}.{alias.name}") is not None
                )
            ]
    assert not missing, f"{path.name} imports names that do not exist: {missing}"
