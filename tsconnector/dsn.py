"""Connection strings: ``siridb://user:password@host:port,host:port/dbname?backup=host:port``.

One string names everything a client needs, so that a command line, a service's
configuration or the ``TSCONNECTOR_DSN`` environment variable can carry it:

- ``user:password@`` is optional; without it the user is ``iris`` with password
  ``siri`` (SiriDB's default account). Both are percent-decoded (``p%40ss`` is ``p@ss``).
- hosts are comma separated, ``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port``;
  the port defaults to 9000 (SiriDB's client port).
- the path is the database name (percent-decoded); it is required.
- query options: ``backup=host:port[,host:port]`` adds backup hosts (used only when
  no other host is ready; repeatable) and ``weight.host:port=N`` gives a host the
  weight N (1..9; the port may be left out when it is 9000).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_PORT",
    "DEFAULT_USER",
    "DSN_ENV",
    "Dsn",
    "DsnHost",
    "dsn_from_env",
    "format_dsn",
    "parse_dsn",
    "parse_hosts",
]

SCHEME = "siridb://"
DEFAULT_PORT = 9000
DEFAULT_USER = "iris"
DEFAULT_PASSWORD = "siri"
#: The environment variable read when no DSN or host list is given.
DSN_ENV = "TSCONNECTOR_DSN"

_HOST_FORBIDDEN = set("@/?#,[]% \t\r\n&=")


@dataclass(frozen=True)
class DsnHost:
    """One server of a DSN: address, weight (1..9) and whether it is a backup."""

    host: str
    port: int = DEFAULT_PORT
    weight: int = 1
    backup: bool = False

    @property
    def address(self) -> str:
        """``host:port``, IPv6 addresses in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def entry(self) -> tuple[Any, ...]:
        """This host as a ``TsClient`` hostlist entry."""
        if self.weight == 1 and not self.backup:
            return (self.host, self.port)
        return (self.host, self.port, {"weight": self.weight, "backup": self.backup})


@dataclass(frozen=True)
class Dsn:
    """A parsed connection string: what ``TsClient(username, password, dbname, hostlist)`` takes."""

    username: str
    password: str
    dbname: str
    hosts: tuple[DsnHost, ...]

    @property
    def hostlist(self) -> list[tuple[Any, ...]]:
        """The hosts as a ``TsClient`` hostlist."""
        return [h.entry() for h in self.hosts]

    def __repr__(self) -> str:  # never show the password
        return f"Dsn({format_dsn(self, redact=True)!r})"


def parse_host(text: str, what: str = "host") -> tuple[str, int]:
    """``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port`` as ``(host, port)``."""
    item = text.strip()
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise ValueError(f"{what} {item!r}: missing ']' after the IPv6 address")
        host, rest = item[1:end], item[end + 1 :]
        if not host or ":" not in host:
            raise ValueError(f"{what} {item!r}: brackets hold an IPv6 address")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{what} {item!r}: expected ':port' after ']'")
        port_text = rest[1:] if rest else None
    else:
        if item.count(":") > 1:
            raise ValueError(f"{what} {item!r}: put an IPv6 address in brackets, [::1]:9000")
        host, sep, port_text_raw = item.partition(":")
        port_text = port_text_raw if sep else None
    if not host:
        raise ValueError(f"{what} {item!r}: the host name is empty")
    bad = _HOST_FORBIDDEN.intersection(host)
    if bad:
        raise ValueError(f"{what} {item!r}: a host name cannot contain {''.join(sorted(bad))!r}")
    port = DEFAULT_PORT
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{what} {item!r}: the port must be a number 1..65535")
        port = int(port_text)
    return host, port


def parse_hosts(text: str, what: str = "host") -> list[tuple[str, int]]:
    """A comma separated host list (``h1:9000,[::1]:9001,h3``; port 9000 by default)."""
    items = [part for part in text.split(",") if part.strip()]
    if not items:
        raise ValueError(f"no {what} given")
    return [parse_host(part, what) for part in items]


def parse_dsn(text: str) -> Dsn:
    """Parse ``siridb://user:password@host:port,host:port/dbname?backup=host:port``.

    Raises ``ValueError`` saying what is wrong (never echoing the password).
    """
    if not isinstance(text, str):
        raise TypeError(f"a DSN is a str, not {type(text).__name__}")
    text = text.strip()
    if not text[: len(SCHEME)].lower() == SCHEME:
        raise ValueError("a DSN starts with siridb:// (siridb://user:password@host:port/dbname)")
    rest = text[len(SCHEME) :]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostpart = netloc.rpartition("@")
    username, password = DEFAULT_USER, DEFAULT_PASSWORD
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        if not user_text:
            raise ValueError("the DSN has an empty user name")
        if not colon:
            raise ValueError("the DSN names a user but no password (siridb://user:password@...)")
        username, password = unquote(user_text, errors="strict"), unquote(password_text)
    if not hostpart.strip():
        raise ValueError("the DSN names no host (siridb://user:password@host:port/dbname)")
    primaries = parse_hosts(hostpart, "DSN host")
    if not slash or not path:
        raise ValueError("the DSN names no database (siridb://host:port/dbname)")
    if "/" in path:
        raise ValueError("the DSN's database name contains '/' (write it as %2F)")
    dbname = unquote(path, errors="strict")
    backups: list[tuple[str, int]] = []
    weights: dict[tuple[str, int], int] = {}
    for option in filter(None, query.split("&")):
        key, eq, value = option.partition("=")
        key, value = unquote(key), unquote(value)
        if key == "backup" and eq:
            backups.extend(parse_hosts(value, "DSN backup host"))
        elif key.startswith("weight.") and eq:
            address = parse_host(key[len("weight.") :], "DSN weight host")
            if not value.isdigit() or not value.isascii() or not 1 <= int(value) <= 9:
                raise ValueError(f"DSN option {key}: the weight must be 1..9, got {value!r}")
            weights[address] = int(value)
        else:
            raise ValueError(
                f"unknown DSN option {key!r} (known: backup=host:port, weight.host:port=N)"
            )
    seen: set[tuple[str, int]] = set()
    hosts: list[DsnHost] = []
    for address, backup in [(a, False) for a in primaries] + [(a, True) for a in backups]:
        if address in seen:
            raise ValueError(f"the DSN lists host {DsnHost(*address).address} twice")
        seen.add(address)
        hosts.append(DsnHost(address[0], address[1], weights.pop(address, 1), backup))
    if weights:
        unknown = ", ".join(DsnHost(*a).address for a in weights)
        raise ValueError(f"DSN weight for a host it does not list: {unknown}")
    return Dsn(username, password, dbname, tuple(hosts))


def format_dsn(dsn: Dsn, *, redact: bool = False) -> str:
    """The string :func:`parse_dsn` reads back as ``dsn`` (password as ``***`` if ``redact``)."""
    password = "***" if redact else quote(dsn.password, safe="")
    primaries = [h.address for h in dsn.hosts if not h.backup]
    options = []
    backups = [h.address for h in dsn.hosts if h.backup]
    if backups:
        options.append("backup=" + ",".join(backups))
    options.extend(f"weight.{h.address}={h.weight}" for h in dsn.hosts if h.weight != 1)
    return (
        f"{SCHEME}{quote(dsn.username, safe='')}:{password}@{','.join(primaries)}"
        f"/{quote(dsn.dbname, safe='')}" + ("?" + "&".join(options) if options else "")
    )


def dsn_from_env(environ: Mapping[str, str] | None = None) -> Dsn | None:
    """The DSN in ``TSCONNECTOR_DSN``, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get(DSN_ENV, "").strip()
    if not text:
        return None
    try:
        return parse_dsn(text)
    except ValueError as exc:
        raise ValueError(f"{DSN_ENV}: {exc}") from None


def resolve_dsn(dsn: str | None) -> Dsn:
    """``dsn`` parsed, or the one in ``TSCONNECTOR_DSN`` when ``dsn`` is None."""
    if dsn is not None:
        return parse_dsn(dsn)
    found = dsn_from_env()
    if found is None:
        raise ValueError(f"no DSN given and {DSN_ENV} is not set")
    return found
