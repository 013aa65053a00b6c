"""A small parser engine that behaves like libcleri, the C library SiriDB parses with.

Which queries SiriDB accepts, the parse tree its listener walks and, above all, the
``Expecting ...`` list of a syntax error follow from details of libcleri's algorithm:
expecting modes kept per parent position, lists that fail when they end on a delimiter,
``Prio`` rules memoised per position with a nesting limit of 500, keywords that must be
the whole word matched by the grammar's keyword pattern. This module implements those
rules (its own code, written from the behaviour of libcleri 1.0) so that the grammar in
:mod:`.grammar` parses exactly as the real server does.

Positions are character offsets in the query; :func:`byte_offset` turns one into the
byte offset SiriDB reports.
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Iterator
from typing import Final

__all__ = [
    "EMPTY",
    "END_OF_STATEMENT",
    "THIS",
    "Choice",
    "DepthExceeded",
    "Element",
    "Keyword",
    "List",
    "Node",
    "Optional",
    "ParseResult",
    "Prio",
    "Ref",
    "Regex",
    "Repeat",
    "Sequence",
    "Token",
    "Tokens",
    "byte_offset",
    "dup",
    "parse",
]

#: The characters C's ``isspace`` accepts (libcleri skips these between elements).
WHITESPACE: Final = frozenset(" \t\n\v\f\r")
#: libcleri refuses a ``Prio`` nested deeper than this inside one rule.
MAX_PRIO_DEPTH: Final = 500

_REQUIRED: Final = True
_OPTIONAL: Final = False


class DepthExceeded(Exception):
    """A ``Prio`` rule nested deeper than libcleri allows (the parse has no result)."""


class Node:
    """One matched element: ``text[start:end]``, its children and evaluated ``data``."""

    __slots__ = ("children", "data", "element", "end", "start", "text")

    def __init__(self, element: Element | None, text: str, start: int) -> None:
        self.element = element
        self.text = text
        self.start = start
        self.end = start
        self.children: list[Node] = []
        self.data: object = None

    @property
    def string(self) -> str:
        """The matched text."""
        return self.text[self.start : self.end]

    @property
    def length(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        name = getattr(self.element, "name", None) or type(self.element).__name__
        return f"<Node {name} {self.string!r}>"


class _Empty(Node):
    """What an optional element that matched nothing returns (not added to the tree)."""


EMPTY: Final = _Empty(None, "", 0)


class _RuleStore:
    """The state of one rule while it parses: nesting depth and results per position."""

    __slots__ = ("depth", "root", "tested")

    def __init__(self, root: Element) -> None:
        self.root = root
        self.depth = 0
        self.tested: dict[int, list[Node | None]] = {}


class Element:
    """Base of the grammar elements; ``name`` is the grammar's name for it (or None)."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name: str | None = None

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        raise NotImplementedError

    def _add(self, parent: Node, node: Node) -> Node:
        parent.end = node.end
        parent.children.append(node)
        return node


class _EndOfStatement(Element):
    """Marks 'end of the query' in an expecting list."""

    __slots__ = ()


END_OF_STATEMENT: Final = _EndOfStatement()


class Keyword(Element):
    """A word that must equal the whole word the grammar's keyword pattern matches."""

    __slots__ = ("word",)

    def __init__(self, word: str) -> None:
        super().__init__()
        self.word = word

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        pos = parent.end
        word = self.word
        if p.text.startswith(word, pos) and p.keyword_length(pos) == len(word):
            node = Node(self, p.text, pos)
            node.end = pos + len(word)
            return self._add(parent, node)
        p.expect(self, pos)
        return None


class Token(Element):
    """A fixed string (no word boundary needed)."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        pos = parent.end
        if p.text.startswith(self.token, pos):
            node = Node(self, p.text, pos)
            node.end = pos + len(self.token)
            return self._add(parent, node)
        p.expect(self, pos)
        return None


class Tokens(Element):
    """One of several strings; longer ones are tried first (ties keep their order)."""

    __slots__ = ("spaced", "tokens")

    def __init__(self, tokens: str) -> None:
        super().__init__()
        ordered: list[str] = []
        for token in tokens.split():
            at = 0
            while at < len(ordered) and len(token) <= len(ordered[at]):
                at += 1
            ordered.insert(at, token)
        self.tokens = tuple(ordered)
        self.spaced = " ".join(ordered)

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        pos = parent.end
        for token in self.tokens:
            if p.text.startswith(token, pos):
                node = Node(self, p.text, pos)
                node.end = pos + len(token)
                return self._add(parent, node)
        p.expect(self, pos)
        return None


class Regex(Element):
    """A regular expression anchored at the current position."""

    __slots__ = ("pattern",)

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        pos = parent.end
        match = self.pattern.match(p.text, pos)
        if match is None:
            p.expect(self, pos)
            return None
        node = Node(self, p.text, pos)
        node.end = match.end()
        return self._add(parent, node)


class Sequence(Element):
    """All elements in order."""

    __slots__ = ("elements",)

    def __init__(self, *elements: Element | str) -> None:
        super().__init__()
        self.elements = tuple(_element(e) for e in elements)

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        node = Node(self, p.text, parent.end)
        walk = p.walk
        for element in self.elements:
            if walk(node, element, rule, _REQUIRED) is None:
                return None
        return self._add(parent, node)


class Choice(Element):
    """The first alternative that matches, or the longest one (``most_greedy``)."""

    __slots__ = ("elements", "most_greedy")

    def __init__(self, *elements: Element | str, most_greedy: bool = False) -> None:
        super().__init__()
        self.elements = tuple(_element(e) for e in elements)
        self.most_greedy = most_greedy

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        if self.most_greedy:
            start = parent.end
            best: Node | None = None
            for element in self.elements:
                node = Node(self, p.text, start)
                found = p.walk(node, element, rule, _REQUIRED)
                if found is not None and (best is None or node.length > best.length):
                    best = node
            return None if best is None else self._add(parent, best)
        node = Node(self, p.text, parent.end)
        for element in self.elements:
            if p.walk(node, element, rule, _REQUIRED) is not None:
                return self._add(parent, node)
        return None


class Optional(Element):
    """The element or nothing (an empty match does not fail its parent)."""

    __slots__ = ("element",)

    def __init__(self, element: Element | str) -> None:
        super().__init__()
        self.element = _element(element)

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        node = Node(self, p.text, parent.end)
        if p.walk(node, self.element, rule, _OPTIONAL) is not None:
            return self._add(parent, node)
        return EMPTY


class List(Element):
    """Elements separated by a delimiter; ``maximum`` 0 is unlimited.

    As in libcleri, a list that ends on a delimiter fails as a whole (unless
    ``opt_closing``), and elements are required only until ``minimum`` is reached.
    """

    __slots__ = ("delimiter", "element", "maximum", "minimum", "opt_closing")

    def __init__(
        self,
        element: Element | str,
        delimiter: Element | str = ",",
        minimum: int = 0,
        maximum: int = 0,
        opt_closing: bool = False,
    ) -> None:
        super().__init__()
        self.element = _element(element)
        self.delimiter = _element(delimiter)
        self.minimum = minimum
        self.maximum = maximum
        self.opt_closing = opt_closing

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        node = Node(self, p.text, parent.end)
        i = j = 0
        while True:
            if p.walk(node, self.element, rule, i < self.minimum) is None:
                break
            i += 1
            if i == self.maximum and not self.opt_closing:
                break
            if p.walk(node, self.delimiter, rule, i < self.minimum) is None:
                break
            j += 1
            if j == self.maximum:
                break
        if i < self.minimum or (not self.opt_closing and i and i == j):
            return None
        return self._add(parent, node)


class Repeat(Element):
    """The element ``minimum`` to ``maximum`` times (0 is unlimited)."""

    __slots__ = ("element", "maximum", "minimum")

    def __init__(self, element: Element | str, minimum: int = 0, maximum: int = 0) -> None:
        super().__init__()
        self.element = _element(element)
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        node = Node(self, p.text, parent.end)
        i = 0
        while not self.maximum or i < self.maximum:
            if p.walk(node, self.element, rule, i < self.minimum) is None:
                break
            i += 1
        if i < self.minimum:
            return None
        return self._add(parent, node)


class _This(Element):
    """The enclosing rule again, at the current position (results are memoised)."""

    __slots__ = ()

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        assert rule is not None, "THIS outside a Prio"
        pos = parent.end
        entry = rule.tested.get(pos)
        if entry is None:
            entry = rule.tested[pos] = [None]
            node = Node(self, p.text, pos)
            found = p.walk(node, rule.root, rule, _REQUIRED)
            entry[0] = found
            if found is None:
                return None
            return self._add(parent, node)
        tested = entry[0]
        if tested is None:
            return None
        return self._add(parent, tested)


THIS: Final = _This()


class _Prio(Element):
    """Alternatives of a rule where ``THIS`` may recur; the longest match wins."""

    __slots__ = ("elements",)

    def __init__(self, *elements: Element | str) -> None:
        super().__init__()
        self.elements = tuple(_element(e) for e in elements)

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        assert rule is not None
        pos = parent.end
        if rule.depth > MAX_PRIO_DEPTH:
            raise DepthExceeded
        rule.depth += 1
        entry = rule.tested.get(pos)
        if entry is None:
            entry = rule.tested[pos] = [None]
        for element in self.elements:
            node = Node(self, p.text, pos)
            if p.walk(node, element, rule, _REQUIRED) is not None:
                best = entry[0]
                if best is None or node.length > best.length:
                    entry[0] = node
        rule.depth -= 1
        tested = entry[0]
        if tested is None:
            return None
        return self._add(parent, tested)


class _Rule(Element):
    """Wraps a ``Prio``: a fresh memo and depth counter for each use."""

    __slots__ = ("element",)

    def __init__(self, element: Element) -> None:
        super().__init__()
        self.element = element

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        node = Node(self, p.text, parent.end)
        if p.walk(node, self.element, _RuleStore(self.element), _REQUIRED) is None:
            return None
        return self._add(parent, node)


def Prio(*elements: Element | str) -> _Rule:
    """A rule of alternatives in which ``THIS`` refers to the rule itself."""
    return _Rule(_Prio(*elements))


class Ref(Element):
    """A placeholder for an element defined later (``target`` is set then)."""

    __slots__ = ("target",)

    def __init__(self) -> None:
        super().__init__()
        self.target: Element | None = None

    def parse(self, p: _Parser, parent: Node, rule: _RuleStore | None) -> Node | None:
        assert self.target is not None, "reference used before it was set"
        return self.target.parse(p, parent, rule)


def dup(element: Element) -> Element:
    """The same element under another name (SiriDB names some copies of terminals;
    a copied regular expression has no readable name in an expecting list)."""
    clone = copy.copy(element)
    clone.name = None
    return clone


def _element(value: Element | str) -> Element:
    return Token(value) if isinstance(value, str) else value


# -- the parse ---------------------------------------------------------------------------


class _Parser:
    """One parse: the text, the keyword cache and the expecting bookkeeping."""

    __slots__ = ("exp_pos", "keywords", "kwcache", "length", "modes", "optional",
                 "required", "text")

    def __init__(self, text: str, keywords: re.Pattern[str]) -> None:
        self.text = text
        self.length = len(text)
        self.keywords = keywords
        self.kwcache: dict[int, int] = {}
        self.exp_pos = 0
        self.required: list[Element] = []
        self.optional: list[Element] = []
        # [position, required?] in the order libcleri keeps them
        self.modes: deque[list[object]] = deque()

    def keyword_length(self, pos: int) -> int:
        """Length of the keyword-pattern match at ``pos`` (stored in 8 bits, as in C)."""
        cached = self.kwcache.get(pos)
        if cached is None:
            if pos >= self.length:
                cached = 0
            else:
                match = self.keywords.match(self.text, pos)
                cached = 0 if match is None else (match.end() - pos) % 256
            self.kwcache[pos] = cached
        return cached

    def set_mode(self, pos: int, required: bool) -> None:
        for mode in self.modes:
            if mode[0] == pos:
                mode[1] = required and bool(mode[1])
                return
        self.modes.append([pos, required])

    def _get_mode(self, pos: int) -> bool:
        for mode in self.modes:
            if mode[0] == pos:
                return bool(mode[1])
        return _REQUIRED

    def expect(self, element: Element, pos: int) -> None:
        """Record that ``element`` was expected at ``pos`` (only the furthest counts)."""
        if pos > self.exp_pos:
            self.required.clear()
            self.optional.clear()
            self.exp_pos = pos
            modes = self.modes
            while len(modes) > 1 and modes[0][0] != pos:
                modes.popleft()
            if modes:
                modes[0][0] = pos
        if pos == self.exp_pos:
            if self._get_mode(pos):
                self.required.append(element)
            else:
                self.optional.append(element)

    def walk(
        self, parent: Node, element: Element, rule: _RuleStore | None, required: bool
    ) -> Node | None:
        pos = parent.end
        text = self.text
        while pos < self.length and text[pos] in WHITESPACE:
            pos += 1
        parent.end = pos
        self.set_mode(parent.start, required)
        return element.parse(self, parent, rule)


class ParseResult:
    """``is_valid``, the root node, the error position and the expected elements."""

    __slots__ = ("expecting", "is_valid", "pos", "tree")

    def __init__(self, is_valid: bool, tree: Node, pos: int, expecting: list[Element]) -> None:
        self.is_valid = is_valid
        self.tree = tree
        self.pos = pos
        self.expecting = expecting


def parse(start: Element, text: str, keywords: re.Pattern[str]) -> ParseResult:
    """Parse ``text`` from ``start``; raises :class:`DepthExceeded` (no result)."""
    p = _Parser(text, keywords)
    tree = Node(None, text, 0)
    found = p.walk(tree, start, None, _REQUIRED)
    is_valid = found is not None
    end = tree.end
    if is_valid and any(c not in WHITESPACE for c in text[end:]):
        is_valid = False
        p.set_mode(end, _REQUIRED)
        p.expect(END_OF_STATEMENT, end)
        p.required.extend(p.optional)
        p.optional.clear()
    pos = tree.end if is_valid else p.exp_pos
    expecting: list[Element] = []
    seen: set[int] = set()
    for element in p.required:
        if id(element) not in seen:
            seen.add(id(element))
            expecting.append(element)
    return ParseResult(is_valid, tree, pos, expecting)


def byte_offset(text: str, pos: int) -> int:
    """The UTF-8 byte offset of character ``pos`` (what SiriDB reports)."""
    head = text[:pos]
    if head.isascii():
        return pos
    return len(head.encode("utf-8", "surrogateescape"))


def iter_leaves(node: Node) -> Iterator[Node]:
    """The terminal nodes under ``node``, left to right."""
    if not node.children:
        yield node
        return
    for child in node.children:
        yield from iter_leaves(child)
