"""The package's layering, kept by a test: lower rooms never import from higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lpstudio

PACKAGE_ROOT = Path(lpstudio.__file__).parent
HIGHER_LAYERS = ("lpstudio.engine", "lpstudio.server", "lpstudio.cli", "lpstudio.expressions", "lpstudio.drive")
MAX_LINES = 600
DATA_TABLES = {"expressions/presets.py"}  # keyframe tables of the 20 presets: data, not logic


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every module a file imports (relative imports resolved), at any depth (lazy imports too).

    ``name``: the file's dotted module name (default: from its place in the package).
    """
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _files(subpackage: str) -> list[Path]:
    return sorted((PACKAGE_ROOT / subpackage).rglob("*.py"))


def _offending(path: Path, forbidden: tuple[str, ...], name: str | None = None) -> list[str]:
    imported = imported_modules(path, name)
    return sorted(m for m in imported if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("path", _files("nets"), ids=lambda p: p.name)
def test_networks_import_no_higher_layer(path: Path) -> None:
    assert _offending(path, HIGHER_LAYERS) == []


@pytest.mark.parametrize(
    "path", [*_files("backends"), PACKAGE_ROOT / "export.py"], ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_backends_and_export_do_not_import_the_engine(path: Path) -> None:
    """backends/ and export.py take the networks bundle; the engine builds them, never the reverse."""
    assert _offending(path, ("lpstudio.engine", "lpstudio.server", "lpstudio.cli")) == []


def test_the_checker_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    """The layering tests can fail: a lazy relative import of the engine inside nets/ is found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..engine import LivePortrait\n    from . import layers\n")
    assert _offending(probe, HIGHER_LAYERS, "lpstudio.nets.probe") == [
        "lpstudio.engine",
        "lpstudio.engine.LivePortrait",
    ]
    assert "lpstudio.nets.layers" in imported_modules(probe, "lpstudio.nets.probe")


def test_no_source_file_is_too_long() -> None:
    long = {
        str(p.relative_to(PACKAGE_ROOT)): n
        for p in PACKAGE_ROOT.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and str(p.relative_to(PACKAGE_ROOT)) not in DATA_TABLES
    }
    assert long == {}, f"split these files (over {MAX_LINES} lines): {long}"
