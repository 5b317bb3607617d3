"""Every DataFrame the API returns, with its fixed schema (docs/design.md "DataFrame schemas").

Column names are API. Sizes and offsets are int64 bytes; absent values are ``pd.NA``.
This module is the bottom layer: it imports nothing of the package, and pandas only when a
frame is built (so ``import vdinspect`` and the CLI's JSON paths never pay for pandas).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pandas.api.extensions import ExtensionArray
    ArrayLike = ExtensionArray | np.ndarray
    import pandas as pd
else:
    class _Pandas:
        """pandas, imported on first use."""

        def __getattr__(self, name: str) -> Any:
            import pandas

            return getattr(pandas, name)

    pd = _Pandas()

from .schemas import (  # noqa: F401 (re-exported: the names are frames' API too)
    ALLOCATION_COLUMNS,
    BACKING,
    CARVE_COLUMNS,
    CHECK_COLUMNS,
    DAMAGED,
    DATA,
    DIFF_BLOCK_COLUMNS,
    DIFF_FILE_COLUMNS,
    FILES_COLUMNS,
    FOUND_IMAGE_COLUMNS,
    FOUND_PARTITION_COLUMNS,
    FS_INFO_FIELDS,
    INFO_FIELDS,
    INSPECT_COLUMNS,
    INVENTORY_COLUMNS,
    LAYER_COLUMNS,
    PACKAGE_COLUMNS,
    PARTITION_COLUMNS,
    SNAPSHOT_COLUMNS,
    STATES,
    STRUCTURE_COLUMNS,
    STRUCTURE_FRAME_COLUMNS,
    UNALLOCATED,
    USER_COLUMNS,
    ZERO,
)


def allocation_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """Runs as the ``allocation()`` frame: from the columns of a RunTable (anything with
    ``state_names()``) directly, else from Run objects."""
    if hasattr(runs, "state_names"):
        layer, host = runs.layer, runs.host
        return pd.DataFrame(
            {
                "start": pd.array(runs.start, dtype="int64"),
                "length": pd.array(runs.length, dtype="int64"),
                "end": pd.array(runs.start + runs.length, dtype="int64"),
                "state": pd.Categorical.from_codes(
                    runs.state.astype(np.int64), dtype=pd.CategoricalDtype(list(STATES))),
                "layer": pd.arrays.IntegerArray(layer.astype(np.int64), layer < 0),
                "host_file": pd.array(runs.host_files(), dtype="string"),
                "host_offset": pd.arrays.IntegerArray(host.astype(np.int64), host < 0),
                "compressed": pd.array(runs.compressed, dtype="bool"),
            },
            copy=False,  # the columns are fresh: no second copy of a million rows
        )
    runs = list(runs)
    return pd.DataFrame(
        {
            "start": pd.array([r.start for r in runs], dtype="int64"),
            "length": pd.array([r.length for r in runs], dtype="int64"),
            "end": pd.array([r.start + r.length for r in runs], dtype="int64"),
            "state": pd.Categorical([r.state for r in runs], dtype=pd.CategoricalDtype(list(STATES))),
            "layer": pd.array([r.layer for r in runs], dtype="Int64"),
            "host_file": pd.array([r.host_file for r in runs], dtype="string"),
            "host_offset": pd.array([r.host_offset for r in runs], dtype="Int64"),
            "compressed": pd.array([bool(r.compressed) for r in runs], dtype="bool"),
        }
    )


def text_array(values) -> pd.api.extensions.ExtensionArray:
    """Text as a nullable string column stored as Python objects: names read from images
    may hold undecodable bytes as surrogate escapes, which pyarrow-backed strings (the
    pandas 3 default when pyarrow is installed) refuse."""
    dtype = pd.StringDtype("python")
    if not isinstance(values, list | np.ndarray):
        values = list(values)
    try:  # validated in one pass (pd.array is ten times slower on a column of None)
        # the first value tested first: count(None) compares every str with None
        if (isinstance(values, list) and (not values or values[0] is None)
                and values.count(None) == len(values)):
            arr = np.empty(len(values), dtype=object)
            arr.fill(pd.NA)  # nothing at all (a target or note column): NA as it is
            return pd.arrays.StringArray(arr, dtype=dtype)
        # fromiter: each object as it is (``arr[:] = values`` first looks for a common
        # dtype over every value, five times the cost)
        arr = np.fromiter(values, dtype=object, count=len(values))
        return pd.arrays.StringArray(arr, dtype=dtype)
    except (TypeError, ValueError):  # an older pandas, or values that are not text
        return pd.array(list(values), dtype=dtype)


def build_column(values: list, dtype: str | None) -> ArrayLike:
    """One column built straight from Python values (exact for big ints, None -> NA)."""
    if dtype is None:
        return infer_column(values)
    if dtype == "datetime64[us, UTC]":
        return _utc_column(values)
    if dtype in ("int64", "bool"):
        return np.array(values, dtype=dtype)
    if dtype == "string":
        return text_array(values)
    if dtype == "Int64":
        try:  # the common case, every value present and in range, at C speed
            return pd.arrays.IntegerArray(np.array(values, dtype=np.int64),
                                          np.zeros(len(values), dtype=bool))
        except (TypeError, OverflowError, ValueError):
            pass
        # a value no int64 holds can only be garbage read from a damaged image: NA
        values = [v if v is None or -(1 << 63) <= v < 1 << 63 else None for v in values]
    return pd.array(values, dtype=dtype)


def infer_column(values: list) -> ArrayLike:
    """A nullable dtype for a driver's extra column: Int64, boolean, string, else object."""
    present = [v for v in values if v is not None]
    kinds = set(map(type, present))  # the few types present, tested once each

    def every(t) -> bool:
        return bool(kinds) and all(issubclass(k, t) for k in kinds)

    if every(bool):
        return pd.array(values, dtype="boolean")
    if every(int | np.integer) and not any(issubclass(k, bool) for k in kinds):
        if -(1 << 63) <= int(min(present)) and int(max(present)) < 1 << 63:
            return pd.array(values, dtype="Int64")
        return pd.array(values, dtype=object)
    if every(str):
        return text_array(values)
    if every(dt.datetime):
        return _utc_column(values)
    return pd.array(values, dtype=object)


def _utc_column(values: list):
    """Aware (or naive, taken as UTC) datetimes as datetime64[us, UTC]; no overflow."""
    try:
        return pd.array(values, dtype="datetime64[us, UTC]")
    except (TypeError, ValueError, OverflowError):
        return _utc_us(pd.Series(values, dtype=object)).array


def _frame(rows: list[dict], columns: list[str], dtypes: dict[str, str | None]
           ) -> pd.DataFrame:
    """A frame with exactly ``columns``, each built with its dtype (None: inferred)."""
    data = {c: build_column([r.get(c) for r in rows], dtypes.get(c, "object")) for c in columns}
    return pd.DataFrame(data, columns=columns)


def column_dtypes(columns: list[str], kinds: dict[str | None, tuple[str, ...]],
                  default: str | None = "string") -> dict[str, str | None]:
    """The dtype of each of ``columns`` (a :mod:`.schemas` list): the ``kinds`` key whose
    tuple names it, else ``default``; the names stay schemas' (a kind naming a column the
    list lacks is our bug)."""
    of = {c: k for k, cs in kinds.items() for c in cs}
    stray = set(of) - set(columns)
    if stray:
        raise ValueError(f"dtypes given for columns the schema lacks: {sorted(stray)}")
    return {c: of.get(c, default) for c in columns}


def layers_frame(rows: list[dict]) -> pd.DataFrame:
    return _frame(rows, LAYER_COLUMNS, column_dtypes(LAYER_COLUMNS, {
        "int64": ("layer", "virtual_size", "file_size", "allocated"),
        "boolean": ("parent_ok",)}))


def check_frame(rows: list[dict]) -> pd.DataFrame:
    return _frame(rows, CHECK_COLUMNS,
                  column_dtypes(CHECK_COLUMNS, {"Int64": ("layer", "host_offset")}))


def structures_frame(rows: list[dict]) -> pd.DataFrame:
    return _frame(rows, STRUCTURE_FRAME_COLUMNS, column_dtypes(
        STRUCTURE_FRAME_COLUMNS, {"Int64": ("host_offset", "length", "layer")}))


def snapshots_frame(rows: list[dict]) -> pd.DataFrame:
    df = _frame(rows, SNAPSHOT_COLUMNS, column_dtypes(SNAPSHOT_COLUMNS, {
        "Int64": ("layer", "vm_state_size", "virtual_size"),
        "object": ("created", "vm_clock")}))  # converted below
    df["created"] = pd.to_datetime(df["created"], utc=True).astype("datetime64[us, UTC]")
    df["vm_clock"] = pd.to_timedelta(df["vm_clock"])
    return df


#: the dtypes of the partition columns (``partitions()``, ``scan_partitions()``)
PARTITION_KINDS = {"Int64": ("index",), "int64": ("start", "length", "end"),
                   "boolean": ("bootable",)}


def partitions_frame(rows: list[dict]) -> pd.DataFrame:
    """Partitions and logical volumes: bytes; ``index`` is NA for gaps and LVs ("vg/lv" names)."""
    for r in rows:
        if r.get("end") is None and r.get("start") is not None:
            r["end"] = r["start"] + r["length"]
    return _frame(rows, PARTITION_COLUMNS, column_dtypes(PARTITION_COLUMNS, PARTITION_KINDS))


def found_partitions_frame(rows: list[dict]) -> pd.DataFrame:
    """``scan_partitions()``: the ``partitions()`` columns plus found_by, confidence (0..1)
    and evidence (how many structures agree)."""
    kinds = dict(PARTITION_KINDS, Int64=("index", "evidence"), float64=("confidence",))
    return _frame(rows, FOUND_PARTITION_COLUMNS, column_dtypes(FOUND_PARTITION_COLUMNS, kinds))


def found_images_frame(rows: list[dict]) -> pd.DataFrame:
    """``scan_images()``: where each embedded image lies on the host, its format and size."""
    return _frame(rows, FOUND_IMAGE_COLUMNS, column_dtypes(FOUND_IMAGE_COLUMNS, {
        "Int64": ("index", "length", "end", "virtual_size", "errors"), "int64": ("start",),
        "float64": ("confidence",), "boolean": ("opened",)}))


def carve_frame(rows: list[dict]) -> pd.DataFrame:
    """Files found by their content: where (bytes), how long, what type, whether the
    structure was followed to its end, whether it is in pieces (NA: cannot tell), why not."""
    return _frame(rows, CARVE_COLUMNS, column_dtypes(CARVE_COLUMNS, {
        "int64": ("offset", "length"), "bool": ("validated",), "boolean": ("fragmented",)}))


def info_series(fields: dict) -> pd.Series:
    """The ``info()`` Series: the docs/design.md fields first, then format-specific ones."""
    ordered = {k: fields.get(k) for k in INFO_FIELDS}
    for k, v in fields.items():
        if k not in ordered:
            ordered[k] = v
    return pd.Series(ordered, dtype=object, name=fields.get("path"))


def series(fields: dict, name: str | None = None) -> pd.Series:
    """An ``info()`` Series of facts in the order given (object dtype: mixed values)."""
    return pd.Series(fields, dtype=object, name=name)


def fs_info_series(fields: dict) -> pd.Series:
    """A filesystem's ``info()`` Series: the shared fields first, then the driver's own."""
    ordered = {k: fields.get(k) for k in FS_INFO_FIELDS}
    ordered.update((k, v) for k, v in fields.items() if k not in ordered)
    return pd.Series(ordered, dtype=object, name=fields.get("fstype"))


TIME_COLUMNS = ["created", "modified", "accessed", "changed"]


FILES_DTYPES = {"path": "string", "name": "string", "parent": "string", "kind": "string",
                "size": "int64", "allocated": "Int64", "mode": "Int64", "uid": "Int64",
                "gid": "Int64", "created": "datetime64[us, UTC]",
                "modified": "datetime64[us, UTC]", "accessed": "datetime64[us, UTC]",
                "changed": "datetime64[us, UTC]", "inode": "Int64", "links": "Int64",
                "deleted": "bool", "recoverable": "bool", "target": "string",
                "found_by": "string", "note": "string"}


def files_frame(rows: list[dict]) -> pd.DataFrame:
    """The ``files()`` frame from rows (``Entry.row()`` dicts): their columns, through
    :func:`files_columns_frame`."""
    return files_columns_frame(row_columns(rows))


def row_columns(rows: list[dict]) -> dict[str, list]:
    """Rows (dicts) as columns: the ``files()`` columns first, then every other key."""
    keys = list(FILES_DTYPES) + ["damaged"]
    keys += dict.fromkeys(k for r in rows for k in r if k not in FILES_DTYPES
                          and k != "damaged")
    have = {k for r in rows for k in r} if rows else set(FILES_DTYPES)
    return {k: [r.get(k) for r in rows] for k in keys if k in have or k in FILES_DTYPES}


def entry_columns(entries: list, extra: bool = True) -> dict[str, list]:
    """Entries (anything with the ``files()`` fields as attributes and an ``extra`` dict)
    as columns; with ``extra``, the extra dicts' keys after them."""
    from operator import attrgetter, itemgetter

    names = list(FILES_DTYPES)
    if not entries:
        return {c: [] for c in names}
    # one tuple per entry, transposed in C (a getattr per cell costs more than the walk)
    cols = dict(zip(names, map(list, zip(*map(attrgetter(*names), entries)))))
    if extra:
        extras = [e.extra for e in entries]
        keys = list(extras[0])
        first = extras[0].keys()
        if len(keys) > 1 and all(x.keys() == first for x in extras):  # the common case
            cols.update(zip(keys, map(list, zip(*map(itemgetter(*keys), extras)))))
        else:
            for k in dict.fromkeys(k for x in extras for k in x):
                cols[k] = [x.get(k) for x in extras]
    return cols


def files_columns_frame(columns: dict, dtypes: dict[str, str] | None = None) -> pd.DataFrame:
    """The ``files()`` frame, the one builder every driver's listing goes through.

    ``columns`` maps column names to lists, numpy arrays or numpy masked arrays (masked:
    NA), all of one length: the schemas.FILES_COLUMNS (absent ones are NA), ``damaged``
    (bytes, placed after ``target``), then the driver's extra columns, kept in their
    order. Times are datetimes or numpy datetime64 of any unit (shown in microseconds,
    NaT when absent). ``dtypes`` names an extra column's dtype; unnamed ones are inferred
    from their values.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    names = list(FILES_COLUMNS)
    if "damaged" in columns:
        names.insert(names.index("target") + 1, "damaged")
    extra = [k for k in columns if k not in FILES_DTYPES and k != "damaged"]
    want = dict(FILES_DTYPES, damaged="Int64", **{k: (dtypes or {}).get(k) for k in extra})
    data = {}
    for c in names + extra:
        v = columns.get(c)
        data[c] = to_column([None] * n if v is None else v, want[c])
    return pd.DataFrame(data, columns=names + extra, copy=False)


def merge_columns(which, a: dict, b: dict, *, consume: bool = False) -> dict:
    """Two sets of columns as one, in row order: row i comes from ``a`` where ``which[i]``
    (a bool array) is True, else from ``b`` (each in its own order). A column both give
    as numbers (arrays, masked arrays, lists with None) stays numeric; others become
    object arrays (a list where ``a`` gives a list and ``b`` only a few rows). With
    ``consume``, each column is taken out of ``a`` and ``b`` as it is merged (a big
    listing is not held twice). When ``b`` gives only a few rows they are inserted
    between slices of ``a`` (a copy a column, no scatter over every row)."""
    which = np.asarray(which, dtype=bool)
    n = len(which)
    bt = np.flatnonzero(~which)
    few = len(bt) <= _FEW
    at = None if few else np.flatnonzero(which)
    out = {}
    for k in dict.fromkeys([*a, *b]):
        av, bv = (a.pop(k, None), b.pop(k, None)) if consume else (a.get(k), b.get(k))
        dtype = _numeric_dtype(av, bv)
        if dtype is not None:
            try:
                data = np.zeros(n, dtype=dtype)
                mask = np.zeros(n, dtype=bool)
                if few:
                    _place(data, mask, av, bv, bt.tolist())
                else:
                    for idx, v in ((at, av), (bt, bv)):
                        _scatter(data, mask, idx, v)
                if data.dtype.kind == "M":
                    data[mask] = np.datetime64("NaT")
                    out[k] = data
                else:
                    out[k] = np.ma.MaskedArray(data, mask) if mask.any() else data
                continue
            except (TypeError, ValueError, OverflowError):
                pass  # values of another kind: kept as objects below
        got = _insert_few(av, bv, bt)
        if got is not None:
            out[k] = got
            continue
        if at is None:
            at = np.flatnonzero(which)
        col = np.full(n, None, dtype=object)
        for idx, v in ((at, av), (bt, bv)):
            if v is not None:  # numbers in an array as Python ints; objects as they are
                col[idx] = (v.tolist() if isinstance(v, np.ma.MaskedArray)  # masked: None
                            else list(v) if isinstance(v, np.ndarray) and v.dtype != object else v)
        out[k] = col
    return out


_FEW = 64  # merge_columns inserts b's rows between slices of a's up to this many

#: the Python values a list side may hold for each numpy kind of the merged column (None
#: aside): anything else would be cast silently (text or numbers into bool, floats into
#: integers, integers into times), so such a column is merged as objects
_LIST_VALUES = {"b": (bool, np.bool_), "i": (int, np.integer), "u": (int, np.integer),
                "f": (int, float, np.integer, np.floating),
                "M": (np.datetime64, dt.datetime)}


def _numeric_dtype(av, bv) -> np.dtype | None:
    """The dtype of the numeric column merging ``av`` and ``bv``, when every value of both
    fits it unchanged: the arrays' common dtype (integer or bool arrays of different dtypes
    promoted, never to floats), list values of that kind; None: merge as objects."""
    kinds = [v.dtype for v in (av, bv) if isinstance(v, np.ndarray) and v.dtype != object]
    if not kinds:
        return None
    dtype = kinds[0]
    if len(kinds) == 2 and kinds[1] != dtype:
        if dtype.kind not in "biu" or kinds[1].kind not in "biu":
            return None
        dtype = np.result_type(*kinds)
        if dtype.kind not in "biu":
            return None  # uint64 with int64: no integer holds both
    for v in (av, bv):
        if isinstance(v, np.ndarray) and v.dtype == object:
            return None  # its None would be cast to 0 or False, not masked
        if isinstance(v, list | tuple):
            ok = _LIST_VALUES.get(dtype.kind)
            if ok is None or not all(x is None or isinstance(x, ok) for x in v):
                return None
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                if not all(x is None or info.min <= x <= info.max for x in v):
                    return None
    return dtype


def _parts(v, count: int) -> tuple:
    """(values, mask) of one side of a numeric ``merge_columns`` column: NA where None
    (the whole side when it gives no column), values as given otherwise."""
    if v is None:
        return None, True
    if isinstance(v, np.ndarray):
        return np.ma.getdata(v), np.ma.getmaskarray(v)
    mask = np.fromiter((x is None for x in v), dtype=bool, count=count)
    return [0 if x is None else x for x in v], mask


def _scatter(data: np.ndarray, mask: np.ndarray, idx: np.ndarray, v) -> None:
    """One side of a numeric merged column written at its rows ``idx``."""
    vals, m = _parts(v, len(idx))
    if vals is not None:
        data[idx] = vals
    mask[idx] = m


def _place(data: np.ndarray, mask: np.ndarray, av, bv, bt: list[int]) -> None:
    """A numeric merged column with ``b``'s few rows (at ``bt``, in order) put between
    slices of ``a``'s: one slice assignment a stretch of ``a`` rows."""
    avals, amask = _parts(av, len(data) - len(bt))
    bvals, bmask = _parts(bv, len(bt))
    prev = got = 0
    for j, i in enumerate(bt + [len(data)]):
        if i > prev:  # a's rows before this b row
            if avals is not None:
                data[prev:i] = avals[got : got + i - prev]
            mask[prev:i] = amask if amask is True else amask[got : got + i - prev]
            got += i - prev
        if j < len(bt):
            if bvals is not None:  # a slice: numpy casts as the scatter did
                data[i : i + 1] = bvals[j : j + 1]
            mask[i] = bmask if bmask is True else bmask[j]
        prev = i + 1


def _insert_few(av, bv, bt: np.ndarray):
    """Text (or other objects) of ``merge_columns`` when ``b`` gives only a few rows (at
    ``bt``, in order): ``a``'s column with them inserted, without a pass per row; None
    when that does not apply."""
    if len(bt) > _FEW or not isinstance(av, list | np.ndarray):
        return None
    if isinstance(av, np.ndarray) and av.dtype != object:
        return None
    if bv is None:
        bv = [None] * len(bt)
    elif isinstance(bv, np.ndarray):
        bv = bv.tolist() if bv.dtype != object else list(bv)
    if isinstance(av, list):
        col = av.copy()
        for i, x in zip(bt.tolist(), bv):
            col.insert(i, x)
        return col
    vals = np.empty(len(bv), dtype=object)
    for j, x in enumerate(bv):
        vals[j] = x
    return np.insert(av, bt - np.arange(len(bt)), vals)


def to_column(values, dtype: str | None) -> ArrayLike:
    """One column of a frame from a list, a numpy array or a numpy masked array."""
    if isinstance(values, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(values)
        if dtype in ("boolean", "bool") or values.dtype == bool:
            return pd.arrays.BooleanArray(values.data.astype(bool, copy=False), mask)
        return pd.arrays.IntegerArray(values.data.astype(np.int64, copy=False), mask)
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "M":
            us = values.astype("datetime64[us]")
            return pd.Series(us).dt.tz_localize("UTC").array
        if dtype == "Int64":
            return pd.arrays.IntegerArray(values.astype(np.int64, copy=False),
                                          np.zeros(len(values), dtype=bool))
        if dtype in ("int64", "bool"):
            return values.astype(dtype, copy=False)
        if dtype == "string" and values.dtype == object:
            return text_array(values)
        values = values.tolist()
    return build_column(list(values), dtype)


def _utc_us(col: pd.Series) -> pd.Series:
    """Aware datetimes to datetime64[us, UTC] without overflowing on far-future values."""
    import datetime as dt

    import numpy as np

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    out = np.full(len(col), np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    for i, v in enumerate(col.tolist()):
        if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
            continue
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        d = v - epoch
        out[i] = (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
    return pd.Series(out.view("datetime64[us]"), index=col.index).dt.tz_localize("UTC")


def diff_blocks_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of ``diff.block_rows`` as the ``Diff.blocks`` frame."""
    rows = [dict(r, end=r["start"] + r["length"]) for r in rows]
    return _frame(rows, DIFF_BLOCK_COLUMNS,
                  column_dtypes(DIFF_BLOCK_COLUMNS, {"int64": ("start", "length", "end")}))


def diff_files_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of ``diff.file_rows`` as the ``Diff.files`` frame."""
    return _frame(rows, DIFF_FILE_COLUMNS, column_dtypes(DIFF_FILE_COLUMNS, {
        None: ("part",), "Int64": ("old_size", "new_size"),
        "datetime64[us, UTC]": ("old_modified", "new_modified")}))


def inventory_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of ``fleet.inventory_row`` as the ``inventory()`` frame."""
    ints = ("virtual_size", "file_size", "allocated", "layers", "snapshots", "partitions",
            "check_errors")
    return _frame(rows, INVENTORY_COLUMNS, column_dtypes(
        INVENTORY_COLUMNS, {"Int64": ints, "Float64": ("allocated_pct",)}))


def inspect_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of ``guest.inspect_rows`` as the ``inspect()`` frame."""
    times = ("install_date", "last_boot", "last_shutdown")
    return _frame(rows, INSPECT_COLUMNS,
                  column_dtypes(INSPECT_COLUMNS, {"datetime64[us, UTC]": times}))


def packages_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of ``guest.package_rows`` as the ``packages()`` frame (size in bytes)."""
    return _frame(rows, PACKAGE_COLUMNS, column_dtypes(
        PACKAGE_COLUMNS, {"Int64": ("size",), "datetime64[us, UTC]": ("installed",)}))


def users_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of ``guest.user_rows`` as the ``users()`` frame."""
    return _frame(rows, USER_COLUMNS, column_dtypes(
        USER_COLUMNS, {"Int64": ("uid", "gid"), "datetime64[us, UTC]": ("last_login",)}))
