"""Replacing published steps under SIGKILL, on local disk and on S3.

A cube (``updates: replace``, two maps shards) is built from 12 daily files (v1); then
days in both shards are re-issued and the update build (v2) is killed at chosen moments:
while a replaced shard is written, between the two replaced shards, before a layout's
group document, between the layouts, before the record of the steps' sources. After each
kill:

* ``lake verify`` finds no problem;
* readers see every time step of each layout as in v1 or as in v2, never anything else
  (shards are replaced whole, one at a time: between two of them a reader sees some
  steps replaced and others not yet);

and the next build completes the work: v2 everywhere, ``lake verify`` without a note.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import netCDF4
import numpy as np
import pytest
import yaml
from test_publish_kill import _build, counted_changes, killing_env

from lake.samples import write_daily_product
from lake.stac.verify import verify_lake
from lake.storage import Root

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.slow

# (moment, kind of change, piece of its path, which match): kinds as in test_publish_kill.
LOCAL_MOMENTS = [
    ("replaced shard torn mid-write", "open", "maps.zarr/thetao/c/", 1),
    ("before the first replaced shard replaces the published one", "replace",
     "maps.zarr/thetao/c/", 1),
    ("between the two replaced maps shards", "replace", "maps.zarr/thetao/c/", 2),
    ("before the group document", "replace", "maps.zarr/zarr.json", 1),
    ("between the two layouts", "replace", "timeseries.zarr/.publishing.json", 1),
    ("before the record of the steps' sources", "replace", "sst/.step-sources.json.gz", 1),
]  # fmt: skip
S3_MOMENTS = [
    ("the first replaced shard", "PUT", "maps.zarr/thetao/c/", 1),
    ("between the two replaced maps shards", "PUT", "maps.zarr/thetao/c/", 2),
    ("before the group document", "PUT", "maps.zarr/zarr.json", 1),
    ("between the two layouts", "PUT", "timeseries.zarr/.publishing.json", 1),
    ("before the record of the steps' sources", "PUT", "sst/.step-sources.json.gz", 1),
]


def _spec(tmp: Path, root: str, options: dict[str, Any]) -> Path:
    write_daily_product(tmp / "src", start="2024-01-01", days=12, ny=30, nx=40)
    chunking = {"maps_time_per_shard": 6, "timeseries_time": 8, "inner_chunk_mb": 0.06}
    spec = {
        "root": root,
        "storage_options": options,
        "datasets": [{"id": "sst", "metadata": {"license": "CC-BY-4.0"},
                      "cube": {"netcdf": str(tmp / "src" / "*.nc"), "updates": "replace",
                               "chunking": chunking}}],
    }  # fmt: skip
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _reissue(tmp: Path) -> None:
    """Days 2, 3 (first maps shard) and 10 (second) re-issued with other values."""
    for day in ("20240102", "20240103", "20240110"):
        path = tmp / "src" / f"thetao_{day}.nc"
        with netCDF4.Dataset(path, "a") as nc:
            nc["thetao"][:] = nc["thetao"][:] + 0.5
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _steps(root: Root) -> dict[str, list[bytes]]:
    """What readers see of each layout, step by step (consolidated metadata)."""
    import warnings

    import xarray as xr

    out = {}
    for layout in ("maps", "timeseries"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            ds = xr.open_zarr(root.zarr_store("sst", f"{layout}.zarr", read_only=True),
                              consolidated=True)  # fmt: skip
        values = np.asarray(ds["thetao"].transpose("time", ...).values)
        out[layout] = [step.tobytes() for step in values]
    return out


def _verified(root: Root) -> Any:
    root.fs().invalidate_cache()
    return verify_lake(root)


def _nth(changes: list[tuple[str, str]], kind: str, piece: str, nth: int) -> int:
    seen = 0
    for position, (what, path) in enumerate(changes, start=1):
        if what.startswith(kind) and piece in path:
            seen += 1
            if seen == nth:
                return position
    raise AssertionError(f"no change {kind} {piece} #{nth} in {changes}")


def _kill_at_each(
    moments: list[tuple[str, str, str, int]], changes: list[tuple[str, str]], root: Root,
    v1: dict[str, list[bytes]], v2: dict[str, list[bytes]], restore: Callable[[], None],
    killed: Callable[[int], int], build: Callable[[], int],
) -> None:  # fmt: skip
    assert v1 != v2
    for moment, kind, piece, nth in moments:
        restore()
        assert killed(_nth(changes, kind, piece, nth)) == -signal.SIGKILL, moment
        report = _verified(root)
        assert not report.problems, (moment, [str(p) for p in report.problems])
        seen = _steps(root)
        for layout, steps in seen.items():
            assert len(steps) == len(v1[layout]), (moment, layout)
            for i, step in enumerate(steps):
                assert step in (v1[layout][i], v2[layout][i]), (moment, layout, i)
        assert build() == 0, moment
        report = _verified(root)
        assert not report.problems and not report.notes, (moment, report)
        assert _steps(root) == v2, moment


def test_killed_replacements_on_local_disk(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    spec = _spec(tmp_path, str(lake), {})
    root, env = Root(str(lake)), dict(os.environ)
    assert _build(spec, env) == 0
    v1 = _steps(root)
    _reissue(tmp_path)
    shutil.copytree(lake, tmp_path / "v1")

    killing, counter = killing_env(env, lake, tmp_path)
    changes = counted_changes(spec, killing, lake, tmp_path)
    v2 = _steps(root)
    changed = [i for i, (a, b) in enumerate(zip(v1["maps"], v2["maps"], strict=True)) if a != b]
    assert changed == [1, 2, 9]

    def restore() -> None:
        shutil.rmtree(lake)
        shutil.copytree(tmp_path / "v1", lake)
        counter.unlink(missing_ok=True)

    _kill_at_each(LOCAL_MOMENTS, changes, root, v1, v2, restore,
                  killed=lambda at: _build(spec, {**killing, "LAKE_KILL_AT": str(at)}),
                  build=lambda: _build(spec, env))  # fmt: skip
    assert not list(lake.rglob("*.partial"))


@pytest.mark.s3
def test_killed_replacements_on_s3(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    import s3fs
    from flaky import KillingProxy

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    with KillingProxy(s3_endpoint) as proxy:
        spec = _spec(tmp_path, f"s3://{bucket}/lake", {"endpoint_url": proxy.url})
        root, env = Root(f"s3://{bucket}/lake", {"endpoint_url": s3_endpoint}), dict(os.environ)
        assert _build(spec, env) == 0
        v1 = _steps(root)
        _reissue(tmp_path)
        fs.copy(f"{bucket}/lake", f"{bucket}/v1", recursive=True)

        proxy.reset()
        assert _build(spec, env) == 0
        changes = list(proxy.changes)
        v2 = _steps(root)

        def restore() -> None:
            fs.rm(f"{bucket}/lake", recursive=True)
            fs.copy(f"{bucket}/v1", f"{bucket}/lake", recursive=True)
            fs.invalidate_cache()

        def killed(at: int) -> int:
            code = _build(spec, env, lambda pid: proxy.reset(kill_at=at, pgid=pid))
            proxy.reset()
            return code

        _kill_at_each(S3_MOMENTS, changes, root, v1, v2, restore, killed,
                      build=lambda: _build(spec, env))  # fmt: skip
