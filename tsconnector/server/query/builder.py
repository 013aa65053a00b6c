"""Turn a parse tree of :mod:`.grammar` into the dataclasses of :mod:`.syntax`.

Where SiriDB gives a construct its meaning by walking the tree token by token rather than
by the tree's shape, this module does the same walk: series selections fold left to
right (parentheses nest), and ``where`` clauses are built as SiriDB's condition
expressions, with its precedence and its nesting limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Final

from tsconnector.server.query import syntax as s
from tsconnector.server.query.cleri import Choice, Keyword, Node, Token, Tokens
from tsconnector.server.query.grammar import G, parse

__all__ = ["build", "unquote"]

_SETOPS: Final = {
    ",": "|", "|": "|", "union": "|",
    "-": "-", "difference": "-",
    "&": "&", "intersection": "&",
    "^": "^", "symmetric_difference": "^",
}

_COUNT_WHAT: Final = {
    "count_groups": "groups",
    "count_tags": "tags",
    "count_pools": "pools",
    "count_series": "series",
    "count_servers": "servers",
    "count_servers_received": "servers_received_points",
    "count_servers_selected": "servers_selected_points",
    "count_shards": "shards",
    "count_shards_size": "shards_size",
    "count_users": "users",
    "count_series_length": "series_length",
}

#: The numbers SiriDB stores for keyword values in a ``where`` condition.
KEYWORD_VALUES: Final = {
    "true": 1, "false": 0,
    "integer": 0, "float": 1, "string": 2,
    "number": 0, "log": 1,
    "show": 1, "count": 2, "list": 4, "select": 8, "insert": 16, "create": 32,
    "alter": 64, "drop": 128, "grant": 256, "revoke": 512,
    "read": 15, "write": 63, "modify": 255, "full": 1023,
    "debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4,
}

#: Parentheses a ``where`` clause may nest (SiriDB counts the clause itself as one).
MAX_WHERE_DEPTH: Final = 6


def build(query: str) -> s.Query:
    """Parse and build a query; raises ``grammar.ParseFailure`` on a syntax error."""
    start = parse(query)
    ctx = _Build()
    ctx.collect(start)
    timeit = False
    statement: s.Statement = s.Calc(None)
    for child in start.children:
        node = _named(child)
        name = _name(node)
        if name == "timeit_stmt":
            timeit = True
        elif name in _STATEMENTS:
            statement = _STATEMENTS[name](ctx, node)
    return s.Query(statement, timeit, tuple(ctx.exprs.values()))


# -- tree helpers --------------------------------------------------------------------------

def _name(node: Node) -> str | None:
    return getattr(node.element, "name", None)


def _named(node: Node) -> Node:
    """Skip unnamed single-child wrappers (Optional, Choice, Rule, Prio, THIS)."""
    while _name(node) is None and len(node.children) == 1:
        node = node.children[0]
    return node


def _parts(node: Node) -> Iterator[Node]:
    """The children of a sequence, each unwrapped."""
    for child in node.children:
        yield _named(child)


def _leaves(node: Node) -> Iterator[Node]:
    if not node.children:
        yield node
    else:
        for child in node.children:
            yield from _leaves(child)


def _word(node: Node) -> str:
    """The keyword text of a (possibly wrapped) keyword node."""
    return next(_leaves(node)).string


def unquote(text: str) -> str:
    """A quoted string's content, doubled quotes undone (as SiriDB extracts it)."""
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def _string(node: Node) -> str:
    return unquote(next(_leaves(node)).string)


def _regex(node: Node) -> s.MatchRegex:
    text = next(_leaves(node)).string
    ignore_case = text.endswith("i")
    inner = text[1:-2] if ignore_case else text[1:-1]
    return s.MatchRegex(text, inner, ignore_case)


def _pick(node: Node) -> dict[str, Node]:
    """Named parts of a sequence by name (the first of each)."""
    found: dict[str, Node] = {}
    for part in _parts(node):
        name = _name(part)
        if name is not None and name not in found:
            found[name] = part
    return found


class _Build:
    """State of one build: the expressions of the query, in evaluation order."""

    def __init__(self) -> None:
        self.exprs: dict[int, s.Expr] = {}

    def collect(self, node: Node) -> None:
        """Find every time and integer expression, in the order SiriDB evaluates them."""
        name = _name(node)
        if name in ("time_expr", "calc_stmt", "int_expr"):
            self.exprs[id(node)] = _expr(node, name != "int_expr")
            return
        for child in node.children:
            self.collect(child)

    def expr(self, node: Node) -> s.Expr:
        found = self.exprs.get(id(node))
        if found is None:  # pragma: no cover - every expression node is collected
            found = self.exprs[id(node)] = _expr(node, _name(node) != "int_expr")
        return found

    def find_expr(self, node: Node) -> s.Expr:
        """The first expression at or under ``node``."""
        if id(node) in self.exprs:
            return self.exprs[id(node)]
        for child in node.children:
            try:
                return self.find_expr(child)
            except LookupError:
                continue
        raise LookupError("no expression")


# -- expressions ---------------------------------------------------------------------------

def _expr(node: Node, time: bool) -> s.Expr:
    tokens: list[s.ExprToken] = []
    for leaf in _leaves(node):
        el = leaf.element
        text = leaf.string
        if not text:
            continue
        if el is G.r_integer:
            tokens.append(s.ExprToken("num", text))
        elif el is G.r_time_str:
            tokens.append(s.ExprToken("dur", text))
        elif el is G.k_now:
            tokens.append(s.ExprToken("now"))
        elif el is G.r_singleq_str or el is G.r_doubleq_str:
            tokens.append(s.ExprToken("date", unquote(text)))
        elif isinstance(el, (Tokens, Token)):
            tokens.append(s.ExprToken("op", text[0]))
    return s.Expr(tuple(tokens), time)


# -- series match --------------------------------------------------------------------------

def _flatten_match(node: Node, out: list[Any]) -> None:
    name = _name(node)
    if name == "series_all":
        out.append(s.MatchAll())
    elif name == "series_name":
        out.append(s.MatchName(_string(node)))
    elif name == "group_tag_match":
        out.append(s.MatchGroupOrTag(unquote(node.string)))
    elif name == "series_re":
        out.append(_regex(node))
    elif name == "series_setopr":
        out.append(("op", _SETOPS[node.string]))
    elif name == "series_parentheses":
        out.append("(")
        for child in node.children[1:-1]:
            _flatten_match(child, out)
        out.append(")")
    else:
        for child in node.children:
            _flatten_match(child, out)


def _match(node: Node) -> s.Match:
    """The selection as SiriDB evaluates it.

    SiriDB applies each name, regex, group and operator as it *enters* them, left to
    right; an opening parenthesis saves the selection so far (with the operator before
    it) and starts a new one, and all parentheses are closed only at the end of the
    statement, the last opened first. So ``a - (b | c) | d`` is ``a - (b | c | d)``.
    """
    items: list[Any] = []
    _flatten_match(node, items)
    stack: list[tuple[s.Match, str] | None] = []
    acc: s.Match | None = None
    op: str | None = None
    for item in items:
        if item == "(":
            if op is None or acc is None:
                stack.append(None)  # nothing to combine with: keep filling ``acc``
            else:
                stack.append((acc, op))
                acc, op = None, None
        elif item == ")":
            continue
        elif isinstance(item, tuple):
            op = item[1]
        elif acc is None:
            acc = item
        else:
            acc = s.MatchSetOp(op or "|", acc, item)
    for saved in reversed(stack):
        if saved is not None:
            outer, outer_op = saved
            acc = outer if acc is None else s.MatchSetOp(outer_op, outer, acc)
    assert acc is not None
    return acc


# -- where -----------------------------------------------------------------------------

class _TooDeep(Exception):
    pass


class _Node:
    """A condition expression under construction (SiriDB's layout)."""

    __slots__ = ("a", "b", "op")

    def __init__(self) -> None:
        self.op = "and"
        self.a: Any = None
        self.b: Any = None


class _WhereBuilder:
    """SiriDB's token-by-token construction of a ``where`` expression."""

    PROP, OPERATOR, VALUE, NEXT = range(4)

    def __init__(self, ctx: _Build) -> None:
        self.ctx = ctx
        self.stack: list[_Node] = []
        self.expecting = self.PROP
        self.cond: dict[str, Any] = {}

    def open_curly(self, current: _Node) -> _Node:
        if len(self.stack) == MAX_WHERE_DEPTH:
            raise _TooDeep
        new = _Node()
        self.stack.append(current)
        if current.a is None:
            current.a = new
        else:
            current.b = new
        return new

    def close_curly(self) -> _Node:
        return self.stack.pop()

    def push_condition(self, current: _Node, value: Any) -> None:
        cond = s.Condition(self.cond["prop"], self.cond["op"], value)
        if current.a is None:
            current.a = cond
        else:
            current.b = cond
        self.expecting = self.NEXT

    def push_and(self, current: _Node) -> _Node:
        if current.b is None:
            return current
        new = _Node()
        new.a = current.b
        current.b = new
        return new

    def push_or(self, current: _Node) -> _Node:
        if current.b is None:
            current.op = "or"
            return current
        new = _Node()
        new.op = "or"
        new.a = self.stack[-1]
        self.stack[-1] = new
        return new

    def walk(self, node: Node, current: _Node) -> _Node:
        el = node.element
        expecting = self.expecting
        if expecting == self.PROP:
            if isinstance(el, Token):
                return self.open_curly(current)
            if isinstance(el, Keyword):
                self.cond["prop"] = el.word
                self.expecting = self.OPERATOR
                return current
        elif expecting == self.OPERATOR:
            self.cond["op"] = node.string
            self.expecting = self.VALUE
            return current
        elif expecting == self.VALUE:
            name = _name(node)
            if name in ("int_expr", "time_expr"):
                self.push_condition(current, self.ctx.expr(node))
                return current
            if isinstance(el, Choice) and name == "string":
                self.push_condition(current, _string(node))
                return current
            if isinstance(el, Keyword):
                self.push_condition(current, KEYWORD_VALUES.get(el.word, 0))
                return current
        else:
            if isinstance(el, Keyword):
                current = self.push_and(current) if el.word == "and" else self.push_or(current)
                self.cond = {}
                self.expecting = self.PROP
                return current
            if isinstance(el, Token):
                return self.close_curly()
        for child in node.children:
            current = self.walk(child, current)
        return current


def _freeze(item: Any) -> s.Where:
    if isinstance(item, s.Condition):
        return item
    assert isinstance(item, _Node)
    if item.a is None:  # pragma: no cover - SiriDB never builds an empty operand
        raise ValueError("empty where expression")
    right = None if item.b is None else _freeze(item.b)
    return s.BoolOp(item.op, _freeze(item.a), right)


def _where(ctx: _Build, node: Node | None) -> s.WhereClause | None:
    if node is None:
        return None
    builder = _WhereBuilder(ctx)
    root = _Node()
    try:
        current = builder.open_curly(root)
        builder.walk(node.children[1], current)
    except _TooDeep:
        return s.WhereTooDeep()
    top = builder.close_curly()
    return _freeze(top)


def _where_of(ctx: _Build, parts: dict[str, Node]) -> s.WhereClause | None:
    for key, node in parts.items():
        if key.startswith("where_"):
            return _where(ctx, node)
    return None


# -- select --------------------------------------------------------------------------------

def _function(ctx: _Build, node: Node) -> s.FuncSpec | None:
    node = _named(node)
    name = _name(node) or ""
    fname = name[2:]
    if fname in ("all", "points"):
        return None
    if fname == "limit":
        parts = list(_parts(node))
        return s.FuncSpec("limit", limit=ctx.expr(parts[2]), inner=_word(parts[4]))
    if fname == "filter":
        operator = "=="
        operand: Any = None
        for part in _parts(node):
            el = part.element
            if isinstance(el, Tokens):
                operator = part.string
            elif el is G.r_integer:
                operand = max(-(1 << 63), min((1 << 63) - 1, int(part.string)))  # atoll
            elif el is G.r_float:
                operand = _float(part.string)
            elif el is G.r_regex:
                operand = _regex(part)
            elif _name(part) == "string":
                operand = _string(part)
            elif el is G.k_nan:
                operand = math.nan
            elif el is G.k_inf:
                operand = math.inf
            elif _name(part) == "k_ninf":
                operand = -math.inf
        return s.FuncSpec("filter", operator=operator, operand=operand)
    args = tuple(ctx.expr(n) for n in _find_all(node, "time_expr"))
    return s.FuncSpec(fname, args=args)


def _float(text: str) -> float:
    try:
        return float(text)
    except OverflowError:  # pragma: no cover - float() returns inf instead
        return math.inf


def _find_all(node: Node, name: str) -> Iterator[Node]:
    """Descendants named ``name``."""
    for child in node.children:
        if _name(child) == name:
            yield child
        else:
            yield from _find_all(child, name)


def _functions(ctx: _Build, node: Node) -> tuple[s.FuncSpec, ...]:
    specs = []
    for i, child in enumerate(node.children):
        if i % 2 == 0:
            spec = _function(ctx, child)
            if spec is not None:
                specs.append(spec)
    return tuple(specs)


def _select(ctx: _Build, node: Node) -> s.Select:
    aggregates = []
    after = before = head = tail = None
    merge = None
    match: s.Match = s.MatchAll()
    where = None
    for part in _parts(node):
        name = _name(part)
        if name == "select_aggregates":
            for i, agg in enumerate(part.children):
                if i % 2:
                    continue
                p = _pick(agg)
                aggregates.append(s.Aggregate(
                    _functions(ctx, p["aggregate_functions"]),
                    _string(p["prefix_expr"].children[1]) if "prefix_expr" in p else "",
                    _string(p["suffix_expr"].children[1]) if "suffix_expr" in p else "",
                ))
        elif name == "series_match":
            match = _match(part)
        elif name == "where_series":
            where = _where(ctx, part)
        elif name == "after_expr":
            after = ctx.find_expr(part)
        elif name == "before_expr":
            before = ctx.find_expr(part)
        elif name == "between_expr":
            exprs = [ctx.expr(n) for n in _find_all(part, "time_expr")]
            after, before = exprs[0], exprs[1]
        elif name == "head_expr":
            head = ctx.find_expr(part)
        elif name == "tail_expr":
            tail = ctx.find_expr(part)
        elif name == "merge_as":
            kids = list(_parts(part))
            using = None
            if len(kids) > 3:
                using = _functions(ctx, _named(kids[3].children[1]))
            merge = s.Merge(_string(kids[2]), using)
    return s.Select(tuple(aggregates), match, where, after, before, head, tail, merge)


# -- list / count / show / calc / help -----------------------------------------------------

def _list(ctx: _Build, node: Node) -> s.ListStmt:
    parts = list(_parts(node))
    target = parts[1]
    found = _pick(target)
    what = _word(target)
    columns: tuple[str, ...] = ()
    for key, value in found.items():
        if key.endswith("_columns"):
            columns = tuple(_word(c) for i, c in enumerate(value.children) if i % 2 == 0)
    match = _match(found["series_match"]) if "series_match" in found else None
    limit = None
    if len(parts) > 2:
        limit = ctx.find_expr(parts[2])
    return s.ListStmt(what, columns, match, _where_of(ctx, found), limit)


def _count(ctx: _Build, node: Node) -> s.CountStmt:
    target = _named(node.children[1])
    found = _pick(target)
    match = _match(found["series_match"]) if "series_match" in found else None
    return s.CountStmt(_COUNT_WHAT[_name(target) or ""], match, _where_of(ctx, found))


def _show(ctx: _Build, node: Node) -> s.Show:
    names = []
    if len(node.children) > 1:
        for i, child in enumerate(node.children[1].children):
            if i % 2 == 0:
                names.append(_word(child))
    return s.Show(tuple(names))


def _calc(ctx: _Build, node: Node) -> s.Calc:
    return s.Calc(ctx.expr(node))


def _help(ctx: _Build, node: Node) -> s.Help:
    words = [leaf.string for leaf in _leaves(node)][1:]
    return s.Help(tuple(words))


# -- administration ------------------------------------------------------------------------

def _set_value(ctx: _Build, node: Node) -> tuple[str, Any, bool]:
    """``set <key> <value> [set ignore_threshold <bool>]`` -> key, value, ignore."""
    parts = list(_parts(node))
    key = _word(parts[1])
    raw = parts[2]
    value: Any
    el = raw.element
    if el is G.r_float:
        value = raw.string
    elif el is G.r_uinteger:
        value = int(raw.string) % (1 << 64)
    elif el is G.r_regex:
        value = _regex(raw)
    elif _name(raw) == "string":
        value = _string(raw)
    elif _name(raw) == "time_expr":
        value = ctx.expr(raw)
    else:
        value = _word(raw)
    ignore = False
    if len(parts) > 3:
        ignore = _set_value(ctx, parts[3])[1] == "true"
    return key, value, ignore


def _alter(ctx: _Build, node: Node) -> s.Statement:
    target = _named(node.children[1])
    name = _name(target)
    parts = list(_parts(target))
    if name == "alter_database":
        key, value, ignore = _set_value(ctx, parts[1])
        return s.AlterDatabase(key, value, ignore)
    if name == "alter_user":
        key, value, _ = _set_value(ctx, parts[2])
        if key == "password":
            return s.AlterUser(_string(parts[1]), password=value)
        return s.AlterUser(_string(parts[1]), new_name=value)
    if name == "alter_group":
        key, value, _ = _set_value(ctx, parts[2])
        group = unquote(parts[1].string)
        if key == "name":
            return s.AlterGroup(group, new_name=value)
        return s.AlterGroup(group, regex=value)
    if name == "alter_tag":
        _, value, _ = _set_value(ctx, parts[2])
        return s.AlterTag(unquote(parts[1].string), value)
    if name == "alter_series":
        found = _pick(target)
        action = parts[-1]
        return s.AlterSeries(
            _match(found["series_match"]),
            _where_of(ctx, found),
            unquote(action.children[1].string),
            _name(action) == "untag_series",
        )
    if name == "alter_server":
        key, value, _ = _set_value(ctx, parts[2])
        return s.AlterServer(
            _server_ident(parts[1]), key, value, raw_ident=next(_leaves(parts[1])).string)
    found = _pick(target)
    key, value, _ = _set_value(ctx, parts[-1])
    return s.AlterServer(None, key, value, _where_of(ctx, found))


def _server_ident(node: Node) -> str:
    leaf = next(_leaves(node))
    if leaf.element is G.r_uuid_str:
        return leaf.string
    return unquote(leaf.string)


def _create(ctx: _Build, node: Node) -> s.Statement:
    target = _named(node.children[1])
    parts = list(_parts(target))
    if _name(target) == "create_group":
        return s.CreateGroup(unquote(parts[1].string), _regex(parts[3]))
    return s.CreateUser(_string(parts[1]), _set_value(ctx, parts[2])[1])


def _drop(ctx: _Build, node: Node) -> s.Statement:
    target = _named(node.children[1])
    name = _name(target)
    parts = list(_parts(target))
    if name == "drop_group":
        return s.DropGroup(unquote(parts[1].string))
    if name == "drop_tag":
        return s.DropTag(unquote(parts[1].string))
    if name == "drop_user":
        return s.DropUser(_string(parts[1]))
    if name == "drop_server":
        return s.DropServer(_server_ident(parts[1]), next(_leaves(parts[1])).string)
    found = _pick(target)
    ignore = False
    if "set_ignore_threshold" in found:
        ignore = _set_value(ctx, found["set_ignore_threshold"])[1] == "true"
    if name == "drop_shards":
        return s.DropShards(_where_of(ctx, found), ignore)
    match = _match(found["series_match"]) if "series_match" in found else None
    return s.DropSeries(match, _where_of(ctx, found), ignore)


def _access(node: Node) -> tuple[str, ...]:
    return tuple(_word(c) for i, c in enumerate(node.children) if i % 2 == 0)


def _grant(ctx: _Build, node: Node) -> s.Grant:
    parts = list(_parts(node))
    user = list(_parts(parts[3]))
    password = _set_value(ctx, user[2])[1] if len(user) > 2 else None
    return s.Grant(_access(parts[1]), _string(user[1]), password)


def _revoke(ctx: _Build, node: Node) -> s.Revoke:
    parts = list(_parts(node))
    user = list(_parts(parts[3]))
    return s.Revoke(_access(parts[1]), _string(user[1]))


_STATEMENTS: Final[dict[str, Callable[[_Build, Node], s.Statement]]] = {
    "select_stmt": _select,
    "list_stmt": _list,
    "count_stmt": _count,
    "show_stmt": _show,
    "calc_stmt": _calc,
    "help_stmt": _help,
    "alter_stmt": _alter,
    "create_stmt": _create,
    "drop_stmt": _drop,
    "grant_stmt": _grant,
    "revoke_stmt": _revoke,
}
