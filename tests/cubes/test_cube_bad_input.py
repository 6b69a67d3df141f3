"""Bad input: one clear message naming the input, the fault and the fix; non-zero exit;
nothing published; an earlier cube left intact."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import netCDF4
import pytest
from typer.testing import CliRunner

from helpers import open_cube
from lake.cli import app
from lake.errors import ExitCode
from lake.samples import write_daily_product

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed


def _spec(tmp: Path, root: Path, pattern: str) -> Path:
    spec = tmp / "spec.yaml"
    spec.write_text(
        f"root: {root}\ndatasets:\n  - id: sst\n    metadata: {{license: CC-BY-4.0}}\n"
        f"    cube:\n      netcdf: '{pattern}'\n"
    )
    return spec


def _build(spec: Path, client: Client) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["build", str(spec), "--scheduler", client.scheduler.address])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def published(tmp_path: Path, client: Client) -> tuple[Path, Path]:
    """A cube built from three good days; returns (sources folder, lake root)."""
    src = tmp_path / "src"
    write_daily_product(src, start="2024-03-01", days=3, ny=20, nx=30)
    root = tmp_path / "lake"
    code, output = _build(_spec(tmp_path, root, str(src / "*.nc")), client)
    assert code == 0, output
    return src, root


def _check_intact(root: Path, ntime: int = 3) -> None:
    for layout in ("maps", "timeseries"):
        assert open_cube(str(root / "sst" / f"{layout}.zarr")).sizes["time"] == ntime


def test_corrupt_file(published: tuple[Path, Path], tmp_path: Path, client: Client) -> None:
    src, root = published
    (src / "thetao_20240304.nc").write_bytes(b"this is not netcdf at all" * 100)
    code, output = _build(_spec(tmp_path, root, str(src / "*.nc")), client)
    assert code == ExitCode.SOURCE
    assert "thetao_20240304.nc" in output and "is not a NetCDF file" in output and "Fix:" in output
    _check_intact(root)


def test_truncated_file(published: tuple[Path, Path], tmp_path: Path, client: Client) -> None:
    src, root = published
    write_daily_product(tmp_path / "more", start="2024-03-04", days=1, ny=20, nx=30)
    data = (tmp_path / "more" / "thetao_20240304.nc").read_bytes()
    (src / "thetao_20240304.nc").write_bytes(data[: len(data) // 2])
    code, output = _build(_spec(tmp_path, root, str(src / "*.nc")), client)
    assert code == ExitCode.SOURCE
    assert "thetao_20240304.nc" in output and "truncated or corrupt" in output
    _check_intact(root)


def test_different_grid(published: tuple[Path, Path], tmp_path: Path, client: Client) -> None:
    src, root = published
    write_daily_product(src, start="2024-03-04", days=1, ny=21, nx=30)
    code, output = _build(_spec(tmp_path, root, str(src / "*.nc")), client)
    assert code == ExitCode.SOURCE
    assert "thetao_20240304.nc" in output and "separate dataset" in output
    _check_intact(root)


def test_missing_time_units(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    (path,) = write_daily_product(src, days=1, ny=5, nx=5)
    with netCDF4.Dataset(path, "a") as nc:
        nc["time"].delncattr("units")
    code, output = _build(_spec(tmp_path, tmp_path / "lake", str(src / "*.nc")), client)
    assert code == ExitCode.SOURCE
    assert path.name in output and "time has no units" in output and "days since" in output
    assert not (tmp_path / "lake" / "sst").exists()


def test_non_cf_time_units(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    (path,) = write_daily_product(src, days=1, ny=5, nx=5)
    with netCDF4.Dataset(path, "a") as nc:
        nc["time"].units = "fortnights"
    code, output = _build(_spec(tmp_path, tmp_path / "lake", str(src / "*.nc")), client)
    assert code == ExitCode.SOURCE
    assert path.name in output and "non-CF units 'fortnights'" in output


def test_duplicate_timestamps(published: tuple[Path, Path], tmp_path: Path, client: Client) -> None:
    src, root = published
    write_daily_product(tmp_path / "dup", start="2024-03-04", days=1, ny=20, nx=30)
    shutil.copy(tmp_path / "dup" / "thetao_20240304.nc", src / "thetao_20240304.nc")
    shutil.copy(tmp_path / "dup" / "thetao_20240304.nc", src / "thetao_20240304_reprocessed.nc")
    code, output = _build(_spec(tmp_path, root, str(src / "*.nc")), client)
    assert code == ExitCode.SOURCE
    assert "thetao_20240304.nc and" in output and "duplicate" in output
    assert "remove one of the two files" in output
    _check_intact(root)


def test_unwritable_target(published: tuple[Path, Path], tmp_path: Path, client: Client) -> None:
    src, root = published
    write_daily_product(src, start="2024-03-04", days=1, ny=20, nx=30)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, output = _build(_spec(tmp_path, blocker / "lake", str(src / "*.nc")), client)
    assert code == ExitCode.TARGET
    assert "a-file/lake" in output and "cannot be written" in output and "Fix:" in output
    _check_intact(root)


def test_read_only_target(published: tuple[Path, Path], tmp_path: Path, client: Client) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    src, root = published
    write_daily_product(src, start="2024-03-04", days=1, ny=20, nx=30)
    root.chmod(0o555)
    try:
        code, _ = _build(_spec(tmp_path, root, str(src / "*.nc")), client)
    finally:
        root.chmod(0o755)
    assert code == ExitCode.TARGET
    _check_intact(root)


def test_invalid_spec_names_file_and_field(tmp_path: Path, client: Client) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "root: ./x\ndatasets:\n  - id: Bad Id\n    cube: {netcdf: a.nc, layouts: [maps, cubes]}\n"
    )
    code, output = _build(spec, client)
    assert code == ExitCode.SPEC
    assert "bad.yaml" in output
    assert "datasets[0].id" in output and "datasets[0].cube.layouts[1]" in output
