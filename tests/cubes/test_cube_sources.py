"""Source variety: other calendars, NetCDF3 over S3, the command line's summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import netCDF4
import numpy as np
import pytest
import s3fs
from typer.testing import CliRunner

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cli import app
from lake.flows.cubes import build_cube
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed


def _noleap_file(path: Path, first_day: int, days: int) -> Path:
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 3)
        nc.createDimension("lon", 4)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.axis = "days since 2000-01-01", "noleap", "T"
        t[:] = np.arange(first_day, first_day + days) + 0.5
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.units, lat.standard_name = "degrees_north", "latitude"
        lat[:] = [40.0, 41.0, 42.0]
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon.units, lon.standard_name = "degrees_east", "longitude"
        lon[:] = [-5.0, -4.0, -3.0, -2.0]
        tos = nc.createVariable("tos", "f4", ("time", "lat", "lon"), fill_value=np.float32(1e20))
        tos.units, tos.standard_name = "K", "sea_surface_temperature"
        values = 280 + np.arange(days * 12, dtype="f4").reshape(days, 3, 4) / 7
        values[:, 0, 0] = 1e20
        tos[:] = values
    return path


def test_noleap_calendar_netcdf3(tmp_path: Path, client: Client) -> None:
    """A climate-model style file: NetCDF3, 'noleap' calendar (cftime), half-day stamps."""
    src = tmp_path / "src"
    src.mkdir()
    a = _noleap_file(src / "tos_a.nc", 55, 10)  # crosses 28 February of a noleap year
    b = _noleap_file(src / "tos_b.nc", 65, 5)
    spec = spec_for(str(tmp_path / "lake"), str(src / "*.nc"), tmp_path)
    assert build_cube(client, Root(spec.root), spec.datasets[0]).ntime == 15
    cube = open_cube(str(tmp_path / "lake/cube/timeseries.zarr"))
    assert cube["time"].encoding["calendar"] == "noleap"
    assert cube["time"].encoding["units"] == "hours since 2000-01-01"
    assert_same(cube, decoded_source(a, b))


@pytest.mark.s3
def test_netcdf3_source_on_s3(
    shared_data: Path, tmp_path: Path, client: Client, s3_endpoint: str, bucket: str
) -> None:
    options = {"endpoint_url": s3_endpoint}
    source = shared_data / "netcdf" / "OS_EXAMPLEFILE_FORMAT-1-2_D.nc"
    s3fs.S3FileSystem(**options, skip_instance_cache=True).put_file(
        str(source), f"{bucket}/in/mooring.nc"
    )
    spec = spec_for(
        str(tmp_path / "lake"), f"s3://{bucket}/in/*.nc", tmp_path, storage_options=options
    )
    build_cube(client, Root(spec.root), spec.datasets[0])
    assert_same(open_cube(str(tmp_path / "lake/cube/timeseries.zarr")), decoded_source(source))


def test_command_line_summary_and_rerun(tmp_path: Path, client: Client) -> None:
    from lake.samples import write_daily_product

    write_daily_product(tmp_path / "data", days=3, ny=10, nx=12)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "root: ./lake\ndatasets:\n  - id: sst\n    cube: {netcdf: 'data/*.nc'}\n"
        "    metadata: {license: CC-BY-4.0}\n"
    )
    args = ["build", str(spec), "--scheduler", client.scheduler.address]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "sst" in first.output and "maps +3" in first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output
