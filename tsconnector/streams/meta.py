"""Stream metadata: collections, BTrDB's fixed tags, free-form annotations, and their limits.

Tags are BTrDB's four keys (``name``, ``unit``, ``ingress``, ``distiller``) with string
values; an empty value is the same as no tag. Annotations map string keys to any value
that JSON can hold (plus UUID, datetime, numpy.datetime64 and sets), stored as strings
the way BTrDB stores them: a string as it is, anything else as JSON. Reading decodes
JSON and falls back to the raw string -- so, as in BTrDB, the string ``"42"`` reads back
as the number 42. Keys and stored values are at most 255 characters.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid as _uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import InvalidAnnotation, InvalidCollection, InvalidTagKey, InvalidTagValue

__all__ = [
    "MAX_LENGTH",
    "TAG_KEYS",
    "StreamRow",
    "check_collection",
    "check_tags",
    "decode_annotations",
    "decode_value",
    "encode_annotations",
    "encode_value",
]

TAG_KEYS = ("name", "unit", "ingress", "distiller")
MAX_LENGTH = 255


@dataclass(frozen=True)
class StreamRow:
    """One stream as the catalog holds it (annotation values still encoded)."""

    uuid: _uuid.UUID
    collection: str
    series: str
    property_version: int = 1
    tags: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The ``name`` tag."""
        return self.tags.get("name", "")

    @property
    def unit(self) -> str:
        """The ``unit`` tag ('' when unset)."""
        return self.tags.get("unit", "")

    def evolve(self, **changes: Any) -> StreamRow:
        """A copy with ``changes``."""
        return replace(self, **changes)


def check_collection(collection: Any) -> str:
    """A valid collection: a non-empty ``/``-separated path without empty segments."""
    if not isinstance(collection, str):
        raise InvalidCollection(f"a collection is a str, not {type(collection).__name__}")
    if not collection or len(collection) > MAX_LENGTH:
        raise InvalidCollection(f"a collection has 1..{MAX_LENGTH} characters: {collection!r}")
    if any(not part for part in collection.split("/")):
        raise InvalidCollection(f"collection {collection!r} has an empty path segment")
    if "\x00" in collection:
        raise InvalidCollection("a collection cannot hold NUL characters")
    return collection


def _check_text(value: Any, what: str, error: type[ValueError]) -> str:
    if not isinstance(value, str):
        raise error(f"{what} must be a str, not {type(value).__name__}")
    if len(value) > MAX_LENGTH:
        raise error(f"{what} has {len(value)} characters; at most {MAX_LENGTH} are allowed")
    if "\x00" in value:
        raise error(f"{what} cannot hold NUL characters")
    return value


def check_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Validated tags (``None`` values become ''); unknown keys raise :class:`InvalidTagKey`."""
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if key not in TAG_KEYS:
            raise InvalidTagKey(f"tag key {key!r} is not one of {TAG_KEYS}")
        text = "" if value is None else _check_text(value, f"tag {key!r}", InvalidTagValue)
        if key == "name" and "/" in text:
            raise InvalidTagValue(f"a stream name cannot hold '/': {text!r}")
        out[key] = text
    return out


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, _uuid.UUID):
            return str(o)
        if isinstance(o, _dt.datetime):
            if o.tzinfo is None:
                o = o.replace(tzinfo=_dt.timezone.utc)
            return o.isoformat()
        if type(o).__name__ == "datetime64" and type(o).__module__ == "numpy":
            return str(o) + "Z"
        if isinstance(o, (set, frozenset)):
            return sorted(o, key=repr)
        return super().default(o)


def encode_value(value: Any, key: str = "") -> str:
    """An annotation value as BTrDB stores it: a str as it is, anything else as JSON."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, cls=_Encoder, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise InvalidAnnotation(f"annotation {key!r}: {exc}") from None
        if text.startswith('"') and text.endswith('"'):  # UUID, datetime: stored bare
            text = json.loads(text)
    return _check_text(text, f"annotation {key!r}", InvalidAnnotation)


def decode_value(text: str) -> Any:
    """A stored annotation value: its JSON value, or the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def encode_annotations(annotations: Mapping[str, Any] | None) -> dict[str, str]:
    """Validated, encoded annotations."""
    out: dict[str, str] = {}
    for key, value in (annotations or {}).items():
        _check_text(key, "an annotation key", InvalidAnnotation)
        if not key:
            raise InvalidAnnotation("an annotation key cannot be empty")
        out[key] = encode_value(value, key)
    return out


def decode_annotations(stored: Mapping[str, str]) -> dict[str, Any]:
    """Decoded annotations of a stored row."""
    return {key: decode_value(text) for key, text in stored.items()}
