"""The command line: a server started by ``tsconnector serve``, import/query round trips,
one-line errors with their exit status, and the interactive prompt through a pseudo-terminal.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tsconnector.cli import main
from tsconnector.cli.errors import CliError
from tsconnector.cli.importer import CsvLineError, csv_batches
from tsconnector.cli.render import render
from tsconnector.cli.shell import _clean, load_prompt_toolkit, statement_complete

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "tsconnector"]
LISTENING = re.compile(r"listening on (\S+):(\d+)$")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSCONNECTOR_")}
    env.update(extra)
    return env


def _read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """One line of the process's stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError("no output from the process")
    return proc.stdout.readline()


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """``host:port`` of a server started with ``tsconnector serve --port 0``."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--db", "dbtest:ms"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        match = LISTENING.search(_read_line(proc).strip())
        assert match, "serve did not print 'listening on HOST:PORT'"
        yield f"{match.group(1)}:{match.group(2)}"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0  # SIGTERM is a clean stop


def run_cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=_env(**env),
        stdin=subprocess.DEVNULL,
    )


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], status: int = 1) -> str:
    """Run ``main(argv)`` in process; assert the status and one line on stderr; return it."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code  # type: ignore[assignment]
    captured = capsys.readouterr()
    assert code == status, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# ----------------------------------------------------------------- round trip


@pytest.mark.slow
def test_import_100k_lines_and_read_back_as_table_json_csv(served: str, tmp_path: Path) -> None:
    expected: dict[str, list[list[int | float]]] = {}
    lines = ["series,timestamp,value"]
    for i in range(100_000):
        # a series keeps the type of its first value: floats in odd series, integers in even
        name, ts, value = f"imp.{i % 10}", 1_700_000_000_000 + i, (i * 0.25 if i % 2 else i)
        expected.setdefault(name, []).append([ts, value])
        lines.append(f"{name},{ts},{value!r}")
    source = tmp_path / "points.csv"
    source.write_text("\n".join(lines) + "\n")

    imported = run_cli("import", "--hosts", served, str(source))
    assert (imported.returncode, imported.stdout, imported.stderr) == (0, "", "")

    select_all = "select * from /imp\\..*/"
    as_json = run_cli("query", "--hosts", served, "--format", "json", "--compact", select_all)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == expected

    as_csv = run_cli("query", "--hosts", served, "--format", "csv", select_all)
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["series", "timestamp", "value"]
    assert sorted(rows[1:]) == sorted(line.split(",") for line in lines[1:])

    as_table = run_cli("query", "--hosts", served, "--format", "table", select_all)
    table = as_table.stdout.splitlines()
    assert table[0].split() == ["series", "timestamp", "time", "(UTC)", "value"]
    assert table[-1] == "(100000 rows)"
    assert len(table) == 100_000 + 3
    assert table[2].split()[:2] == ["imp.0", "1700000000000"]
    assert table[2].split()[2:4] == ["2023-11-14", "22:13:20"]


def test_query_formats_and_statements_from_stdin(served: str) -> None:
    shown = run_cli("query", "--hosts", served, "--format", "table", "show time_precision")
    assert shown.stdout.splitlines() == [
        "name            value", "--------------  -----", "time_precision  ms", "(1 row)"
    ]
    piped = subprocess.run(
        [*CLI, "query", "--hosts", served, "--compact"],
        input="count series\n# a comment\nshow version\n",
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert [json.loads(line) for line in piped.stdout.splitlines()][1] == {
        "data": [{"name": "version", "value": "2.0.55"}]
    }


def test_dsn_from_the_environment(served: str) -> None:
    result = run_cli(
        "query", "--format", "csv", "show dbname",
        TSCONNECTOR_DSN=f"siridb://iris:siri@{served}/dbtest",
    )
    assert result.stdout == "name,value\ndbname,dbtest\n"


def test_console_script_and_serve_help() -> None:
    script = Path(sys.executable).with_name("tsconnector")
    if not script.exists():
        pytest.skip("the tsconnector console script is not installed")
    result = subprocess.run([str(script), "serve", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: tsconnector serve ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from tsconnector import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tsconnector {__version__}"


def test_insert_and_import_in_process(
    served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "points.json"
    path.write_text(json.dumps({"ins.a": [[1, 2], [3, 4.5]], "ins.b": [[5, "x"]]}))
    assert main(["insert", "--hosts", served, str(path)]) == 0
    assert capsys.readouterr().out == "Successfully inserted 3 point(s).\n"

    source = tmp_path / "points.csv"
    source.write_text("".join(f"prog.s,{i},{i}\n" for i in range(1, 26)))
    assert main(["import", "--hosts", served, "--batch", "10", "--progress", str(source)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "points/s" in captured.err
    assert re.search(r"\rimported 25 points in [0-9.]+ s \([0-9,]+ points/s\)", captured.err)


def test_throw_away_server_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "points.json"
    path.write_text('{"a": [[1, 2]]}')
    assert main(["insert", "--embedded", str(path)]) == 0
    assert capsys.readouterr().out == "Successfully inserted 1 point(s).\n"
    argv = ["bench", "--embedded", "--points", "400", "--series", "4", "--batch", "50",
            "--queries", "40"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "insert: 400 points" in out
    assert "query:  40 queries" in out


def test_render_shapes() -> None:
    listing = {"columns": ["name", "length"], "series": [["a", 2], ["bb", 10]]}
    assert render(listing, "table") == (
        "name  length\n----  ------\na          2\nbb        10\n(2 rows)\n"
    )
    assert render(listing, "csv") == "name,length\na,2\nbb,10\n"
    assert render({"success_msg": "ok"}, "table") == "ok\n"
    assert render({"s": [[0, 1.5]]}, "table", precision=0).splitlines()[2].split() == [
        "s", "0", "1970-01-01", "00:00:00", "1.5"
    ]
    assert render({"odd": {"x": 1}}, "csv") == '{\n  "odd": {\n    "x": 1\n  }\n}\n'


# --------------------------------------------------------------------- errors


def test_bad_query(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, ["query", "--hosts", served, "selec *"])
    assert line.startswith("tsconnector query: error: query failed: Query error at position 0.")


def test_wrong_password_and_unknown_database(
    served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(capsys, ["query", "--hosts", served, "--password", "x", "show version"])
    assert line == (
        f"tsconnector query: error: cannot connect to database 'dbtest' as 'iris': "
        f"{served}: Invalid credentials."
    )
    line = one_line_error(capsys, ["query", "--dsn", f"siridb://{served}/nodb", "show version"])
    assert line.endswith(f"database 'nodb' as 'iris': {served}: Unknown database.")


def test_server_down_is_reported_at_once() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The request timeout is 600 s; the refusal must be reported long before.
    result = run_cli("query", "--hosts", f"127.0.0.1:{port}", "--timeout", "600",
                     "show version", timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        "tsconnector query: error: cannot connect to database 'dbtest' as 'iris': "
        f"127.0.0.1:{port}: connection refused\n"
    )


def test_port_in_use(served: str) -> None:
    host, port = served.rsplit(":", 1)
    result = run_cli("serve", "--host", host, "--port", port)
    assert result.returncode == 1
    assert result.stderr == (
        f"tsconnector serve: error: cannot listen on {host}:{port}: address already in use\n"
    )


def test_missing_files(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("import", "insert"):
        line = one_line_error(capsys, [command, "--hosts", served, "no/such.file"])
        assert line == f"tsconnector {command}: error: no/such.file: no such file or directory"


def test_bad_json(served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"a": [[1, 2]')
    line = one_line_error(capsys, ["insert", "--hosts", served, str(path)])
    assert line.startswith(f"tsconnector insert: error: {path}: not valid JSON: ")


def test_bad_csv_line_stores_the_rows_before_it(
    served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("series,timestamp,value\nbad.s,1,1\nbad.s,2,2\nbad.s,3,3\nbad.s,x,4\n")
    line = one_line_error(capsys, ["import", "--hosts", served, "--batch", "2", str(path)])
    assert line == (
        f"tsconnector import: error: {path} line 5: timestamp 'x' is not an integer; "
        "3 rows stored (all rows before line 5)"
    )
    assert main(["query", "--hosts", served, "--compact", 'select count() from "bad.s"']) == 0
    assert json.loads(capsys.readouterr().out)["bad.s"][0][1] == 3


def test_rejected_insert_says_how_many_rows_were_stored(
    served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("rej.s,1,1\nrej.s,2,2\nrej.s,-1,3\n")  # a negative timestamp is refused
    line = one_line_error(capsys, ["import", "--hosts", served, "--batch", "2", str(path)])
    assert line.startswith("tsconnector import: error: ")
    assert line.endswith(f"; 2 rows stored, lines 3-3 of {path} not stored")


def test_write_commands_need_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["import", "x.csv"], ["insert", "x.json"], ["bench"]):
        line = one_line_error(capsys, argv)
        assert line.endswith(
            "error: no server given: use --hosts host:port, --dsn siridb://... or "
            "TSCONNECTOR_DSN (or --embedded to write into a throw-away in-memory server)"
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--embedded", "--points", "0"], "argument --points: must be at least 1, got 0"),
        (["bench", "--embedded", "--queries", "-5"], "argument --queries: must be at least 1"),
        (["import", "--embedded", "--batch", "0", "f"], "argument --batch: must be at least 1"),
        (["query", "--timeout", "0", "x"], "argument --timeout: must be above 0, got 0"),
        (["query", "--hosts", "h:port", "x"], "the port must be a number 1..65535"),
    ],
)
def test_argument_checks(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, argv, status=2)
    assert message in line
    assert line.endswith(f"(see tsconnector {argv[0]} --help)")


def test_more_points_than_series(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, ["bench", "--embedded", "--points", "3", "--series", "4"])
    assert line == "tsconnector bench: error: --points (3) must be at least --series (4)"


def test_bad_dsn(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, ["query", "--dsn", "siridb://u:secret@h", "show version"])
    assert line == (
        "tsconnector query: error: --dsn: the DSN names no database (siridb://host:port/dbname)"
    )


def test_broken_pipe(served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "many.json"
    path.write_text(json.dumps({"pipe.s": [[i, i] for i in range(1, 20_001)]}))
    assert main(["insert", "--hosts", served, str(path)]) == 0
    proc = subprocess.Popen(
        [*CLI, "query", "--hosts", served, "--format", "csv", 'select * from "pipe.s"'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.read(10) == b"series,tim"  # then stop reading, as `| head` does
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 1
    assert err == (
        "tsconnector query: error: the output was closed before everything was written "
        "(broken pipe)\n"
    )


def test_prompt_needs_the_cli_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prompt_toolkit", None)
    with pytest.raises(CliError, match=r"pip install 'tsconnector\[cli\]'"):
        load_prompt_toolkit()


def test_csv_batches_lines_and_values() -> None:
    text = "s,1,2\ns,2,2.5\nt,3,hello\n# comment\nu,4\n"
    batches = csv_batches(io.StringIO(text), batch_size=2)
    first = next(batches)
    assert (first.data, first.first_line, first.last_line) == ({"s": [[1, 2], [2, 2.5]]}, 1, 2)
    with pytest.raises(CsvLineError) as info:
        next(batches)
    assert (info.value.line, info.value.pending.data) == (5, {"t": [[3, "hello"]]})
    assert str(info.value) == "line 5: expected series,timestamp,value, got 2 field(s)"


def test_statement_completion() -> None:
    assert statement_complete("show version")
    assert statement_complete('select * from "a""b"')
    assert not statement_complete("select * from 'open")
    assert not statement_complete("select mean(1h")
    assert not statement_complete("select * \\")
    assert _clean("select *\\\n  from \"a\";") == 'select * from "a"'


# ------------------------------------------------------------ interactive prompt


def test_interactive_prompt_through_a_pty(tmp_path: Path) -> None:
    pytest.importorskip("prompt_toolkit")
    history = tmp_path / "history"
    master, slave = os.openpty()
    env = _env(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", TSCONNECTOR_HISTORY=str(history))
    proc = subprocess.Popen([*CLI, "query"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    seen = bytearray()

    def wait_for(token: bytes, start: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while (found := seen.find(token, start)) < 0:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"{token!r} not shown; got {bytes(seen[-400:])!r}")
            chunk = os.read(master, 4096)
            if not chunk:
                raise EOFError(bytes(seen))
            seen.extend(chunk)
        return found + len(token)

    try:
        at = wait_for(b"dbtest>", 0)
        os.write(master, b"show version\r")
        at = wait_for(b"(1 row)", at)
        assert re.search(rb"name\s+value\r\n-+\s+-+\r\nversion\s+2\.0\.55\r\n", seen)
        at = wait_for(b"dbtest>", at)
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert "show version" in history.read_text()
