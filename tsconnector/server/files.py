"""RES_FILE payloads (package types 7-10): SiriDB's servers, users, groups, database files.

The real server sends its on-disk files, qpack-encoded as one open array that starts
with a schema number. The embedded server builds the same shapes from its model; the
password field holds a salted hash, as SiriDB's does, so it differs per start.
"""

from __future__ import annotations

import hashlib
import uuid as uuid_mod

from ..protocol import RequestType
from .model import Database
from .wire import CLOSE_ARRAY, OPEN_ARRAY, packb

_SHARD_MASK = 9104  # the value SiriDB 2.0.55 writes after the expiration settings


def _password_hash(name: str, password: str, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}{name}{password}".encode()).hexdigest()
    return f"{salt}${digest[:48]}"


def file_payload(tp: int, db: Database, host: str, server_port: int, salt: str) -> bytes:
    """The RES_FILE payload for request type ``tp`` about ``db``."""
    db_uuid = uuid_mod.UUID(db.uuid).bytes
    if tp == RequestType.FILE_SERVERS:
        return OPEN_ARRAY + packb(1) + packb([db_uuid, host, server_port, 0])
    if tp == RequestType.FILE_USERS:
        users = [
            packb([u.name, _password_hash(u.name, u.password, salt), u.access])
            for u in db.users.values()
        ]
        return OPEN_ARRAY + packb(1) + b"".join(users)
    if tp == RequestType.FILE_GROUPS:
        groups = [packb([g.name, g.expression]) for g in db.groups.values()]
        return OPEN_ARRAY + packb(1) + b"".join(groups)
    fields = [
        7,
        db_uuid,
        db.name,
        db.precision,
        8192,
        db.duration_num,
        db.duration_log,
        db.timezone,
        float(db.drop_threshold),
        db.select_points_limit,
        db.list_limit,
        db.expiration_num or 0,
        db.expiration_log or 0,
        None,
        _SHARD_MASK,
    ]
    return OPEN_ARRAY + b"".join(packb(f) for f in fields) + CLOSE_ARRAY
