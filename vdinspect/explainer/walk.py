"""Walking a construct Struct: each field's offset (recorded while parsing), raw bytes,
value and meaning (the one-line comment the format module attached)."""

from __future__ import annotations

import sys
from typing import Any

import construct as cs

from ..errors import CorruptImage, InvalidArgument
from ..io import ByteSource
from .explanation import Explanation, Field, first_line

MAX_VARIABLE = 1 << 16  # bytes read for a structure whose size is known only by parsing
MAX_EXPANDED_ARRAY = 64  # arrays of structures longer than this are shown as one field
_TELL = "_vdinspect_pos{}"

# --- walking a construct Struct ------------------------------------------------------------


def _unwrap(sc: cs.Construct) -> cs.Construct:
    """The construct under any number of Renamed wrappers (names and docs)."""
    while isinstance(sc, cs.Renamed):
        sc = sc.subcon
    return sc


def _as_struct(con: cs.Construct) -> cs.Struct:
    base = _unwrap(con)
    if not isinstance(base, cs.Struct):
        raise InvalidArgument(f"explain() needs a construct Struct, not {type(base).__name__}")
    return base


def _instrument(struct: cs.Struct) -> cs.Struct:
    """A copy of ``struct`` with a Tell before every field and one at the end.

    Parsing it records each field's stream position; names (and so ``this.x``
    references) stay the same. Nested Structs and arrays of them are instrumented too.
    """
    parts: list[cs.Construct] = []
    for i, sc in enumerate(struct.subcons):
        parts.append(_TELL.format(i) / cs.Tell)
        parts.append(_instrument_field(sc))
    parts.append(_TELL.format(len(struct.subcons)) / cs.Tell)
    return cs.Struct(*parts)


def _instrument_field(sc: cs.Construct) -> cs.Construct:
    base = _unwrap(sc)
    new = None
    if isinstance(base, cs.Struct):
        new = _instrument(base)
    elif isinstance(base, cs.Array) and isinstance(_unwrap(base.subcon), cs.Struct):
        new = cs.Array(base.count, _instrument(_unwrap(base.subcon)), base.discard)
    if new is None:
        return sc
    return cs.Renamed(new, newname=sc.name, newdocs=sc.docs)


def _plain(v: Any) -> Any:
    """A parsed value as a plain Python value (lists for arrays, str for enums)."""
    if isinstance(v, cs.EnumIntegerString):
        return str(v)
    if isinstance(v, cs.Container):
        return {k: _plain(x) for k, x in v.items() if not k.startswith("_")}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _walk(
    struct: cs.Struct,
    parsed: cs.Container,
    data: bytes,
    base: int,
    prefix: str,
    depth: int,
    out: list[Field],
) -> None:
    for i, sc in enumerate(struct.subcons):
        a = parsed[_TELL.format(i)] - base
        b = parsed[_TELL.format(i + 1)] - base
        name = sc.name
        value = parsed.get(name) if name else None
        size = b - a
        if size <= 0 and (not name or value is None or value == b""):
            continue  # an absent conditional field, a zero-length padding
        label = prefix + (name or f"(padding at {a})")
        meaning = (sc.docs or "").strip() or ("reserved / padding" if not name else "")
        inner = _unwrap(sc)
        if isinstance(inner, cs.Struct) and isinstance(value, cs.Container):
            out.append(
                Field(
                    a,
                    size,
                    label,
                    data[a:b],
                    f"{len(inner.subcons)} fields",
                    meaning,
                    leaf=False,
                    depth=depth,
                )
            )
            _walk(inner, value, data, base, label + ".", depth + 1, out)
            continue
        if (
            isinstance(inner, cs.Array)
            and isinstance(_unwrap(inner.subcon), cs.Struct)
            and isinstance(value, list)
            and 0 < len(value) <= MAX_EXPANDED_ARRAY
        ):
            out.append(
                Field(
                    a,
                    size,
                    label,
                    data[a:b],
                    f"{len(value)} entries",
                    meaning,
                    leaf=False,
                    depth=depth,
                )
            )
            elem = _unwrap(inner.subcon)
            for j, item in enumerate(value):
                _walk(elem, item, data, base, f"{label}[{j}].", depth + 1, out)
            continue
        out.append(Field(a, size, label, data[a:b], _plain(value), meaning, depth=depth))


def explain_bytes(
    struct: cs.Construct,
    data: bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    host_file: str | None = None,
    host_offset: int = 0,
    description: str | None = None,
) -> Explanation:
    """Explain ``data`` (starting with the structure) field by field with ``struct``."""
    st = _as_struct(struct)
    data = bytes(data)
    name = name or struct_name(struct) or "structure"
    try:
        parsed = _instrument(st).parse(data)
    except cs.ConstructError as e:
        msg = f"{name} does not parse from these {len(data)} bytes: {first_line(e)}"
        if host_file is not None:
            raise CorruptImage(msg, path=host_file, structure=name, offset=host_offset) from e
        raise InvalidArgument(msg) from e
    end = parsed[_TELL.format(len(st.subcons))]
    fields: list[Field] = []
    _walk(st, parsed, data, 0, "", 0, fields)
    return Explanation(
        name,
        fields,
        data[:end],
        host_file=host_file,
        host_offset=host_offset,
        description=description,
    )


def static_size(struct: cs.Construct) -> int | None:
    try:
        return struct.sizeof()
    except (cs.SizeofError, KeyError, AttributeError, TypeError):
        return None


def explain_at(struct: cs.Construct, source: ByteSource, offset: int, **kw) -> Explanation:
    """Explain the structure at ``offset`` of a ByteSource (reads only its bytes)."""
    if not isinstance(offset, int) or not 0 <= offset < source.size:
        raise InvalidArgument(
            f"{source.name}: offset {offset!r} is outside the file ({source.size} bytes)"
        )
    n = static_size(struct)
    avail = source.size - offset
    if n is not None and n > avail:
        raise CorruptImage(
            f"the file ends {avail} bytes after the structure's start; it needs {n}",
            path=source.name,
            structure=kw.get("name") or struct_name(struct),
            offset=offset,
        )
    data = source.read(offset, n if n is not None else min(avail, MAX_VARIABLE))
    kw.setdefault("host_file", source.name)
    return explain_bytes(struct, data, host_offset=offset, **kw)


def struct_name(struct: cs.Construct) -> str | None:
    """The structure's name in its specification: the Struct's ``docs`` when a format
    module set one (``QCowHeaderFull.docs = "qcow2 header (version 3)"``), else its
    module-level name in vdinspect (``None`` if it has neither)."""
    docs = (getattr(struct, "docs", "") or "").strip()
    if docs:
        return docs.splitlines()[0]
    for mname, mod in list(sys.modules.items()):
        if not mname.startswith("vdinspect.") or mod is None:
            continue
        for k, v in vars(mod).items():
            if v is struct and not k.startswith("_"):
                return k
    return None
