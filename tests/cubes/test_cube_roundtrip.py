"""Every real sample file goes through its layouts and decodes exactly like the source.

Station series (a mooring, a 3 x 3 point extract) get only the time-series layout by
default; maps get both."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.flows.cubes import build_cube
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

STATION = ("timeseries",)
BOTH = ("maps", "timeseries")
FILES = {
    "OS_EXAMPLEFILE_FORMAT-1-2_D.nc": STATION,
    "GL_TS_BO_EXEC0220.nc": STATION,
    "dataset_french_coast.nc": BOTH,
    "cmems_mod_ibi_phy_my_0.083deg-3D_P1Y-m_thetao_9.83W-9.67W_34.00N-34.17N_0.51-1.56m_"
    "1993-01-01-2021-01-01.nc": STATION,
    "cmems_mod_glo_phy-so_anfc_0.083deg_P1D-m_so_13.00W-5.00E_47.00N-64.00N_0.49m_"
    "2025-09-24-2025-09-25.nc": BOTH,
}


@pytest.mark.distributed
@pytest.mark.parametrize("name", FILES, ids=lambda n: n.split("_")[0] + "-" + n[-12:-3])
def test_round_trip_real_file(name: str, shared_data: Path, tmp_path: Path, client: Client) -> None:
    source = shared_data / "netcdf" / name
    spec = spec_for(str(tmp_path / "lake"), str(source), tmp_path)
    result = build_cube(client, Root(spec.root), spec.datasets[0])
    expected = decoded_source(source)
    assert result.ntime == expected.sizes["time"]
    layouts = FILES[name]
    assert result.added == dict.fromkeys(layouts, result.ntime)
    for layout in layouts:
        cube = open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr"))
        assert_same(cube, expected)


@pytest.mark.distributed
def test_layout_metadata(tmp_path: Path, client: Client) -> None:
    """Zarr v3, sharded, zstd, integer time, consolidated metadata, CF packing kept."""
    import json

    from lake.samples import write_daily_product

    write_daily_product(tmp_path / "src", days=3, ny=300, nx=400)
    spec = spec_for(str(tmp_path / "lake"), str(tmp_path / "src" / "*.nc"), tmp_path)
    build_cube(client, Root(spec.root), spec.datasets[0])
    group = json.loads((tmp_path / "lake/cube/maps.zarr/zarr.json").read_text())
    assert group["zarr_format"] == 3
    assert "thetao" in group["consolidated_metadata"]["metadata"]
    meta = json.loads((tmp_path / "lake/cube/timeseries.zarr/thetao/zarr.json").read_text())
    assert meta["data_type"] == "int16"
    sharding = meta["codecs"][0]
    assert sharding["name"] == "sharding_indexed"
    inner = sharding["configuration"]["codecs"]
    assert any(c["name"] == "blosc" and c["configuration"]["cname"] == "zstd" for c in inner)
    assert meta["attributes"]["scale_factor"] == pytest.approx(0.001)
    time = json.loads((tmp_path / "lake/cube/maps.zarr/time/zarr.json").read_text())
    assert time["data_type"] == "int64"
    assert time["attributes"]["units"] == "hours since 1950-01-01"


@pytest.mark.distributed
def test_float32_packing_is_stored_decoded(tmp_path: Path, client: Client) -> None:
    """float32 scale_factor/add_offset cannot survive JSON attributes: values are kept exact."""
    import json

    import netCDF4
    import numpy as np

    from lake.samples import write_daily_product

    files = write_daily_product(tmp_path / "src", days=2, ny=20, nx=30)
    for path in files:
        with netCDF4.Dataset(path, "a") as nc:
            nc["thetao"].scale_factor = np.float32(0.001)
            nc["thetao"].add_offset = np.float32(10.0)
    spec = spec_for(str(tmp_path / "lake"), str(tmp_path / "src" / "*.nc"), tmp_path)
    build_cube(client, Root(spec.root), spec.datasets[0])
    meta = json.loads((tmp_path / "lake/cube/maps.zarr/thetao/zarr.json").read_text())
    assert meta["data_type"] == "float32"
    assert "scale_factor" not in meta["attributes"]
    expected = decoded_source(*files)
    assert expected["thetao"].dtype == np.float32
    assert_same(open_cube(str(tmp_path / "lake/cube/maps.zarr")), expected)
