"""Writing answers to standard output so that a closed pipe is always noticed.

A buffered write that the reader cuts short can report a partial count instead of
raising; writing the rest again surfaces the ``BrokenPipeError``.
"""

from __future__ import annotations

import errno
import sys

__all__ = ["write_out"]


def write_out(text: str) -> None:
    """Write ``text`` to standard output completely, or raise (``BrokenPipeError``)."""
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(text)
        return
    out.flush()
    data = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
    while data:
        written = buffer.write(data)
        if not written:  # None (would block) or nothing taken: the reader is gone
            raise BrokenPipeError(errno.EPIPE, "the output does not take more data")
        data = data[written:]
    buffer.flush()
