"""Local worker processes: their environment, and the server they are forked from.

This module imports nothing heavy, so that a build can start the fork server before its
own imports (Dask, xarray, zarr): both then proceed on separate cores.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

# glibc malloc settings for workers: buffers are reused, not handed back to the kernel and
# faulted in again.
# * Dask's default, MALLOC_TRIM_THRESHOLD_=65536, gives every freed buffer back to the
#   kernel; with the many 1-4 MB chunk buffers of a cube build that cost 1.7x the CPU.
# * A task's buffers (the block, its inner chunks copied out by the codecs, the encoded
#   shard: about three shards, 750 MB at the default `shard_mb`) were mapped fresh for
#   every block or handed back when it ended, and the kernel zeroed them page by page
#   again: 2.0 million page faults in a 1.9 GB build, 0.35 million with these settings.
#   Up to 1 GiB they stay on the heap for the next block.
# * MALLOC_ARENA_MAX=1: codec threads allocate from that same heap, not from arenas of
#   their own, whose large blocks are always fresh mappings.
# Memory stays bounded by the largest working set: the heap is reused, not grown. The
# retained part is handed back when a worker runs short (lake.flows.cluster.HeapTrim).
WORKER_MALLOC = {
    "MALLOC_ARENA_MAX": 1,
    "MALLOC_MMAP_THRESHOLD_": 2**30,
    "MALLOC_TRIM_THRESHOLD_": 2**30,
}
# One codec thread per task thread: the Rust codecs (zarrs) otherwise start a thread per
# core in every worker, and a local cluster already runs one worker per core. Shard stores
# took 12-15 % less time with two workers on two cores (measured); Dask sets OMP_NUM_THREADS=1
# and the like for the same reason.
WORKER_THREADS = {"RAYON_NUM_THREADS": 1}
WORKER_ENVIRON = {**WORKER_MALLOC, **WORKER_THREADS}
"""What local workers get in their environment, on top of Dask's defaults."""

WORKER_MODULES = ("lake.flows.cubes", "lake.flows.tables")
"""What build workers run: the fork server imports them once for all workers."""


def worker_environ() -> dict[str, object]:
    """Dask's worker environment (one BLAS thread, ...) with :data:`WORKER_ENVIRON` on top."""
    import dask

    if "distributed" not in sys.modules:
        # What importing distributed (0.5 s) would do first: register its defaults.
        import yaml

        spec = importlib.util.find_spec("distributed")
        if spec is not None and spec.origin is not None:
            defaults = yaml.safe_load(Path(spec.origin).with_name("distributed.yaml").read_text())
            dask.config.update_defaults(defaults)
    return {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRON}


_ENVIRON = threading.Lock()
_STARTED = threading.Event()


def start_worker_server(preload: Sequence[str] = WORKER_MODULES) -> bool:
    """Start the process that local workers are forked from, where the platform has one
    (POSIX ``forkserver``); False where it has not, and workers are spawned.

    It imports ``distributed`` and the ``preload`` modules once, and each worker starts
    as a fork of it with those imports done. A spawned worker spends about 1.4 s of CPU
    importing them, on the cores the client needs for its own imports: a local cluster is
    ready about 0.7 s sooner, and shuts down sooner too. The server runs with the workers'
    environment (:func:`worker_environ`), set in this process only while it starts:
    forked workers inherit its memory allocator and libraries, set up as it started.
    Calling this again does nothing.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    with _ENVIRON:
        if _STARTED.is_set():  # the environment is set once: other threads may read it
            return True
        environ = {k: str(v) for k, v in worker_environ().items() if k not in os.environ}
        os.environ.update(environ)
        try:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["distributed", *preload])
            forkserver.ensure_running()
            _STARTED.set()
        finally:
            for name in environ:
                os.environ.pop(name, None)
    return True
