"""Recovery of one database directory: the newest snapshot plus the logs after it.

Damage is never dropped silently. A torn tail at the end of the newest log (what a crash
in the middle of an append leaves: an incomplete record or zeros) is expected and is cut
off, its bytes kept aside. Anything else (a flipped bit, a truncated snapshot, garbage
between records) stops the start with :class:`DamagedDataError` naming the file and the
byte offset, and nothing on disk is changed. With ``repair=True`` every intact record is
kept (reading resumes at the next intact record) and the damage is reported.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..durable import Damage, scan_records, unpack_record
from .errors import DamagedDataError
from .model import Database
from .snapshot import read_snapshot

__all__ = [
    "LOG_RE",
    "SNAP_RE",
    "SNAP_TMP_RE",
    "Recovered",
    "log_name",
    "recover",
    "scan_generations",
    "snap_name",
]

log = logging.getLogger(__name__)

LOG_RE = re.compile(r"^wal-(\d{10})\.log$")
SNAP_RE = re.compile(r"^snapshot-(\d{10})\.msgpack$")
SNAP_TMP_RE = re.compile(r"^snapshot-(\d{10})\.msgpack\.tmp$")


def log_name(gen: int) -> str:
    return f"wal-{gen:010d}.log"


def snap_name(gen: int) -> str:
    return f"snapshot-{gen:010d}.msgpack"


def scan_generations(directory: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """The log files and snapshot files of ``directory`` by generation (exact names only)."""
    logs: dict[int, Path] = {}
    snaps: dict[int, Path] = {}
    for entry in directory.iterdir():
        if m := LOG_RE.match(entry.name):
            logs[int(m.group(1))] = entry
        elif m := SNAP_RE.match(entry.name):
            snaps[int(m.group(1))] = entry
    return logs, snaps


@dataclass
class Recovered:
    """What recovery found; the caller acts on it (cuts torn tails, moves damage aside)."""

    #: The generation the snapshot covers (every log before it is covered).
    base: int = 0
    #: The first generation that new records may go to.
    next_gen: int = 0
    records: int = 0
    unappliable: int = 0
    torn: list[tuple[Path, Damage]] = field(default_factory=list)
    damage: list[tuple[Path, Damage]] = field(default_factory=list)
    #: Files holding damage, and files that a damaged snapshot may need (kept aside).
    damaged_files: set[Path] = field(default_factory=set)
    #: Files fully covered by an intact snapshot (safe to remove).
    covered: list[Path] = field(default_factory=list)

    def describe(self) -> list[dict[str, Any]]:
        """One entry per damaged region: file, offset, bytes, records, reason."""
        return [
            {"file": str(path), "offset": d.offset, "bytes": d.size, "records": d.records,
             "reason": d.reason}
            for path, d in self.damage
        ]


def recover(directory: Path, db: Database, *, repair: bool = False) -> Recovered:
    """Load ``directory`` into ``db``; raises :class:`DamagedDataError` on damage unless
    ``repair``. Changes nothing on disk (the caller does, from the result)."""
    logs, snaps = scan_generations(directory)
    result = Recovered()
    if snaps:
        newest = max(snaps)
        _load_snapshot(snaps[newest], db, result)
        result.base = newest
        older = [snaps[g] for g in snaps if g < newest] + [logs[g] for g in logs if g < newest]
        if snaps[newest] in result.damaged_files:
            result.damaged_files.update(older)  # may hold what the damaged snapshot lost
        else:
            result.covered.extend(older)
    replay = sorted(g for g in logs if g >= result.base)
    for gen in replay:
        _replay(logs[gen], db, result, last=gen == replay[-1])
    result.next_gen = max([result.base - 1, *logs]) + 1
    if result.damage and not repair:
        raise DamagedDataError(_refusal(result), result.describe())
    return result


def _load_snapshot(path: Path, db: Database, result: Recovered) -> None:
    loaded = read_snapshot(path)
    if loaded.damage:
        result.damage.extend((path, d) for d in loaded.damage)
        result.damaged_files.add(path)
    if loaded.state is None:
        return
    state = db.snapshot()  # defaults for whatever a damaged header lost
    state.update(loaded.state)
    try:
        db.restore(state)
    except Exception as exc:
        result.damage.append((path, Damage(0, 0, f"unusable state ({exc})", 0, False)))
        result.damaged_files.add(path)


def _replay(path: Path, db: Database, result: Recovered, *, last: bool) -> None:
    data = path.read_bytes()
    for item in scan_records(data):
        if isinstance(item, Damage):
            if last and item.torn:
                result.torn.append((path, item))
            else:
                result.damage.append((path, item))
                result.damaged_files.add(path)
            continue
        offset, size, body = item
        try:
            record = unpack_record(body)
        except Exception:
            result.damage.append((path, Damage(offset, size, "undecodable", 1, False)))
            result.damaged_files.add(path)
            continue
        try:
            db.apply(tuple(record))
        except Exception as exc:
            # An intact record that cannot apply did not apply when it was logged either
            # (records are applied in log order after they are durable): same state.
            result.unappliable += 1
            log.warning("%s: record at byte %d does not apply (%s); skipped", path, offset, exc)
            continue
        result.records += 1


def _refusal(result: Recovered) -> str:
    path, first = result.damage[0]
    more = len(result.damage) - 1
    where = f"{path} at byte {first.offset}"
    what = f"{first.size} damaged bytes ({first.reason})" if first.size else first.reason
    tail = f"; and {more} more damaged region(s)" if more else ""
    return (
        f"damaged data in {where}: {what}{tail}. The server did not start and changed "
        "nothing; start it with --repair (repair=True) to keep every intact record and "
        "move the damaged files aside"
    )
