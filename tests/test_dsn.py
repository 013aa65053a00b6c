"""Connection strings: parsing, defaults, errors, the round trip, TsClient.from_dsn."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsconnector import TsClient
from tsconnector.dsn import Dsn, DsnHost, dsn_from_env, format_dsn, parse_dsn, parse_hosts


def test_full_dsn() -> None:
    dsn = parse_dsn(
        "siridb://al%40ice:p%3Ass%2Fw@h1:9000,h2:9001/my%20db?backup=h3:9002&weight.h2:9001=3"
    )
    assert (dsn.username, dsn.password, dsn.dbname) == ("al@ice", "p:ss/w", "my db")
    assert dsn.hostlist == [
        ("h1", 9000),
        ("h2", 9001, {"weight": 3, "backup": False}),
        ("h3", 9002, {"weight": 1, "backup": True}),
    ]


def test_defaults_ipv6_and_repeated_backups() -> None:
    dsn = parse_dsn("SIRIDB://[::1],db.example:9100/dbtest?backup=[fe80::2]:9&backup=b2&weight.b2=2")
    assert (dsn.username, dsn.password) == ("iris", "siri")
    assert dsn.hosts == (
        DsnHost("::1", 9000),
        DsnHost("db.example", 9100),
        DsnHost("fe80::2", 9, backup=True),
        DsnHost("b2", 9000, weight=2, backup=True),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://h/db", "starts with siridb://"),
        ("siridb://h1", "names no database"),
        ("siridb://u:p@/db", "names no host"),
        ("siridb://user@h/db", "no password"),
        ("siridb://h:0/db", "port must be a number"),
        ("siridb://h:x/db", "port must be a number"),
        ("siridb://::1/db", "IPv6 address in brackets"),
        ("siridb://[::1/db", "missing ']'"),
        ("siridb://h,h:9000/db", "twice"),
        ("siridb://h/db?weight.h=10", "weight must be 1..9"),
        ("siridb://h/db?weight.other=2", "does not list: other:9000"),
        ("siridb://h/db?timeout=3", "unknown DSN option 'timeout'"),
        ("siridb://h/a/b", "contains '/'"),
    ],
)
def test_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_dsn(text)


def test_errors_and_repr_never_show_the_password() -> None:
    with pytest.raises(ValueError) as info:
        parse_dsn("siridb://u:s3cret@h:99999/db")
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(parse_dsn("siridb://u:s3cret@h/db"))


def test_parse_hosts() -> None:
    assert parse_hosts("a, b:1,[::1]:2") == [("a", 9000), ("b", 1), ("::1", 2)]
    with pytest.raises(ValueError, match="no host"):
        parse_hosts(" , ")


def test_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dsn_from_env({}) is None
    assert dsn_from_env({"TSCONNECTOR_DSN": "siridb://h/db"}) == parse_dsn("siridb://h/db")
    with pytest.raises(ValueError, match=r"TSCONNECTOR_DSN: .*names no database"):
        dsn_from_env({"TSCONNECTOR_DSN": "siridb://h"})
    monkeypatch.setenv("TSCONNECTOR_DSN", "siridb://x:y@h:1/envdb")
    client = TsClient.from_dsn(timeout=3)
    assert repr(client) == "<TsClient 'envdb' on [h:1] not connected>"


def test_from_dsn_builds_the_hostlist() -> None:
    client = TsClient.from_dsn("siridb://h1,h2:1/db?backup=h3&weight.h1=5")
    assert [(s.host, s.port, s.weight, s.backup) for s in client.stats()] == [
        ("h1", 9000, 5, False),
        ("h2", 1, 1, False),
        ("h3", 9000, 1, True),
    ]


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9_-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_hostname = st.lists(_label, min_size=1, max_size=3).map(".".join)
_host = st.one_of(_hostname, st.ip_addresses().map(str))


def _hosts(backup: bool) -> st.SearchStrategy[list[DsnHost]]:
    return st.lists(
        st.builds(
            DsnHost,
            host=_host,
            port=st.integers(1, 65535),
            weight=st.integers(1, 9),
            backup=st.just(backup),
        ),
        min_size=0 if backup else 1,
        max_size=3,
        unique_by=lambda h: (h.host, h.port),
    )


@st.composite
def _dsns(draw: st.DrawFn) -> Dsn:
    primaries = draw(_hosts(False))
    taken = {(h.host, h.port) for h in primaries}
    backups = [h for h in draw(_hosts(True)) if (h.host, h.port) not in taken]
    return Dsn(
        username=draw(_text.filter(bool)),
        password=draw(_text),
        dbname=draw(_text.filter(bool)),
        hosts=tuple(primaries + backups),
    )


@given(_dsns())
def test_format_then_parse_round_trips(dsn: Dsn) -> None:
    assert parse_dsn(format_dsn(dsn)) == dsn


def test_dsn_api_is_exported_from_the_package() -> None:
    import tsconnector

    assert tsconnector.Dsn is Dsn
    assert tsconnector.parse_dsn is parse_dsn
    assert tsconnector.format_dsn is format_dsn
    assert {"Dsn", "parse_dsn", "format_dsn"} <= set(tsconnector.__all__)
    dsn = tsconnector.parse_dsn("siridb://h1:9001/db")
    assert tsconnector.parse_dsn(tsconnector.format_dsn(dsn)) == dsn
