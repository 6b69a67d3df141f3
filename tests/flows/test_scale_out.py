"""The same build on a cluster started apart: `dask scheduler` and `dask worker` processes on
loopback, writing a cube and a table to S3 (moto server), the client only planning and
committing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pgdata import cube_and_table_spec
from typer.testing import CliRunner

from lake.cli import app
from lake.flows.cluster import WORKER_ENVIRON

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.s3, pytest.mark.postgres]


@pytest.fixture
def external_cluster(tmp_path: Path) -> Iterator[str]:
    dask = shutil.which("dask") or str(Path(sys.executable).parent / "dask")
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, **{k: str(v) for k, v in WORKER_ENVIRON.items()}}
    procs = [subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path,
    )]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(subprocess.Popen(
            [dask, "worker", address, "--nworkers", "2", "--nthreads", "1",
             "--memory-limit", "2GiB", "--no-dashboard", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path,
        ))  # fmt: skip
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_build_on_separate_scheduler_and_workers(
    external_cluster: str, tmp_path: Path, s3_endpoint: str, bucket: str, pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import s3fs
    import xarray as xr
    from distributed import Client

    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    path = cube_and_table_spec(
        tmp_path, pg_dsn, f"s3://{bucket}/lake", {"endpoint_url": s3_endpoint},
        days=5, rows=3000, start="2024-02-01", table_parts=4,
    )  # fmt: skip
    result = CliRunner().invoke(app, ["build", str(path), "--scheduler", external_cluster])
    assert result.exit_code == 0, result.output

    # Every block and part ran on the separate worker processes.
    with Client(external_cluster) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and sum(executed.values()) >= 4 + 3
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    cube = xr.open_zarr(fs.get_mapper(f"{bucket}/lake/sst/timeseries.zarr"), consolidated=True)
    assert cube.sizes["time"] == 5
    manifest = json.loads(fs.cat_file(f"{bucket}/lake/occ/table.json"))
    assert manifest["rows"] == 3000
    assert fs.exists(f"{bucket}/lake/catalog.json")
