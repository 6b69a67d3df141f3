"""Benchmark: PostgreSQL occurrence table → partitioned GeoParquet, against the floor and the
scripts users write today.

For each table size it generates an EMODnet-like occurrence table on a PostgreSQL server, then
runs, each in its own process tree (wall time and peak RSS of the tree; the server's own
processes are not counted, the same for every step):

- ``floor``: one ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` drained by psql to /dev/null;
- ``ours``: ``lake build`` to hive-partitioned GeoParquet (year partitions, Hilbert order);
- ``pandas``: ``pandas.read_sql`` + ``geopandas.points_from_xy`` + ``to_parquet``;
- ``connectorx``: ``connectorx.read_sql`` (2 partitions, Arrow) + geopandas ``to_parquet``.

DuckDB's postgres scanner is not measured: its extension downloads from
extensions.duckdb.org at run time.

    python benchmarks/tables.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/tables.py --rows 10000000 --steps ours --against HEAD~1   # and that commit
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
from measure import run_measured, worktree

RESULTS = Path(__file__).resolve().parent / "results" / "tables.json"
QUERY = "SELECT * FROM occurrence"

GENERATE = """
DROP TABLE IF EXISTS occurrence;
CREATE TABLE occurrence (
    id bigserial PRIMARY KEY,
    occurrence_id text NOT NULL,
    dataset_id integer NOT NULL,
    scientific_name text NOT NULL,
    aphia_id integer NOT NULL,
    basis_of_record text NOT NULL,
    event_date timestamptz NOT NULL,
    decimallatitude double precision,
    decimallongitude double precision,
    depth real,
    individual_count integer,
    qc_flags integer NOT NULL,
    modified timestamptz NOT NULL
);
INSERT INTO occurrence (occurrence_id, dataset_id, scientific_name, aphia_id, basis_of_record,
    event_date, decimallatitude, decimallongitude, depth, individual_count, qc_flags, modified)
SELECT 'urn:catalog:EMODNET:' || (i % 4000) || ':' || i,
       (1 + (i * 37) % 4000)::int,
       (ARRAY['Abra alba','Acartia clausi','Calanus finmarchicus','Gadus morhua',
              'Nephrops norvegicus','Mytilus edulis','Pecten maximus','Zostera marina',
              'Phocoena phocoena','Clupea harengus'])[1 + (i % 10)] || ' ' || (i % 97),
       (100000 + (i * 7919) % 900000)::int,
       (ARRAY['HumanObservation','PreservedSpecimen','MachineObservation'])[1 + i % 3],
       timestamptz '1950-01-01 00:00+00' + (i * 2654435761 % 2366841600) * interval '1 second',
       CASE WHEN i % 500 = 0 THEN NULL ELSE 30 + ((i * 40503) % 40000) / 1000.0 END,
       CASE WHEN i % 500 = 0 THEN NULL ELSE -30 + ((i * 65537) % 70000) / 1000.0 END,
       ((i * 13) % 5000) / 10.0,
       CASE WHEN i % 7 = 0 THEN NULL ELSE (1 + i % 300)::int END,
       ((i * 31) % 1024)::int,
       timestamptz '2024-01-01 00:00+00' + (i % 86400) * interval '1 second'
FROM generate_series(1::bigint, %(rows)s) i;
ANALYZE occurrence;
"""


def _dsn_for(dsn: str, database: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params["dbname"] = database
    return make_conninfo(**params)


def generate(admin: str, rows: int) -> tuple[str, int]:
    """A database ``lake_bench_<rows>`` holding the table; returns its DSN and heap bytes."""
    import psycopg

    name = f"lake_bench_{rows}"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    dsn = _dsn_for(admin, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'occurrence' AND relkind = 'r'"
        ).fetchone()
        count = None
        if row and row[0]:
            count = conn.execute("SELECT count(*) FROM occurrence").fetchone()
        if count is None or count[0] != rows:
            conn.execute(GENERATE.replace("%(rows)s", str(rows)))
        size = conn.execute("SELECT pg_relation_size('occurrence')").fetchone()
    assert size is not None
    return dsn, int(size[0])


# --- steps (each runs in a child process) ------------------------------------------------


def occurrence_spec(out: Path, name: str = "spec.yaml", **table: Any) -> Path:
    """A spec building the occurrence table into ``out`` (its DSN in ``LAKE_BENCH_DSN``),
    with ``table`` added to its table section (``incremental=...``)."""
    spec = out.parent / name
    spec.write_text(json.dumps({
        "root": str(out),
        "datasets": [{
            "id": "occurrence",
            "table": {
                "postgres": {"dsn_env": "LAKE_BENCH_DSN", "table": "public.occurrence"},
                "geometry": {"lon": "decimallongitude", "lat": "decimallatitude"},
                "partition_by": ["year(event_date)"],
                **table,
            },
            "metadata": {"license": "CC-BY-4.0"},
        }],
    }))  # fmt: skip
    return spec


def step_ours(dsn: str, out: Path) -> dict[str, Any]:
    spec = occurrence_spec(out)
    env = {**os.environ, "LAKE_BENCH_DSN": dsn}
    lake = shutil.which("lake") or str(Path(sys.executable).parent / "lake")
    subprocess.run([lake, "build", str(spec)], check=True, env=env, stdout=subprocess.DEVNULL)
    return {}


def step_pandas(dsn: str, out: Path) -> dict[str, Any]:
    import warnings

    import geopandas as gpd
    import pandas as pd
    import psycopg

    with psycopg.connect(dsn) as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = pd.read_sql(QUERY, conn)
    geometry = gpd.points_from_xy(frame["decimallongitude"], frame["decimallatitude"])
    gdf = gpd.GeoDataFrame(frame, geometry=geometry, crs="OGC:CRS84")
    out.mkdir(parents=True, exist_ok=True)
    gdf.to_parquet(out / "occurrence.parquet")
    return {}


def step_connectorx(dsn: str, out: Path) -> dict[str, Any]:
    import connectorx as cx
    import geopandas as gpd
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    uri = (
        f"postgresql://{params.get('user', '')}@{params.get('host', 'localhost')}:"
        f"{params.get('port', 5432)}/{params['dbname']}"
    )
    table = cx.read_sql(uri, QUERY, return_type="arrow", partition_on="id", partition_num=2)
    frame = table.to_pandas()
    geometry = gpd.points_from_xy(frame["decimallongitude"], frame["decimallatitude"])
    gdf = gpd.GeoDataFrame(frame, geometry=geometry, crs="OGC:CRS84")
    out.mkdir(parents=True, exist_ok=True)
    gdf.to_parquet(out / "occurrence.parquet")
    return {}


STEPS = {"ours": step_ours, "pandas": step_pandas, "connectorx": step_connectorx}


# --- measuring -------------------------------------------------------------------------------


def _tree(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*.parquet")] if path.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


def bench(admin: str, rows: int, work: Path, steps: list[str],
          against: tuple[str, Path] | None = None) -> dict[str, Any]:  # fmt: skip
    dsn, heap = generate(admin, rows)
    results: dict[str, Any] = {"rows": rows, "heap_bytes": heap, "steps": {}}
    psql = shutil.which("psql")
    if psql:
        with open(os.devnull, "wb") as null:
            copy = f"COPY ({QUERY}) TO STDOUT (FORMAT binary)"
            results["steps"]["floor"] = run_measured([psql, dsn, "-qAt", "-c", copy], stdout=null)
    runs: list[tuple[str, str, Path | None]] = [(name, name, None) for name in steps]
    if against is not None and "ours" in steps:  # the other commit's build first
        runs.insert(steps.index("ours"), (f"ours@{against[0]}", "ours", against[1]))
    for label, name, tree in runs:
        out = work / str(rows) / name
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.sync()  # nothing of the previous step's output left to write back meanwhile
        cmd = [sys.executable, __file__, "--step", name, "--dsn", dsn, "--out", str(out)]
        env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree / "src")}
        step = run_measured(cmd, env=env)
        step["files"], step["bytes_out"] = _tree(out)
        results["steps"][label] = step
        shutil.rmtree(out, ignore_errors=True)
    return results


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(f"\n{rows:,} rows, table heap {_fmt(result['heap_bytes'])}")
    floor = result["steps"].get("floor", {}).get("seconds")
    print(f"{'step':<16}{'status':<24}{'seconds':>9}{'× floor':>9}{'rows/s':>12}"
          f"{'peak RSS':>12}{'files':>7}{'output':>12}")  # fmt: skip
    for name, step in result["steps"].items():
        ratio = f"{step['seconds'] / floor:.2f}" if floor else "-"
        print(f"{name:<16}{step['status']:<24}{step['seconds']:>9.1f}{ratio:>9}"
              f"{rows / step['seconds']:>12,.0f}{_fmt(step['peak_rss']):>12}"
              f"{step.get('files', '-'):>7}{_fmt(step.get('bytes_out', 0)):>12}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("LAKE_BENCH_ADMIN_DSN",
                        "postgresql://postgres@127.0.0.1:5432/postgres"))  # fmt: skip
    parser.add_argument("--rows", default="10000000,20000000", help="table sizes, comma-separated")
    parser.add_argument("--steps", default="ours,connectorx,pandas")
    parser.add_argument("--workdir", default="/tmp/lake-bench-tables")
    parser.add_argument("--against", help="also time this commit's `lake build`, in the same run")
    parser.add_argument("--step", choices=sorted(STEPS))
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.step:
        STEPS[args.step](args.dsn, Path(args.out))
        return
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "memory": psutil.virtual_memory().total,
            "python": platform.python_version(),
        },
        "sizes": [],
    }
    against = None
    if args.against:
        against = (args.against, worktree(Path(args.workdir), args.against))
        report["against"] = args.against
    for rows in (int(r) for r in args.rows.split(",")):
        result = bench(args.dsn, rows, Path(args.workdir), args.steps.split(","), against)
        print_table(result)
        report["sizes"].append(result)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=1))
    print(f"\nresults written to {RESULTS}")


if __name__ == "__main__":
    main()
