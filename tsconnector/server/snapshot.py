"""Snapshot files of one database: written so that they can be verified and salvaged.

A snapshot is a sequence of resynchronisable records (:func:`~tsconnector.durable.pack_frame`):
a header with everything of :meth:`Database.snapshot` except the series, one record per
series (long series split into parts of :data:`PART_POINTS` points) and an end record
that counts the records. A damaged byte therefore costs at most one part of one series
when repaired, and a truncated file is recognised by its missing end. :func:`write_snapshot`
writes to a temporary file, fsyncs it, reads it back and checks every record before it
renames it into place. Snapshots of the first format (one record holding everything)
are still read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..durable import Damage, fsync_dir, is_legacy, pack_frame, scan_records, unpack_record

__all__ = [
    "PART_POINTS",
    "LoadedSnapshot",
    "SnapshotVerifyError",
    "read_snapshot",
    "snapshot_frames",
    "write_snapshot",
]

#: Points per series record; longer series are split into several records.
PART_POINTS = 65536
FORMAT = 2


class SnapshotVerifyError(OSError):
    """A snapshot read back after writing did not match what was written."""


def snapshot_frames(state: dict[str, Any]) -> list[bytes]:
    """The records of a snapshot of ``state`` (what :meth:`Database.snapshot` returns)."""
    series = state.get("series", [])
    head = {key: value for key, value in state.items() if key != "series"}
    frames = [pack_frame({"snapshot": FORMAT, "state": head, "series": len(series)})]
    for name, sid, tp, ts, values, *rest in series:
        first = len(ts) if len(ts) <= PART_POINTS else PART_POINTS
        if first == len(ts):
            frames.append(pack_frame(["series", name, sid, tp, ts, values, *rest]))
            continue
        frames.append(pack_frame(["series", name, sid, tp, ts[:first], values[:first], *rest]))
        for start in range(first, len(ts), PART_POINTS):
            stop = start + PART_POINTS
            frames.append(pack_frame(["points", name, ts[start:stop], values[start:stop]]))
    frames.append(pack_frame({"end": len(frames) + 1}))
    return frames


def write_snapshot(path: Path, frames: Iterable[bytes]) -> int:
    """Write ``frames`` to ``path`` durably and verified; returns the bytes written.

    The data goes to ``<path>.tmp`` first, is fsynced, read back and checked record by
    record; only then is it renamed to ``path`` and the directory fsynced. On any
    failure the temporary file is removed and ``path`` is untouched.
    """
    tmp = path.with_name(path.name + ".tmp")
    written = 0
    count = 0
    try:
        with open(tmp, "wb") as fh:
            for frame in frames:
                fh.write(frame)
                written += len(frame)
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        data = tmp.read_bytes()
        intact = 0
        for item in scan_records(data):
            if isinstance(item, Damage):
                raise SnapshotVerifyError(
                    f"snapshot {tmp} read back damaged at byte {item.offset}"
                )
            intact += 1
        if len(data) != written or intact != count:
            raise SnapshotVerifyError(
                f"snapshot {tmp} read back {len(data)} bytes in {intact} records, "
                f"wrote {written} bytes in {count}"
            )
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return written


@dataclass
class LoadedSnapshot:
    """What a snapshot file held: the state (None when nothing usable) and its damage."""

    state: dict[str, Any] | None
    damage: list[Damage] = field(default_factory=list)
    #: Series parts (or whole series) that were in damaged records, when known.
    lost_parts: int = 0


def read_snapshot(path: Path) -> LoadedSnapshot:
    """Read a snapshot, keeping every intact record; ``damage`` lists what was not.

    A snapshot is complete when ``damage`` is empty. Missing header or end records are
    reported as damage too (a truncated file has no end record).
    """
    data = path.read_bytes()
    if is_legacy(data):
        return _read_legacy(data)
    head: dict[str, Any] | None = None
    series: dict[str, list[Any]] = {}
    order: list[str] = []
    damage: list[Damage] = []
    records = 0
    end_count: int | None = None
    for item in scan_records(data):
        if isinstance(item, Damage):
            damage.append(item)
            continue
        offset, size, body = item
        records += 1
        try:
            record = unpack_record(body)
        except Exception:
            damage.append(Damage(offset, size, "undecodable", 1, offset + size == len(data)))
            continue
        if isinstance(record, dict) and "snapshot" in record and head is None:
            head = record
        elif isinstance(record, dict) and "end" in record:
            end_count = record["end"]
        elif isinstance(record, list) and record and record[0] == "series":
            name = record[1]
            if name not in series:
                order.append(name)
            series[name] = [name, *record[2:]]
            series[name][3] = list(series[name][3])
            series[name][4] = list(series[name][4])
        elif isinstance(record, list) and record and record[0] == "points":
            entry = series.get(record[1])
            if entry is not None:
                entry[3].extend(record[2])
                entry[4].extend(record[3])
        else:
            damage.append(Damage(offset, size, "unknown record", 1, False))
    if (end_count is None or end_count != records) and not damage:
        # Cut at a record boundary (or records missing): the count tells.
        missing_at = len(data)
        damage.append(Damage(missing_at, 0, "no end record" if end_count is None else
                             f"{records} of {end_count} records", 0, True))
    if head is None:
        return LoadedSnapshot(None if not series else _state({}, series, order), damage)
    state = _state(head.get("state", {}), series, order)
    expected = head.get("series")
    lost = expected - len(series) if isinstance(expected, int) else 0
    return LoadedSnapshot(state, damage, max(lost, 0))


def _state(head: dict[str, Any], series: dict[str, list[Any]], order: list[str]) -> dict[str, Any]:
    state = dict(head)
    state["series"] = [series[name] for name in order]
    return state


def _read_legacy(data: bytes) -> LoadedSnapshot:
    """A snapshot of the first format: one record holding the whole state."""
    damage: list[Damage] = []
    for item in scan_records(data):
        if isinstance(item, Damage):
            damage.append(item)
            continue
        try:
            state = unpack_record(item[2])
        except Exception:
            damage.append(Damage(item[0], item[1], "undecodable", 1, True))
            continue
        if isinstance(state, dict) and not damage:
            return LoadedSnapshot(state)
    if not damage:
        damage.append(Damage(0, len(data), "garbage", 1, True))
    return LoadedSnapshot(None, damage)
