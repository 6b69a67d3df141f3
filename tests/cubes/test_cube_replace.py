"""Reprocessed files replace the published steps they cover (``cube: {updates: replace}``).

A daily product is built, then some days are re-issued (new values, same names), one file
covering published and new days takes the place of two daily files, and a stray copy
claims a day another file holds. Only shards holding replaced steps are rewritten, both
layouts equal the current files, and the default (``refuse``) keeps today's behaviour.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from typing import TYPE_CHECKING

import netCDF4
import pytest
import xarray as xr

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes.steps import STEPS
from lake.errors import SourceError
from lake.flows.cubes import build_cube
from lake.samples import write_daily_product
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.distributed

CHUNKING = {"maps_time_per_shard": 4, "timeseries_time": 8, "inner_chunk_mb": 0.06}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}  # fmt: skip


def _reissue(src: Path, start: str, days: int) -> None:
    """New versions of daily files: other values, same names, later modification times."""
    paths = write_daily_product(src, start=start, days=days, ny=30, nx=40, seed=7, prefix="t")
    for path in paths:  # other values: a reprocessing, not the same numbers again
        with netCDF4.Dataset(path, "a") as nc:
            nc["thetao"][:] = nc["thetao"][:] + 0.5
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _layouts(lake: Path) -> list[xr.Dataset]:
    return [open_cube(str(lake / "cube" / f"{layout}.zarr")) for layout in ("maps", "timeseries")]


def test_reissued_files_replace_their_steps(tmp_path: Path, client: Client) -> None:
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_daily_product(src, start="2024-01-01", days=12, ny=30, nx=40, prefix="t")
    spec = spec_for(str(lake), str(src / "*.nc"), tmp_path, chunking=CHUNKING,
                    updates="replace")  # fmt: skip
    root, dataset = Root(spec.root), spec.datasets[0]
    assert build_cube(client, root, dataset).added == {"maps": 12, "timeseries": 12}
    record = json.loads(gzip.decompress((lake / "cube" / STEPS).read_bytes()))
    assert [(start, stop) for _, start, stop in record["files"]] == [(i, i + 1) for i in range(12)]

    # Days 2 and 3 (steps 1, 2) re-issued: the maps shard holding them and the
    # time-series shards are rewritten; the other maps shard is not.
    meta = json.loads((lake / "cube/maps.zarr/thetao/zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"][0] == 6
    _reissue(src, "2024-01-02", 2)
    before = _snapshot(lake)
    result = build_cube(client, root, dataset)
    assert result.replaced == {"maps": 2, "timeseries": 2}
    assert result.added == {"maps": 0, "timeseries": 0}
    assert any("replaced 2 published time step" in note for note in result.notes)
    after = _snapshot(lake)
    maps = "cube/maps.zarr/thetao/c/"
    rewritten = {k for k in after if k.startswith(maps) and after[k] != before.get(k)}
    assert rewritten and all(k.split("/")[4] == "0" for k in rewritten), rewritten
    assert any(k.startswith(maps + "1/") for k in after)
    expected = decoded_source(*sorted(src.glob("*.nc")))
    for cube in _layouts(lake):
        assert_same(cube, expected)

    # A rerun writes nothing: the record knows the new versions.
    before = _snapshot(lake)
    assert build_cube(client, root, dataset).replaced == {}
    assert _snapshot(lake) == before

    # One file covering days 11..14 takes the place of the daily files of days 11 and 12:
    # steps 10, 11 replaced, 12, 13 appended.
    week = tmp_path / "week"
    _reissue(week, "2024-01-11", 4)
    merged = xr.concat([xr.open_dataset(p) for p in sorted(week.glob("*.nc"))], dim="time")
    for name in ("t_20240111.nc", "t_20240112.nc"):
        (src / name).unlink()
    merged.to_netcdf(src / "t_week.nc")
    result = build_cube(client, root, dataset)
    assert result.replaced == {"maps": 2, "timeseries": 2}
    assert result.added == {"maps": 2, "timeseries": 2}
    expected = decoded_source(*sorted(src.glob("*.nc")))
    for cube in _layouts(lake):
        assert_same(cube, expected)

    # Two files claiming one step: an error naming both, and nothing written.
    shutil.copy(src / "t_20240103.nc", src / "t_20240103_copy.nc")
    before = _snapshot(lake)
    with pytest.raises(SourceError) as caught:
        build_cube(client, root, dataset)
    assert "t_20240103.nc" in str(caught.value) and "t_20240103_copy.nc" in str(caught.value)
    assert "duplicate or overlapping" in str(caught.value)
    assert _snapshot(lake) == before


def test_refuse_is_the_default(tmp_path: Path, client: Client) -> None:
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_daily_product(src, start="2024-01-01", days=6, ny=30, nx=40, prefix="t")
    spec = spec_for(str(lake), str(src / "*.nc"), tmp_path, chunking=CHUNKING)
    root, dataset = Root(spec.root), spec.datasets[0]
    build_cube(client, root, dataset)
    published = decoded_source(*sorted(src.glob("*.nc")))

    # A re-issued day whose steps are all published is skipped, as before.
    _reissue(src, "2024-01-03", 1)
    before = _snapshot(lake)
    result = build_cube(client, root, dataset)
    assert result.added == {} and result.replaced == {}
    assert _snapshot(lake) == before
    for cube in _layouts(lake):
        assert_same(cube, published)

    # A file starting inside the published range stops the build and names the way out.
    week = tmp_path / "week"
    _reissue(week, "2024-01-06", 3)
    merged = xr.concat([xr.open_dataset(p) for p in sorted(week.glob("*.nc"))], dim="time")
    merged.to_netcdf(src / "t_week.nc")
    with pytest.raises(SourceError) as caught:
        build_cube(client, root, dataset)
    message = str(caught.value)
    assert "t_week.nc" in message and "inside the published cube" in message
    assert "updates: replace" in message
    assert _snapshot(lake) == before


def test_a_cube_without_a_record_adopts_its_files(tmp_path: Path, client: Client) -> None:
    """A cube published before step records existed: its current files are taken as the
    published versions (nothing replaced), and their next versions replace their steps."""
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_daily_product(src, start="2024-01-01", days=5, ny=30, nx=40, prefix="t")
    spec = spec_for(str(lake), str(src / "*.nc"), tmp_path, chunking=CHUNKING)
    root = Root(spec.root)
    build_cube(client, root, spec.datasets[0])
    (lake / "cube" / STEPS).unlink()
    replacing = spec_for(str(lake), str(src / "*.nc"), tmp_path, chunking=CHUNKING,
                         updates="replace").datasets[0]  # fmt: skip

    result = build_cube(client, root, replacing)
    assert result.replaced == {} and (lake / "cube" / STEPS).exists()
    _reissue(src, "2024-01-02", 1)
    assert build_cube(client, root, replacing).replaced == {"maps": 1, "timeseries": 1}
    expected = decoded_source(*sorted(src.glob("*.nc")))
    for cube in _layouts(lake):
        assert_same(cube, expected)
