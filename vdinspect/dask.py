"""Fleets of images as dask DataFrames: one partition per image, built where the workers
run (``dask.dataframe.from_map``), so thousands of images are listed on a cluster.

Needs the ``dask`` extra (``pip install 'vdinspect[dask]'``); ``import vdinspect`` does
not import this module or dask.

>>> import vdinspect.dask as vdd                                   # doctest: +SKIP
>>> inv = vdd.inventory(glob.glob("/images/*.qcow2")).compute()    # doctest: +SKIP
>>> files = vdd.files(paths)                                       # doctest: +SKIP
>>> files[files.name == "hostname"].compute()                      # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .errors import MissingDependency
from .fleet import files_of, files_schema, inventory_row


def _dd():
    try:
        import dask.dataframe as dd
    except ImportError as e:  # pragma: no cover - the dask extra is in the test extra
        raise MissingDependency("vdinspect.dask needs dask: pip install 'vdinspect[dask]'"
                                ) from e
    return dd


def _inventory_part(path: str, open_options: dict):
    from .frames import inventory_frame

    return inventory_frame([inventory_row(path, **open_options)])


def _files_part(path: str, deleted: bool, open_options: dict):
    df = files_of(path, deleted=deleted, **open_options)
    # dask stores text as Arrow strings, which refuse the surrogate escapes a name that is
    # not UTF-8 is kept as: such bytes are shown as \\xNN there
    for c in ("path", "name", "parent", "target", "note"):
        col = df[c]
        if col.notna().any() and not col.dropna().map(_utf8_ok).all():
            df[c] = col.map(_escaped, na_action="ignore").astype(col.dtype)
    return df


def _utf8_ok(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(s: str) -> str:
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def inventory(paths: Iterable[str | os.PathLike], **open_options: Any):
    """``vdinspect.inventory`` as a lazy dask DataFrame, one partition per image."""
    from .frames import inventory_frame

    paths = [os.fspath(p) for p in paths]
    return _dd().from_map(_inventory_part, paths, open_options=open_options,
                          meta=inventory_frame([]), enforce_metadata=False)


def files(paths: Iterable[str | os.PathLike], *, deleted: bool = False,
          **open_options: Any):
    """Every file of every readable filesystem of every image, as a lazy dask DataFrame
    (``image``, ``part``, the files() columns, ``error``); one partition per image."""
    paths = [os.fspath(p) for p in paths]
    return _dd().from_map(_files_part, paths, deleted=deleted, open_options=open_options,
                          meta=files_schema(), enforce_metadata=False)
