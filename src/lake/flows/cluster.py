"""The Dask cluster a build runs on: a local one sized to the machine, or an existing one."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING

import dask
import psutil

if TYPE_CHECKING:
    from collections.abc import Iterator

    from distributed import Client


def local_cluster_size(workers: int | None = None) -> tuple[int, int]:
    """Workers (one thread each) and memory per worker in bytes for this machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = workers or max(1, cpus or 1)
    memory = psutil.virtual_memory().total
    return n, int(memory * 0.8 / n)


# Dask's default (MALLOC_TRIM_THRESHOLD_=65536) makes glibc give every freed buffer back to
# the kernel; with the many 1-4 MB chunk buffers of a cube build that costs 1.7x the CPU
# (measured). Arrays of 64 MiB or more (blocks, shards) are still mapped and returned to
# the kernel on free, so memory stays bounded by the working set.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 64 * 2**20, "MALLOC_MMAP_THRESHOLD_": 64 * 2**20}


def _worker_environ() -> dict[str, object]:
    """Dask's worker environment (one BLAS thread, ...) with our malloc settings on top."""
    import distributed  # noqa: F401  (registers distributed's configuration defaults)

    return {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_MALLOC}


def worker_count(client: Client) -> int:
    """The number of workers the scheduler knows (at least 1, to size task batches)."""
    return max(1, len(client.scheduler_info().get("workers", {})))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client on ``scheduler``, or on a fresh LocalCluster of worker processes."""
    from distributed import Client, LocalCluster

    for name in ("distributed", "distributed.worker", "distributed.nanny", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    n, memory = local_cluster_size(workers)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}),
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
