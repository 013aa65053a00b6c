"""SiriDB's regular expressions, matched in bounded time.

SiriDB compiles ``/body/`` (or ``/body/i``) with PCRE2 as ``^body$`` and searches a
series name, a group member candidate or a string value with it; PCRE2's match limit
makes a pathological pattern end (as "no match") instead of running for ever. Python's
``re`` has no such limit: ``/(.+)+X/`` over a few 30-character names would stall the
whole server. So a pattern is matched

- with ``re`` itself when its backtracking is bounded for that subject: at most one
  unbounded repetition, none nested, or a subject short enough for the number of
  repetitions it has;
- otherwise by a linear-time automaton (a Thompson NFA simulated with a cache of the
  transitions seen, i.e. a lazily built DFA), which gives the same answer without
  backtracking;
- and patterns the automaton cannot run (back-references, look-around) with ``re``
  under a time budget where the process allows one (the main thread), as no match
  when it runs out, like PCRE2's limit.

Syntax differences between PCRE2 and Python are translated, and compile errors are
reported with PCRE2's texts where they differ.
"""

from __future__ import annotations

import importlib
import re
import signal
import threading
from collections.abc import Callable
from typing import Any, Final

# The regex parser of the standard library (no stubs exist for these private modules).
try:  # Python 3.11+
    _c: Any = importlib.import_module("re._constants")
    _p: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - Python 3.10
    _c = importlib.import_module("sre_constants")
    _p = importlib.import_module("sre_parse")

__all__ = ["RegexError", "SiriRegex", "compile_siri_regex", "pcre_message", "to_python_regex"]

#: A subject may make at most about this many backtracking steps with plain ``re``.
BACKTRACK_BUDGET: Final = 200_000
#: Largest automaton built; larger patterns are matched with ``re`` under a budget.
MAX_NFA_STATES: Final = 20_000
#: Time budget for ``re`` where no automaton can be used (seconds, main thread only).
RE_TIME_BUDGET: Final = 0.5
#: Cached transitions per pattern before the cache is reset.
MAX_CACHE: Final = 50_000

_NAMED_GROUP: Final = re.compile(r"\(\?<(?![=!])")

#: Python ``re`` messages and PCRE2's wording for them.
_PCRE_MESSAGES: Final = (
    ("unterminated character set", "missing terminating ] for character class"),
    ("missing ), unterminated subpattern", "missing closing parenthesis"),
    ("missing ), unterminated name", "missing closing parenthesis"),
    ("unbalanced parenthesis", "unmatched closing parenthesis"),
    ("nothing to repeat", "quantifier does not follow a repeatable item"),
    ("multiple repeat", "quantifier does not follow a repeatable item"),
    ("bad escape (end of pattern)", "\\ at end of pattern"),
    ("min repeat greater than max repeat", "numbers out of order in {} quantifier"),
    ("the repetition number is too large", "number too big in {} quantifier"),
    ("bad character range", "range out of order in character class"),
    ("unknown extension", "unrecognized character after (? or (?-"),
    ("missing -, : or )", "unrecognized character after (? or (?-"),
    ("unknown flag", "unrecognized character after (? or (?-"),
    ("invalid group reference", "reference to non-existent subpattern"),
    ("unknown group name", "reference to non-existent subpattern"),
    ("missing group name", "subpattern name expected"),
)


class RegexError(Exception):
    """The pattern does not compile; ``str()`` is SiriDB's message."""


def to_python_regex(body: str) -> str:
    """A PCRE2 pattern body (as written between the slashes) in Python ``re`` syntax."""
    out = body.replace("\\/", "/")
    out = _NAMED_GROUP.sub("(?P<", out)
    return out.replace("\\z", "\\Z")


def pcre_message(python_message: str) -> str:
    """PCRE2's text for a Python ``re`` compile error (the Python text if unknown)."""
    for prefix, pcre in _PCRE_MESSAGES:
        if python_message.startswith(prefix):
            return pcre
    return python_message


def compile_siri_regex(body: str, ignore_case: bool) -> SiriRegex:
    """Compile ``/body/`` as SiriDB does (``^body$``); raises :class:`RegexError`."""
    return SiriRegex(body, ignore_case)


class SiriRegex:
    """A compiled SiriDB pattern; :meth:`matches` answers in bounded time."""

    __slots__ = ("_cache", "_nfa", "_repeats", "body", "ignore_case", "pattern")

    def __init__(self, body: str, ignore_case: bool) -> None:
        self.body = body
        self.ignore_case = ignore_case
        source = "^" + to_python_regex(body) + "$"
        flags = re.IGNORECASE if ignore_case else 0
        try:
            self.pattern = re.compile(source, flags)
        except re.error as exc:
            raise RegexError(
                f"Cannot compile regular expression '^{body}$': {pcre_message(exc.msg)}"
            ) from exc
        except (OverflowError, RecursionError) as exc:
            raise RegexError(
                f"Cannot compile regular expression '^{body}$': "
                "number too big in {} quantifier") from exc
        self._nfa: _Nfa | None = None
        self._cache: dict[Any, Any] = {}
        self._repeats = _Risk.of(source, flags)

    def matches(self, subject: str) -> bool:
        """Whether ``^body$`` matches in ``subject`` (PCRE2's search)."""
        risk = self._repeats
        if risk.safe_for(len(subject)):
            return self.pattern.search(subject) is not None
        if risk.automaton_ok:
            if self._nfa is None:
                self._nfa = _Nfa.build(self.pattern.pattern, self.pattern.flags)
            if self._nfa is not None:
                if len(self._cache) > MAX_CACHE:
                    self._cache.clear()
                return self._nfa.search(subject, self._cache)
        return _budgeted_search(self.pattern, subject)


# -- risk of backtracking -------------------------------------------------------------

class _Risk:
    """How much backtracking ``re`` may do on a pattern."""

    __slots__ = ("automaton_ok", "nested", "unbounded")

    def __init__(self, unbounded: int, nested: bool, automaton_ok: bool) -> None:
        self.unbounded = unbounded
        self.nested = nested
        self.automaton_ok = automaton_ok

    @classmethod
    def of(cls, source: str, flags: int) -> _Risk:
        try:
            tree = _p.parse(source, flags)
        except Exception:  # pragma: no cover - it compiled already
            return cls(99, True, False)
        counter = {"unbounded": 0, "nested": False, "unsupported": False}
        _walk_risk(list(tree), 0, counter)
        return cls(int(counter["unbounded"]), bool(counter["nested"]),
                   not counter["unsupported"])

    def safe_for(self, length: int) -> bool:
        if self.nested:
            return False
        if self.unbounded <= 1:
            return True
        return float(length + 1) ** self.unbounded <= BACKTRACK_BUDGET


_REPEATS: Final = {_c.MAX_REPEAT, _c.MIN_REPEAT}
_POSSESSIVE = getattr(_c, "POSSESSIVE_REPEAT", None)
_ATOMIC = getattr(_c, "ATOMIC_GROUP", None)


def _walk_risk(items: list[Any], depth: int, counter: dict[str, Any]) -> None:
    for op, av in items:
        if op in _REPEATS or (_POSSESSIVE is not None and op == _POSSESSIVE):
            _low, high, sub = av
            many = high == _c.MAXREPEAT or high > 1
            if high == _c.MAXREPEAT:
                counter["unbounded"] += 1
            if many and depth:
                counter["nested"] = True
            _walk_risk(list(sub), depth + (1 if many else 0), counter)
        elif op == _c.BRANCH:
            for branch in av[1]:
                _walk_risk(list(branch), depth, counter)
            if depth:
                counter["nested"] = True
        elif op == _c.SUBPATTERN:
            _walk_risk(list(av[-1]), depth, counter)
        elif _ATOMIC is not None and op == _ATOMIC:
            _walk_risk(list(av), depth, counter)
        elif op in (_c.GROUPREF, _c.GROUPREF_EXISTS, _c.ASSERT, _c.ASSERT_NOT):
            counter["unsupported"] = True
            if op in (_c.ASSERT, _c.ASSERT_NOT):
                _walk_risk(list(av[1]), depth, counter)
            if op == _c.GROUPREF_EXISTS:
                counter["nested"] = True


# -- the automaton -------------------------------------------------------------------------

_CHAR, _SPLIT, _ASSERT, _MATCH = range(4)
_WORD = re.compile(r"\w")


def _is_word(ch: str) -> bool:
    return bool(ch) and _WORD.match(ch) is not None


class _Nfa:
    """A Thompson automaton of a parsed pattern (``kind``, payload, ``out1``, ``out2``)."""

    __slots__ = ("kinds", "outs", "payloads", "start")

    def __init__(self) -> None:
        self.kinds: list[int] = []
        self.payloads: list[Any] = []
        self.outs: list[list[int]] = []
        self.start = -1

    @classmethod
    def build(cls, source: str, flags: int) -> _Nfa | None:
        nfa = cls()
        try:
            tree = _p.parse(source, flags)
            accept = nfa._add(_MATCH, None)
            flags = tree.state.flags if hasattr(tree, "state") else flags
            nfa.start = nfa._seq(list(tree), accept, flags)
        except _TooBig:
            return None
        return nfa

    def _add(self, kind: int, payload: Any, *outs: int) -> int:
        if len(self.kinds) >= MAX_NFA_STATES:
            raise _TooBig
        self.kinds.append(kind)
        self.payloads.append(payload)
        self.outs.append(list(outs))
        return len(self.kinds) - 1

    def _seq(self, items: list[Any], nxt: int, flags: int) -> int:
        for op, av in reversed(items):
            nxt = self._item(op, av, nxt, flags)
        return nxt

    def _item(self, op: Any, av: Any, nxt: int, flags: int) -> int:
        fold = bool(flags & re.IGNORECASE)
        if op == _c.LITERAL:
            return self._add(_CHAR, _lit(chr(av), fold), nxt)
        if op == _c.NOT_LITERAL:
            test = _lit(chr(av), fold)
            return self._add(_CHAR, lambda ch: not test(ch), nxt)
        if op == _c.ANY:
            dotall = bool(flags & re.DOTALL)
            return self._add(_CHAR, (lambda ch: True) if dotall else (lambda ch: ch != "\n"), nxt)
        if op == _c.IN:
            return self._add(_CHAR, _char_set(av, fold), nxt)
        if op == _c.CATEGORY:
            return self._add(_CHAR, _char_set([(op, av)], fold), nxt)
        if op == _c.BRANCH:
            starts = [self._seq(list(b), nxt, flags) for b in av[1]]
            head = starts[-1]
            for start in reversed(starts[:-1]):
                head = self._add(_SPLIT, None, start, head)
            return head
        if op == _c.SUBPATTERN:
            add, remove = av[1], av[2]
            return self._seq(list(av[-1]), nxt, (flags | add) & ~remove)
        if _ATOMIC is not None and op == _ATOMIC:
            return self._seq(list(av), nxt, flags)
        if op in _REPEATS or (_POSSESSIVE is not None and op == _POSSESSIVE):
            return self._repeat(av, nxt, flags)
        if op == _c.AT:
            return self._add(_ASSERT, (av, bool(flags & re.MULTILINE)), nxt)
        raise _TooBig  # back-references and look-around: not for an automaton

    def _repeat(self, av: Any, nxt: int, flags: int) -> int:
        low, high, sub = av
        items = list(sub)
        if high == _c.MAXREPEAT:
            loop = self._add(_SPLIT, None, -1, nxt)
            self.outs[loop][0] = self._seq(items, loop, flags)
            head = loop
        else:
            head = nxt
            for _ in range(high - low):  # optional copies: take one or stop here
                head = self._add(_SPLIT, None, self._seq(items, head, flags), nxt)
        for _ in range(low):
            head = self._seq(items, head, flags)
        return head

    # -- simulation -----------------------------------------------------------------
    def _closure(
        self, states: Any, text: str, pos: int, out: set[int]
    ) -> None:
        kinds, outs, payloads = self.kinds, self.outs, self.payloads
        stack = list(states)
        while stack:
            s = stack.pop()
            if s in out:
                continue
            out.add(s)
            kind = kinds[s]
            if kind == _SPLIT or (kind == _ASSERT and _assert_holds(payloads[s], text, pos)):
                stack.extend(outs[s])

    def search(self, text: str, cache: dict[Any, Any]) -> bool:
        """Whether the pattern matches anywhere in ``text`` (linear time)."""
        n = len(text)
        current: frozenset[int] = frozenset()
        match_state = 0
        for pos in range(n + 1):
            ctx = _context(text, pos)
            key = (current, ctx)
            closed = cache.get(key)
            if closed is None:
                seeds = set(current)
                seeds.add(self.start)  # a search may start at every position
                out: set[int] = set()
                self._closure(seeds, text, pos, out)
                closed = frozenset(out)
                cache[key] = closed
            if match_state in closed:
                return True
            if pos == n:
                break
            ch = text[pos]
            tkey = (closed, ch)
            step = cache.get(tkey)
            if step is None:
                kinds, payloads, outs = self.kinds, self.payloads, self.outs
                step = frozenset(
                    outs[s][0] for s in closed if kinds[s] == _CHAR and payloads[s](ch))
                cache[tkey] = step
            current = step
        return False


class _TooBig(Exception):
    pass


def _lit(char: str, fold: bool) -> Callable[[str], bool]:
    if not fold:
        return lambda ch: ch == char
    low, up = char.lower(), char.upper()
    return lambda ch: ch == char or ch.lower() == low or ch.upper() == up


def _char_set(items: Any, fold: bool) -> Callable[[str], bool]:
    """A character test for an ``IN`` set (ranges, literals, categories, negation)."""
    parts = list(items)
    negate = bool(parts) and parts[0][0] == _c.NEGATE
    if negate:
        parts = parts[1:]
    source = _p_set_source(parts)
    if source is None:  # pragma: no cover - unknown item in a set
        raise _TooBig
    compiled = re.compile(("[^" if negate else "[") + source + "]", re.IGNORECASE if fold else 0)
    return lambda ch: compiled.match(ch) is not None


_CATEGORY_SOURCE: Final = {
    _c.CATEGORY_DIGIT: r"\d", _c.CATEGORY_NOT_DIGIT: r"\D",
    _c.CATEGORY_SPACE: r"\s", _c.CATEGORY_NOT_SPACE: r"\S",
    _c.CATEGORY_WORD: r"\w", _c.CATEGORY_NOT_WORD: r"\W",
}


def _p_set_source(parts: list[Any]) -> str | None:
    out = []
    for op, av in parts:
        if op == _c.LITERAL:
            out.append(re.escape(chr(av)))
        elif op == _c.RANGE:
            out.append(f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}")
        elif op == _c.CATEGORY and av in _CATEGORY_SOURCE:
            out.append(_CATEGORY_SOURCE[av])
        else:
            return None
    return "".join(out)


def _context(text: str, pos: int) -> tuple[bool, bool, bool, bool, bool, bool]:
    """What zero-width assertions at ``pos`` depend on."""
    n = len(text)
    prev = text[pos - 1] if pos else ""
    nxt = text[pos] if pos < n else ""
    return (
        pos == 0,
        pos == n,
        pos == n - 1 and nxt == "\n",
        prev == "\n",
        nxt == "\n",
        _is_word(prev) != _is_word(nxt),
    )


def _assert_holds(payload: tuple[Any, bool], text: str, pos: int) -> bool:
    at, multiline = payload
    start, end, before_final_nl, after_nl, before_nl, boundary = _context(text, pos)
    if at == _c.AT_BEGINNING:
        return start or (multiline and after_nl)
    if at == _c.AT_BEGINNING_STRING:
        return start
    if at == _c.AT_END:
        return end or before_final_nl or (multiline and before_nl)
    if at == _c.AT_END_STRING:
        return end
    if at == _c.AT_BOUNDARY:
        return boundary
    if at == _c.AT_NON_BOUNDARY:
        return not boundary
    return False  # pragma: no cover - other assertions do not occur in patterns


# -- ``re`` with a time budget -------------------------------------------------------------

class _OutOfBudget(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _OutOfBudget


def _budgeted_search(pattern: re.Pattern[str], subject: str) -> bool:
    """``pattern.search`` stopped after :data:`RE_TIME_BUDGET` (then: no match), where
    a timer signal can interrupt it (the main thread); else unbounded."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "setitimer"):
        return pattern.search(subject) is not None
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, RE_TIME_BUDGET)
        try:
            return pattern.search(subject) is not None
        except _OutOfBudget:
            return False
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
