"""Test databases: the Darwin Core archives in an EMODnet-like schema, and small tables."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from typing import TYPE_CHECKING, Any

from pyarrow import csv

if TYPE_CHECKING:
    from pathlib import Path

SCHEMA = """
CREATE TABLE dataset (
    dataset_id serial PRIMARY KEY,
    name text NOT NULL,
    archive text NOT NULL
);
CREATE TABLE event (
    event_pk bigserial PRIMARY KEY,
    dataset_id int NOT NULL REFERENCES dataset,
    event_id text NOT NULL,
    parent_event_id text,
    parent_pk bigint REFERENCES event,
    event_date text,
    event_start date,
    latitude double precision,
    longitude double precision,
    min_depth real,
    max_depth real,
    UNIQUE (dataset_id, event_id)
);
CREATE TABLE occurrence (
    occurrence_pk bigserial PRIMARY KEY,
    event_pk bigint NOT NULL REFERENCES event,
    occurrence_id text NOT NULL,
    basis_of_record text,
    scientific_name text,
    scientific_name_id text,
    aphia_id integer,
    modified timestamptz NOT NULL DEFAULT now()
);
"""

# What an export reads: occurrences with their sample's (or its station's) place and time.
OCCURRENCE_QUERY = """
SELECT o.occurrence_pk, o.occurrence_id, o.basis_of_record, o.scientific_name,
       o.scientific_name_id, o.aphia_id, d.name AS dataset_name, e.event_id,
       coalesce(e.event_start, p.event_start) AS event_date,
       coalesce(e.latitude, p.latitude) AS decimallatitude,
       coalesce(e.longitude, p.longitude) AS decimallongitude,
       coalesce(e.min_depth, p.min_depth) AS min_depth,
       o.modified
FROM occurrence o
JOIN event e ON e.event_pk = o.event_pk
LEFT JOIN event p ON p.event_pk = e.parent_pk
JOIN dataset d ON d.dataset_id = e.dataset_id
"""


def _read(archive: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    table = csv.read_csv(
        io.BytesIO(archive.read(name)),
        parse_options=csv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=csv.ConvertOptions(column_types={}, strings_can_be_null=True),
        read_options=csv.ReadOptions(),
    )
    # Every column as text, as the archive holds it.
    return [
        {k: (None if v is None or v == "" else str(v)) for k, v in row.items()}
        for row in table.to_pylist()
    ]


def _start(value: str | None) -> date | None:
    if not value:
        return None
    return date.fromisoformat(value.split("/")[0][:10])


def _number(value: str | None) -> float | None:
    return None if value is None else float(value)


def aphia_id(lsid: str | None) -> int | None:
    if not lsid or not lsid.startswith("urn:lsid:marinespecies.org:taxname:"):
        return None
    return int(lsid.rsplit(":", 1)[1])


def load_darwin_core(dsn: str, archives: list[Path]) -> dict[str, int]:
    """Load event-core archives; returns the number of occurrences per archive."""
    import psycopg

    counts: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        for path in archives:
            with zipfile.ZipFile(path) as archive:
                events = _read(archive, "event.txt")
                occurrences = _read(archive, "occurrence.txt")
            name = events[0].get("datasetName") or path.stem
            row = conn.execute(
                "INSERT INTO dataset (name, archive) VALUES (%s, %s) RETURNING dataset_id",
                [name, path.name],
            ).fetchone()
            assert row is not None
            dataset_id = row[0]
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY event (dataset_id, event_id, parent_event_id, event_date, event_start, "
                    "latitude, longitude, min_depth, max_depth) FROM STDIN"
                ) as copy,
            ):
                for e in events:
                    copy.write_row([
                        dataset_id, e["eventID"], e.get("parentEventID"), e.get("eventDate"),
                        _start(e.get("eventDate")), _number(e.get("decimalLatitude")),
                        _number(e.get("decimalLongitude")), _number(e.get("minimumDepthInMeters")),
                        _number(e.get("maximumDepthInMeters")),
                    ])  # fmt: skip
            conn.execute(
                "UPDATE event c SET parent_pk = p.event_pk FROM event p "
                "WHERE c.dataset_id = %s AND p.dataset_id = c.dataset_id "
                "AND p.event_id = c.parent_event_id",
                [dataset_id],
            )
            pks = dict(
                conn.execute(
                    "SELECT event_id, event_pk FROM event WHERE dataset_id = %s", [dataset_id]
                ).fetchall()
            )
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY occurrence (event_pk, occurrence_id, basis_of_record, scientific_name, "
                    "scientific_name_id, aphia_id) FROM STDIN"
                ) as copy,
            ):
                for o in occurrences:
                    copy.write_row([
                        pks[o["eventID"]], o["occurrenceID"], o.get("basisOfRecord"),
                        o.get("scientificName"), o.get("scientificNameID"),
                        aphia_id(o.get("scientificNameID")),
                    ])  # fmt: skip
            counts[path.name] = len(occurrences)
        conn.execute("ANALYZE")
    return counts


def fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def execute(dsn: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def cube_and_table_spec(
    tmp: Path, dsn: str, root: str, storage_options: dict[str, Any], *, days: int, rows: int,
    start: str = "2024-01-01", table_parts: int | None = None,
) -> Path:  # fmt: skip
    """Sources for one cube (``days`` daily files) and one table (``rows`` dated points in
    ``dsn``), and a spec building both into ``root``; returns the spec's path.

    The spec reads the DSN from ``LAKE_TEST_SOURCE``; the caller sets it.
    """
    import yaml

    from lake.samples import write_daily_product

    write_daily_product(tmp / "src", start=start, days=days, ny=30, nx=40)
    execute(
        dsn,
        "CREATE TABLE occ (id int PRIMARY KEY, t date NOT NULL, lon float8, lat float8)",
        "INSERT INTO occ SELECT i, '2020-01-01'::date + i, i % 50, i % 40 "
        f"FROM generate_series(1, {rows}) i",
    )
    postgres: dict[str, Any] = {"dsn_env": "LAKE_TEST_SOURCE", "table": "occ"}
    if table_parts is not None:
        postgres["parts"] = table_parts
    spec = {
        "root": root,
        "storage_options": storage_options,
        "datasets": [
            {"id": "sst", "cube": {"netcdf": str(tmp / "src" / "*.nc")},
             "metadata": {"license": "CC-BY-4.0"}},
            {"id": "occ", "table": {"postgres": postgres, "geometry": {"lon": "lon", "lat": "lat"},
                                    "partition_by": ["year(t)"]},
             "metadata": {"license": "CC0-1.0"}},
        ],
    }  # fmt: skip
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
