"""The cube's time axis: integer units that represent every time step exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from xarray.coding.times import decode_cf_datetime, encode_cf_datetime

from lake.errors import SourceError

REAL_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian", ""})
"""Calendars whose dates are real dates (datetime64 where they fit); every other CF
calendar's dates are cftime objects."""
TIME_UNITS = ("days", "hours", "minutes", "seconds", "milliseconds", "microseconds", "nanoseconds")


def choose_time_units(times: np.ndarray, source_units: str, calendar: str) -> str:
    """Integer time units that represent every time exactly.

    The reference date is the source's; the unit is the source's unit or the first finer
    one in which all times are whole numbers. Appends must fit the same units.
    """
    if " since " not in source_units:
        source_units = "seconds since 1970-01-01"
    unit, reference = source_units.split(" since ", 1)
    unit = unit.strip().lower()
    start = TIME_UNITS.index(unit) if unit in TIME_UNITS else TIME_UNITS.index("seconds")
    for candidate in TIME_UNITS[start:]:
        units = f"{candidate} since {reference.strip()}"
        if encode_times(times, units, calendar) is not None:
            return units
    raise SourceError(
        "time coordinate",
        f"cannot be represented exactly as integers since {reference}",
        "check the time values of the sources",
    )


_NANOSECONDS = {
    "days": 86_400 * 10**9, "hours": 3_600 * 10**9, "minutes": 60 * 10**9,
    "seconds": 10**9, "milliseconds": 10**6, "microseconds": 10**3, "nanoseconds": 1,
}  # fmt: skip


def _integer_offsets(times: np.ndarray, units: str) -> np.ndarray | None:
    """Exact offsets of datetime64 ``times`` in ``units``, in integer arithmetic."""
    unit, _, reference = units.partition(" since ")
    step = _NANOSECONDS.get(unit.strip().lower())
    try:
        ref = pd.Timestamp(reference.strip())
    except ValueError:
        return None
    if step is None:
        return None
    if ref.tzinfo is not None:
        ref = ref.tz_convert(None)
    deltas: np.ndarray = (times.astype("datetime64[ns]") - ref.to_datetime64()).astype("int64")
    if np.any(deltas % step):
        return None
    offsets: np.ndarray = np.floor_divide(deltas, step)
    return offsets


def encode_times(times: np.ndarray, units: str, calendar: str) -> np.ndarray | None:
    """``times`` as int64 in ``units``, or ``None`` if that is not exact.

    datetime64 times are encoded in integer arithmetic (float64 cannot hold nanoseconds
    since 1950); cftime dates through xarray. Either way the result must decode, with
    xarray, to exactly ``times``.
    """
    if len(times) == 0:
        return np.zeros(0, dtype="int64")
    if np.issubdtype(times.dtype, np.datetime64):
        ints = _integer_offsets(times, units)
        if ints is None:
            return None
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            num, _, _ = encode_cf_datetime(times, units, calendar, dtype=np.dtype("float64"))
        num = np.asarray(num, dtype="float64")
        if not np.all(np.isfinite(num)) or np.any(np.abs(num) > 2**52):
            return None
        ints = np.round(num).astype("int64")
        if not np.array_equal(ints.astype("float64"), num):
            return None
    # Other calendars decode to cftime dates, as in xarray's reading of the source; asking
    # for them spares pandas a doomed first attempt (and its warning) past year 2262.
    standard = calendar.lower() in REAL_CALENDARS
    back = decode_cf_datetime(ints, units, calendar, use_cftime=None if standard else True)
    if np.asarray(back).dtype != np.asarray(times).dtype or not np.array_equal(back, times):
        return None
    return ints
