"""Rows ordered along a Hilbert curve: the index of a point, of a written row's ``bbox``, and
Hilbert ranges that split a partition into files of near-equal rows."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa

HILBERT_LEVEL = 16
HILBERT_NULL = 1 << (2 * HILBERT_LEVEL)
"""Hilbert index of rows without geometry: after every real index."""
HIST_SHIFT = 2 * HILBERT_LEVEL - 10
HIST_BINS = (HILBERT_NULL >> HIST_SHIFT) + 1
HILBERT = "_lake_hilbert"


def hilbert_index(x: np.ndarray, y: np.ndarray, valid: np.ndarray,
                  bounds: tuple[float, float, float, float]) -> np.ndarray:  # fmt: skip
    """Index along a level-16 Hilbert curve over ``bounds``; ``HILBERT_NULL`` where invalid."""
    side = 1 << HILBERT_LEVEL
    xmin, ymin, xmax, ymax = bounds
    with np.errstate(invalid="ignore"):
        fx = np.clip((x - xmin) / (xmax - xmin), 0.0, 1.0)
        fy = np.clip((y - ymin) / (ymax - ymin), 0.0, 1.0)
    xi = np.minimum((np.nan_to_num(fx) * side).astype(np.int64), side - 1)
    yi = np.minimum((np.nan_to_num(fy) * side).astype(np.int64), side - 1)
    d = np.zeros(len(x), dtype=np.int64)
    s = side >> 1
    while s > 0:
        rx = (xi & s) > 0
        ry = (yi & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        # Rotate the quadrant so the curve stays continuous.
        flip = ~ry
        swap_x = np.where(flip & rx, s - 1 - xi, xi)
        swap_y = np.where(flip & rx, s - 1 - yi, yi)
        xi = np.where(flip, swap_y, xi)
        yi = np.where(flip, swap_x, yi)
        s >>= 1
    return np.where(valid, d, HILBERT_NULL)


def bbox_hilbert(
    bbox: pa.ChunkedArray | pa.StructArray, bounds: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Hilbert index of the centres of written rows' ``bbox`` values, and which rows have one."""
    if isinstance(bbox, pa.ChunkedArray):
        bbox = bbox.combine_chunks()
    valid = np.asarray(bbox.is_valid().to_numpy(zero_copy_only=False))

    def field(name: str) -> np.ndarray:
        return np.asarray(bbox.field(name).fill_null(0.0).to_numpy(zero_copy_only=False))

    cx = (field("xmin") + field("xmax")) / 2
    cy = (field("ymin") + field("ymax")) / 2
    return hilbert_index(cx, cy, valid, bounds), valid


def split_ranges(histogram: np.ndarray, nfiles: int) -> list[tuple[int, int]]:
    """Hilbert ranges holding near-equal numbers of rows."""
    cumulative = np.cumsum(histogram)
    total = int(cumulative[-1])
    edges = [0]
    for i in range(1, nfiles):
        b = int(np.searchsorted(cumulative, total * i / nfiles, side="left")) + 1
        if edges[-1] < b < HIST_BINS:
            edges.append(b)
    edges.append(HIST_BINS)
    return [(lo << HIST_SHIFT, hi << HIST_SHIFT) for lo, hi in itertools.pairwise(edges)]
