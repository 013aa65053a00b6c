"""Shared test setup: the tsconnector pytest plugin and hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# On a shared CI machine timing varies a lot: no per-example deadline, no too_slow check;
# CI draws the same examples every run (as Hypothesis's own CI profile does), so a red
# run replays; local runs keep exploring new ones.
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True,
    derandomize=True,
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_internal_errors: the test causes server internal errors on purpose"
    )
    # Load the plugin when the package is not installed (no pytest11 entry point).
    if not config.pluginmanager.has_plugin("tsconnector"):
        config.pluginmanager.import_plugin("tsconnector.testing.plugin")


@pytest.fixture(autouse=True)
def fail_on_server_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which any embedded server recorded an internal error (a bug
    answered with an error instead of crashing); ``@pytest.mark.allow_internal_errors``
    opts out for tests that cause one on purpose."""
    from tsconnector.server import internal

    before = internal.total()
    yield
    if request.node.get_closest_marker("allow_internal_errors") is not None:
        return
    problem = internal.check_since(before)
    if problem:
        pytest.fail(problem, pytrace=False)


# Catalog backends (SQLite memory / file, PostgreSQL) for every test file that needs them.
from catalog_backends import (  # noqa: E402, F401
    _drop_leftover_test_schemas,
    catalog_backend,
    catalog_db,
    pg_backend,
)
