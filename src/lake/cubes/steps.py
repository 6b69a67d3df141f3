"""Which source file version each published time step came from, so that a newer version
of a file can replace the steps it covers (``cube: {updates: replace}``).

Each build that publishes time steps records, in ``<dataset>/.step-sources.json.gz``, the
listing key of every source file on the cube's axis (a hash of its URL, size and version:
:attr:`lake.sourcefiles.Listed.key`) with the steps it covers::

    {"format": "lake-step-sources/1", "files": [["<key>", 0, 31], ["<key>", 31, 59], ...]}

The record is written after every layout is published. A build killed before that finds
the previous record, so it replaces the same steps again (the values are the same): the
rewrite is idempotent. Steps the record does not hold (a cube built before the record
existed, a file whose listing gives no version) are taken as coming from the file that
covers them now: they are never replaced until that file changes.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import orjson
from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from lake.cubes.source import SourceFile
    from lake.storage import Root

STEPS = ".step-sources.json.gz"


class StepSources(BaseModel):
    format: Literal["lake-step-sources/1"] = "lake-step-sources/1"
    files: list[tuple[str, int, int]] = []
    """(listing key, first step, end step) of each file on the axis, in axis order."""


@dataclass(frozen=True)
class Steps:
    """The recorded source key of each published step (None where none is recorded)."""

    keys: np.ndarray
    present: bool
    """A record was found (a cube built before records existed has none)."""

    @classmethod
    def read(cls, root: Root, dataset: str, ntime: int) -> Steps:
        keys = np.full(ntime, None, dtype=object)
        try:
            raw = gzip.decompress(root.fs().cat_file(root.path(dataset, STEPS)))
            record = StepSources.model_validate_json(raw)
        except Exception:  # none, or unreadable: adopt the current files
            return cls(keys, False)
        for key, start, stop in record.files:
            keys[max(0, start) : min(ntime, stop)] = key
        return cls(keys, True)

    def changed(self, key: str | None, start: int, stop: int) -> bool:
        """Whether steps ``[start, stop)`` came from another version than ``key``."""
        if key is None:
            return False
        recorded = self.keys[start:stop]
        known = recorded[recorded != None]  # noqa: E711 (an object array compared by element)
        return bool(len(known)) and bool(np.any(known != key))


def ranges_of(steps: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Sorted steps as maximal ``[start, stop)`` runs."""
    out: list[tuple[int, int]] = []
    for step in sorted(set(steps)):
        if out and out[-1][1] == step:
            out[-1] = (out[-1][0], step + 1)
        else:
            out.append((step, step + 1))
    return tuple(out)


def claims(
    axis: np.ndarray, infos: Sequence[SourceFile], keys: Mapping[str, str | None]
) -> list[tuple[str, str | None, int, int]]:
    """``(url, key, first step, end step)`` of each file whose steps are on ``axis``."""
    out = []
    for info in infos:
        if not len(info.times):
            continue
        start = int(np.searchsorted(axis, info.times[0]))
        stop = start + len(info.times)
        if stop <= len(axis) and np.array_equal(axis[start:stop], info.times):
            out.append((info.url, keys.get(info.url), start, stop))
    return out


def record_of(
    steps: Steps, ntime: int, claimed: Sequence[tuple[str | None, int, int]]
) -> StepSources:
    """The record after a build: the files covering each step now, and for steps no file
    covers any more (a source file removed after it was published), what was recorded."""
    keys = np.full(ntime, None, dtype=object)
    keys[: min(ntime, len(steps.keys))] = steps.keys[:ntime]
    for key, start, stop in claimed:
        keys[start:stop] = key
    files: list[tuple[str, int, int]] = []
    for step, key in enumerate(keys):
        if key is None:
            continue
        if files and files[-1][0] == key and files[-1][2] == step:
            files[-1] = (key, files[-1][1], step + 1)
        else:
            files.append((key, step, step + 1))
    return StepSources(files=files)


def write(root: Root, dataset: str, record: StepSources) -> bool:
    """Write the record unless it holds exactly this already; True if written."""
    path = root.path(dataset, STEPS)
    data = gzip.compress(orjson.dumps(record.model_dump(mode="json")), mtime=0)
    try:
        if root.fs().cat_file(path) == data:
            return False
    except FileNotFoundError:
        pass
    root.put(path, data)
    return True
