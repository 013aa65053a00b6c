"""``re.search`` as a test oracle, bounded in time.

Generated patterns such as ``((b)|a+|.*?(a{0,}|)+)*$...`` make ``re`` itself backtrack
for minutes on a 10-character subject (the very problem the linear-time engines
solve). An example whose oracle runs out of time says nothing: it is rejected.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Sequence
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

ORACLE_SECONDS = 1.0


class _OracleTimeout(Exception):
    pass


def _expire(_signum: int, _frame: Any) -> None:
    raise _OracleTimeout


def bounded_search(pattern: str, subject: str, flags: int = 0) -> bool:
    """Whether ``re.search`` finds ``pattern`` in ``subject``; rejects the example
    (hypothesis ``assume``) when ``re`` needs more than :data:`ORACLE_SECONDS`.

    ``re.error`` propagates. The bound needs the main thread (SIGALRM); elsewhere the
    search runs unbounded.
    """
    if threading.current_thread() is not threading.main_thread():
        return re.search(pattern, subject, flags) is not None
    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, ORACLE_SECONDS)
    try:
        return re.search(pattern, subject, flags) is not None
    except _OracleTimeout:
        assume(False)
        raise AssertionError("unreachable") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def regex_patterns(
    draw: st.DrawFn,
    atoms: Sequence[str],
    quantifiers: Sequence[str],
    anchors: Sequence[str],
    groups: Sequence[str] = ("(",),
    inner_quantifiers: Sequence[str] | None = None,
    depth: int = 0,
) -> str:
    """Concatenations of atoms, anchors and groups of alternatives (two levels deep),
    each maybe repeated; ``inner_quantifiers`` (default: ``quantifiers``) repeat the
    nested groups."""
    inner_q = quantifiers if inner_quantifiers is None else inner_quantifiers
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 9))
        if kind < 6:
            parts.append(draw(st.sampled_from(atoms)) + draw(st.sampled_from(quantifiers)))
        elif kind < 7:
            parts.append(draw(st.sampled_from(anchors)))
        elif depth < 2:
            inner = [
                draw(regex_patterns(atoms, quantifiers, anchors, groups, inner_q, depth + 1))
                for _ in range(draw(st.integers(1, 3)))
            ]
            repeat = draw(st.sampled_from(quantifiers if depth == 0 else inner_q))
            parts.append(draw(st.sampled_from(groups)) + "|".join(inner) + ")" + repeat)
    return "".join(parts)
