"""Transient storage errors (HTTP 500, 503 SlowDown) are retried: a build through a proxy
that fails every eighth request still publishes a complete cube, table and catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flaky import FlakyProxy
from pgdata import cube_and_table_spec
from typer.testing import CliRunner

from lake.cli import app

if TYPE_CHECKING:
    from distributed import Client

pytestmark = [pytest.mark.s3, pytest.mark.postgres]


def test_build_survives_transient_storage_errors(
    client: Client, s3_endpoint: str, bucket: str, pg_dsn: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import s3fs
    import xarray as xr

    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    with FlakyProxy(s3_endpoint, every=8) as proxy:
        path = cube_and_table_spec(
            tmp_path, pg_dsn, f"s3://{bucket}/lake", {"endpoint_url": proxy.url},
            days=4, rows=2000, start="2024-03-01",
        )  # fmt: skip
        result = CliRunner().invoke(
            app, ["build", str(path), "--scheduler", client.scheduler.address]
        )
        assert result.exit_code == 0, result.output
        assert proxy.injected >= 5
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    cube = xr.open_zarr(fs.get_mapper(f"{bucket}/lake/sst/maps.zarr"), consolidated=True)
    expected = xr.open_mfdataset(sorted((tmp_path / "src").glob("*.nc")))
    assert cube.sizes["time"] == 4
    assert float(abs(cube.thetao.load() - expected.thetao.load()).max()) == 0.0
    manifest = json.loads(fs.cat_file(f"{bucket}/lake/occ/table.json"))
    assert manifest["rows"] == 2000
    assert fs.exists(f"{bucket}/lake/catalog.json")
