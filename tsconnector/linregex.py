"""Linear-time regular-expression search: ``re``'s parser, a Thompson NFA, a lazy DFA.

Python's ``re`` backtracks without limit, so a pattern such as ``(a+)+$`` can take
exponential time. Here a pattern is parsed by the standard library's own parser (so
the syntax is exactly ``re``'s), compiled to a Thompson NFA, and searched by simulating
that NFA with a cache of the transitions already seen (a lazily built DFA): at most one
NFA step per character of the subject, whatever the pattern.

This module is the shared bottom layer: it imports nothing from tsconnector. What to
accept, the limits, and when plain ``re`` is cheaper are the callers' policy
(:mod:`tsconnector.catalog.regex`, :mod:`tsconnector.server.regex`).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

# The parser and compiler of ``re`` (renamed in Python 3.11; no public equivalent and
# no type stubs, hence ``Any``).
_NEW: Final = sys.version_info >= (3, 11)
constants: Any = importlib.import_module("re._constants" if _NEW else "sre_constants")
_parser: Any = importlib.import_module("re._parser" if _NEW else "sre_parse")
_compiler: Any = importlib.import_module("re._compiler" if _NEW else "sre_compile")

_c = constants

__all__ = [
    "ATOMIC_GROUP",
    "POSSESSIVE_REPEAT",
    "REPEATS",
    "AnchorTest",
    "AtomTests",
    "CharTest",
    "DfaState",
    "Nfa",
    "NfaError",
    "ReAtoms",
    "TooLarge",
    "Unsupported",
    "constants",
    "parse",
]

#: The greedy and lazy repeat opcodes of the parse tree.
REPEATS: Final = frozenset({_c.MAX_REPEAT, _c.MIN_REPEAT})
#: ``a*+`` and ``(?>...)`` opcodes (Python 3.11+), else ``None``.
POSSESSIVE_REPEAT: Final[Any] = getattr(_c, "POSSESSIVE_REPEAT", None)
ATOMIC_GROUP: Final[Any] = getattr(_c, "ATOMIC_GROUP", None)

#: Opcodes of the parse tree that consume one character.
_CHAR_OPS: Final = frozenset({_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN, _c.CATEGORY})
#: Default bound of each memo of atom answers kept by an :class:`Nfa`.
MEMO_LIMIT: Final = 20_000

_CHAR, _SPLIT, _ASSERT, _MATCH = range(4)
#: ``(?a)``, ``(?L)``, ``(?u)``: at most one is in effect.
_TYPE_FLAGS: Final = re.ASCII | re.LOCALE | re.UNICODE

#: Whether a character is accepted by one NFA atom.
CharTest = Callable[[str], bool]
#: Whether a zero-width assertion holds in ``text`` at ``pos``.
AnchorTest = Callable[[str, int], bool]


def parse(pattern: str, flags: int = 0) -> tuple[list[Any], int]:
    """The parse tree of ``pattern`` (top-level items) and its global flags; ``re.error``
    if it does not parse."""
    tree = _parser.parse(pattern, flags)
    return list(tree), int(tree.state.flags)


class NfaError(Exception):
    """The pattern cannot become an automaton (callers map this to their own errors)."""


class Unsupported(NfaError):
    """A construct no automaton can express (back-references, look-around, ...)."""

    def __init__(self, op: Any) -> None:
        super().__init__(f"unsupported construct {op}")
        self.op = op


class TooLarge(NfaError):
    """The automaton would exceed its state limit (bounded repeats are expanded)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} automaton states")
        self.limit = limit


class AtomTests(Protocol):
    """How an NFA tests its atoms; a parameter so a caller may keep its own semantics."""

    def char(self, op: Any, av: Any, flags: int) -> CharTest:
        """The test of a one-character item; :class:`Unsupported` if there is none."""
        ...

    def anchor(self, av: Any, flags: int) -> AnchorTest:
        """The test of an ``AT`` item (``^``, ``$``, ``\\b``, ...)."""
        ...


def _compile_atom(item: tuple[Any, Any], flags: int) -> re.Pattern[str]:
    """One parse-tree item compiled by ``re`` alone, with the flags in effect there."""
    state = _parser.State()
    state.flags = flags
    atom: re.Pattern[str] = _compiler.compile(_parser.SubPattern(state, [item]), 0)
    return atom


class ReAtoms:
    """Every atom compiled by ``re`` itself with its flags: the answers are exactly
    those of ``re.search`` (case folding, ``(?a)``, ``\\b``, ``$`` before a final newline)."""

    def char(self, op: Any, av: Any, flags: int) -> CharTest:
        """A compiled one-character item as a test."""
        atom = _compile_atom((op, av), flags)
        return lambda ch: atom.match(ch) is not None

    def anchor(self, av: Any, flags: int) -> AnchorTest:
        """A compiled zero-width assertion as a test at a position."""
        atom = _compile_atom((_c.AT, av), flags)
        return lambda text, pos: atom.match(text, pos) is not None


RE_ATOMS: Final = ReAtoms()


class DfaState:
    """A state of the lazy DFA: a set of NFA states, and whether it accepts.

    Hashed by identity (fast transition keys); :meth:`Nfa.search` interns equal sets.
    """

    __slots__ = ("accepting", "nodes")

    def __init__(self, nodes: frozenset[int], accepting: bool) -> None:
        self.nodes = nodes
        self.accepting = accepting


class Nfa:
    """A Thompson NFA of a parsed pattern, searched in linear time by :meth:`search`.

    The graph is fixed once built and every cache (the memos of atom answers here, the
    DFA in the caller's ``cache``) is used only through single ``dict`` get/set calls
    with immutable values, so concurrent searches, even sharing a cache, stay correct.
    """

    __slots__ = (
        "_anchor_memo", "_char_memo", "_memo_limit", "anchored", "kinds", "match",
        "out1", "out2", "start", "tests",
    )

    def __init__(
        self,
        items: Iterable[Any],
        flags: int,
        *,
        max_states: int,
        atoms: AtomTests = RE_ATOMS,
        atomic_as_plain: bool = False,
        memo_limit: int = MEMO_LIMIT,
    ) -> None:
        """Build the NFA of parse-tree ``items`` under global ``flags``.

        ``atomic_as_plain`` builds atomic groups and possessive repeats as plain ones
        (an approximation: ``re`` never backtracks into them); otherwise they raise
        :class:`Unsupported`. More than ``max_states`` states raise :class:`TooLarge`.
        """
        self.kinds: list[int] = []
        self.out1: list[int] = []
        self.out2: list[int] = []
        self.tests: list[Any] = []
        self._memo_limit = memo_limit
        self._char_memo: dict[tuple[int, str], bool] = {}
        self._anchor_memo: dict[tuple[Any, ...], bool] = {}
        builder = _Builder(self, max_states, atoms, atomic_as_plain)
        self.match = builder.node(_MATCH)
        self.start = builder.seq(list(items), flags, self.match)
        self.anchored = _ASSERT in self.kinds

    # -- simulation ---------------------------------------------------------------------
    def search(self, text: str, cache: dict[Any, DfaState]) -> bool:
        """Whether the pattern matches anywhere in ``text`` (as ``re.search``), in time
        linear in ``len(text)``.

        ``cache`` holds the DFA built so far (the caller bounds it, e.g. by clearing it):
        transitions keyed by (state, character[, the next character, last position]),
        since assertions depend on nothing else, and the states keyed by their NFA sets.
        """
        n = len(text)
        anchored = self.anchored
        key0: tuple[Any, ...] = (None, text[0] if n else None, n == 1) if anchored else (None,)
        state = cache.get(key0)
        if state is None:
            state = cache[key0] = self._intern(self._closure((self.start,), text, 0), cache)
        if state.accepting:
            return True
        for i, ch in enumerate(text):
            key: tuple[Any, ...]
            if anchored:
                key = (state, ch, text[i + 1] if i + 1 < n else None, i + 2 == n)
            else:
                key = (state, ch)
            nxt = cache.get(key)
            if nxt is None:
                nxt = cache[key] = self._intern(self._step(state, ch, text, i + 1), cache)
            state = nxt
            if state.accepting:
                return True
        return False

    def _intern(self, nodes: frozenset[int], cache: dict[Any, DfaState]) -> DfaState:
        """The one DFA state of ``nodes`` in ``cache`` (a new one if there is none)."""
        state = cache.get(nodes)
        if state is None:
            state = cache.setdefault(nodes, DfaState(nodes, self.match in nodes))
        return state

    def _step(self, state: DfaState, ch: str, text: str, pos: int) -> frozenset[int]:
        out1 = self.out1
        moved = [out1[node] for node in state.nodes if self._accepts(node, ch)]
        moved.append(self.start)  # a match may start at any position
        return self._closure(moved, text, pos)

    def _accepts(self, node: int, ch: str) -> bool:
        if self.kinds[node] != _CHAR:
            return False
        key = (node, ch)
        hit = self._char_memo.get(key)
        if hit is None:
            hit = bool(self.tests[node](ch))
            if len(self._char_memo) < self._memo_limit:
                self._char_memo[key] = hit
        return hit

    def _holds(self, node: int, text: str, pos: int) -> bool:
        n = len(text)
        # An assertion depends only on the neighbouring characters and on whether this
        # is the last position but one ($ also matches before a final newline).
        key = (node, text[pos - 1] if pos else None, text[pos] if pos < n else None,
               pos + 1 == n)
        hit = self._anchor_memo.get(key)
        if hit is None:
            hit = bool(self.tests[node](text, pos))
            if len(self._anchor_memo) < self._memo_limit:
                self._anchor_memo[key] = hit
        return hit

    def _closure(self, nodes: Iterable[int], text: str, pos: int) -> frozenset[int]:
        """The character and accepting states reachable from ``nodes`` at ``pos``."""
        kinds, out1, out2 = self.kinds, self.out1, self.out2
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
            elif self._holds(node, text, pos):  # _ASSERT
                stack.append(out1[node])
        return frozenset(kept)


def _scoped_flags(flags: int, add: int, remove: int) -> int:
    """The flags inside ``(?add-remove:...)``, combined as ``re`` does: a type flag
    given there replaces the one in effect (``(?a:\\w)`` is ASCII in a str pattern)."""
    if add & _TYPE_FLAGS:
        flags &= ~_TYPE_FLAGS
    return (flags | add) & ~remove


class _Builder:
    """Adds the states of a parse tree to an :class:`Nfa`, continuation first."""

    __slots__ = ("atomic_as_plain", "atoms", "max_states", "nfa")

    def __init__(self, nfa: Nfa, max_states: int, atoms: AtomTests, atomic_as_plain: bool
                 ) -> None:
        self.nfa = nfa
        self.max_states = max_states
        self.atoms = atoms
        self.atomic_as_plain = atomic_as_plain

    def node(self, kind: int, out1: int = -1, out2: int = -1, test: Any = None) -> int:
        nfa = self.nfa
        if len(nfa.kinds) >= self.max_states:
            raise TooLarge(self.max_states)
        nfa.kinds.append(kind)
        nfa.out1.append(out1)
        nfa.out2.append(out2)
        nfa.tests.append(test)
        return len(nfa.kinds) - 1

    def seq(self, items: list[Any], flags: int, nxt: int) -> int:
        """The start state of ``items`` followed by state ``nxt``."""
        for op, av in reversed(items):
            nxt = self.item(op, av, flags, nxt)
        return nxt

    def item(self, op: Any, av: Any, flags: int, nxt: int) -> int:
        if op in _CHAR_OPS:
            return self.node(_CHAR, nxt, test=self.atoms.char(op, av, flags))
        if op == _c.AT:
            return self.node(_ASSERT, nxt, test=self.atoms.anchor(av, flags))
        if op == _c.SUBPATTERN:
            _group, add_flags, del_flags, body = av
            return self.seq(list(body), _scoped_flags(flags, add_flags, del_flags), nxt)
        if op == _c.BRANCH:
            starts = [self.seq(list(branch), flags, nxt) for branch in av[1]]
            head = starts[-1]
            for start in reversed(starts[:-1]):
                head = self.node(_SPLIT, start, head)
            return head
        if op in REPEATS:
            return self.repeat(av, flags, nxt)
        if self.atomic_as_plain:  # (on Python 3.10 both opcodes are None)
            if op == POSSESSIVE_REPEAT:
                return self.repeat(av, flags, nxt)
            if op == ATOMIC_GROUP:
                return self.seq(list(av), flags, nxt)
        raise Unsupported(op)

    def repeat(self, av: Any, flags: int, nxt: int) -> int:
        low, high, body = av
        items = list(body)
        if high == _c.MAXREPEAT:
            loop = self.node(_SPLIT)
            self.nfa.out1[loop] = self.seq(items, flags, loop)
            self.nfa.out2[loop] = nxt
            head = loop
        else:
            head = nxt
            for _ in range(high - low):  # optional copies: take one or stop here
                head = self.node(_SPLIT, self.seq(items, flags, head), nxt)
        for _ in range(low):
            head = self.seq(items, flags, head)
        return head
