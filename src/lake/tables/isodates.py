"""ISO 8601 dates, partial dates and intervals as (start, end) instants, as Darwin Core's
``eventDate`` holds them (``2010``, ``2010-05``, ``2010-05-03T10:15Z``,
``2010-05-03/2010-05-10``, ``2010-05-03/10``).

A partial date covers its whole period (``2010-05`` is 1 May 00:00 to 31 May 23:59:59.999999);
an interval runs from its first part's start to its second part's end, the second part
taking the first's leading fields when it omits them. Times without a zone are taken as
UTC. Each distinct text is parsed once.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PART = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{1,2})(?:-(?P<d>\d{1,2})"
    r"(?:[T ](?P<H>\d{1,2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    r"(?P<z>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$"
)
_FIELDS = ("y", "m", "d", "H", "M", "S")
STAMP = pa.timestamp("us", tz="UTC")


def _zone(text: str | None) -> timezone:
    if not text or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
    return timezone(sign * timedelta(minutes=minutes))


def _bounds(fields: dict[str, str | None]) -> tuple[datetime, datetime]:
    year = int(fields["y"] or 0)
    month, day = int(fields["m"] or 1), int(fields["d"] or 1)
    hour, minute = int(fields["H"] or 0), int(fields["M"] or 0)
    second = int(fields["S"] or 0)
    micro = int((fields.get("f") or "0")[:6].ljust(6, "0"))
    zone = _zone(fields.get("z"))
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    if fields["S"] is not None or fields.get("f") is not None:
        end = start
    elif fields["M"] is not None:
        end = start + timedelta(minutes=1)
    elif fields["H"] is not None:
        end = start + timedelta(hours=1)
    elif fields["d"] is not None:
        end = start + timedelta(days=1)
    elif fields["m"] is not None:
        end = start + timedelta(days=calendar.monthrange(year, month)[1])
    else:
        end = start.replace(year=year + 1)
    if end != start:
        end -= timedelta(microseconds=1)
    return start.astimezone(UTC), end.astimezone(UTC)


def _fields(text: str) -> dict[str, str | None] | None:
    match = _PART.match(text.strip())
    return match.groupdict() if match else None


def _completed(end: str, start: dict[str, str | None]) -> dict[str, str | None] | None:
    """The second part of an interval, its omitted leading fields taken from the first."""
    full = _fields(end)
    if full is not None:
        return full
    pieces = re.split(r"[-T :]", end.strip())
    date_fields = [f for f in _FIELDS if start.get(f) is not None]
    if not pieces or len(pieces) >= len(date_fields):
        return None
    out = dict(start)
    for name, value in zip(date_fields[len(date_fields) - len(pieces) :], pieces, strict=True):
        if not value.isdigit():
            return None
        out[name] = value
    return out


def parse(text: str) -> tuple[datetime, datetime] | None:
    """The start and end instants of one ISO 8601 date, partial date or interval."""
    first, sep, second = text.strip().partition("/")
    start = _fields(first)
    if start is None:
        return None
    try:
        low = _bounds(start)[0]
        end = _completed(second, start) if sep else start
        if end is None:
            return None
        high = _bounds(end)[1]
    except ValueError:  # 2010-02-30, month 13
        return None
    return (low, high) if high >= low else None


def parse_column(values: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array, int]:
    """``(start, end, unparsed)`` of a text column: UTC timestamps (null where the text is
    empty or not ISO 8601) and how many non-empty texts did not parse."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    texts = encoded.dictionary.to_pylist()
    parsed = [parse(t) if t else None for t in texts]
    starts = pa.array([p[0] if p else None for p in parsed] + [None], STAMP)
    ends = pa.array([p[1] if p else None for p in parsed] + [None], STAMP)
    indices = encoded.indices.fill_null(len(texts))
    pairs = zip(texts, parsed, strict=True)
    failed = np.array([bool(t and t.strip()) and p is None for t, p in pairs], dtype=bool)
    codes = np.asarray(indices.to_numpy(zero_copy_only=False))
    unparsed = int(failed[codes[codes < len(texts)]].sum()) if len(texts) else 0
    return starts.take(indices), ends.take(indices), unparsed
