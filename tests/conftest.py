"""Shared test setup: the tsconnector pytest plugin and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# On a shared CI machine timing varies a lot: no per-example deadline, no too_slow check.
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config: pytest.Config) -> None:
    # Load the plugin when the package is not installed (no pytest11 entry point).
    if not config.pluginmanager.has_plugin("tsconnector"):
        config.pluginmanager.import_plugin("tsconnector.testing.plugin")


# Catalog backends (SQLite memory / file, PostgreSQL) for every test file that needs them.
from catalog_backends import (  # noqa: E402, F401
    _drop_leftover_test_schemas,
    catalog_backend,
    catalog_db,
    pg_backend,
)
