"""Fast paths derived from a layout's one declaration.

Every on-disk layout is declared once, as a ``construct`` Struct with the specification's
field names. Hot loops cannot afford a construct parse per entry, so they use a ``struct``
format or a numpy dtype; these are computed here from the declaration, never typed again.
Only fixed-size fields are supported: integers (``Int*``), ``Bytes(n)``, ``Padding(n)`` and
nested fixed Structs (flattened).
"""

from __future__ import annotations

import struct
from functools import cache

import construct as cs
import numpy as np


def _leaves(con: cs.Construct, prefix: str = ""):
    """(name or None, construct) of each fixed-size field, in order, nested Structs flattened."""
    for sc in con.subcons:
        name = getattr(sc, "name", None)
        inner = sc
        while isinstance(inner, cs.Renamed | cs.Transformed) or type(inner).__name__ in (
            "Renamed", "Const", "Default", "Rebuild"
        ):
            inner = inner.subcon
        if isinstance(inner, cs.Struct):
            yield from _leaves(inner, f"{prefix}{name}." if name else prefix)
        else:
            yield (f"{prefix}{name}" if name else None), inner


def _code(con: cs.Construct) -> tuple[str, str]:
    """(byte order, struct code) of one field."""
    if isinstance(con, cs.FormatField):
        return con.fmtstr[0], con.fmtstr[1:]
    if isinstance(con, cs.BytesInteger):
        raise TypeError("BytesInteger fields have no struct code")
    if isinstance(con, cs.Padded) or type(con).__name__ == "Padding":
        return "", f"{con.sizeof()}x"
    if isinstance(con, cs.Bytes):
        return "", f"{con.sizeof()}s"
    size = con.sizeof()  # anything else of fixed size: raw bytes
    return "", f"{size}s"


@cache
def struct_format(declaration: cs.Struct) -> struct.Struct:
    """A ``struct.Struct`` that unpacks ``declaration``'s named fields in order (padding
    skipped); its size equals ``declaration.sizeof()``."""
    order, codes = "", []
    for _name, con in _leaves(declaration):
        o, c = _code(con)
        if o:
            if order and o != order:
                raise TypeError(f"{declaration}: mixed byte orders")
            order = o
        codes.append(c)
    fmt = struct.Struct((order or "<") + "".join(codes))
    if fmt.size != declaration.sizeof():
        raise TypeError(f"struct format {fmt.format!r} is {fmt.size} bytes, "
                        f"the declaration {declaration.sizeof()}")
    return fmt


@cache
def numpy_dtype(declaration: cs.Struct) -> np.dtype:
    """A numpy structured dtype with ``declaration``'s field names and offsets (nested
    names joined with dots; padding left out), itemsize ``declaration.sizeof()``."""
    names, formats, offsets = [], [], []
    pos = 0
    for name, con in _leaves(declaration):
        o, c = _code(con)
        size = struct.calcsize("<" + c)
        if name is not None and not c.endswith("x"):
            names.append(name)
            kind = _NUMPY.get(c[-1], "S")
            formats.append(f"|S{size}" if kind == "S" else (o or "<") + kind)
            offsets.append(pos)
        pos += size
    dt = np.dtype(dict(names=names, formats=formats, offsets=offsets, itemsize=pos))
    if dt.itemsize != declaration.sizeof():
        raise TypeError(f"dtype is {dt.itemsize} bytes, the declaration {declaration.sizeof()}")
    return dt


_NUMPY = {"b": "i1", "B": "u1", "h": "i2", "H": "u2", "i": "i4", "I": "u4", "l": "i4",
          "L": "u4", "q": "i8", "Q": "u8", "e": "f2", "f": "f4", "d": "f8", "s": "S"}


@cache
def field_offset(declaration: cs.Struct, name: str) -> int:
    """Byte offset of the field ``name`` (dotted for nested Structs) in ``declaration``."""
    pos = 0
    for leaf, con in _leaves(declaration):
        if leaf == name:
            return pos
        pos += con.sizeof()
    raise KeyError(f"{declaration} has no field {name!r}")
