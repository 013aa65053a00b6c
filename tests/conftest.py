"""Load tsconnector's pytest plugin when the package is not installed (no entry point)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("tsconnector"):
        config.pluginmanager.import_plugin("tsconnector.testing.plugin")
