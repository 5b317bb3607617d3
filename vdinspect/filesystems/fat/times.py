"""DOS date and time stamps (FAT directory entries; exFAT timestamps pack them the same way).

A date is ``(year - 1980) << 9 | month << 5 | day``, a time ``hour << 11 | minute << 5 |
seconds / 2``, and creation times add a count of 10 ms units (0..199). No time zone is
stored: the value is returned as a datetime labelled UTC, as vdinspect shows FAT times.
"""

from __future__ import annotations

import datetime as dt
import functools


@functools.lru_cache(maxsize=8192)
def dos_datetime(date: int, time: int = 0, tenths: int = 0) -> dt.datetime | None:
    """A FAT date/time (and 10 ms count) as a datetime labelled UTC; None if invalid/zero."""
    if date == 0:
        return None
    day, month, year = date & 0x1F, (date >> 5) & 0x0F, 1980 + (date >> 9)
    sec2, minute, hour = time & 0x1F, (time >> 5) & 0x3F, time >> 11
    if tenths > 199:
        tenths = 0
    try:
        base = dt.datetime(year, month, day, hour, minute, 0, tzinfo=dt.UTC)
    except ValueError:
        return None
    if sec2 > 29:
        return None
    return base + dt.timedelta(seconds=sec2 * 2, milliseconds=tenths * 10)
