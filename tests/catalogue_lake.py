"""The catalogue tests' lake, the fixture ``lake`` (a daily cube and a PostgreSQL table,
built through the command line), and the spec and command runner they use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from pgdata import execute
from typer.testing import CliRunner

from helpers import SHARED
from lake.cli import app

if TYPE_CHECKING:
    from distributed import Client

SCHEMAS = SHARED / "schemas"


def _spec(tmp: Path, **changes: Any) -> Path:
    doc: dict[str, Any] = {
        "root": str(tmp / "lake"),
        "title": "Test lake",
        "storage_options": {"secret_access_key": "NEVER-IN-A-DOCUMENT-42"},
        "datasets": [
            {
                "id": "sst",
                "cube": {"netcdf": str(tmp / "src" / "*.nc")},
                "metadata": {
                    "title": "Sea temperature", "license": "CC-BY-4.0",
                    "doi": "10.48670/moi-00027", "citation": "E.U. Copernicus Marine Service",
                    "keywords": ["temperature", "ocean"],
                    "providers": [{"name": "Copernicus Marine", "roles": ["producer", "licensor"],
                                   "url": "https://marine.copernicus.eu"}],
                },
            },
            {
                "id": "occ",
                "table": {
                    "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "occ"},
                    "geometry": {"lon": "lon", "lat": "lat"},
                    "partition_by": ["year(eventdate)"],
                    "incremental": {"column": "modified"},
                },
                "metadata": {"title": "Occurrences", "license": "CC0-1.0"},
            },
        ],
    }  # fmt: skip
    doc.update(changes)
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(client: Client, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--scheduler", client.scheduler.address]
                                if args[0] == "build" else list(args))  # fmt: skip
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def lake(tmp_path: Path, client: Client, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    from lake.samples import write_daily_product

    write_daily_product(tmp_path / "src", start="2024-05-01", days=4, ny=24, nx=36)
    execute(
        pg_dsn,
        "CREATE TABLE occ (id int PRIMARY KEY, eventdate timestamptz NOT NULL, lon float8, "
        "lat float8, modified timestamptz NOT NULL DEFAULT clock_timestamp())",
        "INSERT INTO occ (id, eventdate, lon, lat) SELECT i, "
        "'2019-12-30'::timestamptz + i * interval '1 day', i % 40 - 20, i % 30 + 30 "
        "FROM generate_series(1, 800) i",
    )
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    code, output = _run(client, "build", str(_spec(tmp_path)))
    assert code == 0, output
    assert "catalogue:" in output
    return tmp_path / "lake"
