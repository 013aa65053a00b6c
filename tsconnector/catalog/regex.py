"""Regular expressions for ``Re`` filters: validated, and matched in linear time on SQLite.

SQLite has no regex engine; the catalog registers a ``REGEXP`` function. Python's ``re``
backtracks without a time limit, so a pattern such as ``(a+)+$`` (exponential) or even
``.*.*.*y`` (cubic) could stall the database thread on a long value. Instead:

- patterns made only of single characters, classes and anchors (no ``|``, no repeat)
  cannot backtrack much and run on ``re`` directly;
- every other pattern is compiled to a Thompson NFA and matched by a lazily built DFA
  (at most one NFA pass per character of the value, so time is linear in the value's
  length, whatever the pattern). Each character class and anchor of the NFA is still
  tested by ``re`` itself (one compiled atom each), so the answers are exactly those of
  ``re.search`` (property-tested against it).

Patterns are validated identically for both backends: at most :data:`MAX_PATTERN_LEN`
characters and :data:`MAX_NFA_STATES` NFA states (bounded repeats are expanded), and no
backreferences, look-around, conditional, atomic or possessive constructs (an automaton
cannot express them). On PostgreSQL the pattern goes to its own ``~`` operator (POSIX
"advanced" regular expressions): use the subset both understand.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import threading
from typing import Any

# The parser and compiler of ``re`` (renamed in Python 3.11; no public equivalent).
_NEW = sys.version_info >= (3, 11)
_compiler: Any = importlib.import_module("re._compiler" if _NEW else "sre_compile")
_c: Any = importlib.import_module("re._constants" if _NEW else "sre_constants")
_parser: Any = importlib.import_module("re._parser" if _NEW else "sre_parse")

#: Longest accepted pattern.
MAX_PATTERN_LEN = 1000
#: Largest NFA (after expanding bounded repeats such as ``a{1,50}``).
MAX_NFA_STATES = 5000
#: DFA states kept per pattern before the cache is dropped and rebuilt.
_MAX_CACHE = 20000

_CHAR, _SPLIT, _ASSERT, _EPS, _MATCH = range(5)
_ATOMS = {_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN}
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}
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

    Not thread-safe (its DFA cache grows while it searches): one per thread.
    """

    def __init__(self, pattern: str) -> None:
        try:
            parsed = _parser.parse(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        self.pattern = pattern
        self._builder = _NfaBuilder(pattern)
        items = list(parsed)
        self._builder.check(items)
        self._simple: re.Pattern[str] | None = None
        if not self._builder.backtracks(items):
            self._simple = re.compile(pattern)
            return
        b = self._builder
        match = b.node(_MATCH)
        self._start = b.build(items, parsed.state.flags, match)
        self._match = match
        self._has_asserts = _ASSERT in b.kinds
        self._states: dict[frozenset[int], int] = {}
        self._sets: list[frozenset[int]] = []
        self._accepting: list[bool] = []
        self._moves: dict[tuple[Any, ...], int] = {}
        self._atom_memo: dict[tuple[int, str], bool] = {}
        self._assert_memo: dict[tuple[Any, ...], bool] = {}

    def search(self, value: str) -> bool:
        """True if the pattern matches anywhere in ``value`` (as ``re.search``)."""
        if self._simple is not None:
            return self._simple.search(value) is not None
        n = len(value)
        if len(self._moves) > _MAX_CACHE:
            self._states.clear()
            self._sets.clear()
            self._accepting.clear()
            self._moves.clear()
        state = self._intern(self._closure((self._start,), value, 0))
        if self._accepting[state]:
            return True
        moves = self._moves
        accepting = self._accepting
        asserts = self._has_asserts
        for i, ch in enumerate(value):
            key: tuple[Any, ...]
            if asserts:
                key = (state, ch, value[i + 1] if i + 1 < n else None, i + 2 == n)
            else:
                key = (state, ch)
            nxt = moves.get(key)
            if nxt is None:
                nxt = self._step(state, ch, value, i + 1)
                moves[key] = nxt
            state = nxt
            if accepting[state]:
                return True
        return False

    def _step(self, state: int, ch: str, value: str, pos: int) -> int:
        b = self._builder
        moved = [b.out1[node] for node in self._sets[state] if self._atom(node, ch)]
        moved.append(self._start)  # a match may start at any position
        return self._intern(self._closure(moved, value, pos))

    def _atom(self, node: int, ch: str) -> bool:
        if self._builder.kinds[node] != _CHAR:
            return False
        key = (node, ch)
        hit = self._atom_memo.get(key)
        if hit is None:
            atom = self._builder.atoms[node]
            assert atom is not None
            hit = atom.match(ch) is not None
            if len(self._atom_memo) < _MAX_CACHE:
                self._atom_memo[key] = hit
        return hit

    def _holds(self, node: int, value: str, pos: int) -> bool:
        n = len(value)
        # An anchor's answer depends only on the neighbouring characters and on whether
        # this is the last position but one ($ also matches before a final newline).
        key = (node, value[pos - 1] if pos else None, value[pos] if pos < n else None, pos + 1 == n)
        hit = self._assert_memo.get(key)
        if hit is None:
            atom = self._builder.atoms[node]
            assert atom is not None
            hit = atom.match(value, pos) is not None
            if len(self._assert_memo) < _MAX_CACHE:
                self._assert_memo[key] = hit
        return hit

    def _closure(self, nodes: Any, value: str, pos: int) -> frozenset[int]:
        b = self._builder
        kinds, out1, out2 = b.kinds, b.out1, b.out2
        seen: set[int] = set()
        kept: set[int] = set()
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            kind = kinds[node]
            if kind in (_CHAR, _MATCH):
                kept.add(node)
            elif kind == _SPLIT:
                stack.append(out1[node])
                stack.append(out2[node])
            elif kind == _EPS or self._holds(node, value, pos):  # else _ASSERT
                stack.append(out1[node])
        return frozenset(kept)

    def _intern(self, nodes: frozenset[int]) -> int:
        state = self._states.get(nodes)
        if state is None:
            state = len(self._sets)
            self._states[nodes] = state
            self._sets.append(nodes)
            self._accepting.append(self._match in nodes)
        return state


class _NfaBuilder:
    """Builds a Thompson NFA from the parse tree of ``re``, continuation first."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.kinds: list[int] = []
        self.out1: list[int] = []
        self.out2: list[int] = []
        self.atoms: list[re.Pattern[str] | None] = []

    def check(self, items: list[Any]) -> None:
        """Reject the constructs an automaton cannot express."""
        for op, arg in items:
            what = _UNSUPPORTED.get(op)
            if what is not None:
                raise ValueError(f"regex {self.pattern!r} uses {what}, which Re does not allow")
            if op in _REPEATS:
                self.check(list(arg[2]))
            elif op is _c.SUBPATTERN:
                self.check(list(arg[-1]))
            elif op is _c.BRANCH:
                for branch in arg[1]:
                    self.check(list(branch))

    def backtracks(self, items: list[Any]) -> bool:
        """True if ``items`` hold an alternation or a repeat (``re`` could backtrack)."""
        for op, arg in items:
            if op in _REPEATS or op is _c.BRANCH:
                return True
            if op is _c.SUBPATTERN and self.backtracks(list(arg[-1])):
                return True
        return False

    def node(self, kind: int, out1: int = -1, out2: int = -1, atom: Any = None) -> int:
        if len(self.kinds) >= MAX_NFA_STATES:
            raise ValueError(
                f"regex {self.pattern!r} is too large (over {MAX_NFA_STATES} automaton states)"
            )
        self.kinds.append(kind)
        self.out1.append(out1)
        self.out2.append(out2)
        self.atoms.append(atom)
        return len(self.kinds) - 1

    def build(self, items: list[Any], flags: int, nxt: int) -> int:
        """The start node of ``items`` followed by node ``nxt``."""
        for item in reversed(items):
            nxt = self._item(item, flags, nxt)
        return nxt

    def _item(self, item: tuple[Any, Any], flags: int, nxt: int) -> int:
        op, arg = item
        if op in _ATOMS:
            return self.node(_CHAR, nxt, atom=self._compile_atom(item, flags))
        if op is _c.AT:
            return self.node(_ASSERT, nxt, atom=self._compile_atom(item, flags))
        if op is _c.SUBPATTERN:
            _group, add_flags, del_flags, body = arg
            return self.build(list(body), (flags | add_flags) & ~del_flags, nxt)
        if op is _c.BRANCH:
            starts = [self.build(list(branch), flags, nxt) for branch in arg[1]]
            head = starts[-1]
            for start in reversed(starts[:-1]):
                head = self.node(_SPLIT, start, head)
            return head
        if op in _REPEATS:
            low, high, body = arg
            body = list(body)
            if high is _c.MAXREPEAT:
                loop = self.node(_SPLIT)
                self.out1[loop] = self.build(body, flags, loop)
                self.out2[loop] = nxt
                head = loop
            else:
                head = nxt
                for _ in range(high - low):
                    head = self.node(_SPLIT, self.build(body, flags, head), nxt)
            for _ in range(low):
                head = self.build(body, flags, head)
            return head
        raise ValueError(f"regex {self.pattern!r}: unsupported construct {op}")

    def _compile_atom(self, item: tuple[Any, Any], flags: int) -> re.Pattern[str]:
        """One character class or anchor, compiled by ``re`` with the flags in effect."""
        state = _parser.State()
        state.flags = flags
        atom: re.Pattern[str] = _compiler.compile(_parser.SubPattern(state, [item]), 0)
        return atom
