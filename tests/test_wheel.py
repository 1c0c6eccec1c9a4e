"""The wheel: it ships the reference data and py.typed, and its metadata carries the dependency floors.

Built (without build isolation: no download) from a copy of the package's files, so the checkout
gets no build/ or egg-info. .ci/wheel_smoke installs it into a fresh environment and runs it there.
"""

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    pytest.importorskip("build", reason="the test extra's `build`")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "poolbench", source / "poolbench", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [path] = out.glob("poolbench-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_the_wheel_ships_the_reference_data_and_py_typed(wheel):
    names = set(wheel.namelist())
    reference = sorted(p.name for p in (ROOT / "poolbench" / "reference").glob("*.json"))
    assert reference, "poolbench/reference holds JSON files"
    assert {f"poolbench/reference/{name}" for name in reference} <= names
    assert "poolbench/py.typed" in names
    assert "poolbench/cli/__init__.py" in names and "poolbench/execution/sweep_runner.py" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/")) or "__pycache__" in n]


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_wheel_states_the_dependency_floors_and_extras(wheel):
    metadata = _metadata(wheel)
    requires = [r.replace(" ", "") for r in metadata.get_all("Requires-Dist")]
    for floor in ("torch>=2.3", "torchvision>=0.18", "scipy>=1.11", "filelock>=4.0", "numpy>=1.24",
                  "matplotlib>=3.7", "statsmodels>=0.14", "scikit-learn>=1.2", "tqdm>=4.60"):
        assert floor in requires, (floor, requires)
    assert set(metadata.get_all("Provides-Extra")) >= {"timm", "ray", "test"}
    assert any(r.startswith("timm>=1.0;") and "extra==\"timm\"" in r for r in requires), requires
    assert metadata["Requires-Python"].replace(" ", "") == ">=3.10"


def test_the_wheel_installs_the_poolbench_command(wheel):
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    entry_points = wheel.read(name).decode()
    assert "[console_scripts]" in entry_points and "poolbench = poolbench.cli:console" in entry_points
