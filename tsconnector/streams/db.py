"""``StreamDB``: BTrDB's connection object over a ``TsClient`` (points) and a catalog
(identity and metadata). ``connect(hosts_or_client, catalog_url)`` builds one.
"""

from __future__ import annotations

import re
import uuid as _uuid
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .dataplane import DataPlane
from .errors import (
    AmbiguousStreamError,
    SeriesNotFoundError,
    StreamExists,
    StreamNotFoundError,
    StreamsError,
)
from .meta import (
    TAG_KEYS,
    StreamRow,
    check_collection,
    check_tags,
    encode_annotations,
    encode_value,
)
from .naming import adopted_uuid, is_uuid_text, series_for, to_uuid
from .store import StreamStore
from .stream import Stream
from .streamset import StreamSet

if TYPE_CHECKING:
    from ..catalog import Database
    from ..client import TsClient

__all__ = ["StreamDB", "connect"]


class StreamDB:
    """Streams over SiriDB series: ``StreamDB(client, catalog)``.

    ``client`` is a connected :class:`~tsconnector.TsClient`; ``catalog`` a catalog
    :class:`~tsconnector.catalog.Database` (SQLite or PostgreSQL), whose ``streams``
    tables are created on first use. ``chunk_points`` bounds the points one read
    request returns when reading in chunks (default: the server's
    ``select_points_limit``). The StreamDB closes the client and the catalog only if
    :func:`connect` made them.
    """

    def __init__(
        self,
        client: TsClient,
        catalog: Database,
        *,
        chunk_points: int | None = None,
        names_per_query: int = 1000,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.data = DataPlane(client, chunk_points=chunk_points, names_per_query=names_per_query)
        self.store = StreamStore(catalog)
        self._owned: list[Any] = []

    # -- lifecycle --------------------------------------------------------------------
    async def open(self) -> StreamDB:
        """Create or migrate the catalog's stream tables and read the server's settings."""
        await self.store.setup()
        await self.data.settings()
        return self

    async def close(self) -> None:
        """Close the client and catalog if :func:`connect` opened them."""
        owned, self._owned = self._owned, []
        for resource in reversed(owned):
            if hasattr(resource, "wait_closed"):
                resource.close()
                await resource.wait_closed()
            else:
                await resource.close()

    async def __aenter__(self) -> StreamDB:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- streams ----------------------------------------------------------------------
    def stream_from_uuid(self, uuid: Any) -> Stream:
        """A :class:`Stream` for ``uuid`` without asking anyone whether it exists."""
        return Stream(self, to_uuid(uuid))

    def _wrap(self, rows: Iterable[StreamRow]) -> list[Stream]:
        return [Stream(self, row.uuid, row) for row in rows]

    def _new_row(
        self,
        uuid: Any,
        collection: str,
        tags: Mapping[str, Any] | None,
        annotations: Mapping[str, Any] | None,
        series: str | None,
    ) -> StreamRow:
        uid = to_uuid(uuid)
        checked = check_tags(tags)
        if not checked.get("name"):
            raise StreamsError("a stream needs a non-empty name tag: tags={'name': ...}")
        return StreamRow(
            uuid=uid,
            collection=check_collection(collection),
            series=series if series is not None else series_for(uid),
            tags={k: checked.get(k, "") for k in TAG_KEYS},
            annotations=encode_annotations(annotations),
        )

    async def create(
        self,
        uuid: Any,
        collection: str,
        tags: Mapping[str, Any] | None = None,
        annotations: Mapping[str, Any] | None = None,
        *,
        series: str | None = None,
        adopt: bool = False,
    ) -> Stream:
        """Register a new stream (``StreamExists`` if the UUID is taken).

        Its points go to the series ``stream:<uuid>``. With ``adopt=True`` and
        ``series=`` the stream takes over that existing series and its points
        (``SeriesNotFoundError`` if the server has no such series); ``uuid`` may then be
        ``None`` for the deterministic ``uuid5(ADOPT_NAMESPACE, series)``.
        """
        if adopt:
            if series is None:
                raise ValueError("adopt=True needs series='name of the existing series'")
            found = await self.data.existing([series])
            if series not in found:
                raise SeriesNotFoundError(f"the server has no series {series!r} to adopt")
            if uuid is None:
                uuid = adopted_uuid(series)
        elif series is not None:
            raise ValueError("series= names an existing series: pass adopt=True as well")
        row = self._new_row(uuid, collection, tags, annotations, series)
        await self.store.insert([row])
        return Stream(self, row.uuid, row)

    async def create_many(self, specs: Iterable[Mapping[str, Any]]) -> StreamSet:
        """Register many streams in ONE catalog transaction (all or none).

        Each spec is a mapping of :meth:`create`'s arguments (``uuid``, ``collection``,
        ``tags``, ``annotations``); ``StreamExists`` if any UUID is taken.
        """
        rows = [
            self._new_row(
                spec["uuid"],
                spec["collection"],
                spec.get("tags"),
                spec.get("annotations"),
                None,
            )
            for spec in specs
        ]
        seen: set[_uuid.UUID] = set()
        for row in rows:
            if row.uuid in seen:
                raise StreamExists(f"stream {row.uuid} appears twice")
            seen.add(row.uuid)
        await self.store.insert(rows)
        return StreamSet(self._wrap(rows))

    async def adopt(
        self,
        *series: str,
        collection: str,
        pattern: str | re.Pattern[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> StreamSet:
        """Streams for existing series that no stream holds yet, plus the ones that do.

        Names the series, or selects them with the regex ``pattern`` (SiriDB anchors
        it: it must match the whole name, ``"legacy/.*"``); each new stream
        gets ``uuid5(ADOPT_NAMESPACE, series)``, the ``collection`` given and the series
        name (``/`` replaced by ``_``) as its name tag unless ``tags`` has one. Adopting
        again finds the same streams.
        """
        names = list(series)
        if pattern is not None:
            text = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
            names.extend(name for name, _, _ in await self.data.list_series(text))
        names = list(dict.fromkeys(names))
        if not names:
            return StreamSet([])
        found = await self.data.existing(names)
        missing = [n for n in names if n not in found]
        if missing:
            raise SeriesNotFoundError(f"the server has no series {missing[0]!r} to adopt")
        held = await self.store.by_series(names)
        new_rows = []
        for name in names:
            if name in held:
                continue
            row_tags = {"name": name.replace("/", "_")[:255], **(tags or {})}
            new_rows.append(
                self._new_row(adopted_uuid(name), collection, row_tags, annotations, name)
            )
        if new_rows:
            await self.store.insert(new_rows)
        rows = {**held, **{row.series: row for row in new_rows}}
        return StreamSet(self._wrap(rows[n] for n in names))

    async def streams(
        self,
        *identifiers: Any,
        versions: Sequence[int] | None = None,
        is_collection_prefix: bool = False,
    ) -> StreamSet:
        """A :class:`StreamSet` of streams named by UUID, UUID text or ``collection/name``.

        Every stream is looked up in the catalog (``StreamNotFoundError`` for an unknown
        UUID or name, :class:`AmbiguousStreamError` for a name several streams share).
        ``versions`` may only hold 0 (latest): SiriDB keeps no versions.
        """
        from .stream import check_version

        if versions is not None:
            if len(versions) != len(identifiers):
                raise ValueError("number of versions does not match identifiers")
            for version in versions:
                check_version(version)
        uuids: list[_uuid.UUID] = []
        order: list[tuple[str, Any]] = []
        named: list[tuple[str, str]] = []
        for ident in identifiers:
            if isinstance(ident, _uuid.UUID) or (isinstance(ident, str) and is_uuid_text(ident)):
                uid = to_uuid(ident)
                uuids.append(uid)
                order.append(("uuid", uid))
            elif isinstance(ident, str) and "/" in ident:
                collection, _, name = ident.rpartition("/")
                named.append((collection, name))
                order.append(("name", (collection, name)))
            else:
                raise ValueError(
                    f"cannot identify a stream by {ident!r}: give a UUID or 'collection/name'"
                )
        by_uuid = await self.store.get(uuids) if uuids else {}
        absent = [str(u) for u in uuids if u not in by_uuid]
        if absent:
            raise StreamNotFoundError(f"no stream {absent[0]}")
        by_name = await self.store.find_names(named, prefix=is_collection_prefix) if named else {}
        result: list[Stream] = []
        for kind, key in order:
            if kind == "uuid":
                result.append(Stream(self, key, by_uuid[key]))
                continue
            matches = by_name.get(key, [])
            label = f"{key[0]}/{key[1]}"
            if not matches:
                raise StreamNotFoundError(f"could not identify stream {label!r}")
            if len(matches) > 1:
                raise AmbiguousStreamError(f"{len(matches)} streams match {label!r}")
            result.append(Stream(self, matches[0].uuid, matches[0]))
        return StreamSet(result)

    async def streams_in_collection(
        self,
        *collection: str,
        is_collection_prefix: bool = True,
        tags: Mapping[str, Any] | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> StreamSet:
        """Streams in these collections (all with none given) whose tags and annotations
        equal the ones given; an annotation value ``None`` only asks for the key."""
        checked = check_tags(tags)
        wanted: dict[str, str | None] = {
            key: None if value is None else encode_value(value, key)
            for key, value in (annotations or {}).items()
        }
        rows = await self.store.find(
            list(collection) or None,
            prefix=is_collection_prefix,
            tags=checked,
            annotations=wanted,
        )
        return StreamSet(self._wrap(rows))

    # -- catalog-wide questions -------------------------------------------------------
    async def list_collections(self, starts_with: str = "") -> list[str]:
        """Collections (sorted) starting with ``starts_with``."""
        return await self.store.collections(starts_with)

    async def list_unique_names(self, collection: str | None = None) -> list[str]:
        """Distinct stream names (under a collection prefix, as in BTrDB)."""
        return await self.store.distinct("name", collection or "")

    async def list_unique_units(self, collection: str | None = None) -> list[str]:
        """Distinct units (under a collection prefix)."""
        return await self.store.distinct("unit", collection or "")

    async def list_unique_annotations(self, collection: str | None = None) -> list[str]:
        """Distinct annotation keys (under a collection prefix)."""
        return await self.store.annotation_keys(collection or "")

    async def collection_metadata(self, prefix: str) -> tuple[dict[str, int], dict[str, int]]:
        """``(tag key -> streams with it set, annotation key -> streams with it)`` under
        the collection prefix."""
        return await self.store.key_counts(prefix)

    async def query(self, stmt: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Read-only SQL over the ``streams`` view, ``$1``-style parameters, list of dicts.

        Columns: ``uuid, collection, name, unit, ingress, distiller, property_version,
        annotations, series``. A statement that writes, or reads anything but
        ``streams``, raises :class:`QueryRefused`.
        """
        return await self.store.query(stmt, params)

    async def info(self) -> dict[str, Any]:
        """Server version, time precision, points limit, hosts and their state, catalog."""
        settings = await self.data.settings()
        parts = [int(p) if p.isdigit() else 0 for p in settings.version.split(".")[:3]]
        parts += [0] * (3 - len(parts))
        hosts = [
            {
                "address": f"{h.host}:{h.port}",
                "state": h.state.value,
                "backup": h.backup,
                "weight": h.weight,
                "requests": h.requests,
                "failures": h.failures,
                "last_error": h.last_error,
            }
            for h in self.client.stats()
        ]
        return {
            "majorVersion": parts[0],
            "minorVersion": parts[1],
            "build": settings.version,
            "version": settings.version,
            "time_precision": ("s", "ms", "us", "ns")[settings.precision],
            "select_points_limit": settings.select_points_limit,
            "hosts": hosts,
            "proxy": {"proxyEndpoints": [h["address"] for h in hosts]},
            "catalog": self.catalog.dialect,
        }

    def __repr__(self) -> str:
        return f"<StreamDB {self.client!r} catalog={self.catalog.dialect}>"


async def connect(
    hosts_or_client: Any,
    catalog_url: Any,
    *,
    chunk_points: int | None = None,
    **client_options: Any,
) -> StreamDB:
    """A ready :class:`StreamDB`: data through ``hosts_or_client``, metadata in the catalog.

    ``hosts_or_client``: a connected ``TsClient`` (kept open on close), a DSN
    ``siridb://user:pass@host:port/db``, or a host list (with ``username``,
    ``password`` and ``dbname`` in ``client_options``). ``catalog_url``: a catalog URL
    (``sqlite:///path``, ``sqlite://:memory:``, ``postgresql://...``) or an open catalog
    ``Database``. What this function opens, ``StreamDB.close()`` closes.
    """
    from ..catalog import Database
    from ..catalog import connect as catalog_connect
    from ..client import TsClient

    owned: list[Any] = []
    try:
        if isinstance(hosts_or_client, TsClient):
            client = hosts_or_client
        else:
            if isinstance(hosts_or_client, str):
                client = TsClient.from_dsn(hosts_or_client)
            else:
                client = TsClient(
                    client_options.pop("username", "iris"),
                    client_options.pop("password", "siri"),
                    client_options.pop("dbname"),
                    hosts_or_client,
                    **client_options,
                )
            owned.append(client)
            await client.__aenter__()
        if isinstance(catalog_url, Database):
            catalog = catalog_url
        else:
            catalog = catalog_connect(catalog_url)
            owned.append(catalog)
        db = StreamDB(client, catalog, chunk_points=chunk_points)
        db._owned = owned
        await db.open()
        return db
    except BaseException:
        for resource in reversed(owned):
            if isinstance(resource, TsClient):
                resource.close()
                await resource.wait_closed()
            else:
                await resource.close()
        raise
