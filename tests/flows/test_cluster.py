"""The local cluster a build runs on: started beside the build's imports, with preloads and
the worker malloc settings, and closed when the work beside it fails."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from typing import TYPE_CHECKING

import psutil
import pytest

from lake.flows.cluster import (
    WORKER_ENVIRON,
    _local_cluster,
    _malloc_trim,
    dask_client,
    prepare_workers,
)
from lake.flows.processes import start_worker_server

if TYPE_CHECKING:
    from distributed import Client, Worker

pytestmark = pytest.mark.distributed
FORKS = "forkserver" in multiprocessing.get_all_start_methods()


def _worker_state(modules: list[str]) -> dict[str, object]:
    return {
        "loaded": [m for m in modules if m in sys.modules],
        "env": {k: os.environ.get(k) for k in WORKER_ENVIRON},
    }


@pytest.mark.usefixtures("build_environment")
def test_local_cluster_runs_meanwhile_and_preloads_workers() -> None:
    ran: list[str] = []
    with dask_client(
        workers=2, preload=["lake.flows.cubes"], meanwhile=lambda: ran.append("x")
    ) as client:
        assert ran == ["x"]
        states = client.run(_worker_state, ["lake.flows.cubes", "lake.flows.tables"])
    assert len(states) == 2
    for state in states.values():
        # Imported before any task: by the fork server once for all workers where there is
        # one (both flows), else by each worker as it starts (the flows asked for).
        expected = ["lake.flows.cubes", "lake.flows.tables"] if FORKS else ["lake.flows.cubes"]
        assert state["loaded"] == expected
        assert state["env"] == {k: str(v) for k, v in WORKER_ENVIRON.items()}


def _origin() -> tuple[int, str | None]:
    return os.getppid(), os.environ.get("LAKE_TEST_SET_LATER")


@pytest.mark.skipif(not FORKS, reason="this platform has no fork server")
@pytest.mark.usefixtures("build_environment")
def test_workers_fork_from_the_server_with_the_current_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert start_worker_server()
    # Set after the server started, as a notebook might set cloud credentials between builds.
    monkeypatch.setenv("LAKE_TEST_SET_LATER", "yes")
    with dask_client(workers=1) as client:
        ((parent, seen),) = client.run(_origin).values()
    assert parent != os.getpid()  # not spawned by this process's nanny
    assert "forkserver" in " ".join(psutil.Process(parent).cmdline())
    assert seen == "yes"


def test_a_failure_beside_the_starting_cluster_closes_it() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def broken() -> None:
        raise RuntimeError("import failed")

    with (
        pytest.raises(RuntimeError, match="import failed"),
        dask_client(workers=1, meanwhile=broken),
    ):
        pytest.fail("the client must not be handed out")
    # Worker processes are gone; multiprocessing's resource tracker lives on by design.
    left = [
        " ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
        if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
    ]  # fmt: skip
    assert [c for c in left if "resource_tracker" not in c] == []


def _fill_and_free(dask_worker: Worker, fraction: float) -> int:
    """Allocates and frees what takes the process to ``fraction`` of its memory limit."""
    import numpy as np

    rss = psutil.Process().memory_info().rss
    size = int(fraction * dask_worker.memory_manager.memory_limit) - rss
    block = np.ones(size // 8)
    del block
    return size


def _status(client: Client) -> str:
    (status,) = client.run(lambda dask_worker: dask_worker.status.name).values()
    return str(status)


def _wait_for_status(client: Client, status: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _status(client) == status:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim")
@pytest.mark.usefixtures("build_environment")
def test_a_worker_paused_by_retained_memory_resumes() -> None:
    from distributed import Client, get_worker

    with _local_cluster(1, memory_limit=1000 * 2**20) as cluster, Client(cluster) as client:
        # Between Dask's pause (80 %) and terminate (95 %) thresholds. The malloc settings
        # keep the freed block in the process, so the worker pauses after its task and,
        # left alone, stays paused: no task would ever run on it again.
        filled = client.submit(lambda: _fill_and_free(get_worker(), 0.875), pure=False)
        assert filled.result(timeout=60) > 0
        assert _wait_for_status(client, "paused", 10)
        time.sleep(2)
        assert _status(client) == "paused"
        # What every build registers hands the retained memory back, and the worker resumes.
        prepare_workers(client)
        assert _wait_for_status(client, "running", 30)
        assert client.submit(lambda: 42, pure=False).result(timeout=30) == 42
        rss = client.run(lambda: psutil.Process().memory_info().rss)
        assert all(r < 0.7 * 1000 * 2**20 for r in rss.values())
