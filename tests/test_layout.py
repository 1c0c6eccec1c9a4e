"""The package's layout: one folder per layer, no two modules with one file name, and tests that
mirror the package (the tests of ``poolbench/X/`` are in ``tests/X/``)."""

from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "poolbench"
ENTRY_POINTS = {"__init__.py", "__main__.py", "gpu_memory.py"}  # python -m poolbench[.gpu_memory]


def layer_folders() -> list[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    top = next(c for c in contracts if c["type"] == "layers" and c["containers"] == ["poolbench"])
    return [name.strip() for layer in top["layers"] for name in layer.split("|")]


def test_every_module_lives_in_a_layer_folder():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ENTRY_POINTS)
    assert loose == [], f"modules outside a layer folder: {loose}"
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert sorted(layer_folders()) == folders


def test_no_two_modules_share_a_file_name():
    names = Counter(p.name for p in PACKAGE.rglob("*.py") if p.name not in ENTRY_POINTS)
    assert [name for name, count in names.items() if count > 1] == []


def test_tests_mirror_the_package():
    for folder in layer_folders():
        tests = list((ROOT / "tests" / folder).glob("test_*.py"))
        assert tests, f"poolbench/{folder}/ has no tests/{folder}/"
    expected = {*layer_folders(), "broken_pools"}
    stray = sorted(p.name for p in (ROOT / "tests").iterdir()
                   if p.is_dir() and not p.name.startswith((".", "__")) and p.name not in expected)
    assert stray == [], f"test folders that mirror no package folder: {stray}"
