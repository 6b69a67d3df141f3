"""In-situ observations as GeoParquet: CF discrete sampling geometries, one row per
observation, from the real files of ``../shared/data/real/insitu`` and generated files of
each representation (orthogonal and incomplete multidimensional, contiguous and indexed
ragged, points), with per-file incremental builds and Argo's R → D replacement."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import netCDF4
import numpy as np
import pyarrow.dataset as pads
import pytest
import xarray as xr

import lake
from helpers import SHARED, build_on, file_table_spec
from lake.errors import SourceError
from lake.spec import parse_spec

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.distributed
INSITU = SHARED / "data" / "real" / "insitu"
# The observation dimensions of each real file, and its coordinates' source names.
REAL = {
    "D4900590_097.nc": (("N_PROF", "N_LEVELS"), {"JULD": "time", "LATITUDE": "latitude"}),
    "GL_PR_CT_EXSD0953.nc": (("TIME", "DEPTH"), {"TIME": "time", "LATITUDE": "latitude"}),
    "ru29-20140101T0942.nc": (("time",), {"lat": "latitude", "lon": "longitude"}),
    "cont_ragged.nc": (("obs",), {}),
}


def _spec(tmp: Path, netcdf: Any, **table: Any) -> lake.Spec:
    return file_table_spec(tmp, "obs", "CC0-1.0", netcdf=netcdf, **table)


def _rows(tmp: Path) -> gpd.GeoDataFrame:
    return gpd.read_parquet(tmp / "lake" / "obs" / "data")


def _decoded(path: Path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_dataset(path).load()


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_give_every_value(
    name: str, tmp_path: Path, client: Client, shared_data: Path, schema_registry: object
) -> None:
    """Counts and sums of every observation variable equal xarray's decoding of the file."""
    source = INSITU / name
    report = build_on(client, _spec(tmp_path, str(source)))
    (table,) = report.datasets
    rows = _rows(tmp_path)
    assert table.holds == len(rows) > 0
    assert rows.crs is not None and rows.crs.to_epsg() in (None, 4326)
    assert set(rows.geom_type) == {"Point"}
    assert rows["source_file"].unique().tolist() == [str(source)]
    dims, renamed = REAL[name]
    ds = _decoded(source)
    compared = 0
    for var_name, var in ds.variables.items():
        if set(var.dims) != set(dims) or var.dtype.kind not in "iuf":
            continue
        column = rows[renamed.get(str(var_name), str(var_name))]
        values = var.values[np.isfinite(var.values)] if var.dtype.kind == "f" else var.values
        assert column.notna().sum() == values.size, var_name
        assert np.isclose(column.sum(), values.astype(np.float64).sum(), rtol=1e-6), var_name
        compared += 1
    assert compared >= 2
    assert lake.verify(report.root).ok
    assert lake.validate(report.root, schemas=SHARED / "schemas").ok


def test_argo_profile_columns(tmp_path: Path, client: Client, shared_data: Path) -> None:
    source = INSITU / "D4900590_097.nc"
    build_on(client, _spec(tmp_path, str(source)))
    rows = _rows(tmp_path)
    first = rows.iloc[0]
    assert first["PLATFORM_NUMBER"] == "4900590" and first["CYCLE_NUMBER"] == 97
    assert first["DATA_MODE"] == "D" and first["DIRECTION"] == "A"
    assert set(rows["PRES_QC"].dropna()) <= set("0123456789")  # flags stay characters
    assert "HISTORY_DATE" not in rows.columns  # along N_HISTORY: about the file, not a row
    assert rows["source_id"].iloc[0].endswith("/4900590_097.nc")
    # The platforms a partition holds are on its item and in the collection's summaries.
    collection = json.loads((tmp_path / "lake" / "obs" / "collection.json").read_text())
    assert collection["summaries"]["lake:platforms"] == ["4900590"]
    (item,) = (tmp_path / "lake" / "obs" / "items").glob("*.json")
    assert json.loads(item.read_text())["properties"]["lake:platforms"] == ["4900590"]
    schema = pads.dataset(tmp_path / "lake" / "obs" / "data", partitioning="hive").schema
    meta = schema.field("TEMP").metadata
    assert meta[b"units"] == b"degree_Celsius"
    assert meta[b"standard_name"] == b"sea_water_temperature"
    assert schema.field("time").metadata[b"source_name"] == b"JULD"
    with xr.open_dataset(source) as ds:
        assert np.datetime64(rows["time"].iloc[0].tz_localize(None), "s") == np.datetime64(
            ds["JULD"].values[0], "s"
        )


def _nc(path: Path, dims: dict[str, int], feature: str | None, variables: dict[str, Any]) -> None:
    """A file of ``variables``: name → (dims, values, attrs)."""
    with netCDF4.Dataset(path, "w") as nc:
        if feature:
            nc.featureType = feature
        for dim, size in dims.items():
            nc.createDimension(dim, size)
        for name, (var_dims, given, attrs) in variables.items():
            values = np.asarray(given)
            fill = attrs.pop("_FillValue", None)
            kind = "S1" if values.dtype.kind == "S" else values.dtype
            var = nc.createVariable(name, kind, var_dims, fill_value=fill)
            var.setncatts(attrs)
            var.set_auto_maskandscale(False)  # values are given as stored
            var[:] = values


_T = {"units": "days since 2000-01-01", "standard_name": "time"}
_Y = {"units": "degrees_north", "standard_name": "latitude"}
_X = {"units": "degrees_east", "standard_name": "longitude"}


def test_orthogonal_time_series_broadcast_and_drop_padding(tmp_path: Path, client: Client) -> None:
    temp = np.arange(15, dtype="f4").reshape(3, 5)
    temp[1, :] = -999.0  # a station without data: padding, not rows
    temp[2, 4] = -999.0
    _nc(tmp_path / "ts.nc", {"station": 3, "time": 5}, "timeSeries", {
        "time": (("time",), np.arange(5.0) + 366, dict(_T)),
        "lat": (("station",), [40.0, 41.0, 42.0], dict(_Y)),
        "lon": (("station",), [-10.0, -11.0, -12.0], dict(_X)),
        "temp": (("station", "time"), temp, {"_FillValue": np.float32(-999), "units": "K"}),
    })  # fmt: skip
    build_on(client, _spec(tmp_path, str(tmp_path / "ts.nc")))
    rows = _rows(tmp_path).sort_values(["latitude", "time"])
    assert len(rows) == 9 and rows["temp"].notna().sum() == 9
    assert rows["latitude"].tolist() == [40.0] * 5 + [42.0] * 4
    assert str(rows["time"].iloc[0]) == "2001-01-01 00:00:00+00:00"
    assert sorted(_rows(tmp_path)["year"].unique()) == [2001]


def test_indexed_and_nested_ragged_arrays(tmp_path: Path, client: Client) -> None:
    """An indexed ragged time series (CF 9.3.4) and a timeSeriesProfile whose profiles are
    contiguous in obs and indexed to their stations: each value reaches its rows."""
    _nc(tmp_path / "indexed.nc", {"station": 2, "obs": 5, "strlen": 4}, "timeSeries", {
        "station_name": (("station", "strlen"), np.array([list("AB01"), list("CD02")], "S1"),
                         {"cf_role": "timeseries_id"}),
        "lat": (("station",), [50.0, 51.0], dict(_Y)),
        "lon": (("station",), [1.0, 2.0], dict(_X)),
        "station_index": (("obs",), np.array([0, 1, 1, 0, 1], "i4"),
                          {"instance_dimension": "station"}),
        "time": (("obs",), np.arange(5.0), dict(_T)),
        "temp": (("obs",), np.arange(5, dtype="f4") + 10, {}),
    })  # fmt: skip
    build_on(client, _spec(tmp_path, str(tmp_path / "indexed.nc")))
    rows = _rows(tmp_path).sort_values("temp")
    assert rows["station_name"].tolist() == ["AB01", "CD02", "CD02", "AB01", "CD02"]
    assert rows["latitude"].tolist() == [50.0, 51.0, 51.0, 50.0, 51.0]
    assert "station_index" not in rows.columns

    other = tmp_path / "nested"
    other.mkdir()
    _nc(other / "tsp.nc", {"station": 2, "profile": 3, "obs": 6}, "timeSeriesProfile", {
        "lat": (("station",), [60.0, 61.0], dict(_Y)),
        "lon": (("station",), [5.0, 6.0], dict(_X)),
        "station_index": (("profile",), np.array([1, 0, 1], "i4"),
                          {"instance_dimension": "station"}),
        "row_size": (("profile",), np.array([1, 2, 3], "i4"), {"sample_dimension": "obs"}),
        "time": (("profile",), [1.0, 2.0, 3.0], dict(_T)),
        "z": (("obs",), np.arange(6, dtype="f4"), {"axis": "Z", "units": "m", "positive": "down"}),
        "temp": (("obs",), np.arange(6, dtype="f4") + 20, {}),
    })  # fmt: skip
    build_on(client, _spec(other, str(other / "tsp.nc")))
    rows = _rows(other).sort_values("z")
    assert rows["latitude"].tolist() == [61.0, 60.0, 60.0, 61.0, 61.0, 61.0]
    assert [t.day for t in rows["time"]] == [2, 3, 3, 4, 4, 4]


def test_packed_values_are_decoded_and_points_kept(tmp_path: Path, client: Client) -> None:
    _nc(tmp_path / "points.nc", {"obs": 4}, "point", {
        "time": (("obs",), [0.0, 1.0, 2.0, 3.0], dict(_T)),
        "lat": (("obs",), [10.0, 20.0, 95.0, 30.0], dict(_Y)),  # one invalid position
        "lon": (("obs",), [1.0, 2.0, 3.0, 4.0], dict(_X)),
        "sst": (("obs",), np.array([100, 200, -32767, 400], "i2"),
                {"scale_factor": 0.01, "add_offset": 10.0, "_FillValue": np.int16(-32767)}),
    })  # fmt: skip
    report = build_on(client, _spec(tmp_path, str(tmp_path / "points.nc")))
    rows = _rows(tmp_path).sort_values("time")
    assert rows["sst"].tolist()[:2] == pytest.approx([11.0, 12.0])
    assert np.isnan(rows["sst"].tolist()[2])
    assert rows.geometry.isna().sum() == 1 and report.datasets[0].detail.invalid == 1

    # `geometry: {invalid: drop}`: the row without a valid position is dropped, and counted.
    other = tmp_path / "dropping"
    other.mkdir()
    spec = _spec(other, str(tmp_path / "points.nc"), geometry={"invalid": "drop"})
    dropped = build_on(client, spec)
    assert len(_rows(other)) == 3 and dropped.datasets[0].detail.dropped == 1


def _bad(tmp: Path, client: Client, path: Path, match: str) -> SourceError:
    with pytest.raises(SourceError, match=match) as info:
        build_on(client, _spec(tmp, str(path)))
    assert not (tmp / "lake" / "obs" / "table.json").exists()
    return info.value


def test_bad_input(tmp_path: Path, client: Client) -> None:
    grid = tmp_path / "grid.nc"
    _nc(grid, {"time": 1, "lat": 3, "lon": 4}, None, {
        "time": (("time",), [0.0], dict(_T)),
        "lat": (("lat",), [1.0, 2.0, 3.0], dict(_Y)),
        "lon": (("lon",), [1.0, 2.0, 3.0, 4.0], dict(_X)),
        "sst": (("time", "lat", "lon"), np.zeros((1, 3, 4), "f4"), {}),
    })  # fmt: skip
    error = _bad(tmp_path, client, grid, "is a grid along lat and lon")
    assert "cube" in error.fix

    profile = tmp_path / "profile.nc"
    _nc(profile, {"obs": 2}, "profile", {
        "time": (("obs",), [0.0, 1.0], dict(_T)),
        "lat": (("obs",), [1.0, 2.0], dict(_Y)),
        "lon": (("obs",), [1.0, 2.0], dict(_X)),
        "temp": (("obs",), [1.0, 2.0], {}),
    })  # fmt: skip
    _bad(tmp_path, client, profile, "says featureType profile, but has no vertical coordinate")

    point = tmp_path / "point.nc"
    _nc(point, {"station": 2, "time": 2}, "point", {
        "time": (("time",), [0.0, 1.0], dict(_T)),
        "lat": (("station",), [1.0, 2.0], dict(_Y)),
        "lon": (("station",), [1.0, 2.0], dict(_X)),
        "temp": (("station", "time"), np.ones((2, 2)), {}),
    })  # fmt: skip
    _bad(tmp_path, client, point, "says featureType point, but nests its observations")

    ragged = tmp_path / "ragged.nc"
    _nc(ragged, {"profile": 2, "obs": 5}, "profile", {
        "time": (("profile",), [0.0, 1.0], dict(_T)),
        "lat": (("profile",), [1.0, 2.0], dict(_Y)),
        "lon": (("profile",), [1.0, 2.0], dict(_X)),
        "row_size": (("profile",), np.array([2, 2], "i4"), {"sample_dimension": "obs"}),
        "z": (("obs",), np.arange(5.0), {"axis": "Z", "units": "m"}),
    })  # fmt: skip
    _bad(tmp_path, client, ragged, "counts 4 elements of obs, which has 5")


def test_a_truncated_file_is_named(tmp_path: Path, client: Client, shared_data: Path) -> None:
    cut = tmp_path / "cut.nc"
    cut.write_bytes((INSITU / "D4900590_097.nc").read_bytes()[:5000])
    error = _bad(tmp_path, client, cut, "cannot be read as NetCDF")
    assert str(cut) in error.subject


def _argo(path: Path, cycle: int, temps: list[float], mode: str = "R") -> None:
    n = len(temps)
    _nc(path, {"N_PROF": 1, "N_LEVELS": n, "STRING8": 8}, "trajectoryProfile", {
        "PLATFORM_NUMBER": (("N_PROF", "STRING8"), np.array([list("1900001 ")], "S1"), {}),
        "CYCLE_NUMBER": (("N_PROF",), np.array([cycle], "i4"), {}),
        "DATA_MODE": (("N_PROF",), np.array([mode.encode()], "S1"), {}),
        "JULD": (("N_PROF",), [9000.0 + cycle], {**_T, "units": "days since 1950-01-01"}),
        "LATITUDE": (("N_PROF",), [40.0], dict(_Y)),
        "LONGITUDE": (("N_PROF",), [-30.0 + cycle], dict(_X)),
        "PRES": (("N_PROF", "N_LEVELS"), [np.arange(n, dtype="f4") * 10],
                 {"axis": "Z", "units": "decibar", "_FillValue": np.float32(99999)}),
        "TEMP": (("N_PROF", "N_LEVELS"), [np.array(temps, "f4")],
                 {"units": "degree_Celsius", "_FillValue": np.float32(99999)}),
    })  # fmt: skip


def test_incremental_by_file_and_argo_delayed_mode(tmp_path: Path, client: Client) -> None:
    """New files add rows, a changed file replaces its rows, a removed one removes them,
    and a delayed-mode file replaces its real-time version: each profile once."""
    src = tmp_path / "profiles"
    src.mkdir()
    _argo(src / "R1900001_001.nc", 1, [10.0, 9.0, 8.0])
    _argo(src / "R1900001_002.nc", 2, [11.0, 10.0])
    spec = _spec(tmp_path, str(src / "*.nc"), incremental={})
    build_on(client, spec)
    assert len(_rows(tmp_path)) == 5

    # Both versions listed at once: only the delayed-mode one is read.
    _argo(src / "D1900001_001.nc", 1, [10.5, 9.5, 8.5, 7.5], mode="D")
    _argo(src / "R1900001_003.nc", 3, [12.0])
    report = build_on(client, spec)
    rows = _rows(tmp_path)
    assert report.datasets[0].read == 5  # the D file's 4 rows and the new file's one
    assert len(rows) == 2 + 4 + 1
    cycle1 = rows[rows["CYCLE_NUMBER"] == 1]
    assert cycle1["DATA_MODE"].unique().tolist() == ["D"] and len(cycle1) == 4

    _argo(src / "R1900001_002.nc", 2, [21.0, 20.0, 19.0])  # re-delivered with other values
    (src / "R1900001_003.nc").unlink()
    build_on(client, spec)
    rows = _rows(tmp_path)
    assert sorted(rows["TEMP"].round(1).tolist()) == [7.5, 8.5, 9.5, 10.5, 19.0, 20.0, 21.0]
    assert 3 not in rows["CYCLE_NUMBER"].tolist()

    again = build_on(client, spec)
    assert again.datasets[0].read == 0 and not again.datasets[0].changed
    assert lake.verify(again.root).ok


def test_spec_rules_of_file_sources(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "x.nc")
    table = spec.datasets[0].table
    assert table is not None and table.partition_by == ["year(time)"]
    assert _spec(tmp_path, "x.nc", partition_by=[]).datasets[0].table.partition_by == []  # type: ignore[union-attr]
    with pytest.raises(lake.SpecError, match="gives each row's point itself"):
        _spec(tmp_path, "x.nc", geometry={"lon": "a", "lat": "b"})
    with pytest.raises(lake.SpecError, match="incremental by file"):
        _spec(tmp_path, "x.nc", incremental={"column": "t"})


def test_copies_of_real_files_in_one_dataset(
    tmp_path: Path, client: Client, shared_data: Path
) -> None:
    """Files of different formats and variables in one dataset: the union of columns."""
    src = tmp_path / "mixed"
    src.mkdir()
    for name in ("ru29-20140101T0942.nc", "cont_ragged.nc"):
        shutil.copy(INSITU / name, src / name)
    report = build_on(client, _spec(tmp_path, str(src / "*.nc")))
    rows = _rows(tmp_path)
    assert report.datasets[0].holds == 453 + 10 == len(rows)
    assert {"salinity", "station_name", "height"} <= set(rows.columns)


def test_a_file_alone_fills_the_catalogue_from_its_attributes(
    tmp_path: Path, client: Client, shared_data: Path
) -> None:
    """ACDD attributes give the title, the licence (here an address: `other`) and the
    providers; a file whose licence is only free text needs one in the spec."""
    data = {"root": str(tmp_path / "lake"), "datasets": [
        {"id": "obs", "table": {"netcdf": str(INSITU / "GL_PR_CT_EXSD0953.nc")}}]}  # fmt: skip
    build_on(client, parse_spec(data, "test-spec.yaml", tmp_path))
    collection = json.loads((tmp_path / "lake" / "obs" / "collection.json").read_text())
    assert collection["title"] == "Global Ocean - In Situ Observation Copernicus"
    assert collection["license"] == "other"
    assert any(link["rel"] == "license" and "copernicus" in link["href"]
               for link in collection["links"])  # fmt: skip
    assert {"producer", "host"} <= {r for p in collection["providers"] for r in p["roles"]}

    data["datasets"][0]["table"] = {"netcdf": str(INSITU / "ru29-20140101T0942.nc")}
    with pytest.raises(lake.SpecError, match="has no licence"):
        build_on(client, parse_spec(data, "test-spec.yaml", tmp_path))


def test_partitioned_by_platform(tmp_path: Path, client: Client, shared_data: Path) -> None:
    """A column such as the platform is a partition level too; the items still list it."""
    spec = _spec(tmp_path, str(INSITU / "D4900590_097.nc"),
                 partition_by=["year(time)", "PLATFORM_NUMBER", "grid(10)"])  # fmt: skip
    build_on(client, spec)
    (path,) = (tmp_path / "lake" / "obs" / "data").rglob("*.parquet")
    assert "year=2007/PLATFORM_NUMBER=4900590/cell_10deg=N40p0W060p0" in str(path)
    collection = json.loads((tmp_path / "lake" / "obs" / "collection.json").read_text())
    assert collection["summaries"]["lake:platforms"] == ["4900590"]
