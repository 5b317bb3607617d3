"""Fast paths derived from construct declarations: a ``struct`` format and field offsets.

A layout is declared once, as a construct Struct with the specification's field names.
Hot loops (one MFT record after another, tens of thousands of index entries) cannot afford
a construct parse per item, so they unpack with the ``struct.Struct`` that
:func:`struct_format` generates from that same declaration, and find a field with
:func:`offset_of` instead of typing its offset again.
"""

from __future__ import annotations

import struct

import construct as cs


def _code(sc: cs.Construct) -> str:
    """The ``struct`` code of one fixed-size field (a byte order prefix included)."""
    while True:
        if isinstance(sc, cs.FormatField):
            return sc.fmtstr
        if isinstance(sc, cs.Bytes) and isinstance(sc.length, int):
            return f"={sc.length}s"
        if isinstance(sc, cs.Padded) and sc.subcon is cs.Pass:
            return f"={sc.length}x"
        if isinstance(sc, cs.Subconstruct):  # Renamed, Enum, FlagsEnum, Const, ...
            sc = sc.subcon
            continue
        raise TypeError(f"no struct code for {sc!r} (not a fixed-size field)")


def struct_format(st: cs.Struct) -> struct.Struct:
    """The ``struct.Struct`` unpacking ``st``: one value per named field, in order.

    Every field must be fixed-size; padding unpacks to nothing. All integer fields must
    share one byte order.
    """
    orders = set()
    codes = []
    for sc in st.subcons:
        code = _code(sc)
        if code[0] in "<>!":
            orders.add(code[0])
        codes.append(code[1:])
    if len(orders) > 1:
        raise TypeError("fields of mixed byte order")
    return struct.Struct((orders.pop() if orders else "<") + "".join(codes))


def offset_of(st: cs.Struct, name: str) -> int:
    """Byte offset of field ``name`` in ``st`` (the fields before it are fixed-size)."""
    off = 0
    for sc in st.subcons:
        if sc.name == name:
            return off
        off += sc.sizeof()
    raise KeyError(f"{name!r} is not a field of this Struct")


def flag_values(flags: cs.Construct) -> dict[str, int]:
    """The name -> value table of a FlagsEnum or Enum (seen through a rename)."""
    while not isinstance(flags, (cs.FlagsEnum, cs.Enum)):
        flags = flags.subcon
    if isinstance(flags, cs.FlagsEnum):
        return dict(flags.flags)
    return {str(k): v for k, v in flags.encmapping.items()}
