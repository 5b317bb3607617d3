"""Fast paths derived from a construct declaration, so a layout is written down once.

A fixed-size ``construct.Struct`` of integers (``Int8ul`` … ``Int64ul``, possibly wrapped
in ``Enum``/``FlagsEnum``/``Const``) and ``Bytes(n)`` fields is the one declaration of an
on-disk layout. Code that must go faster than one construct parse per record asks this
module for the same layout as a ``struct`` format, a numpy structured dtype or a field's
byte range, instead of typing offsets again.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from construct import Bytes, Construct, FormatField, Struct

__all__ = ["fields", "field_slice", "offset_of", "struct_format", "numpy_dtype", "scalar_dtype"]


def _leaf(sub: Construct) -> Construct:
    """The integer or byte-string field under renames, enums, flags and constants."""
    while not isinstance(sub, (FormatField, Bytes)):
        inner = getattr(sub, "subcon", None)
        if inner is None:
            raise TypeError(f"{sub!r} is not a fixed-size integer or Bytes field")
        sub = inner
    return sub


def _code(sub: Construct) -> str:
    """The ``struct`` code of one field, without the byte-order mark ("H", "11s")."""
    leaf = _leaf(sub)
    if isinstance(leaf, Bytes):
        return f"{leaf.length}s"
    order, code = leaf.fmtstr[0], leaf.fmtstr[1:]
    if order not in "<=" and struct.calcsize(code) > 1:
        raise TypeError(f"{leaf.fmtstr!r} is not little-endian")
    return code


def fields(layout: Struct) -> list[tuple[str, int, int]]:
    """(name, byte offset, byte length) of each field of a fixed-size Struct, in order."""
    out = []
    pos = 0
    for sub in layout.subcons:
        n = struct.calcsize("<" + _code(sub))
        out.append((sub.name, pos, n))
        pos += n
    return out


def offset_of(layout: Struct, name: str) -> int:
    """Byte offset of field ``name``."""
    for field, off, _ in fields(layout):
        if field == name:
            return off
    raise KeyError(name)


def field_slice(layout: Struct, name: str) -> slice:
    """The byte range of field ``name`` inside one record, as a slice."""
    for field, off, n in fields(layout):
        if field == name:
            return slice(off, off + n)
    raise KeyError(name)


def struct_format(layout: Struct) -> str:
    """The little-endian ``struct`` format of a Struct's fields (``"<11sBBBH..."``)."""
    return "<" + "".join(_code(sub) for sub in layout.subcons)


def scalar_dtype(field: Any) -> np.dtype:
    """The numpy dtype of one little-endian integer field (``Int16ul`` -> ``<u2``)."""
    leaf = _leaf(field)
    if isinstance(leaf, Bytes):
        return np.dtype(f"S{leaf.length}")
    code = leaf.fmtstr[1:]
    kind = "f" if code in "efd" else "i" if code.islower() and code != "s" else "u"
    return np.dtype(f"<{kind}{struct.calcsize('<' + code)}")


def numpy_dtype(layout: Struct) -> np.dtype:
    """A numpy structured dtype with the Struct's field names, offsets and sizes."""
    names, formats, offsets = [], [], []
    for sub, (name, off, _) in zip(layout.subcons, fields(layout)):
        names.append(name)
        formats.append(scalar_dtype(sub))
        offsets.append(off)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": layout.sizeof()})
