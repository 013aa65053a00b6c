"""Names of tables, fields and components: validation, quoting and derived names.

Every name that reaches SQL text is validated here first, then quoted. Table names are
lower case ASCII (SQLite compares identifiers case-insensitively, PostgreSQL does not, so
only one spelling can mean the same on both) and never contain ``__``: the names the
catalog derives from a table (``t__pkey``, ``t__ix_field``...) contain it, so they can
never collide with a user's table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

_TABLE_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_COMPONENT_RE = re.compile(r"[a-z_][a-z0-9_.\-]*\Z")

#: Longest table name: PostgreSQL keeps 63 bytes and ``__id_seq`` is appended.
MAX_TABLE_LEN = 48
#: Longest field name (PostgreSQL's identifier limit).
MAX_FIELD_LEN = 63
#: Table names starting with these belong to the catalog, its components or the engine.
RESERVED_TABLE_PREFIXES = ("tsconnector_", "sqlite_", "pg_")
#: Row attributes that are columns, not fields of the row's data.
RESERVED_FIELDS = frozenset({"id", "version"})


def check_table_name(name: object) -> str:
    """Return ``name`` if it is a valid user table name, else raise ``ValueError``/``TypeError``."""
    if not isinstance(name, str):
        raise TypeError(f"table name must be str, not {type(name).__name__}: {name!r}")
    if (
        not _TABLE_RE.match(name)
        or "__" in name
        or len(name) > MAX_TABLE_LEN
        or name.startswith(RESERVED_TABLE_PREFIXES)
    ):
        raise ValueError(
            f"invalid table name {name!r}: use 1..{MAX_TABLE_LEN} characters of a-z, 0-9 and _, "
            "not starting with a digit, without '__' and not starting with "
            + ", ".join(repr(p) for p in RESERVED_TABLE_PREFIXES)
        )
    return name


_KNOWN_FIELDS: set[str] = set()


def check_field_name(name: object, *, allow_reserved: bool = False) -> str:
    """Return ``name`` if it is a valid field name, else raise ``ValueError``/``TypeError``."""
    if type(name) is str and name in _KNOWN_FIELDS:
        return name
    if not isinstance(name, str):
        raise TypeError(f"field name must be str, not {type(name).__name__}: {name!r}")
    if not _FIELD_RE.match(name) or len(name) > MAX_FIELD_LEN:
        raise ValueError(
            f"invalid field name {name!r}: use 1..{MAX_FIELD_LEN} characters of A-Z, a-z, "
            "0-9 and _, not starting with a digit"
        )
    if name in RESERVED_FIELDS:
        if not allow_reserved:
            raise ValueError(f"field name {name!r} is reserved (row.id, row.version are columns)")
        return name
    if len(_KNOWN_FIELDS) < 10_000:
        _KNOWN_FIELDS.add(name)
    return name


def check_component_name(name: object) -> str:
    """Return ``name`` if it is a valid migration component name (``streams``, ``a.b-c``)."""
    if not isinstance(name, str) or not _COMPONENT_RE.match(name) or len(name) > 63:
        raise ValueError(
            f"invalid component name {name!r}: use 1..63 characters of a-z, 0-9, _, . and -"
        )
    return name


def check_identifier(name: object) -> str:
    """Return ``name`` if it is a plain identifier (schema, channel): ``[A-Za-z_][A-Za-z0-9_]*``."""
    if not isinstance(name, str) or not _FIELD_RE.match(name) or len(name) > 63:
        raise ValueError(
            f"invalid identifier {name!r}: use 1..63 characters of A-Z, a-z, 0-9 and _, "
            "not starting with a digit"
        )
    return name


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (``"`` doubled), the same on both backends.

    Any string is quoted safely; NUL characters, which neither backend accepts in an
    identifier, raise ``ValueError``.
    """
    if not isinstance(name, str):
        raise TypeError(f"identifier must be str, not {type(name).__name__}")
    if not name or "\x00" in name:
        raise ValueError(f"invalid identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def derived_name(table: str, suffix: str) -> str:
    """A name derived from ``table`` (an index, a sequence), at most 63 characters.

    ``suffix`` must itself be safe (letters, digits, ``_``); a name that would be too long
    ends in a hash of the full name instead, so it stays unique.
    """
    name = f"{table}__{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.blake2b(name.encode(), digest_size=6).hexdigest()
    return f"{table}__{digest}"


def check_row_fields(fields: Mapping[Any, Any]) -> None:
    """Check that ``fields`` maps valid field names to strings the databases can store.

    Keys and values must be ``str``; a ``TypeError`` names the first bad field. Values
    must not contain NUL characters or unpaired surrogates (neither PostgreSQL text nor
    UTF-8 can hold them): ``ValueError``.
    """
    for key, value in fields.items():
        check_field_name(key)
        if not isinstance(value, str):
            raise TypeError(
                f"field {key!r}: values must be str, not {type(value).__name__} ({value!r:.60})"
            )
        if "\x00" in value:
            raise ValueError(f"field {key!r}: values must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"field {key!r}: value is not valid Unicode (unpaired surrogate)"
                ) from None
