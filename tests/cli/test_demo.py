"""`lake demo`: the whole pipeline on a fresh folder, with nothing set up."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import SHARED
from lake.cli import app

pytestmark = pytest.mark.postgres

SCHEMAS = SHARED / "schemas"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of `lake demo` (with the offline schemas when ../shared has them)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    args = ["demo", str(tmp_path / "demo"), "--workers", "2"]
    if SCHEMAS.is_dir():
        args += ["--schemas", str(SCHEMAS)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return tmp_path, " ".join(result.output.split())


def test_demo_validates_against_the_official_schemas(demo: tuple[Path, str]) -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is absent: the demo could not validate offline")
    assert "catalogue documents and GeoParquet files valid" in demo[1]


def test_demo_builds_verifies_and_explains(demo: tuple[Path, str]) -> None:
    tmp_path, output = demo
    assert "objects verified" in output
    # Events without coordinates: their occurrences are kept without a geometry, and counted.
    assert "612 rows without valid" in output  # the summary wraps inside its cell
    assert "coordinates kept with a null geometry" in output
    for dataset in ("thetao-daily", "mooring-demo01", "occurrences"):
        assert dataset in output
        assert (tmp_path / "demo" / "lake" / dataset / "collection.json").is_file()
    assert (tmp_path / "demo" / "lake" / "mooring-demo01" / "thumbnail.png").is_file()
    assert "xr.open_zarr" in output and "gpd.read_parquet" in output and "duckdb" in output
    assert "stac-browser" in output

    import duckdb
    import geopandas as gpd
    import xarray as xr

    lake = tmp_path / "demo" / "lake"
    mooring = xr.open_zarr(lake / "mooring-demo01" / "timeseries.zarr")
    assert {"TEMP", "TEMP_QC", "PSAL", "PSAL_QC"} <= set(mooring.data_vars)
    assert int((mooring.TEMP_QC == 4).sum()) > 0  # flagged spikes kept with their flags
    occ = gpd.read_parquet(lake / "occurrences" / "data", bbox=(-5, 50, 5, 56))
    assert 0 < len(occ) < 60_000
    total = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{lake}/occurrences/data/**/*.parquet', "
        "hive_partitioning=true)"
    ).fetchall()
    assert total == [(60_000,)]
