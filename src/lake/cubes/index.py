"""The source index: files checked to form one cube, ordered along its time axis."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lake.errors import SourceError
from lake.storage import redact

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lake.cubes.source import SourceFile, VariableSchema


@dataclass(frozen=True)
class SourceIndex:
    """Files ordered along time, and where each global time index lives."""

    files: tuple[str, ...]
    offsets: tuple[int, ...]  # global index of each file's first time step
    times: np.ndarray
    time_units: str
    calendar: str
    variables: dict[str, VariableSchema]

    @property
    def ntime(self) -> int:
        return len(self.times)

    def locate(self, start: int, stop: int) -> list[tuple[str, int, int, int]]:
        """``(file, local_start, local_stop, output_offset)`` covering ``[start, stop)``."""
        out = []
        for i, url in enumerate(self.files):
            end = self.offsets[i + 1] if i + 1 < len(self.files) else self.ntime
            lo, hi = max(start, self.offsets[i]), min(stop, end)
            if lo < hi:
                out.append((url, lo - self.offsets[i], hi - self.offsets[i], lo - start))
        return out


def index_sources(infos: Sequence[SourceFile], axis: np.ndarray | None = None) -> SourceIndex:
    """Check that the files form one cube and order them along time.

    Rule for overlaps: they are reported, never resolved silently. Two files that share a
    timestamp, or whose ranges interleave, stop the build naming both. With ``axis`` (the
    cube's full time axis), offsets are positions on it; otherwise files are laid end to end.
    """
    ordered = sorted(infos, key=lambda f: (f.times[0], f.url))
    ref = ordered[0]
    for info in ordered[1:]:
        _check_same_grid(ref, info)
    for prev, cur in itertools.pairwise(ordered):
        if cur.times[0] <= prev.times[-1]:
            shared = np.intersect1d(prev.times, cur.times)
            what = (
                f"both contain time {shared[0]}"
                if len(shared)
                else f"have interleaved time ranges ({prev.times[0]}..{prev.times[-1]} and "
                f"{cur.times[0]}..{cur.times[-1]})"
            )
            raise SourceError(
                f"{redact(prev.url)} and {redact(cur.url)}",
                f"{what}: duplicate or overlapping timestamps",
                "remove one of the two files (e.g. a reprocessed copy) from the inputs",
            )
    times = np.concatenate([f.times for f in ordered])
    if axis is None:
        axis = times
    offsets = [int(np.searchsorted(axis, f.times[0])) for f in ordered]
    for info, off in zip(ordered, offsets, strict=True):
        if not np.array_equal(axis[off : off + len(info.times)], info.times):
            raise SourceError(
                redact(info.url),
                "has time steps that do not continue the cube's time axis",
                "remove the file, or delete the cube to rebuild it from all files",
            )
    return SourceIndex(
        files=tuple(f.url for f in ordered),
        offsets=tuple(offsets),
        times=axis,
        time_units=ref.time_units,
        calendar=ref.calendar,
        variables=ref.variables,
    )


def _check_same_grid(ref: SourceFile, info: SourceFile) -> None:
    shown = redact(info.url)
    fix = "build files with different grids or variables as separate datasets"
    if info.calendar != ref.calendar:
        raise SourceError(
            shown, f"uses calendar {info.calendar!r}, {redact(ref.url)} uses {ref.calendar!r}", fix
        )
    missing = sorted(set(ref.variables) - set(info.variables))
    extra = sorted(set(info.variables) - set(ref.variables))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing)}")
        if extra:
            parts.append(f"has extra {', '.join(extra)}")
        raise SourceError(
            shown,
            f"{' and '.join(parts)} compared with {redact(ref.url)}",
            fix + ", or list the common ones under `variables`",
        )
    for name, schema in ref.variables.items():
        other = info.variables[name]
        if other != schema:
            raise SourceError(
                shown,
                f"variable {name} differs from {redact(ref.url)}: dims/shape/dtype/packing "
                f"{other.dims}{other.shape} {other.dtype} {dict(other.packing)} vs "
                f"{schema.dims}{schema.shape} {schema.dtype} {dict(schema.packing)}",
                fix,
            )
    for name, value in ref.statics.items():
        if info.statics.get(name, value) != value:
            raise SourceError(
                shown,
                f"its {name} differs from {redact(ref.url)}: the grids do not match",
                fix,
            )
