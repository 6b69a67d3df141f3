"""Waiting for a flow's tasks: progress, the first error, workers lost to memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distributed import as_completed
from distributed.scheduler import KilledWorker

from lake.errors import LakeError

if TYPE_CHECKING:
    from distributed import Client, Future

    from lake.storage import Root

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``."""


def quiet(stage: str, done: int, total: int) -> None:
    """A :data:`Progress` that shows nothing."""
    return None


def gather(
    client: Client,
    futures: list[Future[Any]],
    stage: str,
    progress: Progress,
    memory_fix: str,
) -> list[Any]:
    """The results of ``futures`` in order; on the first failure the rest are cancelled
    (so nothing more is written) and the task's own error is raised."""
    total = len(futures)
    progress(stage, 0, total)
    for done, future in enumerate(as_completed(futures), 1):
        if future.status == "error":
            error = future.exception()
            client.cancel([f for f in futures if f is not future])
            if isinstance(error, KilledWorker):
                raise LakeError(
                    f"{stage} on the Dask cluster",
                    "workers died repeatedly while running a task, most likely out of memory",
                    f"{memory_fix}, or give each worker more memory",
                ) from None
            raise error
        progress(stage, done, total)
    return list(client.gather(futures))


def tree_size(root: Root, dataset_id: str) -> int:
    """Bytes on storage below a dataset's folder."""
    fs = root.fs()
    path = root.path(dataset_id)
    if not fs.exists(path):
        return 0
    return int(fs.du(path, total=True))
