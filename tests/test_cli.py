"""The command line: query, insert, import and bench against a throw-away embedded server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tsconnector.__main__ import _csv_batches, main


def test_query_prints_json_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--compact", "show version", "count series"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"data": [{"name": "version", "value": "2.0.55"}]},
        {"series": 0},
    ]


def test_insert_reads_json_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "points.json"
    path.write_text(json.dumps({"a": [[1, 2], [3, 4.5]], "b": [[5, "x"]]}))
    assert main(["insert", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "Successfully inserted 3 point(s)."


def test_import_batches_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "points.csv"
    rows = ["series,timestamp,value"] + [f"s{i % 3},{1000 + i},{i * 0.5}" for i in range(25)]
    path.write_text("\n".join(rows) + "\n")
    assert main(["import", "--batch", "10", str(path)]) == 0
    assert capsys.readouterr().out.startswith("imported 25 points in ")


def test_csv_batches_types_and_errors() -> None:
    text = "s,1,2\ns,2,2.5\nt,3,hello\n# comment\n"
    batches = list(_csv_batches(io.StringIO(text), batch_size=2))
    assert batches == [{"s": [[1, 2], [2, 2.5]]}, {"t": [[3, "hello"]]}]
    with pytest.raises(ValueError, match="line 2"):
        list(_csv_batches(io.StringIO("s,1,2\ns,not-a-time,3\n"), batch_size=10))
    with pytest.raises(ValueError, match="expected series,timestamp,value"):
        list(_csv_batches(io.StringIO("s,1\n"), batch_size=10))


def test_bench_reports_rates(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--points", "2000", "--series", "4", "--batch", "100", "--queries", "200"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "insert: 2000 points" in out
    assert "query:  200 queries" in out


def test_bad_hosts_argument_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["query", "--hosts", "nohost", "show version"])
    assert "expected host:port" in capsys.readouterr().err
