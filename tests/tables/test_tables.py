"""PostgreSQL → GeoParquet: real server (or embedded PostgreSQL), real Dask workers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from pgdata import OCCURRENCE_QUERY, aphia_id, execute, fetch, load_darwin_core

from helpers import SHARED
from lake.errors import SourceError
from lake.flows.tables import build_table
from lake.spec import parse_spec
from lake.storage import Root
from lake.tables.geometry import WORLD
from lake.tables.hilbert import hilbert_index
from lake.tables.pgconnect import release_connections

if TYPE_CHECKING:
    from distributed import Client

    from lake.tables.plan import TableResult

pytestmark = pytest.mark.postgres


def _build(
    client: Client, root: str, table: dict[str, Any], tmp: Path, full_refresh: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> TableResult:  # fmt: skip
    doc: dict[str, Any] = {"root": root, "datasets": [{"id": "occ", "table": table}]}
    if storage_options:
        doc["storage_options"] = storage_options
    spec = parse_spec(doc, "spec.yaml", tmp)
    return build_table(
        client, Root(spec.root, spec.storage_options), spec.datasets[0], full_refresh=full_refresh
    )


def _lake(root: Path | str, filesystem: Any = None) -> pa.Table:
    dataset = pads.dataset(
        f"{root}/occ/data", format="parquet", partitioning="hive", filesystem=filesystem
    )
    return dataset.to_table()


def _manifest(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / "occ" / "table.json").read_text()))


def test_darwin_core_occurrences_round_trip(
    client: Client, pg_dsn: str, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archives = sorted((shared_data / "occurrence").glob("*.zip"))
    counts = load_darwin_core(pg_dsn, archives)
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    result = _build(client, str(tmp_path / "lake"), {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "query": OCCURRENCE_QUERY,
                     "split_by": "occurrence_pk", "parts": 5},
        "geometry": {"lon": "decimallongitude", "lat": "decimallatitude"},
        "partition_by": ["dataset_name"],
        "time": "event_date",
        "row_group_rows": 1000,
    }, tmp_path)  # fmt: skip
    total = sum(counts.values())
    assert result.rows_read == total == result.rows

    expected = fetch(pg_dsn, OCCURRENCE_QUERY + " ORDER BY occurrence_pk")
    names = [
        "occurrence_pk", "occurrence_id", "basis_of_record", "scientific_name",
        "scientific_name_id", "aphia_id", "dataset_name", "event_id", "event_date",
        "decimallatitude", "decimallongitude", "min_depth", "modified",
    ]  # fmt: skip
    got = _lake(tmp_path / "lake").sort_by("occurrence_pk")
    assert got.num_rows == len(expected)
    for i, name in enumerate(names):
        want = [row[i] for row in expected]
        if name == "min_depth":  # real: psycopg rounds float4 through text, Arrow keeps it
            want = [None if v is None else float(np.float32(v)) for v in want]
        assert got.column(name).to_pylist() == want, name
    # AphiaID is the number after the LSID's last colon.
    assert got.column("aphia_id").to_pylist() == [
        aphia_id(v) for v in got.column("scientific_name_id").to_pylist()
    ]
    assert got.column("aphia_id").null_count < got.num_rows
    # Geometry: WKB points equal to shapely's, the bbox covering column equal to the point.
    import shapely

    lon = np.array(got.column("decimallongitude").to_pylist(), dtype=float)
    lat = np.array(got.column("decimallatitude").to_pylist(), dtype=float)
    geoms = shapely.from_wkb(np.array(got.column("geometry").to_pylist(), dtype=object))
    present = ~shapely.is_missing(geoms)
    assert np.array_equal(present, np.isfinite(lon) & np.isfinite(lat))
    assert np.array_equal(shapely.get_x(geoms[present]), lon[present])
    assert np.array_equal(shapely.get_y(geoms[present]), lat[present])
    bbox = got.column("bbox").combine_chunks()
    assert np.array_equal(np.asarray(bbox.field("xmin").to_pylist(), float)[present], lon[present])
    assert result.invalid == int((~present).sum())


def test_files_follow_geoparquet_and_readers_agree(
    client: Client, pg_dsn: str, shared_data: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, geoparquet_validator: Any,
) -> None:  # fmt: skip
    load_darwin_core(pg_dsn, sorted((shared_data / "occurrence").glob("*.zip")))
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    lake = tmp_path / "lake"
    result = _build(client, str(lake), {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "query": OCCURRENCE_QUERY},
        "geometry": {"lon": "decimallongitude", "lat": "decimallatitude", "invalid": "drop"},
        "partition_by": ["grid(10)", "dataset_name"],
        "row_group_rows": 1000,
        "file_mb": 1,
    }, tmp_path)  # fmt: skip
    files = sorted((lake / "occ" / "data").rglob("*.parquet"))
    assert files
    manifest = _manifest(lake)
    assert {f["path"] for f in manifest["files"]} == {
        str(p.relative_to(lake / "occ")) for p in files
    }
    for path in files:
        parquet = pq.ParquetFile(path)
        geo = json.loads(parquet.metadata.metadata[b"geo"])
        geoparquet_validator.validate(geo)
        column = geo["columns"]["geometry"]
        assert column["encoding"] == "WKB" and column["geometry_types"] == ["Point"]
        assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
        assert column["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
        # Partition values live in the path only; rows are sorted along the Hilbert curve.
        table = parquet.read()
        assert "dataset_name" not in table.column_names
        bbox = table.column("bbox").combine_chunks()
        x = np.asarray(bbox.field("xmin").to_pylist(), float)
        y = np.asarray(bbox.field("ymin").to_pylist(), float)
        order = hilbert_index(x, y, np.ones(len(x), bool), WORLD)
        assert np.all(np.diff(order) >= 0)
        assert all(rg <= 1000 for rg in
                   (parquet.metadata.row_group(i).num_rows
                    for i in range(parquet.metadata.num_row_groups)))  # fmt: skip
        assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
        relative = str(path.relative_to(lake / "occ"))
        entry = next(f for f in manifest["files"] if f["path"] == relative)
        assert entry["rows"] == table.num_rows and entry["bytes"] == path.stat().st_size
        assert column["bbox"] == entry["bbox"]
    # Rows without coordinates were dropped, and counted.
    total = fetch(pg_dsn, f"SELECT count(*) FROM ({OCCURRENCE_QUERY}) q "
                          "WHERE decimallatitude IS NOT NULL")[0][0]  # fmt: skip
    assert result.dropped == result.invalid == result.rows_read - total

    import duckdb
    import geopandas as gpd

    data = lake / "occ" / "data"
    frame = gpd.read_parquet(data)
    assert len(frame) == total == manifest["rows"]
    assert frame.crs.to_string() == "OGC:CRS84"
    box = (-3.0, 52.0, 3.0, 56.0)
    inside = gpd.read_parquet(data, bbox=box)
    expected = frame.cx[box[0] : box[2], box[1] : box[3]]
    assert 0 < len(inside) == len(expected)
    names = duckdb.sql(
        f"SELECT dataset_name, count(*) FROM read_parquet('{data}/**/*.parquet', "
        "hive_partitioning=true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert sum(n for _, n in names) == total
    assert [n for n, _ in names] == sorted(set(frame["dataset_name"]))


TYPES_TABLE = """
CREATE TABLE typed (
    id integer PRIMARY KEY,
    a smallint, b bigint, c real, d double precision,
    e numeric(12,3), f numeric, g numeric(50,2),
    h text, i varchar(8), j boolean, k date, l timestamp, m timestamptz,
    n uuid, o json, p jsonb, q integer[], r text[],
    region text NOT NULL, lon double precision, lat double precision
);
INSERT INTO typed VALUES
 (1, 1, 9007199254740993, 1.5, 2.25, 123456789.123, 1.23456789012345678901234567890,
  123456789012345678901234567890123456789012345678.12, 'tëxt', 'v', true, '2020-02-29',
  '2020-02-29 23:59:59.999999', '2020-02-29 23:59:59.5+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": 1}', '{"b": [1, 2]}', '{1,NULL,3}', '{"x",NULL}', 'north', 2.5, 51.25),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, 'south/west', NULL, NULL),
 (3, -32768, -9223372036854775808, 'NaN', '-Infinity', -0.001, 0, 0, '', '', false,
  '0001-01-01', '1900-01-01 00:00:00', '1970-01-01 00:00:00+00',
  '00000000-0000-0000-0000-000000000000', '[]', 'null', '{}', '{}', 'north', 200, 10);
"""


def test_types_and_nulls(
    client: Client, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(pg_dsn, TYPES_TABLE)
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    result = _build(client, str(tmp_path / "lake"), {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "public.typed"},
        "geometry": {"lon": "lon", "lat": "lat"},
        "partition_by": ["region"],
    }, tmp_path)  # fmt: skip
    assert result.rows == 3 and result.invalid == 2  # a null and an out-of-range longitude
    got = _lake(tmp_path / "lake").sort_by("id")
    schema = got.schema
    assert schema.field("a").type == pa.int16() and schema.field("b").type == pa.int64()
    assert schema.field("c").type == pa.float32() and schema.field("d").type == pa.float64()
    assert schema.field("e").type == pa.decimal128(12, 3)
    assert schema.field("f").type == pa.string() and schema.field("g").type == pa.string()
    assert schema.field("k").type == pa.date32()
    assert schema.field("l").type == pa.timestamp("us")
    assert schema.field("m").type == pa.timestamp("us", tz="UTC")
    assert schema.field("n").type == pa.string() and schema.field("p").type == pa.string()
    assert schema.field("q").type == pa.list_(pa.int32())
    rows = {r["id"]: r for r in got.to_pylist()}
    one = rows[1]
    assert one["b"] == 9007199254740993 and one["e"] == Decimal("123456789.123")
    assert one["f"] == "1.23456789012345678901234567890"
    assert one["g"] == "123456789012345678901234567890123456789012345678.12"
    assert one["h"] == "tëxt" and one["j"] is True and one["k"] == date(2020, 2, 29)
    assert one["l"] == datetime(2020, 2, 29, 23, 59, 59, 999999)
    assert one["m"] == datetime(2020, 2, 29, 21, 59, 59, 500000, tzinfo=UTC)
    assert one["n"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert json.loads(one["o"]) == {"a": 1} and json.loads(one["p"]) == {"b": [1, 2]}
    assert one["q"] == [1, None, 3] and one["r"] == ["x", None]
    assert one["region"] == "north"
    two = rows[2]
    assert all(two[k] is None for k in "abcdefghijklmnopqr") and two["geometry"] is None
    assert two["region"] == "south/west"  # escaped in the folder name, restored by readers
    three = rows[3]
    assert np.isnan(three["c"]) and three["d"] == -np.inf and three["k"] == date(1, 1, 1)
    assert three["o"] == "[]" and three["p"] == "null" and three["q"] == []
    assert three["geometry"] is None and three["lon"] == 200  # kept, without a geometry
    folders = sorted(p.name for p in (tmp_path / "lake" / "occ" / "data").iterdir())
    assert folders == ["region=north", "region=south%2Fwest"]

    # `invalid: drop` leaves those rows out, and counts them.
    dropping = _build(client, str(tmp_path / "dropped"), {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "public.typed"},
        "geometry": {"lon": "lon", "lat": "lat", "invalid": "drop"},
        "partition_by": ["region"],
    }, tmp_path)  # fmt: skip
    assert dropping.dropped == dropping.invalid == 2 and dropping.rows == 1
    assert _lake(tmp_path / "dropped").column("id").to_pylist() == [1]

    # A partition whose rows have no geometry: its item has none and stays out of the mirror.
    from lake.stac.catalog import write_catalogue

    table = {"postgres": {"table": "typed"}, "geometry": {"lon": "lon", "lat": "lat"},
             "partition_by": ["region"]}  # fmt: skip
    dataset = {"id": "occ", "table": table, "metadata": {"license": "CC0-1.0"}}
    doc = {"root": str(tmp_path / "lake"), "datasets": [dataset]}
    spec = parse_spec(doc, "s", tmp_path)
    catalogue = write_catalogue(Root(spec.root), spec)
    assert catalogue.items == 2
    items = tmp_path / "lake" / "occ" / "items"
    empty = json.loads((items / "occ.region-south_2Fwest.json").read_text())
    assert empty["geometry"] is None and "bbox" not in empty
    assert pq.read_table(tmp_path / "lake" / "occ" / "items.parquet").num_rows == 1


def _occurrence_table(dsn: str, rows: int) -> None:
    execute(
        dsn,
        "CREATE TABLE occ (id bigserial PRIMARY KEY, eventdate timestamptz NOT NULL, "
        "lon double precision, lat double precision, name text, "
        "modified timestamptz NOT NULL DEFAULT clock_timestamp())",
        "INSERT INTO occ (eventdate, lon, lat, name) SELECT "
        "timestamptz '2000-01-01 00:00+00' + (i % 5) * interval '1 year' + i * interval '1 min', "
        f"(i * 7919 % 3600) / 10.0 - 180, (i * 104729 % 1800) / 10.0 - 90, 'sp' || (i % 50) "
        f"FROM generate_series(1, {rows}) i",
        "ANALYZE occ",
    )


def test_incremental_rewrites_only_changed_partitions(
    client: Client, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _occurrence_table(pg_dsn, 20_000)
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    spec = {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "occ", "parts": 3},
        "geometry": {"lon": "lon", "lat": "lat"},
        "partition_by": ["year(eventdate)"],
        "incremental": {"column": "modified"},
        "file_mb": 0.04,  # several files per partition, each one Hilbert range
    }
    lake = tmp_path / "lake"
    first = _build(client, str(lake), spec, tmp_path)
    assert first.rows == 20_000 and first.partitions_written == 5
    assert first.files_written >= 10
    before = {f["path"]: f for f in _manifest(lake)["files"]}

    # An update moving a row from 2001 to 2004, an update in place (2002), a new row (2010).
    execute(
        pg_dsn,
        "UPDATE occ SET eventdate = '2004-06-01', name = 'moved', modified = clock_timestamp() "
        "WHERE id = 1",
        "UPDATE occ SET name = 'renamed', modified = clock_timestamp() WHERE id = 2",
        "INSERT INTO occ (eventdate, lon, lat, name) VALUES ('2010-01-01', 1, 1, 'new')",
    )
    second = _build(client, str(lake), spec, tmp_path)
    assert second.rows_read == 3 and not second.full
    assert second.rows == 20_001 and second.partitions_written == 4  # 2001, 2002, 2004, 2010
    after = {f["path"]: f for f in _manifest(lake)["files"]}
    untouched = [p for p in before if "year=2000" in p or "year=2003" in p]
    assert untouched and all(after[p] == before[p] for p in untouched)
    assert all(p not in after for p in before if p not in untouched)
    got = _lake(lake)
    ids = got.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 20_001
    by_id = {r["id"]: r for r in got.select(["id", "name", "year"]).to_pylist()}
    assert by_id[1]["name"] == "moved" and by_id[1]["year"] == 2004
    assert by_id[2]["name"] == "renamed" and by_id[20_001]["year"] == 2010
    expected = dict(fetch(pg_dsn, "SELECT id, name FROM occ"))
    assert {i: r["name"] for i, r in by_id.items()} == expected

    # Nothing new: nothing is written, not even the manifest.
    stamp = (lake / "occ" / "table.json").stat().st_mtime_ns
    third = _build(client, str(lake), spec, tmp_path)
    assert third.rows_read == 0 and third.files_written == 0
    assert (lake / "occ" / "table.json").stat().st_mtime_ns == stamp

    # A full refresh rebuilds every partition from the whole source.
    fourth = _build(client, str(lake), spec, tmp_path, full_refresh=True)
    assert fourth.full and fourth.rows_read == 20_001 and fourth.partitions_written == 6
    assert len(_lake(lake)) == 20_001
    leftovers = [p for p in (lake / "occ").rglob("*") if ".staging" in str(p)]
    assert not leftovers


def test_parts_share_one_snapshot(client: Client, pg_dsn: str) -> None:
    """Rows committed after the snapshot was exported are invisible to every part."""
    from lake.tables.postgres import Part, Secret, Session, read_part

    _occurrence_table(pg_dsn, 10_000)
    secret = Secret(pg_dsn)

    def count(snapshot: str, sql: str) -> int:
        return sum(b.num_rows for b in read_part(secret, snapshot, sql, "test"))

    with Session(secret, "table occ") as session:
        parts = [
            Part(0, "SELECT * FROM occ WHERE ctid < '(20,0)'::tid"),
            Part(1, "SELECT * FROM occ WHERE ctid >= '(20,0)'::tid"),
        ]
        execute(
            pg_dsn,
            "INSERT INTO occ (eventdate, lon, lat) SELECT '2020-01-01', 0, 0 "
            "FROM generate_series(1, 500)",
            "DELETE FROM occ WHERE id <= 100",
        )
        seen = client.gather(client.map(count, [session.snapshot] * 2, [p.sql for p in parts]))
        live = client.gather(client.map(count, [""] * 2, [p.sql for p in parts]))
    assert sum(seen) == 10_000
    assert sum(live) == 10_400
    client.run(release_connections)


def test_a_process_reads_its_parts_on_one_connection_until_released(pg_dsn: str) -> None:
    """Parts read one after another share a connection, each in its own snapshot; one that
    fails is not kept; the build's release closes what is kept."""
    from lake.tables.postgres import Secret, Session, read_part

    secret = Secret(pg_dsn)
    pid = "SELECT pg_backend_pid() AS pid"

    def backend(snapshot: str, sql: str = pid) -> int:
        batches = list(read_part(secret, snapshot, sql, "test"))  # read to the end
        return int(batches[0].column(0)[0].as_py())

    def open_sessions() -> int:
        rows = fetch(
            pg_dsn,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'lake-build' AND datname = current_database()",
        )
        return int(rows[0][0])

    release_connections()
    with Session(secret, "test") as session:
        first, second = backend(session.snapshot), backend("")
    assert first == second
    assert open_sessions() == 1  # kept for the next part
    with pytest.raises(SourceError, match="test"):
        backend("", "SELECT * FROM no_such_table")
    assert release_connections() == 0  # the failed part's connection was closed
    assert backend("") != first
    assert release_connections() == 1
    assert open_sessions() == 0


def test_postgis_geometry(
    client: Client, postgis_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    geoparquet_validator: Any,
) -> None:  # fmt: skip
    execute(
        postgis_dsn,
        "CREATE TABLE sites (id int PRIMARY KEY, surveyed date NOT NULL, "
        "geom geometry(GeometryZ, 3035))",
        "INSERT INTO sites VALUES "
        "(1, '2019-05-01', ST_GeomFromEWKT('SRID=3035;POINT Z (4000000 3000000 -12.5)')), "
        "(2, '2019-06-01', ST_GeomFromEWKT('SRID=3035;POLYGON Z ((3900000 2900000 0, "
        "3950000 2900000 0, 3950000 2950000 0, 3900000 2900000 0))')), "
        "(3, '2020-01-01', NULL), "
        "(4, '2020-02-01', ST_GeomFromEWKT('SRID=3035;POINT Z EMPTY'))",
    )
    monkeypatch.setenv("LAKE_TEST_SOURCE", postgis_dsn)
    result = _build(client, str(tmp_path / "lake"), {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "sites"},
        "geometry": {"column": "geom"},
        "partition_by": ["year(surveyed)"],
    }, tmp_path)  # fmt: skip
    assert result.rows == 4 and result.invalid == 2
    import geopandas as gpd
    import shapely

    frame = gpd.read_parquet(tmp_path / "lake" / "occ" / "data").sort_values("id")
    assert frame.crs.to_epsg() == 3035 and frame.geometry.name == "geom"
    expected = fetch(postgis_dsn, "SELECT id, ST_AsText(geom) FROM sites ORDER BY id")
    for (_, wkt), geom in zip(expected[:2], frame.geometry[:2], strict=True):
        assert shapely.equals_exact(geom, shapely.from_wkt(wkt), tolerance=0)
        assert geom.has_z
    assert frame.geometry.iloc[2:].isna().all()
    for path in (tmp_path / "lake" / "occ" / "data").rglob("*.parquet"):
        geo = json.loads(pq.ParquetFile(path).metadata.metadata[b"geo"])
        geoparquet_validator.validate(geo)
        assert geo["primary_column"] == "geom"
        assert geo["columns"]["geom"]["crs"]["id"] == {"authority": "EPSG", "code": 3035}
    types = {
        tuple(json.loads(pq.ParquetFile(p).metadata.metadata[b"geo"])["columns"]["geom"][
            "geometry_types"])
        for p in (tmp_path / "lake" / "occ" / "data").rglob("*.parquet")
    }  # fmt: skip
    assert types == {("Point Z", "Polygon Z"), ()}


@pytest.mark.s3
def test_table_on_s3(
    client: Client, pg_dsn: str, s3_endpoint: str, bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import s3fs

    _occurrence_table(pg_dsn, 5_000)
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    spec = {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "occ"},
        "geometry": {"lon": "lon", "lat": "lat"},
        "partition_by": ["year(eventdate)", "grid(90)"],
        "incremental": {"column": "modified"},
    }
    options = {"endpoint_url": s3_endpoint}
    root = f"s3://{bucket}/lake"
    first = _build(client, root, spec, tmp_path, storage_options=options)
    assert first.rows == 5_000
    execute(pg_dsn, "UPDATE occ SET name = 'changed', modified = clock_timestamp() WHERE id = 7")
    second = _build(client, root, spec, tmp_path, storage_options=options)
    assert second.rows_read == 1 and second.partitions_written == 1
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    got = _lake(f"{bucket}/lake", filesystem=fs)
    assert got.num_rows == 5_000 and len(set(got.column("id").to_pylist())) == 5_000
    assert {r["id"]: r["name"] for r in got.select(["id", "name"]).to_pylist()}[7] == "changed"
    cells = {c for c in got.column("cell_90deg").to_pylist()}
    assert cells <= {"N00p0E000p0", "N00p0W090p0", "N00p0W180p0", "N00p0E090p0",
                     "S90p0E000p0", "S90p0W090p0", "S90p0W180p0", "S90p0E090p0"}  # fmt: skip
    assert not fs.exists(f"{bucket}/lake/occ/.staging")

    # The catalogue on object storage: written, then valid (offline schemas).
    from lake.stac.catalog import write_catalogue
    from lake.stac.validate import Schemas, validate_lake

    spec_doc = {"root": root, "storage_options": options, "datasets": [
        {"id": "occ", "table": spec, "metadata": {"license": "CC0-1.0"}}]}  # fmt: skip
    parsed = parse_spec(spec_doc, "spec.yaml", tmp_path)
    lake = Root(parsed.root, parsed.storage_options)
    catalogue = write_catalogue(lake, parsed)
    assert catalogue.items == len({f["path"].rsplit("/", 1)[0] for f in json.loads(
        fs.cat_file(f"{bucket}/lake/occ/table.json"))["files"]})  # fmt: skip
    assert fs.exists(f"{bucket}/lake/occ/items.parquet")
    schemas = SHARED / "schemas"
    if not schemas.is_dir():
        pytest.skip(f"{schemas} is absent: the catalogue on S3 was written but not validated")
    count, problems = validate_lake(lake, Schemas(schemas))
    assert not problems and count > catalogue.items
