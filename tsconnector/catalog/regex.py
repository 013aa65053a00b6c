"""Regular expressions for ``Re`` filters: validated, and matched in linear time on SQLite.

SQLite has no regex engine; the catalog registers a ``REGEXP`` function. Python's ``re``
backtracks without a time limit, so a pattern such as ``(a+)+$`` (exponential) or even
``.*.*.*y`` (cubic) could stall the database thread on a long value. Instead:

- patterns made only of single characters, classes and anchors (no ``|``, no repeat)
  cannot backtrack much and run on ``re`` directly;
- every other pattern is compiled to the Thompson NFA of :mod:`tsconnector.linregex`
  and matched by a lazily built DFA (at most one NFA pass per character of the value,
  so time is linear in the value's length, whatever the pattern). Each character class
  and anchor of the NFA is still tested by ``re`` itself (one compiled atom each), so
  the answers are exactly those of ``re.search`` (property-tested against it).

Patterns are validated identically for both backends: at most :data:`MAX_PATTERN_LEN`
characters and :data:`MAX_NFA_STATES` NFA states (bounded repeats are expanded), and no
backreferences, look-around, conditional, atomic or possessive constructs (an automaton
cannot express them). On PostgreSQL the pattern goes to its own ``~`` operator (POSIX
"advanced" regular expressions): use the subset both understand.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

from ..linregex import REPEATS, DfaState, Nfa, TooLarge, Unsupported, parse
from ..linregex import constants as _c

#: Longest accepted pattern.
MAX_PATTERN_LEN = 1000
#: Largest NFA (after expanding bounded repeats such as ``a{1,50}``).
MAX_NFA_STATES = 5000
#: DFA states kept per pattern before the cache is dropped and rebuilt.
_MAX_CACHE = 20000

_UNSUPPORTED = {
    _c.GROUPREF: "backreferences",
    _c.GROUPREF_EXISTS: "conditional groups",
    _c.ASSERT: "look-ahead/look-behind",
    _c.ASSERT_NOT: "look-ahead/look-behind",
}
for _name, _what in (
    ("POSSESSIVE_REPEAT", "possessive repeats"),
    ("ATOMIC_GROUP", "atomic groups"),
):
    if hasattr(_c, _name):
        _UNSUPPORTED[getattr(_c, _name)] = _what


def check_regex(pattern: object) -> str:
    """Return ``pattern`` if ``Re`` accepts it on both backends, else raise ``ValueError``."""
    compile_regex(pattern)
    assert isinstance(pattern, str)
    return pattern


@functools.lru_cache(maxsize=256)
def _compile_cached(pattern: str) -> Matcher:
    return Matcher(pattern)


def compile_regex(pattern: object) -> Matcher:
    """A :class:`Matcher` for ``pattern`` (cached); ``ValueError`` if it is not accepted."""
    if not isinstance(pattern, str):
        raise TypeError(f"regex must be str, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LEN:
        raise ValueError(f"regex longer than {MAX_PATTERN_LEN} characters")
    if "\x00" in pattern:
        raise ValueError("regex must not contain NUL characters")
    return _compile_cached(pattern)


_per_thread = threading.local()


def sqlite_regexp(pattern: str | None, value: str | None) -> bool | None:
    """SQLite's ``value REGEXP pattern``: ``re.search`` semantics, NULL for NULL input.

    Called in the connections' threads; a :class:`Matcher` fills its caches while it
    searches, so each thread keeps its own.
    """
    if pattern is None or value is None:
        return None
    matchers: dict[str, Matcher] | None = getattr(_per_thread, "matchers", None)
    if matchers is None:
        matchers = _per_thread.matchers = {}
    matcher = matchers.get(pattern)
    if matcher is None:
        compile_regex(pattern)  # validates (cached)
        if len(matchers) >= 256:
            matchers.clear()
        matcher = matchers[pattern] = Matcher(pattern)
    return matcher.search(value)


class Matcher:
    """A compiled pattern whose :meth:`search` answers like ``re.search`` in linear time.

    Its DFA cache grows while it searches; :func:`sqlite_regexp` keeps one per thread.
    """

    def __init__(self, pattern: str) -> None:
        try:
            items, flags = parse(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        self.pattern = pattern
        _check(pattern, items)
        self._simple: re.Pattern[str] | None = None
        self._moves: dict[Any, DfaState] = {}
        if not _backtracks(items):
            self._simple = re.compile(pattern)
            return
        try:
            self._nfa = Nfa(items, flags, max_states=MAX_NFA_STATES, memo_limit=_MAX_CACHE)
        except TooLarge:
            raise ValueError(
                f"regex {pattern!r} is too large (over {MAX_NFA_STATES} automaton states)"
            ) from None
        except Unsupported as exc:
            raise ValueError(f"regex {pattern!r}: unsupported construct {exc.op}") from None

    def search(self, value: str) -> bool:
        """True if the pattern matches anywhere in ``value`` (as ``re.search``)."""
        if self._simple is not None:
            return self._simple.search(value) is not None
        if len(self._moves) > _MAX_CACHE:
            self._moves.clear()
        return self._nfa.search(value, self._moves)


def _check(pattern: str, items: list[Any]) -> None:
    """Reject the constructs an automaton cannot express (also on PostgreSQL)."""
    for op, arg in items:
        what = _UNSUPPORTED.get(op)
        if what is not None:
            raise ValueError(f"regex {pattern!r} uses {what}, which Re does not allow")
        if op in REPEATS:
            _check(pattern, list(arg[2]))
        elif op is _c.SUBPATTERN:
            _check(pattern, list(arg[-1]))
        elif op is _c.BRANCH:
            for branch in arg[1]:
                _check(pattern, list(branch))


def _backtracks(items: list[Any]) -> bool:
    """True if ``items`` hold an alternation or a repeat (``re`` could backtrack)."""
    for op, arg in items:
        if op in REPEATS or op is _c.BRANCH:
            return True
        if op is _c.SUBPATTERN and _backtracks(list(arg[-1])):
            return True
    return False
