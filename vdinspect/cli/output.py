"""How the command line writes its answers: JSON from plain rows, and readable tables.

Nothing here imports pandas: the commands hand over lists of dicts (the rows the
DataFrames are built from), so ``--json`` and the tables cost no more than the reading.

- JSON: :class:`JsonRows` writes a JSON array one row a line (valid JSON as a whole,
  and each line after the first is one row), a batch of rows at a time given as
  columns: each column is encoded in one go (:func:`json_column`: one encoder call for a
  column of numbers, the C string encoder mapped over a column of text; a column of one
  value throughout the batch written once into the text between the varying values),
  each row those pieces in turn, and a batch's rows joined in one call and written at
  once, so ``ls -r --json`` shows its first files
  before the walk ends and holds one batch in memory. :func:`write_rows` writes rows
  (dicts) through it. Values JSON has no type for go through :func:`json_default`.
- :func:`answer`: what every command that answers with rows does: ``--json`` writes
  them as the frame's columns, else the command's table.
- Text: :func:`write_table` lines up pre-formatted cells under short upper-case
  headings, as ``lsblk`` does, and on a terminal narrows one chosen column to fit.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import json.encoder
import os
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import IO, Any

from .. import units


def json_default(v: Any) -> Any:
    """A JSON value for what ``json`` cannot write itself: times as ISO 8601 (UTC),
    durations in seconds, bytes as hex, numpy scalars as Python numbers."""
    if isinstance(v, dt.datetime):
        v = v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if isinstance(v, set | frozenset | tuple):
        return list(v)
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item):
        return item()
    return str(v)


_ENCODER = json.JSONEncoder(default=json_default)
_TZINFO = attrgetter("tzinfo")
_ISO = dt.datetime.isoformat
_TIMES = frozenset((dt.datetime, type(None)))


def iso_column(values: Sequence) -> list:
    """A column of times as :func:`json_default` writes them (ISO 8601, UTC), None kept.
    A column of mostly distinct times already in UTC (NTFS keeps 100 ns) is formatted by
    ``isoformat`` mapped in C; any other column each distinct value once."""
    distinct = set(values)
    if (len(distinct) * 4 > len(values) and set(map(type, distinct)) <= _TIMES
            and set(map(_TZINFO, filter(None, distinct))) <= {dt.UTC}):
        if None not in distinct:
            return list(map(_ISO, values))
        return [None if t is None else _ISO(t) for t in values]
    text = {t: json_default(t) for t in distinct if t is not None}
    text[None] = None
    return list(map(text.__getitem__, values))
_ENCODE_TEXT = json.encoder.encode_basestring_ascii  # the C function json itself uses
_NUMBERS = frozenset((int, float, bool, type(None)))
_TEXT = frozenset((str, type(None)))
_CONSTANT = frozenset((str, int, bool, type(None)))  # equal values: the same JSON text


def _name_errors(err: UnicodeError) -> tuple[bytes | str, int]:
    """Encoding error handler for names from an image: bytes a driver kept as lone
    surrogates (``surrogateescape``) are written as those bytes, as ``ls`` does; other
    unencodable characters as ``\\uXXXX``."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = err.object[err.start : err.end]
    if all(0xDC80 <= ord(ch) <= 0xDCFF for ch in text):
        return bytes(ord(ch) - 0xDC00 for ch in text), err.end
    return "".join(f"\\u{ord(ch):04x}" for ch in text), err.end


def register_name_errors() -> str:
    """The name of the error handler above, registered with :mod:`codecs`."""
    import codecs

    codecs.register_error("vdinspect-names", _name_errors)
    return "vdinspect-names"


def write_json(out: IO[str], obj: Any, indent: int | None = None) -> None:
    """One JSON document and a newline."""
    json.dump(obj, out, default=json_default, indent=indent)
    out.write("\n")


def json_column(values: Sequence) -> list[str]:
    """Each value of a column as JSON text, as ``json.dumps`` writes it: a column of
    numbers, booleans and None in one encoder call (its text holds no strings nor
    containers, so it splits at the separators), text through the C string encoder,
    anything else one by one (through :func:`json_default`). The column's kinds are
    looked at only when neither of the first two ways fits it."""
    if not len(values):
        return []
    first = values[0]
    if type(first) is str:
        try:  # a None among the text raises here, before anything is written
            return list(map(_ENCODE_TEXT, values))
        except TypeError:
            pass
    elif type(first) in _NUMBERS:
        text = _ENCODER.encode(values if isinstance(values, list) else list(values))
        inner = text[1:-1]
        if '"' not in inner and "[" not in inner and "{" not in inner:
            return inner.split(", ")
    kinds = set(map(type, values))
    if kinds <= _TEXT:
        if str not in kinds:
            return ["null"] * len(values)
        return ["null" if v is None else _ENCODE_TEXT(v) for v in values]
    encode = _ENCODER.encode
    return [encode(v) for v in values]


def _constant_text(v: str | int | bool | None) -> str:
    """The JSON text of one value of the kinds :func:`constant` accepts."""
    if v is None or v is True or v is False:
        return "null" if v is None else "true" if v else "false"
    return _ENCODE_TEXT(v) if type(v) is str else int.__repr__(v)


def constant(col: Sequence, n: int) -> bool:
    """True when the ``n`` cells of ``col`` are one value written one way throughout
    (1 and True are equal but not written alike: an int or bool column is checked for
    one type). The first, middle and last cells rule out most varying columns at once."""
    first = col[0]
    kind = type(first)
    if kind not in _CONSTANT or col[-1] != first or col[n // 2] != first:
        return False
    if col.count(first) != n:
        return False
    return kind is str or first is None or len(set(map(type, col))) == 1


class JsonRows:
    """A JSON array of objects written a batch at a time, one object a line.

    ``add(keys, columns)`` writes one batch: rows whose keys are ``keys`` (in that
    order), the values given column by column; ``close()`` ends the array and returns
    the number of rows written."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def add(self, keys: Sequence[str], columns: Sequence[Sequence]) -> None:
        n = len(columns[0]) if columns else 0
        if not n:
            return
        # the text between the varying columns' values is the same on every row: the
        # keys, and the columns of one value throughout the batch (of one exact kind: 1
        # and True are equal but not written alike); each row is those pieces and the
        # encoded values in turn, flattened and joined in C (no formatting per row)
        pieces: list = []  # the text before each varying column, and its values
        text = ",\n{"  # each row starts with the separator from the row before
        for i, (k, col) in enumerate(zip(keys, columns)):
            text += f"{', ' if i else ''}{_ENCODE_TEXT(k)}: "
            if constant(col, n):
                text += _constant_text(col[0])
            else:
                pieces.append(itertools.repeat(text))
                pieces.append(json_column(col))
                text = ""
        text += "}"
        if pieces:
            pieces.append(itertools.repeat(text))
            rows = "".join(itertools.chain.from_iterable(zip(*pieces)))
        else:
            rows = text * n
        if self.count == 0:  # the first row has no row before it
            self.out.write("[")
            rows = rows[1:]
        self.out.write(rows)  # one string a batch
        self.count += n

    def add_rows(self, rows: Sequence[dict]) -> None:
        """Rows as dicts; neighbours with the same keys become one batch."""
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i].keys() != rows[start].keys():
                keys = list(rows[start])
                group = rows[start:i]
                self.add(keys, [[r[k] for r in group] for k in keys])
                start = i

    def close(self) -> int:
        self.out.write("\n]\n" if self.count else "[\n]\n")
        return self.count


def write_rows(out: IO[str], rows: Iterable[dict], batch: int = 1024) -> int:
    """A JSON array of ``rows`` (one row a line), written ``batch`` rows at a time as the
    rows come; the row count."""
    writer = JsonRows(out)
    it = iter(rows)
    while chunk := list(itertools.islice(it, batch)):
        writer.add_rows(chunk)
    return writer.close()


def answer(args, out: IO[str], rows: list[dict], columns: Sequence[str] | None,
           table: Callable[[], None], status: int = 0) -> int:
    """How a command answers with rows: ``--json`` writes them (exactly ``columns``, in
    that order, when given: the frame's columns), else ``table()`` writes the text;
    returns ``status`` (the exit status)."""
    if getattr(args, "json", False):
        write_rows(out, project(rows, columns) if columns is not None else rows)
    else:
        table()
    return status


def project(rows: Iterable[dict], columns: Sequence[str]) -> list[dict]:
    """Rows with exactly ``columns`` in that order (absent ones None), like the frames."""
    get = dict.get
    return [{c: get(r, c) for c in columns} for r in rows]


# --- text ---------------------------------------------------------------------------


def human(n: int | None, exact: bool = False) -> str:
    """A size as people read it ("1.16 MiB", "4 GiB", "512 B"); ``exact`` gives the bytes."""
    if n is None:
        return ""
    return str(n) if exact else units.human(n, digits=3)


def when(t: dt.datetime | None) -> str:
    """A time to the second in UTC ("2024-05-01 12:00:00"), blank when unknown."""
    if t is None:
        return ""
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def cell(v: Any) -> str:
    """Any other value as a table cell: blank for None, yes/no, lists joined by commas."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list | tuple):
        return ", ".join(cell(x) for x in v)
    if isinstance(v, dt.datetime):
        return when(v)
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def terminal_width(out: IO[str]) -> int | None:
    """The terminal's width when ``out`` is one; None for a pipe or a file (no cutting)."""
    try:
        if not out.isatty():
            return None
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


def write_table(out: IO[str], headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                right: Iterable[int] = (), shrink: int | None = None) -> None:
    """Cells lined up under their headings, two spaces apart.

    ``right`` are the columns aligned right (numbers); on a terminal narrower than the
    table, column ``shrink`` is cut to fit (ending in "…"), never below 12 characters.
    """
    right = set(right)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    cols = shrink is not None and terminal_width(out)
    if cols and shrink is not None:
        over = sum(widths) + 2 * (len(widths) - 1) - cols
        if over > 0:
            widths[shrink] = max(12, widths[shrink] - over)
    last = len(headers) - 1
    lines = []
    for r in [list(headers)] + [list(x) for x in rows]:
        parts = []
        for i, v in enumerate(r):
            w = widths[i]
            if len(v) > w:
                v = v[: w - 1] + "…"
            parts.append(v.rjust(w) if i in right else (v if i == last else v.ljust(w)))
        lines.append("  ".join(parts).rstrip())
    out.write("\n".join(lines) + "\n")
