"""Explaining an image's structures: finding the Struct of its header, locating a
structure by name in ``structures()``, and tables decoded entry by entry."""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any

import construct as cs

from ..errors import InvalidArgument, VDInspectError
from ..io import ByteSource, FileSource
from .explanation import Explanation, Field
from .walk import MAX_VARIABLE, explain_at, static_size, struct_name

MAX_CANDIDATES = 64  # structures() rows tried when locating a header

if TYPE_CHECKING:
    from ..containers.base import Image

# --- finding Structs ---------------------------------------------------------------------


def _modules_for(obj: Any) -> list[Any]:
    """The modules whose Structs describe ``obj``: its class's modules, and the sibling
    modules when the format is a package of its own (``containers/vmdk/``)."""
    mods: list[Any] = []
    for klass in type(obj).__mro__:
        name = klass.__module__
        if not name.startswith("vdinspect."):
            continue
        pkg = name.rsplit(".", 1)[0]
        siblings = (
            []
            if pkg.count(".") < 2
            else sorted(m for m in list(sys.modules) if m.startswith(pkg + "."))
        )
        for mname in [name] + siblings:
            mod = sys.modules.get(mname)
            if mod is not None and mod not in mods and mname != "vdinspect.explainer":
                mods.append(mod)
    return mods


def _module_structs(mods: list[Any]) -> dict[str, cs.Struct]:
    out: dict[str, cs.Struct] = {}
    for mod in mods:
        for k, v in vars(mod).items():
            if isinstance(v, cs.Struct) and not k.startswith("_") and k not in out:
                out[k] = v
    return out


def _field_names(struct: cs.Struct) -> list[str]:
    return [sc.name for sc in struct.subcons if sc.name]


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _header_keys(header: Any) -> list[str]:
    return [k for k in header if not k.startswith("_")]


def _candidate_header_structs(img: Image) -> list[cs.Struct]:
    """Structs of the image's modules whose fields all appear in ``img.header``, best first."""
    keys = set(_header_keys(img.header))
    scored = []
    for _name, st in _module_structs(_modules_for(img)).items():
        names = _field_names(st)
        if len(names) < 2 or not set(names) <= keys:
            continue
        scored.append((len(names), st))
    scored.sort(key=lambda t: -t[0])
    return [st for _n, st in scored]


def _matches(parsed: cs.Container, header: Any, struct: cs.Struct) -> bool:
    """True when every field the reader kept has the value parsed here (at least half)."""
    names = [n for n in _field_names(struct) if n in header and parsed.get(n) is not None]
    if 2 * len(names) < len(_field_names(struct)):
        return False
    return all(parsed[n] == header[n] for n in names)


class _Sources:
    """Host files of an image by name: the image's own open sources, else opened here."""

    def __init__(self, img: Image) -> None:
        self.img = img
        self.opened: list[FileSource] = []

    def get(self, host_file: str | None) -> ByteSource:
        img = self.img
        if host_file is None or _same_file(host_file, img.path):
            return img.file
        owned = img.owned_sources()
        for src in [img.file, *owned]:
            if _same_file(getattr(src, "name", None), host_file):
                return src
        src = FileSource(host_file)
        self.opened.append(src)
        return src

    def close(self) -> None:
        for s in self.opened:
            s.close()


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _locations(img: Image) -> list[tuple[str | None, int, str]]:
    """Where a header may be: offset 0 of the image file, then header/footer rows first."""

    def rank(r: dict) -> int:
        name = str(r.get("name", "")).lower()
        return 0 if name in ("header", "footer") else 2 if re.search("header|footer", name) else 3

    rows = sorted(img.structure_rows(), key=rank)
    out = [
        (r.get("host_file"), r.get("host_offset"), str(r.get("name")))
        for r in rows[:MAX_CANDIDATES]
    ]
    out.insert(sum(1 for r in rows[:MAX_CANDIDATES] if rank(r) == 0), (None, 0, "header"))
    return [(f, off, n) for f, off, n in out if isinstance(off, int) and off >= 0]


def _try_parse(struct: cs.Struct, src: ByteSource, off: int) -> cs.Container | None:
    n = static_size(struct)
    if off >= src.size or (n is not None and off + n > src.size):
        return None
    try:
        return struct.parse(
            src.read(off, n if n is not None else min(src.size - off, MAX_VARIABLE))
        )
    except (cs.ConstructError, VDInspectError, KeyError, AttributeError, TypeError, ValueError):
        return None  # not this structure: a probe, so any failure to parse just says no


def explain_image(img: Image, what: Any = "header", *, offset: int | None = None) -> Explanation:
    """Explain a structure of one image file (a layer): ``"header"``, a Struct or its name.

    ``what`` may also name a row of ``structures()`` ("footer", "dynamic disk header",
    "header 2", ...): its Struct is the format's Struct of that name, or the header's
    Struct when the bytes there start like the header.
    """
    delegate = img.explain_delegate
    inner = delegate(what) if delegate is not None and offset is None else None
    if inner is not None:  # a package: its disk image explains its own structures
        return explain_image(inner, what, offset=offset)
    sources = _Sources(img)
    try:
        return _explain_image(img, what, offset, sources)
    finally:
        sources.close()


def _explain_image(img: Image, what: Any, offset: int | None, sources: _Sources) -> Explanation:
    label = f"{img.path}: {img.format}"
    if isinstance(what, cs.Construct):
        if offset is None:
            raise InvalidArgument(f"{label}: explain(Struct) needs offset= (a host offset)")
        return explain_at(what, img.file, offset, description=f"{img.format} structure")
    if not isinstance(what, str):
        raise InvalidArgument(
            f"explain() takes 'header', a structure name or a construct "
            f"Struct, not {type(what).__name__}"
        )
    structs = _module_structs(_modules_for(img))
    if what == "header" and offset is None:
        return _explain_header(img, sources)
    if what in structs:  # a Struct by its name in the format module
        st = structs[what]
        if offset is None:
            row = _row_named(img, lambda n: _norm(n) == _norm(what))
            if row is None:
                raise InvalidArgument(f"{label}: say where the {what} is with offset=")
            return explain_at(
                st,
                sources.get(row.get("host_file")),
                row["host_offset"],
                name=what,
                description=row.get("description"),
            )
        return explain_at(st, img.file, offset, name=what)
    row = _row_named(img, lambda n: n.lower() == what.lower())
    if row is None and what != "header":
        raise InvalidArgument(
            f"{label}: nothing called {what!r} to explain; try 'header', "
            f"a structure of structures() or one of: {', '.join(structs)}"
        )
    if row is None:  # "header" with an explicit offset
        row = dict(name="header", host_file=None, host_offset=offset, description=None)
    src = sources.get(row.get("host_file"))
    off = row["host_offset"] if offset is None else offset
    table = _table_layout(img, str(row["name"]))
    if table is not None:
        return _explain_table(img, row, src, off, *table)
    for k, st in structs.items():  # "name" or "name: which one" (tar header: a member)
        if _norm(k) in (_norm(row["name"]), _norm(str(row["name"]).split(":")[0])):
            return explain_at(st, src, off, name=k, description=row.get("description"))
    header_struct = _header_struct(img)
    if header_struct is not None:
        parsed = _try_parse(header_struct, src, off)
        names = _field_names(header_struct)
        if parsed is not None and names and parsed[names[0]] == img.header[names[0]]:
            return explain_at(
                header_struct,
                src,
                off,
                name=_struct_label(img, header_struct),
                description=row.get("description"),
            )
    return explain_region(row, src, off)


MAX_REGION_BYTES = 256  # bytes of a region with no field layout shown in its hexdump
MAX_REGION_TEXT = 4096  # characters of a text region (a descriptor, a file name) shown


def explain_region(row: dict, src: ByteSource, off: int) -> Explanation:
    """A ``structures()`` row no Struct describes (guest data, compressed clusters, a text
    descriptor, a name): its place, its length, and its first bytes, as text when they are
    text; the row's description says what it is."""
    length = row.get("length")
    length = int(length) if isinstance(length, int) and length >= 0 else MAX_REGION_BYTES
    avail = max(0, min(length, src.size - off)) if 0 <= off <= src.size else 0
    head = src.read(off, min(avail, MAX_REGION_TEXT)) if avail else b""
    text = head.rstrip(b"\0")
    desc = row.get("description") or ""
    if text and all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        shown = text.decode("ascii")
        field = Field(0, len(head), "text", head[:MAX_REGION_BYTES], shown,
                      f"{desc}; text, {len(text)} characters"
                      + (" (the first ones)" if avail > len(head) else ""))
    else:
        field = Field(0, avail, "bytes", head[:MAX_REGION_BYTES], f"{avail} bytes",
                      f"{desc}; no field layout (data or an opaque region): the first "
                      f"{min(avail, MAX_REGION_BYTES)} bytes are shown")
    return Explanation(str(row.get("name")), [field], head[:MAX_REGION_BYTES],
                       host_file=getattr(src, "name", None), host_offset=off, description=desc)


def _row_named(img: Image, pred) -> dict | None:
    for r in img.structure_rows():
        if pred(str(r.get("name", ""))):
            return r
    return None


def _header_struct(img: Image) -> cs.Struct | None:
    declared = img.header_struct
    if isinstance(declared, cs.Construct):
        return declared
    if img.header is None:
        return None
    found = _candidate_header_structs(img)
    return found[0] if found else None


def _struct_label(img: Image, st: cs.Construct) -> str:
    return struct_name(st) or f"{img.format} header"


def _explain_header(img: Image, sources: _Sources) -> Explanation:
    header = img.header
    label = f"{img.path}: {img.format}"
    if header is None:
        raise InvalidArgument(
            f"{label}: this image has no binary header to explain "
            "(its structures() rows may be explained by name)"
        )
    declared = img.header_struct
    if declared is not None and not isinstance(declared, cs.Construct):
        raise InvalidArgument(f"{label}: header_struct is not a construct Struct")
    candidates = [declared] if declared is not None else _candidate_header_structs(img)
    if not candidates:
        raise InvalidArgument(
            f"{label}: no Struct of the format module matches the parsed header; the reader "
            "should declare header_struct (and header_offset) for explain()"
        )
    fixed = img.header_offset
    if declared is not None and isinstance(fixed, int):
        src = sources.get(img.header_file)
        return explain_at(
            declared,
            src,
            fixed,
            name=_struct_label(img, declared),
            description=f"{img.format} header",
        )
    places = _locations(img)
    for st in candidates:
        for host_file, off, row in places:
            src = sources.get(host_file)
            parsed = _try_parse(st, src, off)
            if parsed is not None and _matches(parsed, header, st):
                desc = f"{img.format} header" + (
                    f" (the {row!r} structure)" if row != "header" else ""
                )
                return explain_at(st, src, off, name=_struct_label(img, st), description=desc)
    if declared is not None:  # declared but the reader changed values: trust offset 0
        return explain_at(
            declared,
            img.file,
            0,
            name=_struct_label(img, declared),
            description=f"{img.format} header (the reader's values may differ)",
        )
    raise InvalidArgument(
        f"{label}: could not locate the bytes of the header (no candidate offset parses to "
        "the values the reader holds); the reader should declare header_offset"
    )



# --- tables: one row per entry, decoded as the format's specification says ------------

MAX_TABLE_ROWS = 256  # entries shown of a table (the first ones)


def _table_layout(img: Image, name: str):
    """(dtype, describe, stride) for a structure that is a table of entries, else None: the
    format says (``Image.table_layout``)."""
    layout = img.table_layout(name)
    if layout is None:
        return None
    return layout.dtype, (lambda _img, v, f=layout.describe: f(v)), layout.stride


def _explain_table(img: Image, row: dict, src: ByteSource, off: int, dtype: str, describe,
                   stride: int | None) -> Explanation:
    """A table as rows: one per entry (the first MAX_TABLE_ROWS), raw and decoded."""
    import numpy as np

    width = int(dtype[2:])
    stride = stride or width
    length = int(row.get("length") or 0)
    n = min(length // stride, MAX_TABLE_ROWS)
    data = src.read(off, min(n * stride, max(0, src.size - off))) if n else b""
    n = len(data) // stride
    values = np.frombuffer(data[: n * stride], dtype=np.dtype(dtype)).tolist()[:: stride // width]
    fields = []
    for i, v in enumerate(values):
        raw = data[i * stride : i * stride + stride]
        meaning = describe(img, v)
        if stride > width:  # QCOW2 extended L2: the entry, then its subcluster bitmap
            bitmap = int.from_bytes(raw[width:], "big")
            meaning += (f"; subclusters allocated {bitmap & 0xFFFFFFFF:#010x}, "
                        f"zero {bitmap >> 32:#010x}")
        fields.append(Field(i * stride, stride, f"[{i}]", raw, v, meaning))
    total = length // stride
    more = f"; the first {n} of {total} entries" if total > n else ""
    return Explanation(str(row["name"]), fields, data, host_file=row.get("host_file"),
                       host_offset=off, description=f"{row.get('description') or ''}{more}")

