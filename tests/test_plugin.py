"""The pytest plugin in a user's project: strict mode, no test extra, no pytest-asyncio."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "test_with_plugin.py"
#: Python run before pytest: pytest-asyncio cannot be imported, as if it were not installed.
NO_PYTEST_ASYNCIO = """
import sys
class NoPytestAsyncio:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pytest_asyncio":
            raise ImportError(name)
sys.meta_path.insert(0, NoPytestAsyncio())
sys.argv[1:1] = ["-p", "no:asyncio", "--assert=plain"]  # no rewriting import hook
"""


def _entry_point_registered() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value == "tsconnector.testing.plugin" for ep in entry_points(group="pytest11"))


def _pytest(project: Path, *prelude: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``project`` as a user would (no config of ours), after ``prelude``."""
    code = "\n".join([*prelude, "import sys, pytest", "sys.exit(pytest.main(sys.argv[1:]))"])
    return subprocess.run(
        [sys.executable, "-c", code, "-p", "no:cacheprovider", "-q", "."],
        cwd=project, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if not _entry_point_registered():
        pytest.skip("tsconnector is not installed (its pytest11 entry point is missing)")
    shutil.copy(EXAMPLE, tmp_path / "test_example.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # strict mode, the default
    return tmp_path


def test_fixtures_in_strict_mode(project: Path) -> None:
    result = _pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_without_pytest_asyncio_the_fixtures_say_what_is_missing(project: Path) -> None:
    (project / "test_example.py").write_text(
        "def test_needs_it(embedded_server):\n    pass\n"
    )
    result = _pytest(project, NO_PYTEST_ASYNCIO)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "the tsconnector fixtures are async and need pytest-asyncio: pip install pytest-asyncio"
        in result.stdout
    )
