"""The sdist carries the tests, their data, the examples, the benchmarks and the ChangeLog;
the wheel carries the package with ``py.typed`` and the entry points, and nothing else."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _source_files(folder: str, *suffixes: str) -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts
    }


def test_sdist_and_wheel_contents(tmp_path: Path) -> None:
    for module in ("build", "setuptools", "wheel"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[test]' installs it)")
    # Offline: no isolated build environment; the wheel is built from the sdist.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = tmp_path.glob("tsconnector-*.tar.gz")
    (wheel,) = tmp_path.glob("tsconnector-*.whl")

    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = (
        _source_files("tests", ".py", ".json")
        | _source_files("examples", ".py")
        | _source_files("benchmarks", ".py", ".md")
        | _source_files("tsconnector", ".py", ".typed")
        | {"ChangeLog", "README.md", "LICENSE.txt", "pyproject.toml", "setup.cfg", ".ci/run"}
    )
    assert top.startswith("tsconnector-")
    assert {"tests/conftest.py", "tests/data/frames.json", "examples/quickstart.py"} <= expected
    assert expected - in_sdist == set()
    assert not [n for n in in_sdist if n.endswith(".pyc") or n.startswith(".venv")]

    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
        dist_info = next(n.split("/")[0] for n in in_wheel if ".dist-info/" in n)
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
    package = {n for n in in_wheel if not n.startswith(dist_info)}
    assert package == _source_files("tsconnector", ".py", ".typed")
    assert "tsconnector/py.typed" in package
    assert "tsconnector = tsconnector.cli:main" in entry_points
    assert "tsconnector = tsconnector.testing.plugin" in entry_points
