"""The README's promises hold: CI runs its two set-up commands verbatim, its table of
contents points at real sections, and it speaks to users (no internal references)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_ci_runs_the_two_setup_commands_verbatim() -> None:
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip(".ci/run is not part of this copy")
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", quickstart)
    assert len(commands) == 2
    assert commands[0].endswith("examples/quickstart.py")
    assert commands[1].endswith("-m pytest")
    script = ci.read_text(encoding="utf-8")
    for command in commands:
        assert command in script.splitlines() or f"    {command}" in script.splitlines()


def test_contents_link_to_sections() -> None:
    headings = {_anchor(h) for h in re.findall(r"^#{2,3} (.+)$", README, re.M)}
    links = re.findall(r"\]\(#([\w-]+)\)", README)
    assert "command-line" in links
    assert [link for link in links if link not in headings] == []


def test_no_internal_references() -> None:
    paths = [
        ROOT / "README.md",
        *(ROOT / "benchmarks").glob("*.*"),
        *(ROOT / "examples").glob("*.py"),
    ]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bissue \d+", text, re.I), path
