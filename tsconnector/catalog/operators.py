"""Filter and order operators for ``Table.query``: ``Eq``, ``Re``, ``Like``, ``In``, ``Sql``,
``Reversed``.

They only hold and validate what the caller gave; :mod:`.dialects` turns them into SQL
with placeholders. A plain ``str`` in a ``where`` mapping means ``Eq``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from .names import check_field_name
from .regex import check_regex


def _check_value(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__} ({value!r:.60})")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


@dataclass(frozen=True)
class Eq:
    """The field equals ``value`` exactly (rows without the field never match)."""

    value: str

    def __post_init__(self) -> None:
        _check_value(self.value, "Eq value")


@dataclass(frozen=True)
class Re:
    """The field matches the regular expression anywhere (``re.search`` semantics).

    The pattern is checked by :func:`~tsconnector.catalog.regex.check_regex`: no
    backreferences or look-around, bounded size. See that module for the guarantees.
    """

    pattern: str

    def __post_init__(self) -> None:
        check_regex(self.pattern)


@dataclass(frozen=True)
class Like:
    """SQL ``LIKE``, case-sensitive on both backends: ``%`` any run, ``_`` one character,
    ``\\`` makes the next character literal (``Like("100\\%")``)."""

    pattern: str

    def __post_init__(self) -> None:
        _check_value(self.pattern, "Like pattern")
        escaped = False
        for ch in self.pattern:
            escaped = not escaped and ch == "\\"
        if escaped:
            raise ValueError(f"Like pattern {self.pattern!r} ends with an escape character")


@dataclass(frozen=True)
class In:
    """The field equals one of ``values`` (an empty collection matches nothing)."""

    values: tuple[str, ...]

    def __init__(self, values: Iterable[str]) -> None:
        if isinstance(values, str):
            raise TypeError("In takes a collection of strings, not one string")
        items = tuple(values)
        for item in items:
            _check_value(item, "In value")
        object.__setattr__(self, "values", items)


@dataclass(frozen=True)
class Sql:
    """A custom SQL condition per backend, with its own parameters.

    ``{field}`` in the text stands for the field's value expression (text, NULL when the
    row lacks the field); ``$1``, ``$2``... are this fragment's ``params`` (renumbered
    when the query is assembled). Values never go into the text::

        Sql(postgresql="length({field}) > $1", sqlite="length({field}) > $1", params=[3])
    """

    postgresql: str
    sqlite: str
    params: Sequence[Any] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.postgresql, str) or not isinstance(self.sqlite, str):
            raise TypeError("Sql fragments must be str")
        object.__setattr__(self, "params", tuple(self.params))

    def text(self, dialect: str) -> str:
        """The fragment for ``dialect`` ("postgresql" or "sqlite")."""
        return self.postgresql if dialect == "postgresql" else self.sqlite


@dataclass(frozen=True)
class Reversed:
    """Descending order on ``field`` in ``order_by`` (``Reversed("id")`` for newest first)."""

    field: str

    def __post_init__(self) -> None:
        check_field_name(self.field, allow_reserved=True)


Condition = Union[str, Eq, Re, Like, In, Sql]  # noqa: UP007 (a runtime alias on 3.10)
OrderTerm = Union[str, Reversed]  # noqa: UP007
