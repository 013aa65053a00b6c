"""``DbFile``: a blob stored in chunks, streamed in and out, transactional like rows.

A file is a row of ``tsconnector_files`` (id, owner, size) and its content rows of
``tsconnector_file_chunks`` (file id, sequence number, at most ``chunk_size`` bytes),
the same on both backends. Content is written and read one chunk at a time, so memory
stays at a few chunks whatever the size of the blob. Deleting a file (or its owner
table or row) deletes its chunks; nothing else is ever touched.
"""

from __future__ import annotations

import asyncio
import inspect
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Union

from .errors import RowNotFound

if TYPE_CHECKING:
    from .session import Session
    from .table import Row, Table

#: Size of the stored chunks written by ``save_from`` (1 MiB).
STORE_CHUNK_SIZE = 1 << 20
#: Default size of the pieces ``iter_data`` yields (256 KiB).
READ_CHUNK_SIZE = 256 << 10

BytesLike = Union[bytes, bytearray, memoryview]  # noqa: UP007 (a runtime alias on 3.10)
Source = Union[BytesLike, Iterable[BytesLike], AsyncIterable[BytesLike], Any]  # noqa: UP007


class DbFile:
    """A blob in the catalog; get one with ``await session.get_db_file(id=None)``."""

    def __init__(self, session: Session, id: int) -> None:
        self.session = session
        self.id = id

    def __repr__(self) -> str:
        return f"DbFile(id={self.id})"

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def create(cls, session: Session, owner: Table | Row | None) -> DbFile:
        from .table import Row, Table

        owner_table: str | None = None
        owner_row: int | None = None
        if isinstance(owner, Table):
            owner_table = owner.name
        elif isinstance(owner, Row):
            if owner.id is None:
                raise ValueError("a file's owner row must be stored first (its id is None)")
            owner_table, owner_row = owner.table.name, owner.id
        elif owner is not None:
            raise TypeError(f"owner must be a Table or a Row, not {type(owner).__name__}")
        file_id = await session.fetchval(
            "INSERT INTO tsconnector_files (owner_table, owner_row) VALUES ($1, $2) RETURNING id",
            owner_table,
            owner_row,
        )
        return cls(session, int(file_id))

    @classmethod
    async def open(cls, session: Session, id: int) -> DbFile:
        if not isinstance(id, int) or isinstance(id, bool):
            raise TypeError(f"file id must be int, not {type(id).__name__}")
        found = await session.fetchval("SELECT id FROM tsconnector_files WHERE id = $1", id)
        if found is None:
            raise RowNotFound(f"no file {id}")
        return cls(session, id)

    @classmethod
    async def remove(cls, session: Session, id: int) -> None:
        if not isinstance(id, int) or isinstance(id, bool):
            raise TypeError(f"file id must be int, not {type(id).__name__}")
        # Chunks first: SQLite enforces the cascade only with foreign keys on.
        await session.execute("DELETE FROM tsconnector_file_chunks WHERE file_id = $1", id)
        if await session.execute("DELETE FROM tsconnector_files WHERE id = $1", id) == 0:
            raise RowNotFound(f"no file {id}")

    async def delete(self) -> None:
        """Delete this file and its content."""
        await self.remove(self.session, self.id)

    # ------------------------------------------------------------------ content

    async def size(self) -> int:
        """The content's length in bytes."""
        size = await self.session.fetchval(
            "SELECT size FROM tsconnector_files WHERE id = $1", self.id
        )
        if size is None:
            raise RowNotFound(f"no file {self.id}")
        return int(size)

    async def save_from(self, source: Source, *, chunk_size: int = STORE_CHUNK_SIZE) -> int:
        """Replace the content with ``source``; returns the number of bytes stored.

        ``source`` is bytes-like, a binary file object (``read(n)``, plain or async;
        plain files are read in a worker thread), or an iterable or async iterable of
        bytes-like pieces of any size. It is consumed piece by piece.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        s = self.session
        # Locks the file row on PostgreSQL (readers of this file wait for the commit).
        if await s.execute("UPDATE tsconnector_files SET size = 0 WHERE id = $1", self.id) == 0:
            raise RowNotFound(f"no file {self.id}")
        await s.execute("DELETE FROM tsconnector_file_chunks WHERE file_id = $1", self.id)
        insert = "INSERT INTO tsconnector_file_chunks (file_id, seq, data) VALUES ($1, $2, $3)"
        total = seq = 0
        async for chunk in _rechunk(_pieces(source, chunk_size), chunk_size):
            await s.execute(insert, self.id, seq, chunk)
            seq += 1
            total += len(chunk)
        await s.execute("UPDATE tsconnector_files SET size = $2 WHERE id = $1", self.id, total)
        return total

    async def iter_data(self, chunk_size: int = READ_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The content in pieces of ``chunk_size`` bytes (the last may be shorter)."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        s = self.session
        lock = " FOR SHARE" if s.dialect == "postgresql" and not s.readonly else ""
        found = await s.fetchval(f"SELECT id FROM tsconnector_files WHERE id = $1{lock}", self.id)
        if found is None:
            raise RowNotFound(f"no file {self.id}")
        async for piece in _rechunk(self._stored_chunks(), chunk_size):
            yield piece

    async def read(self) -> bytes:
        """The whole content at once (for small files)."""
        return b"".join([piece async for piece in self.iter_data(STORE_CHUNK_SIZE)])

    async def _stored_chunks(self) -> AsyncIterator[bytes]:
        select = "SELECT data FROM tsconnector_file_chunks WHERE file_id = $1 AND seq = $2"
        seq = 0
        while True:
            data = await self.session.fetchval(select, self.id, seq)
            if data is None:
                return
            yield bytes(data)
            seq += 1


async def _pieces(source: Source, read_size: int) -> AsyncIterator[BytesLike]:
    """The pieces of any accepted source, without reading ahead."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), read_size):
            yield view[start : start + read_size]
        return
    read = getattr(source, "read", None)
    if read is not None:
        in_memory = isinstance(source, io.BytesIO)
        while True:
            if inspect.iscoroutinefunction(read):
                piece = await read(read_size)
            elif in_memory:
                piece = read(read_size)
            else:
                piece = await asyncio.to_thread(read, read_size)
            if not piece:
                return
            _check_piece(piece)
            yield piece
    elif isinstance(source, AsyncIterable):
        async for piece in source:
            _check_piece(piece)
            yield piece
    elif isinstance(source, Iterable) and not isinstance(source, str):
        items: Iterable[Any] = source
        for item in items:
            _check_piece(item)
            yield item
    else:
        raise TypeError(
            "save_from takes bytes, a binary file or an (async) iterable of bytes, "
            f"not {type(source).__name__}"
        )


def _check_piece(piece: object) -> None:
    if not isinstance(piece, (bytes, bytearray, memoryview)):
        raise TypeError(f"blob pieces must be bytes-like, not {type(piece).__name__}")


async def _rechunk(pieces: AsyncIterator[BytesLike], size: int) -> AsyncIterator[bytes]:
    """Pieces of any sizes as chunks of exactly ``size`` bytes (the last may be shorter)."""
    buffer = bytearray()
    async for piece in pieces:
        view = memoryview(piece).cast("B")
        start = 0
        if buffer:
            take = min(size - len(buffer), len(view))
            buffer += view[:take]
            start = take
            if len(buffer) < size:
                continue
            yield bytes(buffer)
            buffer.clear()
        while len(view) - start >= size:
            yield bytes(view[start : start + size])
            start += size
        buffer += view[start:]
    if buffer:
        yield bytes(buffer)
