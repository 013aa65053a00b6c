"""SiriDB's regular expressions, matched in bounded time.

SiriDB compiles ``/body/`` (or ``/body/i``) with PCRE2 as ``^body$`` and searches a
series name, a group member candidate or a string value with it; PCRE2's match limit
makes a pathological pattern end (as "no match") instead of running for ever. Python's
``re`` has no such limit: ``/(.+)+X/`` over a few 30-character names would stall the
whole server. So a pattern is matched

- with ``re`` itself when its backtracking is bounded for that subject: at most one
  unbounded repetition, none nested, or a subject short enough for the number of
  repetitions it has;
- otherwise by the linear-time automaton of :mod:`tsconnector.linregex` (a Thompson NFA
  searched as a lazily built DFA), which gives the same answer without backtracking;
- and patterns the automaton cannot run (back-references, look-around) with ``re``
  under a time budget where the process allows one (the main thread), as no match
  when it runs out, like PCRE2's limit.

Syntax differences between PCRE2 and Python are translated, and compile errors are
reported with PCRE2's texts where they differ.
"""

from __future__ import annotations

import re
import signal
import threading
from typing import Any, Final

from ..linregex import (
    ATOMIC_GROUP,
    POSSESSIVE_REPEAT,
    REPEATS,
    AnchorTest,
    CharTest,
    DfaState,
    Nfa,
    NfaError,
    Unsupported,
    parse,
)
from ..linregex import constants as _c

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
        self._cache: dict[Any, DfaState] = {}
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
            items, _flags = parse(source, flags)
        except Exception:  # pragma: no cover - it compiled already
            return cls(99, True, False)
        counter = {"unbounded": 0, "nested": False, "unsupported": False}
        _walk_risk(items, 0, counter)
        return cls(int(counter["unbounded"]), bool(counter["nested"]),
                   not counter["unsupported"])

    def safe_for(self, length: int) -> bool:
        if self.nested:
            return False
        if self.unbounded <= 1:
            return True
        return float(length + 1) ** self.unbounded <= BACKTRACK_BUDGET


def _walk_risk(items: list[Any], depth: int, counter: dict[str, Any]) -> None:
    for op, av in items:
        if op in REPEATS or (POSSESSIVE_REPEAT is not None and op == POSSESSIVE_REPEAT):
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
        elif ATOMIC_GROUP is not None and op == ATOMIC_GROUP:
            _walk_risk(list(av), depth, counter)
        elif op in (_c.GROUPREF, _c.GROUPREF_EXISTS, _c.ASSERT, _c.ASSERT_NOT):
            counter["unsupported"] = True
            if op in (_c.ASSERT, _c.ASSERT_NOT):
                _walk_risk(list(av[1]), depth, counter)
            if op == _c.GROUPREF_EXISTS:
                counter["nested"] = True


# -- the automaton -------------------------------------------------------------------------

class _Nfa(Nfa):
    """The server's automaton: its own atom tests, atomic groups built as plain ones."""

    __slots__ = ()

    @classmethod
    def build(cls, source: str, flags: int) -> _Nfa | None:
        """The automaton of ``source``; ``None`` where there is none (too large,
        back-references, look-around)."""
        items, flags = parse(source, flags)
        try:
            return cls(items, flags, max_states=MAX_NFA_STATES, atoms=_SIRI_ATOMS,
                       atomic_as_plain=True)
        except NfaError:
            return None


class _SiriAtoms:
    """The atom tests this automaton has always used (not :class:`~tsconnector.linregex.ReAtoms`).

    They differ from ``re`` in corners: classes and ``\\b`` stay Unicode under ``(?a)``,
    literals fold with ``str.lower``/``str.upper`` (``re`` also pairs İ with i/I/ı and
    ϑ with ϴ), and ``\\B`` holds in an empty subject.
    """

    def char(self, op: Any, av: Any, flags: int) -> CharTest:
        """A hand-built test of a one-character item."""
        fold = bool(flags & re.IGNORECASE)
        if op == _c.LITERAL:
            return _lit(chr(av), fold)
        if op == _c.NOT_LITERAL:
            test = _lit(chr(av), fold)
            return lambda ch: not test(ch)
        if op == _c.ANY:
            return (lambda ch: True) if flags & re.DOTALL else (lambda ch: ch != "\n")
        if op == _c.IN:
            return _char_set(av, fold)
        return _char_set([(op, av)], fold)  # CATEGORY

    def anchor(self, av: Any, flags: int) -> AnchorTest:
        """A hand-built test of ``^``, ``$``, ``\\A``, ``\\Z``, ``\\b`` or ``\\B``."""
        multiline = bool(flags & re.MULTILINE)
        return lambda text, pos: _assert_holds(av, multiline, text, pos)


_SIRI_ATOMS: Final = _SiriAtoms()
_WORD = re.compile(r"\w")


def _is_word(ch: str) -> bool:
    return bool(ch) and _WORD.match(ch) is not None


def _lit(char: str, fold: bool) -> CharTest:
    if not fold:
        return lambda ch: ch == char
    low, up = char.lower(), char.upper()
    return lambda ch: ch == char or ch.lower() == low or ch.upper() == up


def _char_set(items: Any, fold: bool) -> CharTest:
    """A character test for an ``IN`` set (ranges, literals, categories, negation)."""
    parts = list(items)
    negate = bool(parts) and parts[0][0] == _c.NEGATE
    if negate:
        parts = parts[1:]
    source = _p_set_source(parts)
    if source is None:  # pragma: no cover - unknown item in a set
        raise Unsupported(_c.IN)
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


def _assert_holds(at: Any, multiline: bool, text: str, pos: int) -> bool:
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
