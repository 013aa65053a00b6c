"""``alter database set tee 'address[:port]'``: the address as SiriDB reads it."""

from __future__ import annotations

import socket
from typing import Final

__all__ = ["TEE_DEFAULT_PORT", "parse_tee_address"]

#: The port SiriDB uses when the tee address has none.
TEE_DEFAULT_PORT: Final = 9104
#: SiriDB keeps addresses in a buffer of this size (the name must be shorter).
_MAX_ADDRESS: Final = 256


def parse_tee_address(text: str) -> tuple[str, int] | None:
    """``(address, port)`` for ``ADDRESS[:PORT]`` (IPv6 in brackets), or None.

    As in SiriDB, a port that is not a number is ignored (the default is kept),
    ``%HOSTNAME`` is replaced by the host name, and a port outside 1..65535 or an
    empty or too long address is invalid.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            address, rest = text[1:], ""
        else:
            address, rest = text[1:end], text[end + 1 :]
        port_text = rest.split(":", 1)[1] if ":" in rest else ""
    else:
        address, sep, port_text = text.partition(":")
        if not sep:
            port_text = ""
    if not address or len(address.encode()) >= _MAX_ADDRESS:
        return None
    address = address.replace("%HOSTNAME", socket.gethostname())
    port = TEE_DEFAULT_PORT
    digits = port_text[1:] if port_text.startswith("-") else port_text
    if digits and digits.isascii() and digits.isdigit():
        value = max(min(int(port_text), (1 << 63) - 1), -(1 << 63))  # strtol clamps
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)  # and atoi keeps an int
        if not 1 <= value <= 65535:
            return None
        port = value
    return address, port
