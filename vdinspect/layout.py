"""Fast paths derived from the one construct declaration of an on-disk layout.

A format module declares each layout once, as a ``construct`` Struct whose field names are
the specification's. Hot loops cannot afford a construct parse per record, so they use a
``struct`` format or a numpy dtype; this module generates those from the Struct instead of
typing offsets and format letters again:

- :func:`struct_format` — a ``struct.Struct`` for the whole layout or for some fields
  (the bytes between them skipped), unpacked from the layout's start;
- :func:`field_format` — a ``struct.Struct`` of one field alone, to unpack at any offset;
- :func:`numpy_dtype` — a structured dtype with the spec's field names, for tables;
- :func:`offset_of` / :func:`size_of` — where a field is;
- :func:`flag_values` — the name -> value table of an ``Enum``/``FlagsEnum``;
  :func:`flag_names` — the names of the flags set in a value;
- :func:`plain` — the same Struct with ``Enum``/``FlagsEnum`` fields read as integers,
  for code that computes with the values (the explainer keeps the named view).

Only fixed-size layouts qualify: integers (``FormatField``), ``Bytes(n)``, ``Padding(n)``,
``Array(n, ...)`` (unpacked as its raw bytes) and nested Structs, possibly wrapped in
``Enum``/``FlagsEnum``/``Const``. Nested fields are named with a dot (``"s_header.h_magic"``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

import construct as cs

from .lazy import np

__all__ = [
    "Leaf",
    "leaves",
    "struct_format",
    "field_format",
    "numpy_dtype",
    "offset_of",
    "size_of",
    "fields",
    "field_slice",
    "scalar_dtype",
    "flag_values",
    "flag_names",
    "plain",
]


@dataclass(frozen=True, slots=True)
class Leaf:
    """One fixed-size field: dotted name, offset and size in bytes, and its struct code
    (``"I"``, ``"16s"``, ``"4H"``...) with the byte order (``"<"``, ``">"`` or ``""``)."""

    name: str
    offset: int
    size: int
    code: str
    order: str
    count: int = 1  # values the code yields (0 for padding)
    item: str = ""  # an Array of integers: the order and code of one element ("<Q")
    items: int = 0  # an Array of integers: its element count


def _unwrap(sc: cs.Construct) -> cs.Construct:
    """Strip names, docs and value adapters (Enum, FlagsEnum, Const) around a field."""
    while isinstance(sc, (cs.Renamed, cs.Enum, cs.FlagsEnum, cs.Const)):
        sc = sc.subcon
    return sc


def _scalar(sc: cs.Construct, where: str) -> tuple[str, str, int]:
    inner = _unwrap(sc)
    if not isinstance(inner, cs.FormatField):
        raise TypeError(f"{where}: not a fixed-size integer field ({inner!r})")
    order, letter = inner.fmtstr[0], inner.fmtstr[1:]
    return letter, ("" if inner.length == 1 else order), inner.length


def leaves(st: cs.Construct, prefix: str = "", base: int = 0) -> list[Leaf]:
    """The fields of a fixed-size Struct, flattened, in order."""
    return list(_leaves(st, prefix, base))


@cache
def _leaves(st: cs.Construct, prefix: str, base: int) -> tuple[Leaf, ...]:
    """:func:`leaves`, computed once per layout (the probes derive many fields from one)."""
    out: list[Leaf] = []
    pos = base
    for sc in _unwrap(st).subcons:
        name = prefix + (sc.name or f"_pad{pos}")
        inner = _unwrap(sc)
        if isinstance(inner, cs.Struct):
            sub = leaves(inner, name + ".", pos)
            out += sub
            pos = sub[-1].offset + sub[-1].size if sub else pos
        elif isinstance(inner, cs.FormatField):
            letter, order, size = _scalar(inner, name)
            out.append(Leaf(name, pos, size, letter, order))
            pos += size
        elif isinstance(inner, cs.Bytes) and isinstance(inner.length, int):
            out.append(Leaf(name, pos, inner.length, f"{inner.length}s", ""))
            pos += inner.length
        elif isinstance(inner, cs.Padded) and isinstance(inner.length, int):
            out.append(Leaf(name, pos, inner.length, f"{inner.length}x", "", 0))
            pos += inner.length
        elif isinstance(inner, cs.Array) and isinstance(inner.count, int):
            size = inner.count * inner.subcon.sizeof()
            elem = _unwrap(inner.subcon)
            if isinstance(elem, cs.FormatField):  # integers: their codes for ``arrays=True``
                letter, order, _ = _scalar(elem, name)
                out.append(Leaf(name, pos, size, f"{size}s", "", 1, order + letter, inner.count))
            else:
                out.append(Leaf(name, pos, size, f"{size}s", ""))
            pos += size
        else:
            raise TypeError(f"{name}: not a fixed-size field ({inner!r})")
    return tuple(out)


def _order(picked: list[Leaf], arrays: bool = False) -> str:
    orders = {x.order for x in picked if x.order}
    if arrays:
        orders |= {x.item[0] for x in picked if len(x.item) > 1}
    if len(orders) > 1:
        raise TypeError("fields of mixed byte order")
    return orders.pop() if orders else "<"


def _find(all_leaves: list[Leaf], name: str) -> Leaf:
    for x in all_leaves:
        if x.name == name:
            return x
    raise KeyError(name)


@cache
def struct_format(st: cs.Construct, *names: str, upto: str | None = None,
                  order: str | None = None, arrays: bool = False) -> struct.Struct:
    """A ``struct.Struct`` for ``st`` (all fields) or for ``names`` only (in layout order;
    the bytes before and between them skipped), unpacked from the layout's first byte.

    ``upto`` stops before that field (a header's older, shorter version); ``order`` reads
    every field in that byte order (XFS keeps a little-endian CRC inside big-endian
    headers: it then reads byte-swapped); ``arrays`` unpacks an Array of integers as its
    values, one per element, instead of its raw bytes."""
    every = leaves(st)
    if upto is not None:
        every = every[: every.index(_find(every, upto))]
    picked = every if not names else [_find(every, n) for n in names]
    if any(b.offset < a.offset + a.size for a, b in zip(picked, picked[1:])):
        raise ValueError("fields must be given in layout order")
    parts = []
    pos = 0
    for x in picked:
        if x.offset > pos:
            parts.append(f"{x.offset - pos}x")
        parts.append(f"{x.items}{x.item[-1]}" if arrays and x.item else x.code)
        pos = x.offset + x.size
    return struct.Struct((order or _order(picked, arrays)) + "".join(parts))


def field_format(st: cs.Construct, name: str, *, order: str | None = None) -> struct.Struct:
    """A ``struct.Struct`` of field ``name`` alone (no bytes skipped before it): to unpack
    that field at its place in a record, or one field type shared by many layouts (a CRC
    word) at any offset."""
    x = _find(leaves(st), name)
    return struct.Struct((order or x.order or "<") + x.code)


@cache
def numpy_dtype(st: cs.Construct, itemsize: int | None = None) -> np.dtype:
    """A structured dtype of ``st`` named as its fields; with ``itemsize``, a record of
    that size holding the fields that fit in it (padding fields are left out)."""
    every = [x for x in leaves(st) if x.count]
    if itemsize is not None:
        every = [x for x in every if x.offset + x.size <= itemsize]
    formats = []
    for x in every:  # each field in its own byte order (an XFS CRC is little-endian)
        if x.code.endswith("s"):
            formats.append(f"|S{x.size}")
        else:
            letter = x.code[-1]
            kind = "f" if letter in "efd" else ("u" if letter.isupper() or letter == "?" else "i")
            formats.append(f"{x.order or '<'}{kind}{x.size}")
    spec = dict(
        names=[x.name for x in every],
        formats=formats,
        offsets=[x.offset for x in every],
        itemsize=itemsize if itemsize is not None else _unwrap(st).sizeof(),
    )
    return np.dtype(spec)


def offset_of(st: cs.Construct, name: str) -> int:
    """Byte offset of field ``name`` (dotted when nested) from the start of ``st``; the
    fields after it may be of variable size (only those before it must be fixed)."""
    try:
        return _find(leaves(st), name).offset
    except TypeError:  # a variable-size field somewhere: count the fields before ``name``
        pos = 0
        for sc in _unwrap(st).subcons:
            if sc.name == name:
                return pos
            pos += sc.sizeof()
        raise KeyError(name) from None


def fields(st: cs.Construct) -> list[tuple[str, int, int]]:
    """(name, byte offset, byte length) of each field of a fixed-size Struct, in order."""
    return [(x.name, x.offset, x.size) for x in leaves(st)]


def field_slice(st: cs.Construct, name: str) -> slice:
    """The byte range of field ``name`` inside one record, as a slice."""
    x = _find(leaves(st), name)
    return slice(x.offset, x.offset + x.size)


def scalar_dtype(field: cs.Construct) -> np.dtype:
    """The numpy dtype of one integer (or ``Bytes(n)``) field: ``Int16ul`` -> ``<u2``."""
    inner = _unwrap(field)
    if isinstance(inner, cs.Bytes) and isinstance(inner.length, int):
        return np.dtype(f"S{inner.length}")
    letter, order, size = _scalar(inner, repr(field))
    kind = "f" if letter in "efd" else ("u" if letter.isupper() or letter == "?" else "i")
    return np.dtype(f"{order or '<'}{kind}{size}")


def size_of(st: cs.Construct, name: str) -> int:
    """Size in bytes of field ``name`` (dotted when nested)."""
    return _find(leaves(st), name).size


def flag_values(codes: cs.Construct) -> dict[str, int]:
    """The name -> value table of a ``FlagsEnum`` or ``Enum`` (seen through a rename)."""
    while not isinstance(codes, (cs.FlagsEnum, cs.Enum)):
        codes = codes.subcon
    if isinstance(codes, cs.FlagsEnum):
        return dict(codes.flags)
    return {str(k): v for k, v in codes.encmapping.items()}


def flag_names(codes: cs.Construct, value: int, *, unknown: bool = False) -> list[str]:
    """The names of the flags of a ``FlagsEnum`` set in ``value``, in declaration order;
    with ``unknown``, the bits no flag names follow as one hex number."""
    out, known = [], 0
    for name, bit in flag_values(codes).items():
        known |= bit
        if value & bit:
            out.append(name)
    if unknown and value & ~known:
        out.append(hex(value & ~known))
    return out


def plain(st: cs.Construct) -> cs.Struct:
    """``st`` with every ``Enum``/``FlagsEnum`` field read as its integer (names and
    docs kept): the view for code that computes with codes and flags."""

    def strip(sc: cs.Construct) -> cs.Construct:
        if isinstance(sc, cs.Renamed):
            return cs.Renamed(strip(sc.subcon), newname=sc.name, newdocs=sc.docs)
        if isinstance(sc, (cs.Enum, cs.FlagsEnum)):
            return strip(sc.subcon)
        if isinstance(sc, cs.Struct):
            return cs.Struct(*(strip(x) for x in sc.subcons))
        if isinstance(sc, cs.Array):
            return cs.Array(sc.count, strip(sc.subcon))
        return sc

    return strip(st)
