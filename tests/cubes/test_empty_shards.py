"""All-fill blocks (a real-time glider before QC, a variable that is all missing): no object
is written, the layout records which shards are empty, and `lake verify` knows the
difference between such a shard and a lost one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import netCDF4
import numpy as np
import pytest

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes.blocks import all_fill
from lake.cubes.publish import EMPTY_SHARDS
from lake.flows.cubes import build_cube
from lake.stac.catalog import write_catalogue
from lake.stac.verify import verify_lake
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed

# Small grids get only the time-series layout by default; these tests need both.
BOTH = ["maps", "timeseries"]


def _write(path: Path, start: int, days: int, filled: bool) -> None:
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 4)
        nc.createDimension("lon", 5)
        time = nc.createVariable("time", "f8", ("time",))
        time.setncatts({"units": "days since 2020-01-01", "standard_name": "time"})
        time[:] = np.arange(start, start + days)
        for name, values in (("lat", np.arange(4.0)), ("lon", np.arange(5.0))):
            var = nc.createVariable(name, "f8", (name,))
            var.standard_name = "latitude" if name == "lat" else "longitude"
            var.units = "degrees_north" if name == "lat" else "degrees_east"
            var[:] = values
        temp = nc.createVariable("TEMP", "f4", ("time", "lat", "lon"), fill_value=99999.0)
        temp[:] = np.full((days, 4, 5), 99999.0, "f4")
        if filled:
            temp[:] = np.random.default_rng(start).normal(10, 1, (days, 4, 5)).astype("f4")
        flags = nc.createVariable("TEMP_QC", "i1", ("time", "lat", "lon"), fill_value=-128)
        flags[:] = np.full((days, 4, 5), 1 if filled else -128, "i1")


def test_all_fill_variables_write_no_object_and_verify(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "a.nc", 0, 3, filled=False)
    root = Root(str(tmp_path / "lake"))
    spec = spec_for(root.url, [str(src / "a.nc")], tmp_path, layouts=BOTH)
    build_cube(client, root, spec.datasets[0])
    write_catalogue(root, spec)
    for layout in ("maps", "timeseries"):
        group = tmp_path / "lake" / "cube" / f"{layout}.zarr"
        record = json.loads((group / EMPTY_SHARDS).read_text())
        assert set(record["arrays"]) == {"TEMP", "TEMP_QC"}
        assert not (group / "TEMP" / "c").exists()
        assert_same(open_cube(str(group)), decoded_source(src / "a.nc"))
    report = verify_lake(root)
    assert not report.problems, report.problems

    # Real values arrive in the same shards: they are written and leave the record.
    _write(src / "b.nc", 3, 2, filled=True)
    spec = spec_for(root.url, [str(src / "a.nc"), str(src / "b.nc")], tmp_path, layouts=BOTH)
    build_cube(client, root, spec.datasets[0])
    write_catalogue(root, spec)
    write_catalogue(root, spec)
    for layout in ("maps", "timeseries"):
        group = tmp_path / "lake" / "cube" / f"{layout}.zarr"
        record = json.loads((group / EMPTY_SHARDS).read_text()) if (
            group / EMPTY_SHARDS).exists() else {"arrays": {}}  # fmt: skip
        assert "TEMP" not in record["arrays"]
        assert_same(open_cube(str(group)), decoded_source(src / "a.nc", src / "b.nc"))
    assert not verify_lake(root).problems

    # A shard that is lost, not empty, is still a problem.
    lost = next((tmp_path / "lake" / "cube" / "timeseries.zarr" / "TEMP" / "c").rglob("*"))
    while lost.is_dir():
        lost = next(lost.iterdir())
    lost.unlink()
    assert any("lacks 1 of its" in p.message for p in verify_lake(root).problems)


def test_all_fill_is_bit_for_bit() -> None:
    assert all_fill(np.full(4, np.nan, "f4"), "NaN")
    assert not all_fill(np.array([np.nan, -np.nan], "f8"), "NaN")  # another NaN's bits
    assert all_fill(np.zeros(3, "f8"), 0.0)
    assert not all_fill(np.array([0.0, -0.0]), 0.0)  # -0.0 would read back as 0.0
    assert all_fill(np.full(5, -128, "i1"), -128) and not all_fill(np.arange(3), 0)
    assert not all_fill(np.array(["a"], "U1"), "")
    assert not all_fill(np.zeros(0, "f4"), 0.0)
