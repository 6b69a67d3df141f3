"""Bounded memory: a cube larger than all worker memory together builds on small workers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pytest

from helpers import spec_for
from lake.flows.cluster import WORKER_ENVIRON, _local_cluster, prepare_workers
from lake.flows.cubes import build_cube
from lake.samples import write_daily_product
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


@pytest.mark.usefixtures("build_environment")
def test_timeseries_layout_larger_than_worker_memory(tmp_path: Path) -> None:
    import xarray as xr
    from distributed import Client

    # 150 daily maps of 1024 x 1440 float32: 885 MB uncompressed, more than the two
    # workers' 2 x 400 MiB together. A worker that passes its limit is restarted by its
    # nanny and the task fails, so this passes only if memory stays bounded.
    files = write_daily_product(tmp_path / "src", days=150, ny=1024, nx=1440, packed=False)
    chunking = {"shard_mb": 32, "timeseries_time": 128}
    spec = spec_for(str(tmp_path / "lake"), str(tmp_path / "src" / "*.nc"), tmp_path,
                    chunking=chunking)  # fmt: skip
    # The workers are a build's, with its malloc settings, which keep freed buffers (up to
    # 1 GiB) for the next block: memory must stay bounded with them too.
    with _local_cluster(2, memory_limit=400 * 2**20) as cluster, Client(cluster) as client:
        settings = client.run(lambda: {k: os.environ.get(k) for k in WORKER_ENVIRON})
        assert all(s == {k: str(v) for k, v in WORKER_ENVIRON.items()} for s in settings.values())
        prepare_workers(client)  # as every build does
        result = build_cube(client, Root(spec.root), spec.datasets[0])
    assert result.added == {"maps": 150, "timeseries": 150}
    ts = xr.open_zarr(str(tmp_path / "lake/cube/timeseries.zarr"))
    point = ts["thetao"][:, 0, 100, 100].values
    with xr.open_dataset(files[-1]) as last:
        assert np.array_equal(point[-1], last["thetao"].values[0, 0, 100, 100], equal_nan=True)
