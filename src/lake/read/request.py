"""A reader's request (bbox, time, depth, variables) as given on the command line or to
the API, checked once, with one message for each fault."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lake.errors import SpecError

Range = tuple[Any, Any]
"""A closed range; either end may be None (open)."""


@dataclass(frozen=True)
class Request:
    bbox: tuple[float, float, float, float] | None = None
    """West, south, east, north in degrees; west > east crosses the antimeridian; west ==
    east and south == north is a point (the nearest cell, for a cube)."""
    time: Range | None = None
    """Start and end (ISO 8601 text or datetimes); a single date as ``(t, t)``."""
    depth: Range | None = None
    """Shallowest and deepest (the depth coordinate's units); a single level as ``(d, d)``."""
    variables: list[str] | None = None

    @property
    def point(self) -> tuple[float, float] | None:
        """(longitude, latitude) when the bbox is a point."""
        if self.bbox is None:
            return None
        w, s, e, n = self.bbox
        return (w, s) if w == e and s == n else None


def _numbers(value: str | Sequence[Any], what: str, count: int, example: str) -> list[float]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        raise SpecError(f"{what} {value!r}", f"is not {count} numbers", f"give it as {example}")
    return numbers


def parse_bbox(value: str | Sequence[float] | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    w, s, e, n = _numbers(value, "bbox", 4, "W,S,E,N in degrees, e.g. -10,40,5,50")
    if not (-90 <= s <= n <= 90):
        raise SpecError(f"bbox {value!r}", "needs -90 <= south <= north <= 90",
                        "give it as W,S,E,N (south before north)")  # fmt: skip
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        raise SpecError(f"bbox {value!r}", "has a longitude outside -180..180",
                        "give longitudes in -180..180 (west > east crosses 180°)")  # fmt: skip
    return w, s, e, n


def _range(value: Any, what: str) -> Range | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if "/" in text:
            start, _, end = text.partition("/")
            bounds = (start.strip() or None, end.strip() or None)
        else:
            bounds = (text, text)
    elif isinstance(value, Sequence) and len(value) == 2:
        bounds = (value[0], value[1])
    else:
        bounds = (value, value)
    if bounds == (None, None):
        raise SpecError(f"{what} {value!r}", "is empty", f"give {what} as START/END or one value")
    return bounds


def parse_time(value: Any) -> Range | None:
    return _range(value, "time")


def parse_depth(value: Any) -> Range | None:
    bounds = _range(value, "depth")
    if bounds is None:
        return None
    try:
        low, high = (None if b is None else float(b) for b in bounds)
    except (TypeError, ValueError):
        fix = "give depth as MIN/MAX in the cube's units (0/100), or one level"
        raise SpecError(f"depth {value!r}", "is not numbers", fix) from None
    if low is not None and high is not None and low > high:
        raise SpecError(f"depth {value!r}", "has its minimum above its maximum", "give MIN/MAX")
    return low, high


def parse_variables(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    return names or None


def request(bbox: Any = None, time: Any = None, depth: Any = None,
            variables: Any = None) -> Request:  # fmt: skip
    return Request(parse_bbox(bbox), parse_time(time), parse_depth(depth),
                   parse_variables(variables))  # fmt: skip
