"""Bad table sources through the command line: one message naming the source, the fault and
the fix; a non-zero exit; no secret in the output; the published table left as it was."""

from __future__ import annotations

import hashlib
import json
import socket
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from pgdata import execute
from typer.testing import CliRunner

from lake.cli import app
from lake.errors import ExitCode

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.postgres

GOOD = {
    "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "occ"},
    "geometry": {"lon": "lon", "lat": "lat"},
    "partition_by": ["year(eventdate)"],
}


def _run(tmp: Path, client: Client, table: dict[str, Any], *extra: str) -> tuple[int, str]:
    spec = tmp / "spec.yaml"
    dataset = {"id": "occ", "table": table, "metadata": {"license": "CC0-1.0"}}
    spec.write_text(yaml.safe_dump({"root": str(tmp / "lake"), "datasets": [dataset]}))
    result = CliRunner().invoke(
        app, ["build", str(spec), "--scheduler", client.scheduler.address, *extra]
    )
    return result.exit_code, " ".join(result.output.split())


def _snapshot(tmp: Path) -> dict[str, str]:
    """Every file of the lake with its content digest."""
    lake = tmp / "lake"
    if not lake.exists():
        return {}
    return {
        str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def published(
    pg_dsn: str, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    execute(
        pg_dsn,
        "CREATE TABLE occ (id int PRIMARY KEY, eventdate timestamptz, lon float8, lat float8, "
        "name text)",
        "INSERT INTO occ SELECT i, '2020-01-01'::timestamptz + i * interval '1 day', "
        "i % 90, i % 45, 'n' || i FROM generate_series(1, 500) i",
    )
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    code, output = _run(tmp_path, client, GOOD)
    assert code == 0, output
    before = _snapshot(tmp_path)
    assert "occ/table.json" in before
    return before


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server(
    published: dict[str, str], tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    monkeypatch.setenv("LAKE_TEST_SOURCE", f"postgresql://lake:Sup3r-secret@127.0.0.1:{port}/db")
    code, output = _run(tmp_path, client, GOOD)
    assert code == ExitCode.SOURCE
    assert "table occ" in output and "cannot connect to the server" in output
    assert "Fix: check host, port" in output and "Sup3r-secret" not in output
    assert _snapshot(tmp_path) == published


def test_wrong_password_is_never_printed(
    pg_password_server: tuple[str, str], tmp_path: Path, client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    dsn, right = pg_password_server
    wrong = "Wr0ng-pass;word"
    monkeypatch.setenv("LAKE_TEST_SOURCE", f"{dsn} password='{wrong}'")
    code, output = _run(tmp_path, client, GOOD)
    assert code == ExitCode.SOURCE
    assert "the server refused the password" in output and "PGPASSWORD" in output
    assert wrong not in output and right not in output
    assert not (tmp_path / "lake" / "occ").exists()


def test_missing_dsn_variable(tmp_path: Path, client: Client) -> None:
    table = {**GOOD, "postgres": {"dsn_env": "LAKE_TEST_UNSET_VARIABLE", "table": "occ"}}
    code, output = _run(tmp_path, client, table)
    assert code == ExitCode.SPEC
    assert "LAKE_TEST_UNSET_VARIABLE is not set" in output and "export" in output


@pytest.mark.parametrize(
    ("change", "expected", "exit_code"),
    [
        ({"postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "public.nothing"}},
         "table public.nothing: does not exist", ExitCode.SOURCE),
        ({"geometry": {"lon": "longitude", "lat": "lat"}},
         "has no column 'longitude' (named by datasets[occ].table.geometry.lon)",
         ExitCode.SOURCE),
        ({"partition_by": ["year(name)"]},
         "datasets[occ].table.partition_by: column 'name' is of type text, not date or "
         "timestamp", ExitCode.SPEC),
        ({"partition_by": ["lon"]},
         "column 'lon' is of type float8, not integer, text, boolean or date", ExitCode.SPEC),
        ({"postgres": {"dsn_env": "LAKE_TEST_SOURCE",
                       "query": "WITH x AS (DELETE FROM occ RETURNING *) SELECT * FROM x"}},
         "the query writes to the database", ExitCode.SOURCE),
        ({"postgres": {"dsn_env": "LAKE_TEST_SOURCE",
                       "query": "SELECT * FROM occ; DROP TABLE occ"}},
         "is not a single valid SELECT", ExitCode.SOURCE),
        ({"postgres": {"dsn_env": "LAKE_TEST_SOURCE",
                       "query": "SELECT * FROM occ WHERE id > 10000"}},
         "returned no rows, so there is nothing to publish", ExitCode.SOURCE),
        ({"postgres": {"dsn_env": "LAKE_TEST_SOURCE",
                       "query": "SELECT id, NULL::timestamptz AS eventdate, lon, lat FROM occ"}},
         "partition column 'eventdate': is null in 500 row(s)", ExitCode.SOURCE),
    ],
    ids=["missing-table", "missing-column", "year-of-text", "float-partition",
         "writing-query", "two-statements", "empty-result", "null-partition"],
)  # fmt: skip
def test_bad_source_leaves_the_table_intact(
    published: dict[str, str], pg_dsn: str, tmp_path: Path, client: Client,
    change: dict[str, Any], expected: str, exit_code: int,
) -> None:  # fmt: skip
    code, output = _run(tmp_path, client, {**GOOD, **change}, "--full-refresh")
    assert code == exit_code, output
    assert expected in output and "Fix:" in output
    assert _snapshot(tmp_path) == published
    # The database was not written to.
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM occ").fetchone()
    assert row is not None and row[0] == 500


def test_empty_first_build_publishes_nothing(
    pg_dsn: str, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(pg_dsn, "CREATE TABLE occ (id int PRIMARY KEY, eventdate date, lon real, lat real)")
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    code, output = _run(tmp_path, client, GOOD)
    assert code == ExitCode.SOURCE and "returned no rows" in output
    assert not list((tmp_path / "lake").rglob("*.parquet"))
    assert not (tmp_path / "lake" / "occ" / "table.json").exists()


def test_changed_partitioning_needs_a_full_refresh(
    published: dict[str, str], tmp_path: Path, client: Client
) -> None:
    table = {**GOOD, "partition_by": ["grid(30)"]}
    code, output = _run(tmp_path, client, table)
    assert code == ExitCode.TARGET and "--full-refresh" in output
    assert _snapshot(tmp_path) == published
    code, output = _run(tmp_path, client, table, "--full-refresh")
    assert code == 0, output
    manifest = json.loads((tmp_path / "lake" / "occ" / "table.json").read_text())
    assert manifest["partitioning"] == ["grid(30)"] and manifest["rows"] == 500
    assert all("cell_30deg=" in f["path"] for f in manifest["files"])
