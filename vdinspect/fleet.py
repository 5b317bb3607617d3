"""A fleet of images at once: one inventory row per image, never an exception.

``inventory(paths, executor=None)`` runs serially or on any ``concurrent.futures``
executor (a process pool for hundreds of images); :mod:`vdinspect.dask` builds the same
rows, and the files of every image, as dask DataFrames for thousands.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import VDInspectError
from .schemas import INVENTORY_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


def _text(values: Iterable[Any]) -> str | None:
    out = [str(v) for v in values if v not in (None, "")]
    return ", ".join(out) if out else None


def inventory_row(path: str | os.PathLike, **open_options: Any) -> dict:
    """One image's inventory row (``INVENTORY_COLUMNS``); what could not be read is in
    ``error`` (``Type: message``) and the row holds what was learnt before it."""
    import vdinspect

    row: dict[str, Any] = dict.fromkeys(INVENTORY_COLUMNS)
    row["path"] = os.fspath(path)
    try:
        row["file_size"] = os.stat(path).st_size
        with vdinspect.open(path, **open_options) as d:
            info = d.info_fields(exact=True)
            for k in ("format", "subformat", "virtual_size", "allocated"):
                row[k] = info.get(k)
            if row["virtual_size"] and row["allocated"] is not None:
                row["allocated_pct"] = round(100.0 * row["allocated"] / row["virtual_size"], 2)
            row["layers"] = len(d.chain.layers)
            row["snapshots"] = len(d.snapshot_rows())
            vols = [v for v in d.volumes() if v.kind != "unallocated"]
            row["scheme"] = d.volumes().scheme
            row["partitions"] = sum(1 for v in vols if v.kind in ("partition", "logical",
                                                                   "lv"))
            fsv = d.filesystem_volumes()
            row["filesystems"] = _text(v.filesystem for v in fsv)
            row["labels"] = _text(v.label for v in fsv)
            try:  # what machine it was: the OS hints disk.inspect() finds
                from .guest import inspect_rows

                oses = inspect_rows(d)
                row["os"] = _text(r["product"] or r["family"] for r in oses)
                row["hostnames"] = _text(r["hostname"] for r in oses)
            except VDInspectError:
                pass
            errors = sum(1 for r in d.check_rows() if r.get("severity") == "error")
            row["check_errors"] = errors
    except VDInspectError as e:
        row["error"] = f"{type(e).__name__}: {e}"
    except OSError as e:
        row["error"] = f"{type(e).__name__}: {e.strerror or e}"
    return row


def inventory(paths: Iterable[str | os.PathLike], executor=None,
              **open_options: Any) -> pd.DataFrame:
    """One row per image: format, sizes, layers, snapshots, partitions, filesystems and
    labels, with an ``error`` column instead of raising. ``executor`` is any
    ``concurrent.futures.Executor`` (None: one after another, here)."""
    from functools import partial

    from .frames import inventory_frame

    work = partial(inventory_row, **open_options)
    paths = list(paths)
    rows = list(executor.map(work, paths)) if executor is not None else [work(p)
                                                                          for p in paths]
    return inventory_frame(rows)


def files_of(path: str | os.PathLike, *, deleted: bool = False,
             **open_options: Any) -> pd.DataFrame:
    """Every readable filesystem's ``files()`` of one image in one frame of fixed columns
    (``image``, ``part``, the files() schema with ``damaged``, ``error``): a filesystem or
    image that cannot be read adds one row whose ``error`` says why."""
    import pandas as pd

    import vdinspect

    frames, errors = [], []
    try:
        with vdinspect.open(path, **open_options) as d:
            for v in d.filesystem_volumes(readable=True):
                try:
                    df = d.filesystem(v.key).files(deleted=deleted)
                except VDInspectError as e:
                    errors.append({"part": v.key, "error": f"{type(e).__name__}: {e}"})
                    continue
                df.insert(0, "part", v.key)
                frames.append(df)
    except VDInspectError as e:
        errors.append({"part": None, "error": f"{type(e).__name__}: {e}"})
    schema = files_schema()
    parts = [f.reindex(columns=schema.columns[1:-1]) for f in frames]
    if errors:
        parts.append(pd.DataFrame(errors))
    out = pd.concat([schema.iloc[:, 1:], *parts], ignore_index=True) if parts else \
        schema.iloc[:, 1:]
    out = out.reindex(columns=schema.columns[1:]).astype(schema.dtypes.iloc[1:].to_dict())
    out.insert(0, "image", pd.array([os.fspath(path)] * len(out), dtype="string"))
    return out


def files_schema() -> pd.DataFrame:
    """The empty frame :func:`files_of` fills: its columns and dtypes (dask's ``meta``)."""
    import pandas as pd

    from .frames import files_frame

    # nullable size and flags: an error row (a filesystem that could not be read) has none
    df = files_frame([]).astype({"size": "Int64", "deleted": "boolean",
                                 "recoverable": "boolean"})
    df.insert(df.columns.get_loc("target") + 1, "damaged", pd.array([], dtype="Int64"))
    df.insert(0, "part", pd.array([], dtype="string"))
    df.insert(0, "image", pd.array([], dtype="string"))
    df["error"] = pd.array([], dtype="string")
    return df
