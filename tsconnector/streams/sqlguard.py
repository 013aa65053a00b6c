"""The parse-level check of ``StreamDB.query``: one SELECT that reads only ``streams``.

It is one of three layers (the others are the database's own: a read-only transaction
and a role that may only read the view on PostgreSQL, ``PRAGMA query_only`` and an
authorizer on SQLite). The statement is split into tokens the way each backend reads
them -- string literals (PostgreSQL's ``E'...'`` with backslash escapes, dollar quotes,
nested block comments), quoted identifiers, comments -- and then:

* it is a single statement starting with ``SELECT`` or ``WITH``;
* no word that writes, locks, changes settings or calls out appears (``insert``,
  ``update``, ``into``, ``set``, ``copy``, ``pragma``, ``attach``...);
* every relation after ``FROM``/``JOIN`` (or a comma in a FROM list) is ``streams``, a
  name the statement's own ``WITH`` defines, a subquery, or an allowed table function;
* every function called is on a list of plain built-ins (aggregates, text, math,
  JSON); nothing that runs SQL from a string (``query_to_xml``), reads files or changes
  settings (``set_config``) can be called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import QueryRefused

__all__ = ["VIEW", "check_select"]

VIEW = "streams"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FORBIDDEN = _words(
    """
    insert update delete merge upsert create drop alter truncate grant revoke copy attach
    detach pragma vacuum reindex analyze into lock call do listen notify unlisten set reset
    load execute prepare deallocate begin commit rollback savepoint release checkpoint
    cluster comment discard import security declare returning table share
    """
)

_FUNCTIONS = _words(
    """
    count sum avg min max total group_concat string_agg array_agg json_agg jsonb_agg
    json_group_array json_group_object json_object_agg jsonb_object_agg bool_and bool_or
    every stddev stddev_pop stddev_samp variance var_pop var_samp lower upper length
    char_length character_length octet_length substr substring trim ltrim rtrim btrim
    replace coalesce nullif ifnull abs round ceil ceiling floor sign concat concat_ws left
    right position instr strpos split_part starts_with lpad rpad reverse repeat initcap
    regexp_replace regexp_matches regexp_match regexp_like regexp_substr greatest least
    typeof printf format hex md5 unicode char chr ascii quote cast extract date_trunc
    to_char json json_extract json_each json_tree json_array_length json_type json_valid
    json_object json_array json_quote json_object_keys json_extract_path
    json_extract_path_text json_build_object json_build_array json_typeof to_json
    jsonb_each jsonb_each_text jsonb_object_keys jsonb_array_elements
    jsonb_array_elements_text jsonb_extract_path jsonb_extract_path_text jsonb_typeof
    to_jsonb jsonb_build_object jsonb_build_array jsonb_array_length jsonb_exists
    row_number rank dense_rank lag lead first_value last_value ntile
    """
)

#: Words after which a parenthesis is syntax, not a call.
_PAREN_KEYWORDS = _words(
    """
    select from where and or not in exists any all some on using as when then else case by
    having filter over values array row partition lateral join with recursive union
    intersect except is between like ilike glob escape distinct limit offset group order
    return
    """
)

#: Words that end a FROM list.
_FROM_END = _words(
    """
    where group having order limit offset union intersect except window fetch for on using
    natural left right full inner outer cross join
    """
)


_WORD = re.compile(r"[\w$]+")
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass
class _Token:
    kind: str  # word, qword (quoted identifier), string, number, op, param
    text: str


class _Lexer:
    def __init__(self, sql: str, dialect: str) -> None:
        self.sql = sql
        self.pg = dialect == "postgresql"
        self.pos = 0
        self.tokens: list[_Token] = []

    def fail(self, why: str) -> QueryRefused:
        return QueryRefused(f"cannot read the statement: {why}")

    def run(self) -> list[_Token]:
        sql, n = self.sql, len(self.sql)
        while self.pos < n:
            c = sql[self.pos]
            if c.isspace():
                self.pos += 1
            elif sql.startswith("--", self.pos):
                end = sql.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif sql.startswith("/*", self.pos):
                self._block_comment()
            elif c == "'":
                self._string(backslash=False)
            elif c in "eE" and sql.startswith("'", self.pos + 1) and self.pg:
                self.pos += 1
                self._string(backslash=True)
            elif c == '"' or (c in "`[" and not self.pg):
                self._quoted_identifier()
            elif c == "$" and self.pg and _DOLLAR_TAG.match(sql, self.pos):
                self._dollar_string()
            elif c == "$":
                m = re.compile(r"\$[0-9]+").match(sql, self.pos)
                if not m:
                    raise self.fail(f"unexpected '$' at {self.pos}")
                self.tokens.append(_Token("param", m.group()))
                self.pos = m.end()
            elif (c.isalpha() or c == "_") and (m := _WORD.match(sql, self.pos)):
                self.tokens.append(_Token("word", m.group().lower()))
                self.pos = m.end()
            elif m := _NUMBER.match(sql, self.pos):
                self.tokens.append(_Token("number", m.group()))
                self.pos = m.end()
            else:
                m = re.compile(r"::|->>|->|#>>|#>|<=|>=|<>|!=|\|\||@>|<@|\?\||\?&|.").match(
                    sql, self.pos
                )
                assert m is not None
                self.tokens.append(_Token("op", m.group()))
                self.pos = m.end()
        return self.tokens

    def _block_comment(self) -> None:
        depth, i, n = 1, self.pos + 2, len(self.sql)
        while i < n:
            if self.sql.startswith("*/", i):
                depth -= 1
                i += 2
                if depth == 0:
                    self.pos = i
                    return
            elif self.pg and self.sql.startswith("/*", i):
                depth += 1
                i += 2
            else:
                i += 1
        raise self.fail("unterminated comment")

    def _string(self, *, backslash: bool) -> None:
        sql, i, n = self.sql, self.pos + 1, len(self.sql)
        while i < n:
            c = sql[i]
            if backslash and c == "\\":
                i += 2
                continue
            if c == "'":
                if sql.startswith("'", i + 1):
                    i += 2
                    continue
                self.tokens.append(_Token("string", sql[self.pos : i + 1]))
                self.pos = i + 1
                return
            i += 1
        raise self.fail("unterminated string")

    def _quoted_identifier(self) -> None:
        sql = self.sql
        close = {"[": "]", "`": "`", '"': '"'}[sql[self.pos]]
        i, n, out = self.pos + 1, len(sql), []
        while i < n:
            c = sql[i]
            if c == close:
                if close != "]" and sql.startswith(close, i + 1):
                    out.append(close)
                    i += 2
                    continue
                self.tokens.append(_Token("qword", "".join(out)))
                self.pos = i + 1
                return
            out.append(c)
            i += 1
        raise self.fail("unterminated quoted identifier")

    def _dollar_string(self) -> None:
        m = _DOLLAR_TAG.match(self.sql, self.pos)
        assert m is not None
        tag = m.group()
        end = self.sql.find(tag, m.end())
        if end < 0:
            raise self.fail("unterminated dollar-quoted string")
        self.tokens.append(_Token("string", self.sql[self.pos : end + len(tag)]))
        self.pos = end + len(tag)


def _refuse(why: str) -> QueryRefused:
    return QueryRefused(f"only a single SELECT that reads the {VIEW!r} view is allowed: {why}")


def check_select(sql: str, dialect: str) -> None:
    """Raise :class:`QueryRefused` unless ``sql`` is one SELECT reading only ``streams``."""
    if not isinstance(sql, str):
        raise TypeError(f"a statement is a str, not {type(sql).__name__}")
    tokens = _Lexer(sql, dialect).run()
    while tokens and tokens[-1].kind == "op" and tokens[-1].text == ";":
        tokens.pop()
    if not tokens:
        raise _refuse("the statement is empty")
    first = tokens[0]
    if not (first.kind == "word" and first.text in ("select", "with")):
        raise _refuse(f"it starts with {first.text!r}")
    ctes, cte_heads = _cte_names(tokens)
    # per parenthesis level: did a SELECT start here; FROM-list state; is it a call
    selects = [False]
    from_state: list[str | None] = [None]
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        prev = tokens[i - 1] if i else None
        if tok.kind == "op" and tok.text == ";":
            raise _refuse("it holds more than one statement")
        if tok.kind == "word" and tok.text in _FORBIDDEN:
            raise _refuse(f"{tok.text.upper()} is not allowed")
        if tok.kind == "op" and tok.text == "(":
            selects.append(False)
            from_state.append(None)
            continue
        if tok.kind == "op" and tok.text == ")":
            if len(selects) > 1:
                selects.pop()
                from_state.pop()
            if from_state[-1] == "expect":
                from_state[-1] = "in"
            continue
        calling = nxt is not None and nxt.kind == "op" and nxt.text == "("
        after_cast = prev is not None and prev.kind == "op" and prev.text == "::"
        if tok.kind == "word" and tok.text == "select":
            selects[-1] = True
            from_state[-1] = None
            continue
        if tok.kind == "word" and tok.text in ("from", "join") and selects[-1]:
            from_state[-1] = "expect"
            continue
        if from_state[-1] == "expect" and tok.kind in ("string", "number", "param"):
            raise _refuse(f"{tok.text!r} is not a relation")  # SQLite reads 'x' as a name
        if from_state[-1] == "expect" and tok.kind in ("word", "qword"):
            if tok.kind == "word" and tok.text in ("lateral", "only"):
                continue
            if calling:
                _check_function(tok, prev)
            elif nxt is not None and nxt.kind == "op" and nxt.text == ".":
                raise _refuse(f"qualified names ({tok.text}.…) are not allowed")
            elif tok.text != VIEW and tok.text not in ctes:
                raise _refuse(f"it reads {tok.text!r}")
            from_state[-1] = "in"
            continue
        if from_state[-1] == "in":
            if tok.kind == "op" and tok.text == ",":
                from_state[-1] = "expect"
                continue
            if tok.kind == "word" and tok.text in _FROM_END:
                from_state[-1] = "expect" if tok.text == "join" else None
                continue
        if (
            calling
            and not after_cast
            and i not in cte_heads  # "name (columns) AS (...)" in the WITH list
            and (tok.kind == "qword" or (tok.kind == "word" and tok.text not in _PAREN_KEYWORDS))
        ):
            _check_function(tok, prev)


def _check_function(tok: _Token, prev: _Token | None) -> None:
    if prev is not None and prev.kind == "op" and prev.text == ".":
        raise _refuse(f"qualified function {tok.text!r} is not allowed")
    if tok.kind == "qword" or tok.text not in _FUNCTIONS:
        raise _refuse(f"the function {tok.text!r} is not allowed")


def _cte_names(tokens: list[_Token]) -> tuple[set[str], set[int]]:
    """Names defined by a leading ``WITH [RECURSIVE] a AS (...), b AS (...)``, and the
    positions of those names."""
    names: set[str] = set()
    heads: set[int] = set()
    if not tokens or tokens[0].text != "with":
        return names, heads
    i = 1
    if i < len(tokens) and tokens[i].text == "recursive":
        i += 1
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind not in ("word", "qword"):
            break
        names.add(tok.text)
        heads.add(i)
        depth = 0
        i += 1
        while i < len(tokens):  # skip to the end of this CTE's body
            t = tokens[i]
            if t.kind == "op" and t.text == "(":
                depth += 1
            elif t.kind == "op" and t.text == ")":
                depth -= 1
                if depth == 0 and i + 1 < len(tokens) and tokens[i + 1].text != "as":
                    i += 1
                    break
            i += 1
        if i < len(tokens) and tokens[i].kind == "op" and tokens[i].text == ",":
            i += 1
            continue
        break
    return names, heads
