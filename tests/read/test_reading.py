"""Reading a published lake cut to a request: lake.open_cube, lake.open_table and
`lake subset`, from a folder, over HTTP (`lake serve`) and from S3, equal to direct reads."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import lake
from helpers import build_on
from lake.cli import app
from lake.errors import ExitCode, SourceError, SpecError, TargetError
from lake.read.cube import select_cube
from lake.read.request import request
from lake.spec import parse_spec

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.postgres

BBOX = (-18.0, 41.0, 8.0, 58.5)
TIME = "2024-01-05/2024-01-07"


@pytest.fixture(scope="module")
def pg_table(pg_admin: str) -> Iterator[str]:
    """A database with a table of 25,000 points over 2019-2021."""
    import psycopg
    from conftest import _with_database

    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "lake_reading" WITH (FORCE)')
        conn.execute('CREATE DATABASE "lake_reading"')
    dsn = _with_database(pg_admin, "lake_reading")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE obs (id int PRIMARY KEY, t timestamptz NOT NULL, "
                     "lon float8, lat float8, name text, tags text[])")  # fmt: skip
        conn.execute(
            "INSERT INTO obs SELECT i, '2019-01-01'::timestamptz + i * interval '1 hour', "
            "(i::bigint * 7919 % 3600) / 100.0 - 18, (i::bigint * 104729 % 2000) / 100.0 + 40, "
            "'obs ' || i, ARRAY['a', 'b' || (i % 3)] FROM generate_series(1, 25000) i"
        )
    try:
        yield dsn
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "lake_reading" WITH (FORCE)')


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, client: Client, pg_table: str) -> Path:
    """A lake with a daily cube of three depths (both layouts) and a table."""
    import os

    from lake.samples import write_daily_product

    tmp = tmp_path_factory.mktemp("reading")
    write_daily_product(tmp / "src", days=40, ny=240, nx=360, depths=3)
    os.environ["LAKE_TEST_READING_DSN"] = pg_table
    spec = parse_spec({
        "root": str(tmp / "lake"),
        "datasets": [
            {"id": "sst", "cube": {"netcdf": str(tmp / "src" / "*.nc")},
             "metadata": {"license": "CC-BY-4.0"}},
            {"id": "obs", "table": {
                "postgres": {"dsn_env": "LAKE_TEST_READING_DSN", "table": "obs"},
                "geometry": {"lon": "lon", "lat": "lat"}, "partition_by": ["year(t)"],
                "row_group_rows": 1000},
             "metadata": {"license": "CC0-1.0"}},
        ],
    }, "spec.yaml", tmp)  # fmt: skip
    build_on(client, spec)
    return tmp / "lake"


def _direct(built: Path, layout: str) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(built / "sst" / f"{layout}.zarr")


# --------------------------------------------------------------------------- cubes


def test_a_map_request_reads_maps_and_equals_a_direct_read(built: Path) -> None:
    selection = select_cube(built, "sst", request(BBOX, TIME, (0, 2)))
    costs = {c.layout: c.chunks for c in selection.costs}
    assert selection.layout == "maps" and costs["maps"] < costs["timeseries"]
    cut = lake.open_cube(built, "sst", bbox=BBOX, time=TIME, depth=(0, 2))
    direct = _direct(built, "maps").sel(
        time=slice("2024-01-05", "2024-01-07"), depth=slice(0, 2),
        latitude=slice(BBOX[1], BBOX[3]), longitude=slice(BBOX[0], BBOX[2]),
    )  # fmt: skip
    assert cut.thetao.chunks is not None  # lazy
    assert cut.sizes == direct.sizes and cut.sizes["time"] == 3 and cut.sizes["depth"] == 2
    xr.testing.assert_identical(cut.load(), direct.load())


def test_a_point_gives_the_nearest_cells_series_from_timeseries(built: Path) -> None:
    point = (-15.04, 42.02, -15.04, 42.02)
    selection = select_cube(built, "sst", request(point))
    assert selection.layout == "timeseries"
    series = lake.open_cube(built, "sst", bbox=point, variables=["thetao"])
    direct = _direct(built, "timeseries").sel(latitude=42.02, longitude=-15.04, method="nearest")
    assert set(series.dims) == {"time", "depth"}
    assert float(series.latitude) == selection.cell["latitude"] == float(direct.latitude)
    xr.testing.assert_identical(series.load(), direct.load())


def test_one_date_and_one_depth(built: Path) -> None:
    cut = lake.open_cube(built, "sst", time="2024-01-07", depth=1.6)
    direct = _direct(built, "maps").sel(time=["2024-01-07"]).sel(depth=1.6, method="nearest")
    xr.testing.assert_identical(cut.load(), direct.load())


def test_longitudes_across_the_antimeridian_come_west_to_east() -> None:
    """A 0..360 global grid cut from 170°E to 170°W: 170..190, in that order."""
    from lake.read.cube import _space_indexers

    ds = xr.Dataset(coords={
        "latitude": ("latitude", np.arange(-89.5, 90), {"units": "degrees_north"}),
        "longitude": ("longitude", np.arange(0.5, 360), {"units": "degrees_east"}),
    })  # fmt: skip
    found = _space_indexers(None, ds, request((170, -5, -170, 5)), {})  # type: ignore[arg-type]
    lons = ds.longitude.values[found["longitude"]]
    assert lons.tolist() == [*np.arange(170.5, 190).tolist()]
    assert ds.latitude.values[found["latitude"]].tolist() == np.arange(-4.5, 5).tolist()


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"bbox": (10, 10, 20, 20)}, SpecError, "selects nothing: no cell in the bbox"),
    ({"time": "1990/1991"}, SpecError, "no time step in 1990/1991"),
    ({"variables": ["nope"]}, SpecError, "use some of: thetao"),
    ({"bbox": "1,2,3"}, SpecError, "is not 4 numbers"),
    ({"bbox": (0, 50, 1, 40)}, SpecError, "south <= north"),
    ({"depth": "deep"}, SpecError, "is not numbers"),
])  # fmt: skip
def test_bad_cube_requests(built: Path, kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        lake.open_cube(built, "sst", **kwargs)


def test_wrong_dataset_or_kind(built: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="use one of: obs, sst"):
        lake.open_cube(built, "nope")
    with pytest.raises(SpecError, match="is a table, not a cube"):
        lake.open_cube(built, "obs")
    with pytest.raises(SpecError, match="is a cube, not a table"):
        lake.open_table(built, "sst")
    with pytest.raises(SourceError, match="holds no lake"):
        lake.open_cube(tmp_path, "sst")


# --------------------------------------------------------------------------- tables


def _frame(built: Path) -> Any:
    import geopandas as gpd

    return gpd.read_parquet(built / "obs" / "data")


def test_open_table_prunes_files_and_row_groups_and_equals_a_filter(built: Path) -> None:
    import pandas as pd

    from lake.read.table import row_groups, select_table

    box, when = (-10.0, 45.0, 0.0, 50.0), "2020-03/2020-08"
    selection = select_table(built, "obs", request(box, when))
    assert len(selection.files) == 1 and selection.listed == 3  # 2020 only
    groups, _ = row_groups(selection)
    total = json.loads((built / "obs" / "table.json").read_text())["files"][1]["rows"] // 1000
    assert 0 < groups < total  # the bbox statistics of Hilbert-ordered row groups prune
    frame = lake.open_table(built, "obs", bbox=box, time=when, geodataframe=True)
    everything = _frame(built)
    x, y = everything.geometry.x, everything.geometry.y
    keep = ((x >= -10) & (x <= 0) & (y >= 45) & (y <= 50)
            & (everything.t >= pd.Timestamp("2020-03-01", tz="UTC"))
            & (everything.t < pd.Timestamp("2020-09-01", tz="UTC")))  # fmt: skip
    assert len(frame) > 0 and sorted(frame.id) == sorted(everything[keep].id)
    assert str(frame.crs) == "OGC:CRS84" and frame["year"].eq(2020).all()
    dataset = lake.open_table(built, "obs", bbox=box, time=when)
    assert dataset.count_rows() == len(frame)
    import duckdb

    assert duckdb.sql("SELECT count(*) FROM dataset").fetchall() == [(len(frame),)]


def test_a_table_request_that_meets_no_file(built: Path) -> None:
    with pytest.raises(SpecError, match="no file of the table holds rows"):
        lake.open_table(built, "obs", time="1990")
    with pytest.raises(SpecError, match="asks for a depth"):
        lake.subset(built, "obs", "x.parquet", depth="0/10")


# --------------------------------------------------------------------------- subset


@pytest.mark.parametrize("suffix", [".nc", ".zarr", ".csv"])
def test_subset_a_cube_to_each_format(built: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"cut{suffix}"
    result = lake.subset(built, "sst", str(out), bbox=BBOX, time=TIME, variables="thetao")
    direct = lake.open_cube(built, "sst", bbox=BBOX, time=TIME).load()
    assert result.plan.reads.startswith("maps.zarr") and result.bytes > 0
    assert not list(tmp_path.glob("*partial*"))
    if suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(out, parse_dates=["time"])
        expected = direct.to_dataframe().reset_index().dropna(subset=["thetao"])
        assert len(frame) == len(expected) == result.rows
        assert np.allclose(frame.thetao.to_numpy(), expected.thetao.to_numpy())
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = xr.open_dataset(out, engine="netcdf4" if suffix == ".nc" else "zarr").load()
    xr.testing.assert_identical(written.thetao, direct.thetao)
    assert written.thetao.encoding["dtype"] == np.dtype("int16")  # packed as the lake stores it


def test_subset_a_point_series_to_csv(built: Path, tmp_path: Path) -> None:
    import pandas as pd

    out = tmp_path / "point.csv"
    lake.subset(built, "sst", str(out), bbox="-15.04,42.02,-15.04,42.02", depth="0/2")
    frame = pd.read_csv(out)
    assert len(frame) == 40 * 2 and set(frame.columns) >= {"time", "depth", "thetao", "latitude"}


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".geojson"])
def test_subset_a_table_to_each_format(built: Path, tmp_path: Path, suffix: str,
                                       geoparquet_validator: Any) -> None:  # fmt: skip
    import geopandas as gpd
    import pandas as pd

    box, when = (-10.0, 45.0, 0.0, 50.0), "2020"
    out = tmp_path / f"cut{suffix}"
    result = lake.subset(built, "obs", str(out), bbox=box, time=when)
    expected = lake.open_table(built, "obs", bbox=box, time=when, geodataframe=True)
    assert result.rows == len(expected) > 0
    if suffix == ".csv":
        frame = pd.read_csv(out)
        assert sorted(frame.id) == sorted(expected.id)
        assert frame.geometry.str.startswith("POINT").all() and "bbox" not in frame
        return
    frame = gpd.read_parquet(out) if suffix == ".parquet" else gpd.read_file(out)
    assert sorted(frame.id) == sorted(expected.id)
    got = frame.sort_values("id").geometry.reset_index(drop=True)
    assert got.crs is not None and got.crs.equals("OGC:CRS84" if suffix == ".parquet" else 4326)
    got = got.set_crs(expected.crs, allow_override=True)  # RFC 7946: EPSG:4326 axes as x, y
    assert got.geom_equals(expected.sort_values("id").geometry.reset_index(drop=True)).all()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        geo = json.loads(pq.read_metadata(out).metadata[b"geo"])
        geoparquet_validator.validate(geo)
        bounds = frame.total_bounds.tolist()
        assert geo["columns"]["geometry"]["bbox"] == bounds
        assert geo["columns"]["geometry"]["geometry_types"] == ["Point"]


def test_subset_over_http_equals_the_local_read(built: Path, tmp_path: Path) -> None:
    from lake.serve import make_server

    server = make_server(str(built), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        lake.subset(base, "sst", str(tmp_path / "http.nc"), bbox=BBOX, time=TIME)
        lake.subset(built, "sst", str(tmp_path / "local.nc"), bbox=BBOX, time=TIME)
        a = xr.open_dataset(tmp_path / "http.nc").load()
        b = xr.open_dataset(tmp_path / "local.nc").load()
        xr.testing.assert_identical(a, b)
        remote = lake.open_table(base, "obs", bbox=(-10, 45, 0, 50), geodataframe=True)
        local = lake.open_table(built, "obs", bbox=(-10, 45, 0, 50), geodataframe=True)
        assert sorted(remote.id) == sorted(local.id)
    finally:
        server.shutdown()
        server.server_close()


def test_open_from_s3(built: Path, bucket: str, s3_endpoint: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.put(str(built), f"{bucket}/lake", recursive=True)
    options = {"endpoint_url": s3_endpoint}
    remote = lake.open_cube(f"s3://{bucket}/lake", "sst", bbox=BBOX, time=TIME,
                            storage_options=options)  # fmt: skip
    xr.testing.assert_identical(remote.load(), lake.open_cube(built, "sst", bbox=BBOX,
                                                              time=TIME).load())  # fmt: skip
    rows = lake.open_table(f"s3://{bucket}/lake", "obs", time="2021", storage_options=options)
    assert rows.count_rows() == lake.open_table(built, "obs", time="2021").count_rows() > 0


# --------------------------------------------------------------------------- command line


def test_subset_command(built: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cut.nc"
    args = ["subset", str(built), "sst", "-o", str(out), "--bbox", ",".join(map(str, BBOX)),
            "--time", TIME]  # fmt: skip
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    text = " ".join(dry.output.split())
    assert "reads maps.zarr" in text and "timeseries:" in text and "MB" in text
    assert not out.exists()
    done = runner.invoke(app, args)
    assert done.exit_code == 0 and out.exists(), done.output
    again = runner.invoke(app, args)
    assert again.exit_code == ExitCode.TARGET and "--overwrite" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    bad = runner.invoke(app, ["subset", str(built), "obs", "-o", str(tmp_path / "t.nc")])
    assert bad.exit_code == ExitCode.SPEC and ".parquet, .csv, .geojson" in bad.output
    missing = runner.invoke(app, ["subset", str(built), "nope", "-o", str(tmp_path / "t.nc")])
    assert missing.exit_code == ExitCode.SOURCE and "use one of" in missing.output


def test_output_in_a_missing_folder_is_refused(built: Path, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not exist"):
        lake.subset(built, "sst", str(tmp_path / "no" / "cut.nc"), time=TIME)
