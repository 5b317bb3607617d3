"""``ls`` from a driver's column walk: the ``files()`` columns of a run of directories
(lists, numpy arrays, masked arrays, datetime64) as the plain values the Entry walk
gives, cut into the CLI's batches.

A driver with a column walk (``fs.column_batches``: ext) hands out ``(columns, notes)``
per run of whole directories; the rows written are exactly those of the Entry walk
(``commands.file_batches``): the same values, the same batches of ``LS_BATCH`` rows, a
directory's note on its row when it is known before that row's batch is written (as the
Entry walk notes an Entry still waiting in the batch). No pandas; numpy only because the
driver's columns are numpy arrays. The text table of ``ls`` is made here too, a column at
a time (:func:`ls_column_lines`), from these columns or from Entries (:func:`ls_lines`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator
from operator import attrgetter
from typing import Any

from ..filesystems.entry import EPOCH
from ..schemas import FILES_COLUMNS
from .output import cell, human, json_default, when

TIMES = ("created", "modified", "accessed", "changed")
_INT64_MIN = -(1 << 63)  # NaT, as int64


def _time_of_us(us: int) -> dt.datetime | None:
    """The aware UTC datetime of microseconds since the epoch, as the Entry walk makes it
    (``entry.ns_to_datetime``); None for NaT or a time datetime cannot hold."""
    if us == _INT64_MIN:
        return None
    try:
        return EPOCH + dt.timedelta(microseconds=us)
    except OverflowError:
        return None


#: the microseconds (since the epoch) a datetime can hold, first and last
_FIRST_US = (dt.datetime.min.replace(tzinfo=dt.UTC) - EPOCH) // dt.timedelta(microseconds=1)
_LAST_US = (dt.datetime.max.replace(tzinfo=dt.UTC) - EPOCH) // dt.timedelta(microseconds=1)


_US_TEXT = 26  # "2024-05-01T12:00:00.123456": datetime_as_string's length at unit="us"
_SECONDS_TEXT = 19  # the same to the second


def _iso_us(np, us) -> list:
    """Microseconds since the epoch (int64; NaT is int64 min) as :func:`iso_time` writes
    the datetime they make, formatted by numpy: ``isoformat`` leaves out a zero
    fraction; None where no datetime holds it. One ``datetime_as_string`` at unit="us",
    its UCS-4 code points edited as an array: "+00:00" after the fraction, or over it
    where it is zero (numpy drops the NULs after it when it hands out the text)."""
    ok = (us >= _FIRST_US) & (us <= _LAST_US)
    t = np.where(ok, us, 0).view("datetime64[us]")
    text = np.datetime_as_string(t, unit="us")
    codes = text.view(np.uint32).reshape(len(text), -1)
    if codes.shape[1] < _US_TEXT or codes[:, _US_TEXT - 1].min() == 0 or (
            codes.shape[1] > _US_TEXT and codes[:, _US_TEXT].any()):
        # not the 26 characters looked for: each time as the Entry walk makes it
        return [None if (d := _time_of_us(u)) is None else iso_time(d) for u in us.tolist()]
    out = np.zeros((len(text), _US_TEXT + len(_UTC)), np.uint32)
    out[:, :_US_TEXT] = codes[:, :_US_TEXT]
    out[:, _US_TEXT:] = _UTC
    whole = us % 1_000_000 == 0
    out[whole, _SECONDS_TEXT : _SECONDS_TEXT + len(_UTC)] = _UTC
    out[whole, _SECONDS_TEXT + len(_UTC) :] = 0
    got = out.view(f"<U{out.shape[1]}").ravel().tolist()
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            got[i] = None
    return got


_UTC = tuple(map(ord, "+00:00"))


def iso_time(t: dt.datetime) -> str:
    """A time as ``--json`` writes it (ISO 8601, UTC)."""
    return json_default(t)


def plain_column(values: Any, time: Callable[[dt.datetime], Any] | None = None) -> list:
    """A column of the files() columns as Python values: masked or NaT cells None, numpy
    numbers Python numbers; a datetime64 column (or a column of datetimes) through
    ``time`` (each distinct value once)."""
    if isinstance(values, list):
        out = values
    else:
        import numpy as np

        n = len(values)
        kind = values.dtype.kind
        data = np.ma.getdata(values)
        mask = np.ma.getmask(values)  # nomask, or one flag a cell
        masked = mask is not np.ma.nomask and bool(mask.any())
        if masked:
            mask = np.ma.getmaskarray(values)  # (a flag a cell, whatever shape it was)
        if n > 1 and kind in "iubM":
            # one value throughout (as in most runs of times, owners, modes): made once,
            # and the same object in every cell (the JSON writer checks it at once)
            if not masked:
                if (data == data[0]).all():
                    return [plain_column(data[:1], time)[0]] * n
            elif mask.all():
                return [None] * n
        if kind == "M":
            us = data.astype("datetime64[us]").view(np.int64)
            if masked:
                us = np.where(mask, _INT64_MIN, us)
            ints = us.tolist()
            distinct = set(ints)
            if time is iso_time and len(distinct) * 4 > len(ints) > 64:  # mostly distinct
                return _iso_us(np, us)
            text = {u: (None if (t := _time_of_us(u)) is None or time is None else time(t))
                    for u in distinct}
            return list(map(text.__getitem__, ints))
        out = data.tolist()
        if masked:
            out = [None if m else v for v, m in zip(out, mask.tolist())]
    if time is not None:
        text = {t: None if t is None else time(t) for t in set(out)}
        return list(map(text.__getitem__, out))
    return out


def row_batches(batches: Iterable[tuple[dict, dict]], batch: int,
                time: Callable[[dt.datetime], Any] = iso_time,
                damaged: Callable[[list], list] | None = None,
                only: Collection[str] | None = None
                ) -> Iterator[tuple[list[str], list[list]]]:
    """The rows of a column walk as ``(keys, columns)`` batches of ``batch`` rows for
    :class:`~.output.JsonRows`: the FILES_COLUMNS (times through ``time``: ISO 8601 text
    by default), ``damaged``
    (``damaged(kind column)``; by default None for folders, 0 else: a volume without
    damaged ranges) and the driver's extra columns, in its order. With ``only`` (the
    text table's columns), the columns outside it are left None, not converted."""
    keys: list[str] | None = None
    held: list[list] = []
    first = 0  # the row number of the first row held
    notes: dict = {}
    known: dict = {}  # the extra columns seen so far: a batch lacking one has it as None
    for cols, notes in batches:
        known.update((k, None) for k in cols if k not in _SCHEMA)
        now = [*FILES_COLUMNS, "damaged", *known]
        n = len(cols["kind"])
        plain = [plain_column(cols[c], time if c in TIMES else None)
                 if only is None or c in only else [None] * n for c in FILES_COLUMNS]
        kinds = plain[_KIND]
        plain.append(damaged(kinds) if damaged is not None else
                     [None if k == "dir" else 0 for k in kinds] if only is None else
                     [None] * n)
        plain += [plain_column(cols[c]) if c in cols and only is None else [None] * n
                  for c in known]
        if keys is not None and now != keys:  # another shape: what is held goes first
            if held and held[0]:
                yield from _cut(keys, held, first, notes, len(held[0]))
                first += len(held[0])
            held = []
        keys = now
        if not held:
            held = plain
        else:
            for h, p in zip(held, plain):
                h += p
        n = len(held[0]) // batch * batch
        if n:
            yield from _cut(keys, held, first, notes, n, batch)
            first += n
            held = [h[n:] for h in held]
    if keys is not None and held and held[0]:
        yield from _cut(keys, held, first, notes, len(held[0]))


_SCHEMA = frozenset((*FILES_COLUMNS, "damaged"))
_KIND = FILES_COLUMNS.index("kind")
_NOTE = FILES_COLUMNS.index("note")


def _cut(keys: list[str], held: list[list], first: int, notes: dict, n: int,
         batch: int | None = None) -> Iterator[tuple[list[str], list[list]]]:
    """The first ``n`` rows held, in batches of ``batch`` (all at once by default), the
    walk's notes on the rows they name."""
    if notes:
        col = held[_NOTE]
        for row, why in notes.items():
            if first <= row < first + n:
                i = row - first
                col[i] = why if not col[i] else f"{col[i]}; {why}"
    step = batch or n
    for at in range(0, n, step):
        yield keys, [h[at : at + step] for h in held]


# --- the text table of ls --------------------------------------------------------------

#: the columns the text table of ``ls`` shows
LS_TEXT_COLUMNS = ("kind", "size", "modified", "inode", "path", "target", "deleted")


def ls_column_lines(args: Any, cols: dict, size_w: int) -> str:
    """The text lines of a batch of rows given as plain columns (:func:`row_batches`): each
    column made text on its own (each distinct size once), then one %-template a row."""
    kinds, paths = cols["kind"], cols["path"]
    exact = getattr(args, "bytes", False)
    sizes = {n: human(n, exact) for n in set(cols["size"])}
    size = [sizes[n] if k != "dir" else "" for k, n in zip(kinds, cols["size"])]
    times = cols["modified"]
    if None in set(times):
        times = ["" if t is None else t for t in times]
    inodes = cols["inode"]
    if set(map(type, inodes)) <= {int}:
        inodes = list(map(int.__repr__, inodes))
    else:
        inodes = list(map(cell, inodes))
    targets, gone = cols["target"], cols["deleted"]
    if any(targets) or any(gone):
        tails = [f"{f' -> {t}' if t else ''}{' (deleted)' if g else ''}"
                 for t, g in zip(targets, gone)]
    else:
        tails = itertools.repeat("")
    line = f"%-7s  %{size_w}s  %-19s  %8s  %s%s\n"
    return "".join(map(line.__mod__, zip(kinds, size, times, inodes, paths, tails)))


def ls_lines(args: Any, fs: Any, chunk: list, damaged: bool, size_w: int) -> str:
    """The text lines of a batch of entries: as columns (:func:`ls_column_lines`), or
    one line an entry with the damaged column (each distinct size and time formatted
    once)."""
    if not damaged:
        cols = dict(zip(LS_TEXT_COLUMNS, map(list, zip(*map(_LS_FIELDS, chunk)))))
        times = {t: when(t) for t in set(cols["modified"])}
        cols["modified"] = list(map(times.__getitem__, cols["modified"]))
        return ls_column_lines(args, cols, size_w)
    exact = getattr(args, "bytes", False)
    sizes = {n: human(n, exact) for n in {e.size for e in chunk}}
    times = {t: when(t) for t in {e.modified for e in chunk}}
    lines = []
    for e in chunk:
        size = "" if e.kind == "dir" else sizes[e.size]
        d = fs.damaged(e)
        bad = f"{human(d, exact) if d else '':>7}  "
        lines.append(f"{e.kind:<7}  {size:>{size_w}}  {times[e.modified]:<19}  "
                     f"{cell(e.inode):>8}  {bad}{e.path}{f' -> {e.target}' if e.target else ''}"
                     f"{' (deleted)' if e.deleted else ''}\n")
    return "".join(lines)


_LS_FIELDS = attrgetter(*LS_TEXT_COLUMNS)
