"""The Dask cluster a build runs on: a local one sized to the machine, or an existing one."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import dask
import psutil
from distributed import Client, LocalCluster, WorkerPlugin

from lake.flows.processes import (
    WORKER_ENVIRON,
    start_worker_server,
    worker_environ,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from distributed import Worker


def local_cluster_size(workers: int | None = None) -> tuple[int, int]:
    """Workers (one thread each) and memory per worker in bytes for this machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = workers or max(1, cpus or 1)
    memory = psutil.virtual_memory().total
    return n, int(memory * 0.8 / n)


class HeapTrim(WorkerPlugin):
    """Hands a worker's retained free heap back to the kernel when its memory runs high.

    With the workers' malloc settings (:data:`lake.flows.processes.WORKER_MALLOC`), memory
    freed after a task stays in the process (up to 1 GiB). Dask pauses a worker above 80 %
    of its memory limit and resumes it only once the process shrinks, which retained
    memory never does by itself: a worker paused between tasks would wait forever, and the
    build with it. Every ``interval_ms`` this checks the process's memory and, above
    ``fraction`` of the limit (below Dask's pause threshold), calls glibc's
    ``malloc_trim``. Without glibc, or without a memory limit,
    it does nothing.
    """

    name = "lake-heap-trim"

    def __init__(self, fraction: float = 0.7, interval_ms: int = 100) -> None:
        self.fraction = fraction
        self.interval_ms = interval_ms

    def setup(self, worker: Worker) -> None:
        from tornado.ioloop import PeriodicCallback

        limit = worker.memory_manager.memory_limit
        trim = _malloc_trim()
        if not limit or trim is None:
            return
        process = psutil.Process()
        threshold = self.fraction * limit

        def check() -> None:
            if process.memory_info().rss > threshold:
                trim(0)

        callback = PeriodicCallback(check, self.interval_ms)
        # Callbacks in this dict are stopped when the worker closes.
        worker.periodic_callbacks[self.name] = callback
        callback.start()

    def teardown(self, worker: Worker) -> None:
        callback = worker.periodic_callbacks.pop(self.name, None)
        if callback is not None:
            callback.stop()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def prepare_workers(client: Client) -> None:
    """What every build needs on its workers, wherever they run: :class:`HeapTrim`."""
    client.register_plugin(HeapTrim())


def worker_count(client: Client) -> int:
    """The number of workers the scheduler knows (at least 1, to size task batches)."""
    return max(1, len(client.scheduler_info().get("workers", {})))


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    preload: Sequence[str] = (),
    meanwhile: Callable[[], None] | None = None,
    debug: bool = False,
    in_process: bool = False,
) -> Iterator[Client]:
    """A client on ``scheduler``, or on a fresh LocalCluster of worker processes (with
    ``in_process``, and no ``workers`` asked for: one worker thread in this process, for
    builds that would spend longer starting processes than building).

    A local cluster starts in a background thread while ``meanwhile`` (the caller's own
    imports) runs in this one: starting worker processes is mostly waiting for them, so
    the two overlap. Its workers are forked from a server that has imported the flows
    (:func:`lake.flows.processes.start_worker_server`); where there is none, they are
    spawned and import the ``preload`` modules as they start, rather than when their
    first task arrives. They get :data:`WORKER_ENVIRON`, except variables the environment
    already sets (Dask's rule: the environment wins). Local workers log a failed task's
    traceback only with ``debug``: the error itself reaches the caller, who reports it.
    """
    for name in ("distributed", "distributed.worker", "distributed.nanny", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        if meanwhile is not None:
            meanwhile()
        with Client(scheduler, timeout="30s") as client:
            prepare_workers(client)
            yield client
        return
    if in_process and workers is None:
        if meanwhile is not None:
            meanwhile()
        with _in_process_cluster(debug) as cluster, Client(cluster) as client:
            prepare_workers(client)
            yield client
        return
    with ThreadPoolExecutor(1, thread_name_prefix="lake-cluster") as pool:
        starting = pool.submit(_local_cluster, workers, list(preload), None, debug)
        try:
            if meanwhile is not None:
                meanwhile()
        except BaseException:
            with contextlib.suppress(Exception):
                starting.result().close()
            raise
        cluster = starting.result()
    with cluster, Client(cluster) as client:
        prepare_workers(client)
        yield client


def _in_process_cluster(debug: bool = False) -> LocalCluster:
    """A scheduler and one single-threaded worker in this process: tasks run one at a
    time, as in worker processes (the NetCDF and HDF5 libraries are not thread-safe)."""
    warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
    return LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        memory_limit=0,
        dashboard_address=None,
        silence_logs=logging.ERROR if debug else logging.CRITICAL,
    )


def _local_cluster(
    workers: int | None,
    preload: Sequence[str] = (),
    memory_limit: int | None = None,
    debug: bool = False,
) -> LocalCluster:
    """The local cluster of a build: ``workers`` processes (one per core by default) of
    one thread, each with ``memory_limit`` bytes (an equal share of the machine's by
    default), :data:`WORKER_ENVIRON` and the ``preload`` modules, forked from the worker
    server where the platform has one."""
    # The scheduler's HTTP server (health, metrics) takes another port when Dask's default
    # is taken (another cluster, another build) and warns about it: not the user's concern.
    warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
    n, share = local_cluster_size(workers)
    memory = memory_limit or share
    settings: dict[str, object] = {"distributed.nanny.pre-spawn-environ": worker_environ()}
    if start_worker_server():
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
    # Forked workers inherit the fork server's environment, from when it started: they set
    # this process's current one (cloud credentials set since, say) as they start.
    current = {k: v for k, v in os.environ.items() if k not in WORKER_ENVIRON}
    with dask.config.set(settings):
        return LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory,
            dashboard_address=None,
            silence_logs=logging.ERROR if debug else logging.CRITICAL,
            preload=list(preload),
            env=current,
        )
