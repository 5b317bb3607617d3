"""The structure explorer: what each byte of an on-disk structure means.

``explain(QCowHeader, data)`` or ``disk.explain("header")`` answers with an
:class:`Explanation`: one row per field (offset, size, field, raw, value, meaning) and an
HTML hexdump with each field's bytes coloured. The rows come from the ``construct``
Struct that parsed the structure: field names are the spec's names, meanings are the
one-line comments the format modules attach with ``"name" / Int32ub * "comment"``, and
offsets are the stream positions recorded while parsing (so variable-length and
conditional fields are placed exactly, not guessed from ``sizeof()``).

Finding the Struct of an image's header: an :class:`~vdinspect.containers.base.Image`
may declare ``header_struct`` (a Struct, or a property returning one) and
``header_offset`` (host offset, default: found by checking candidates). Without them the
module of the image class is searched for the Struct whose fields are the header's
fields, and the structure is located by parsing the candidate offsets that
``structures()`` names and keeping the one whose values equal ``img.header``.
"""

from __future__ import annotations

import html
import os
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import construct as cs

from .errors import CorruptImage, InvalidArgument, VDInspectError
from .io import ByteSource, FileSource

if TYPE_CHECKING:
    import pandas as pd

    from .containers.base import Image
    from .disk import Disk

COLUMNS = ["offset", "size", "field", "raw", "value", "meaning"]
MAX_VARIABLE = 1 << 16  # bytes read for a structure whose size is known only by parsing
MAX_EXPANDED_ARRAY = 64  # arrays of structures longer than this are shown as one field
MAX_CANDIDATES = 64  # structures() rows tried when locating a header
_TELL = "_vdinspect_pos{}"
#: background colours of the fields in the hexdump (light, and distinct side by side)
FIELD_COLOURS = (
    "#cfe2f3",
    "#fce5cd",
    "#d9ead3",
    "#ead1dc",
    "#fff2cc",
    "#d0e0e3",
    "#f4cccc",
    "#d9d2e9",
)


@dataclass(slots=True)
class Field:
    """One row of an explanation: where a field lies (relative to the structure)."""

    offset: int
    size: int
    field: str
    raw: bytes
    value: Any
    meaning: str
    leaf: bool = True  # False for a group row (a nested structure or an array of them)
    depth: int = 0


class Explanation:
    """What a structure's bytes mean: ``.frame`` (a DataFrame), ``.hexdump_html()``.

    ``offset`` in the rows is relative to the start of the structure; the structure
    itself starts at ``host_offset`` of ``host_file`` (when it came from a file).
    """

    def __init__(
        self,
        name: str,
        fields: list[Field],
        data: bytes,
        *,
        host_file: str | None = None,
        host_offset: int = 0,
        description: str | None = None,
    ) -> None:
        self.name = name
        self.fields = fields
        self.data = bytes(data)
        self.host_file = host_file
        self.host_offset = host_offset
        self.description = description
        self._frame = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per field: offset, size, field, raw (hex), value, meaning."""
        if self._frame is None:
            import pandas as pd

            rows = [
                dict(
                    offset=f.offset,
                    size=f.size,
                    field=f.field,
                    raw=_hex(f.raw),
                    value=f.value,
                    meaning=f.meaning,
                )
                for f in self.fields
            ]
            df = pd.DataFrame(rows, columns=COLUMNS)
            df["offset"] = df["offset"].astype("int64")
            df["size"] = df["size"].astype("int64")
            for col in ("field", "raw", "meaning"):
                df[col] = df[col].astype("string")
            df["value"] = df["value"].astype(object)
            self._frame = df
        return self._frame

    def __getitem__(self, field: str) -> Any:
        """The decoded value of a field by its (dotted) name."""
        for f in self.fields:
            if f.field == field:
                return f.value
        raise KeyError(field)

    def _where(self) -> str:
        if self.host_file is None:
            return f"{self.size} bytes"
        return f"{self.size} bytes at offset {self.host_offset:#x} of {self.host_file}"

    def hexdump_html(self, width: int = 16) -> str:
        """The structure's bytes as an HTML hexdump, each field coloured, with a tooltip."""
        owner = [-1] * len(self.data)
        leaves = [f for f in self.fields if f.leaf and f.size > 0]
        for k, f in enumerate(leaves):
            for i in range(f.offset, min(f.offset + f.size, len(owner))):
                owner[i] = k
        out = [
            '<div class="vdinspect-hexdump"><pre style="font-family:monospace;'
            'line-height:1.35;margin:0">',
            f"<b>{html.escape(self.name)}</b>: {html.escape(self._where())}\n",
        ]
        for line in range(0, len(self.data), width):
            addr = self.host_offset + line
            cells, text = [], []
            for i in range(line, min(line + width, len(self.data))):
                b = self.data[i]
                ch = chr(b) if 0x20 <= b < 0x7F else "."
                k = owner[i]
                if k < 0:
                    cells.append(f"{b:02x}")
                    text.append(html.escape(ch))
                    continue
                f = leaves[k]
                tip = html.escape(
                    f"{f.field} (+{f.offset}, {f.size} B) = {_short(f.value)}"
                    f"{': ' + f.meaning if f.meaning else ''}",
                    quote=True,
                )
                style = f"background:{FIELD_COLOURS[k % len(FIELD_COLOURS)]}"
                cells.append(
                    f'<span title="{tip}" data-field="{html.escape(f.field)}" '
                    f'style="{style}">{b:02x}</span>'
                )
                text.append(f'<span title="{tip}" style="{style}">{html.escape(ch)}</span>')
            pad = "   " * (width - len(cells))
            out.append(f"{addr:08x}  {' '.join(cells)}{pad}  {''.join(text)}\n")
        out.append("</pre>")
        names = ", ".join(
            f'<span style="background:{FIELD_COLOURS[k % len(FIELD_COLOURS)]}">'
            f"{html.escape(f.field)}</span>"
            for k, f in enumerate(leaves)
        )
        out.append(f'<div style="font-size:smaller">fields: {names}</div></div>')
        return "".join(out)

    def _repr_html_(self) -> str:
        head = f"<h4>{html.escape(self.name)}</h4><p>{html.escape(self._where())}"
        if self.description:
            head += f" &mdash; {html.escape(self.description)}"
        head += "</p>"
        view = self.frame.copy()
        view["value"] = [_short(v) for v in view["value"]]
        indent = {f.field: f.depth for f in self.fields}
        view["field"] = ["\u00a0\u00a0" * indent.get(n, 0) + n for n in view["field"]]
        return head + view.to_html(index=False) + self.hexdump_html()

    def __str__(self) -> str:
        lines = [f"{self.name}: {self._where()}"]
        rows = [
            (
                f"{f.offset:>6}",
                f"{f.size:>5}",
                "  " * f.depth + f.field,
                _hex(f.raw, 8),
                _short(f.value, 40),
                f.meaning,
            )
            for f in self.fields
        ]
        head = ("offset", " size", "field", "raw", "value", "meaning")
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head[:5])]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        lines.append(fmt.format(*head))
        lines.extend(fmt.format(*r).rstrip() for r in rows)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Explanation {self.name}: {len(self.fields)} fields, {self.size} bytes>"


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
        msg = f"{name} does not parse from these {len(data)} bytes: {_first_line(e)}"
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


def _static_size(struct: cs.Construct) -> int | None:
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
    n = _static_size(struct)
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


def struct_name(struct: cs.Construct) -> str | None:
    """The module-level name of a Struct of vdinspect (``None`` if it has none)."""
    for mname, mod in list(sys.modules.items()):
        if not mname.startswith("vdinspect.") or mod is None:
            continue
        for k, v in vars(mod).items():
            if v is struct and not k.startswith("_"):
                return k
    return None


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
        owned = img._owned_sources() if hasattr(img, "_owned_sources") else []
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

    rows = sorted(img.structures(), key=rank)
    out = [
        (r.get("host_file"), r.get("host_offset"), str(r.get("name")))
        for r in rows[:MAX_CANDIDATES]
    ]
    out.insert(sum(1 for r in rows[:MAX_CANDIDATES] if rank(r) == 0), (None, 0, "header"))
    return [(f, off, n) for f, off, n in out if isinstance(off, int) and off >= 0]


def _try_parse(struct: cs.Struct, src: ByteSource, off: int) -> cs.Container | None:
    n = _static_size(struct)
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
    for k, st in structs.items():
        if _norm(k) == _norm(row["name"]):
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
    raise InvalidArgument(f"{label}: no Struct describes the {row['name']!r} structure")


def _row_named(img: Image, pred) -> dict | None:
    for r in img.structures():
        if pred(str(r.get("name", ""))):
            return r
    return None


def _header_struct(img: Image) -> cs.Struct | None:
    declared = getattr(img, "header_struct", None)
    if isinstance(declared, cs.Construct):
        return declared
    if getattr(img, "header", None) is None:
        return None
    found = _candidate_header_structs(img)
    return found[0] if found else None


def _struct_label(img: Image, st: cs.Construct) -> str:
    return struct_name(st) or f"{img.format} header"


def _explain_header(img: Image, sources: _Sources) -> Explanation:
    header = getattr(img, "header", None)
    label = f"{img.path}: {img.format}"
    if header is None:
        raise InvalidArgument(
            f"{label}: this image has no binary header to explain "
            "(its structures() rows may be explained by name)"
        )
    declared = getattr(img, "header_struct", None)
    if declared is not None and not isinstance(declared, cs.Construct):
        raise InvalidArgument(f"{label}: header_struct is not a construct Struct")
    candidates = [declared] if declared is not None else _candidate_header_structs(img)
    if not candidates:
        raise InvalidArgument(
            f"{label}: no Struct of the format module matches the parsed header; the reader "
            "should declare header_struct (and header_offset) for explain()"
        )
    fixed = getattr(img, "header_offset", None)
    if declared is not None and isinstance(fixed, int):
        src = sources.get(getattr(img, "header_file", None))
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


# --- entry points ---------------------------------------------------------------------------


def explain_disk(
    disk: Disk, what: Any = "header", *, layer: int | None = None, offset: int | None = None
) -> Explanation:
    """``disk.explain(what)``: a structure of the top layer (or of ``layer``)."""
    from .chain import MissingLayer
    from .disk import _layer_index

    k = len(disk.chain.layers) - 1 if layer is None else _layer_index(disk.chain, layer)
    img = disk.chain.layers[k]
    if isinstance(img, MissingLayer):
        raise InvalidArgument(f"layer {k} ({img.path}) is missing: nothing to explain")
    return explain_image(img, what, offset=offset)


def explain(
    obj: Any,
    data: Any = None,
    *,
    offset: int | None = None,
    what: str = "header",
    layer: int | None = None,
) -> Explanation:
    """Explain an on-disk structure field by field.

    - ``explain(Struct, data)``: parse ``data`` (bytes, or a ByteSource read at ``offset``)
      with a construct Struct, e.g. ``explain(qcow2.QCowHeader, raw)``;
    - ``explain(disk)`` / ``explain(disk, what="footer", layer=0)``: a structure of a
      :class:`~vdinspect.disk.Disk` (its top layer by default) or of an image;
    - ``explain("image.qcow2")``: open the file read-only and explain its header.
    """
    from .containers.base import Image
    from .disk import Disk

    if isinstance(obj, cs.Construct):
        if data is None:
            raise InvalidArgument("explain(Struct, data): give the bytes to decode")
        if isinstance(data, ByteSource):
            return explain_at(obj, data, offset or 0)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument(f"data must be bytes or a ByteSource, not {type(data).__name__}")
        data = bytes(data)[offset or 0 :]
        return explain_bytes(obj, data)
    if data is not None:
        raise InvalidArgument("data= is only for explain(Struct, data)")
    if isinstance(obj, Disk):
        return explain_disk(obj, what, layer=layer, offset=offset)
    if isinstance(obj, Image):
        return explain_image(obj, what, offset=offset)
    if isinstance(obj, str | os.PathLike):
        from .disk import Disk as _Disk

        disk = _Disk.open(obj)
        try:
            return explain_disk(disk, what, layer=layer, offset=offset)
        finally:
            disk.close()
    raise InvalidArgument(
        f"cannot explain a {type(obj).__name__}: give a Disk, an image, a "
        "path or a construct Struct with its bytes"
    )


# --- formatting -----------------------------------------------------------------------------


def _hex(b: bytes, limit: int = 16) -> str:
    if len(b) <= limit:
        return b.hex(" ")
    return f"{b[:limit].hex(' ')} … ({len(b)} bytes)"


def _short(v: Any, limit: int = 60) -> str:
    if isinstance(v, bytes):
        if v and not v.strip(b"\0"):
            return f"zeros ({len(v)} bytes)"
        s = repr(v[:limit]) + ("…" if len(v) > limit else "")
    elif isinstance(v, bool):
        s = str(v)
    elif isinstance(v, int):
        s = f"{v} ({v:#x})" if v > 9 else str(v)
    else:
        s = str(v)
    return s if len(s) <= limit + 8 else s[: limit + 7] + "…"


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# --- tables: one row per entry, decoded as the format's specification says ------------

MAX_TABLE_ROWS = 256  # entries shown of a table (the first ones)


def _qcow2_l1(img: Image, v: int) -> str:
    off = v & 0x00FFFFFFFFFFFE00
    if not off:
        return "no L2 table: the whole range is unallocated here"
    return f"L2 table at {off:#x}" + ("; COPIED (refcount 1)" if v >> 63 else "")


def _qcow2_l2(img: Image, v: int) -> str:
    if v >> 62 & 1:
        x = 62 - (img.cluster_bits - 8)
        host = v & ((1 << x) - 1)
        sectors = ((v >> x) & ((1 << (img.cluster_bits - 8)) - 1)) + 1
        return f"compressed cluster at {host:#x}, {sectors} sector(s)"
    off = v & 0x00FFFFFFFFFFFE00
    if v & 1:
        return "zero cluster" + (f" (preallocated at {off:#x})" if off else "")
    if not off:
        return "unallocated: read from the backing file (or zeros)"
    return f"data cluster at {off:#x}" + ("; COPIED (refcount 1)" if v >> 63 else "")


def _qcow2_reftable(img: Image, v: int) -> str:
    off = v & 0xFFFFFFFFFFFFFE00
    return f"refcount block at {off:#x}" if off else "no refcount block"


def _qcow1_l2(img: Image, v: int) -> str:
    if v >> 63:
        return "compressed cluster"
    return f"data cluster at {v:#x}" if v else "unallocated: read from the backing file"


def _sector_pointer(what: str, empty: str):
    def describe(img: Image, v: int) -> str:
        return f"{what} at sector {v} ({v * 512:#x})" if v else empty
    return describe


def _vmdk_gte(img: Image, v: int) -> str:
    if v == 0:
        return "unallocated: read from the parent (or zeros)"
    if v == 1:
        return "zeroed grain (reads as zeros)"
    return f"grain at sector {v} ({v * 512:#x})"


def _vhd_bat(img: Image, v: int) -> str:
    return "unallocated block" if v == 0xFFFFFFFF else \
        f"block (bitmap, then data) at sector {v} ({v * 512:#x})"


def _vhdx_bat(img: Image, v: int) -> str:
    from .containers.vhdx import describe_bat_entry

    return describe_bat_entry(v)


def _vdi_map(img: Image, v: int) -> str:
    if v == 0xFFFFFFFF:
        return "free: read from the parent (or zeros)"
    if v == 0xFFFFFFFE:
        return "zero block"
    return f"data block number {v}"


def _parallels_bat(img: Image, v: int) -> str:
    return f"cluster at offset unit {v}" if v else "unallocated cluster"


#: (format, structure name pattern, numpy dtype of an entry, what an entry means)
_TABLES = [
    ("qcow2", r"(snapshot \S+ )?l1 table", ">u8", _qcow2_l1),
    ("qcow2", r"l2 table \d+", ">u8", _qcow2_l2),
    ("qcow2", r"refcount table", ">u8", _qcow2_reftable),
    ("qcow", r"l1 table", ">u8", lambda img, v: f"L2 table at {v:#x}" if v else "no L2 table"),
    ("qcow", r"l2 table.*", ">u8", _qcow1_l2),
    ("vmdk", r"(redundant )?grain directory.*", "<u4",
     _sector_pointer("grain table", "no grain table")),
    ("vmdk", r"(redundant )?grain table.*", "<u4", _vmdk_gte),
    ("vhd", r"bat", ">u4", _vhd_bat),
    ("vhdx", r"bat", "<u8", _vhdx_bat),
    ("vdi", r"block map", "<u4", _vdi_map),
    ("parallels", r"bat", "<u4", _parallels_bat),
]


def _table_layout(img: Image, name: str):
    """(dtype, describe) for a structure that is a table of entries, else None."""
    import re

    for fmt, pattern, dtype, describe in _TABLES:
        if img.format == fmt and re.fullmatch(pattern, name.strip().lower()):
            if fmt == "qcow2" and dtype == ">u8" and name.lower().startswith("l2") and \
                    getattr(img, "extended_l2", False):
                return ">u8", _qcow2_l2, 16  # an entry and its subcluster bitmap
            return dtype, describe, None
    return None


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

