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


CHUNK = 4
"""Levels of the curve resolved per table lookup (four lookups for level 16)."""


def _chunk_tables(k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each orientation and ``k`` bits of x and of y: the ``2k`` bits of the index and
    the orientation of the levels below.

    The orientation is one of the four maps the curve applies to the coordinates below a
    quadrant: 0 none, 1 swap x and y, 2 swap and complement both, 3 complement both. They
    form the Klein four-group, so composing two is the XOR of their codes. Each entry
    follows the classic bit-by-bit construction (``xy2d``) over ``k`` levels.
    """
    side, mask = 1 << k, (1 << k) - 1
    index = np.zeros(4 << (2 * k), np.int64)
    turn = np.zeros(4 << (2 * k), np.int64)
    for state in range(4):
        for xc in range(side):
            for yc in range(side):
                x, y = (yc, xc) if state in (1, 2) else (xc, yc)
                if state in (2, 3):
                    x, y = ~x & mask, ~y & mask
                d, after, s = 0, state, side >> 1
                while s:
                    rx, ry = int(x & s > 0), int(y & s > 0)
                    d += s * s * ((3 * rx) ^ ry)
                    if not ry:
                        if rx:
                            x, y = s - 1 - x, s - 1 - y
                        x, y = y, x
                        after ^= 2 if rx else 1
                    s >>= 1
                entry = (state << (2 * k)) | (xc << k) | yc
                index[entry], turn[entry] = d, after
    return index, turn


_INDEX, _TURN = _chunk_tables(CHUNK)


def hilbert_index(x: np.ndarray, y: np.ndarray, valid: np.ndarray,
                  bounds: tuple[float, float, float, float]) -> np.ndarray:  # fmt: skip
    """Index along a level-16 Hilbert curve over ``bounds``; ``HILBERT_NULL`` where invalid.

    Table-driven: :data:`CHUNK` levels per lookup, the same index as the bit-by-bit loop.
    """
    side = 1 << HILBERT_LEVEL
    xmin, ymin, xmax, ymax = bounds
    with np.errstate(invalid="ignore"):
        fx = np.clip((x - xmin) / (xmax - xmin), 0.0, 1.0)
        fy = np.clip((y - ymin) / (ymax - ymin), 0.0, 1.0)
    xi = np.minimum((np.nan_to_num(fx) * side).astype(np.int64), side - 1)
    yi = np.minimum((np.nan_to_num(fy) * side).astype(np.int64), side - 1)
    d = np.zeros(len(x), dtype=np.int64)
    state = np.zeros(len(x), dtype=np.int64)
    mask = (1 << CHUNK) - 1
    for shift in range(HILBERT_LEVEL - CHUNK, -1, -CHUNK):
        entry = (state << (2 * CHUNK)) | (((xi >> shift) & mask) << CHUNK) | ((yi >> shift) & mask)
        d = (d << (2 * CHUNK)) | _INDEX[entry]
        state = _TURN[entry]
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
