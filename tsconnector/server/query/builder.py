"""Turn a pyleri parse tree of :mod:`.grammar` into the dataclasses of :mod:`.syntax`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from pyleri import Keyword, Token, Tokens
from pyleri.node import Node

from tsconnector.server.query import syntax as s
from tsconnector.server.query.grammar import SiriGrammar as G
from tsconnector.server.query.grammar import parse

_SETOPS = {
    ",": "|", "|": "|", "union": "|",
    "-": "-", "difference": "-",
    "&": "&", "intersection": "&",
    "^": "^", "symmetric_difference": "^",
}

_COUNT_WHAT = {
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


def build(query: str) -> s.Query:
    """Parse and build a query; raises ``grammar.ParseFailure`` on a syntax error."""
    start = parse(query)
    timeit = False
    statement: s.Statement = s.Calc(None)
    for child in start.children:
        node = _named(child)
        name = _name(node)
        if name == "timeit_stmt":
            timeit = True
        elif name in _STATEMENTS:
            statement = _STATEMENTS[name](node)
    return s.Query(statement, timeit)


# -- tree helpers --------------------------------------------------------------------------

def _name(node: Node) -> str | None:
    return getattr(node.element, "name", None)


def _named(node: Node) -> Node:
    """Skip unnamed single-child wrappers (Optional, Choice, Rule, Prio, This)."""
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
    """The lower-cased keyword text of a (possibly wrapped) keyword node."""
    return next(_leaves(node)).string.lower()


def _unquote(text: str) -> str:
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def _string(node: Node) -> str:
    return _unquote(next(_leaves(node)).string)


def _regex(node: Node) -> s.MatchRegex:
    text = next(_leaves(node)).string
    ignore_case = text.endswith("i")
    inner = text[1:-2] if ignore_case else text[1:-1]
    return s.MatchRegex(text, inner, ignore_case)


# -- expressions ---------------------------------------------------------------------------

def _expr(node: Node) -> s.Expr:
    tokens: list[s.ExprToken] = []
    for leaf in _leaves(node):
        el = leaf.element
        text = leaf.string
        if el is G.r_integer:
            tokens.append(s.ExprToken("int", int(text)))
        elif el is G.r_time_str:
            tokens.append(s.ExprToken("duration", int(text[:-1]), text[-1].lower()))
        elif el is G.k_now:
            tokens.append(s.ExprToken("now"))
        elif el in (G.r_singleq_str, G.r_doubleq_str):
            tokens.append(s.ExprToken("date", _unquote(text)))
        elif isinstance(el, Tokens):
            tokens.append(s.ExprToken("op", text))
        elif isinstance(el, Token) and text in "()":
            tokens.append(s.ExprToken(text))
    return s.Expr(tuple(tokens))


# -- series match and where ----------------------------------------------------------------

def _match(node: Node) -> s.Match:
    node = _named(node)
    name = _name(node)
    if name == "series_all":
        return s.MatchAll()
    if name == "series_name":
        return s.MatchName(_string(node))
    if name == "group_tag_match":
        return s.MatchGroupOrTag(_unquote(node.string))
    if name == "series_re":
        return _regex(node)
    kids = node.children
    if kids and isinstance(kids[0].element, Token) and kids[0].string == "(":
        return _match(kids[1])
    result = _match(kids[0])
    for i in range(1, len(kids) - 1, 2):
        op = _SETOPS[kids[i].string.lower()]
        result = s.MatchSetOp(op, result, _match(kids[i + 1]))
    return result


def _where_body(node: Node) -> s.Where:
    node = _named(node)
    kids = node.children
    if isinstance(kids[0].element, Token) and kids[0].string == "(":
        return _where_body(kids[1])
    middle = _named(kids[1])
    if isinstance(middle.element, Keyword):
        return s.BoolOp(middle.string.lower(), _where_body(kids[0]), _where_body(kids[2]))
    prop = _word(kids[0])
    op = middle.string
    value_node = _named(kids[2])
    value_name = _name(value_node)
    value: Any
    if value_name in ("int_expr", "time_expr"):
        value = _expr(value_node)
    elif value_name == "string":
        value = _string(value_node)
    else:
        value = _word(value_node)
    return s.Condition(prop, op, value)


def _where(node: Node | None) -> s.Where | None:
    if node is None:
        return None
    return _where_body(node.children[1])


def _pick(node: Node) -> dict[str, Node]:
    """Named parts of a sequence by name (the first of each)."""
    found: dict[str, Node] = {}
    for part in _parts(node):
        name = _name(part)
        if name is not None and name not in found:
            found[name] = part
    return found


def _where_of(parts: dict[str, Node]) -> s.Where | None:
    for key, node in parts.items():
        if key.startswith("where_"):
            return _where(node)
    return None


# -- select --------------------------------------------------------------------------------

def _function(node: Node) -> s.FuncSpec | None:
    node = _named(node)
    name = _name(node) or ""
    fname = name[2:]
    if fname in ("all", "points"):
        return None
    if fname == "limit":
        parts = list(_parts(node))
        return s.FuncSpec("limit", limit=_expr(parts[2]), inner=_word(parts[4]))
    if fname == "filter":
        operator = "=="
        operand: Any = None
        for part in _parts(node):
            if isinstance(part.element, Tokens):
                operator = part.string
            elif part.element is G.r_integer:
                operand = int(part.string)
            elif part.element is G.r_float:
                operand = float(part.string)
            elif part.element is G.r_regex:
                operand = _regex(part)
            elif _name(part) == "string":
                operand = _string(part)
            elif part.element is G.k_nan:
                operand = math.nan
            elif part.element is G.k_inf:
                operand = math.inf
            elif part.element is G.k_ninf:
                operand = -math.inf
        return s.FuncSpec("filter", operator=operator, operand=operand)
    args = tuple(_expr(n) for n in _find_all(node, "time_expr"))
    return s.FuncSpec(fname, args=args)


def _find_all(node: Node, name: str) -> Iterator[Node]:
    """Descendants named ``name``, not looking inside a match."""
    for child in node.children:
        if _name(child) == name:
            yield child
        else:
            yield from _find_all(child, name)


def _functions(node: Node) -> tuple[s.FuncSpec, ...]:
    specs = []
    for i, child in enumerate(node.children):
        if i % 2 == 0:
            spec = _function(child)
            if spec is not None:
                specs.append(spec)
    return tuple(specs)


def _select(node: Node) -> s.Select:
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
                    _functions(p["aggregate_functions"]),
                    _string(p["prefix_expr"].children[1]) if "prefix_expr" in p else "",
                    _string(p["suffix_expr"].children[1]) if "suffix_expr" in p else "",
                ))
        elif name == "series_match":
            match = _match(part)
        elif name == "where_series":
            where = _where(part)
        elif name == "after_expr":
            after = _expr(part.children[1])
        elif name == "before_expr":
            before = _expr(part.children[1])
        elif name == "between_expr":
            after = _expr(part.children[1])
            before = _expr(part.children[3])
        elif name == "head_expr":
            head = _expr(part.children[1])
        elif name == "tail_expr":
            tail = _expr(part.children[1])
        elif name == "merge_as":
            kids = list(_parts(part))
            using = None
            if len(kids) > 3:
                using = _functions(_named(kids[3].children[1]))
            merge = s.Merge(_string(kids[2]), using)
    return s.Select(tuple(aggregates), match, where, after, before, head, tail, merge)


# -- list / count / show / calc / help -----------------------------------------------------

def _list(node: Node) -> s.ListStmt:
    parts = list(_parts(node))
    target = parts[1]
    found = _pick(target)
    what = _word(target)
    columns: tuple[str, ...] = ()
    for key, value in found.items():
        if key.endswith("_columns"):
            columns = tuple(
                _word(c) for i, c in enumerate(value.children) if i % 2 == 0)
    match = _match(found["series_match"]) if "series_match" in found else None
    limit = None
    if len(parts) > 2:
        limit = _expr(parts[2].children[1])
    return s.ListStmt(what, columns, match, _where_of(found), limit)


def _count(node: Node) -> s.CountStmt:
    target = _named(node.children[1])
    found = _pick(target)
    match = _match(found["series_match"]) if "series_match" in found else None
    return s.CountStmt(_COUNT_WHAT[_name(target) or ""], match, _where_of(found))


def _show(node: Node) -> s.Show:
    names = []
    if len(node.children) > 1:
        for i, child in enumerate(node.children[1].children):
            if i % 2 == 0:
                names.append(_word(child))
    return s.Show(tuple(names))


def _calc(node: Node) -> s.Calc:
    return s.Calc(_expr(node))


def _help(node: Node) -> s.Help:
    words = [leaf.string.lower() for leaf in _leaves(node) if leaf.element is G.r_help_word]
    return s.Help(tuple(words))


# -- administration ------------------------------------------------------------------------

def _set_value(node: Node) -> tuple[str, Any, bool]:
    """``set <key> <value> [set ignore_threshold <bool>]`` → key, value, ignore."""
    parts = list(_parts(node))
    key = _word(parts[1])
    raw = parts[2]
    value: Any
    el = raw.element
    if el is G.r_float:
        value = float(raw.string)
    elif el is G.r_uinteger:
        value = int(raw.string)
    elif el is G.r_regex:
        value = _regex(raw)
    elif _name(raw) == "string":
        value = _string(raw)
    elif _name(raw) == "time_expr":
        value = _expr(raw)
    else:
        value = _word(raw)
    ignore = False
    if len(parts) > 3:
        ignore = _set_value(parts[3])[1] == "true"
    return key, value, ignore


def _alter(node: Node) -> s.Statement:
    target = _named(node.children[1])
    name = _name(target)
    parts = list(_parts(target))
    if name == "alter_database":
        key, value, ignore = _set_value(parts[1])
        return s.AlterDatabase(key, value, ignore)
    if name == "alter_user":
        key, value, _ = _set_value(parts[2])
        if key == "password":
            return s.AlterUser(_string(parts[1]), password=value)
        return s.AlterUser(_string(parts[1]), new_name=value)
    if name == "alter_group":
        key, value, _ = _set_value(parts[2])
        group = _unquote(parts[1].string)
        if key == "name":
            return s.AlterGroup(group, new_name=value)
        return s.AlterGroup(group, regex=value)
    if name == "alter_tag":
        _, value, _ = _set_value(parts[2])
        return s.AlterTag(_unquote(parts[1].string), value)
    if name == "alter_series":
        found = _pick(target)
        action = parts[-1]
        return s.AlterSeries(
            _match(found["series_match"]),
            _where_of(found),
            _unquote(action.children[1].string),
            _name(action) == "untag_series",
        )
    if name == "alter_server":
        key, value, _ = _set_value(parts[2])
        return s.AlterServer(next(_leaves(parts[1])).string.strip("'\""), key, value)
    found = _pick(target)
    key, value, _ = _set_value(parts[-1])
    return s.AlterServer(None, key, value, _where_of(found))


def _create(node: Node) -> s.Statement:
    target = _named(node.children[1])
    parts = list(_parts(target))
    if _name(target) == "create_group":
        return s.CreateGroup(_unquote(parts[1].string), _regex(parts[3]))
    return s.CreateUser(_string(parts[1]), _set_value(parts[2])[1])


def _drop(node: Node) -> s.Statement:
    target = _named(node.children[1])
    name = _name(target)
    parts = list(_parts(target))
    if name == "drop_group":
        return s.DropGroup(_unquote(parts[1].string))
    if name == "drop_tag":
        return s.DropTag(_unquote(parts[1].string))
    if name == "drop_user":
        return s.DropUser(_string(parts[1]))
    if name == "drop_server":
        return s.DropServer(next(_leaves(parts[1])).string.strip("'\""))
    found = _pick(target)
    ignore = False
    if "set_ignore_threshold" in found:
        ignore = _set_value(found["set_ignore_threshold"])[1] == "true"
    if name == "drop_shards":
        return s.DropShards(_where_of(found), ignore)
    match = _match(found["series_match"]) if "series_match" in found else None
    return s.DropSeries(match, _where_of(found), ignore)


def _access(node: Node) -> tuple[str, ...]:
    return tuple(_word(c) for i, c in enumerate(node.children) if i % 2 == 0)


def _grant(node: Node) -> s.Grant:
    parts = list(_parts(node))
    user = list(_parts(parts[3]))
    password = _set_value(user[2])[1] if len(user) > 2 else None
    return s.Grant(_access(parts[1]), _string(user[1]), password)


def _revoke(node: Node) -> s.Revoke:
    parts = list(_parts(node))
    user = list(_parts(parts[3]))
    return s.Revoke(_access(parts[1]), _string(user[1]))


_STATEMENTS = {
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

__all__ = ["build"]
