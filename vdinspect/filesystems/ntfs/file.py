"""A file: its base record and extension records merged, its names and its streams.

A file's attributes may spread over several MFT records: the base record's
$ATTRIBUTE_LIST names the extension records holding the rest. :func:`build_file` reads
them (guarding against stale entries and loops) and decodes the attributes the driver
needs: $STANDARD_INFORMATION, the $FILE_NAMEs and the reparse point. A :class:`Stream`
is one (type, name) attribute with its pieces (one per record) in VCN order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import CorruptImage, InvalidArgument
from .attributes import (
    FileNameAttr,
    Reparse,
    StdInfo,
    parse_attribute_list,
    parse_file_name,
    parse_reparse,
    parse_std_info,
)
from .mft import (
    AT_ATTRIBUTE_LIST,
    AT_DATA,
    AT_FILE_NAME,
    AT_REPARSE_POINT,
    AT_STANDARD_INFORMATION,
    ATTR_COMPRESSED,
    ATTR_NAMES,
    ATTR_SPARSE,
    Attribute,
    Record,
    RecordError,
    RecordFlags,
)
from .runlist import RunlistError

MAX_ATTR_LIST = 1 << 22  # a value read whole ($ATTRIBUTE_LIST, reparse) over 4 MiB is corrupt
MAX_EXTENSION_RECORDS = 4096

#: what reading an attribute's value or a record may raise on damaged input
DAMAGE = (RecordError, RunlistError, CorruptImage, InvalidArgument)


@dataclass(slots=True, eq=False)
class Stream:
    """One attribute (type, name) of a file, its pieces merged: sizes, flags and runs."""

    type: int
    name: str
    pieces: list[Attribute]

    @property
    def first(self) -> Attribute:
        return self.pieces[0]

    @property
    def resident(self) -> bool:
        return self.first.resident

    @property
    def size(self) -> int:
        return self.first.size

    @property
    def flags(self) -> int:
        return self.first.flags

    @property
    def instance(self) -> int:
        return self.first.instance

    @property
    def allocated(self) -> int:
        a = self.first
        if a.resident:
            return 0
        if a.compressed_size is not None and a.flags & (ATTR_COMPRESSED | ATTR_SPARSE):
            return a.compressed_size
        return a.allocated_size


@dataclass(slots=True, eq=False)
class NtfsFile(RecordFlags):
    """A file: its base record's header and the attributes of all its records."""

    number: int
    sequence: int
    flags: int
    link_count: int
    attrs: list[Attribute]
    si: StdInfo | None = None
    names: list[FileNameAttr] = field(default_factory=list)
    reparse: Reparse | None = None
    problems: list[str] = field(default_factory=list)

    def streams(self, atype: int = AT_DATA) -> dict[str, Stream]:
        """The attributes of one type by name, pieces ordered by first VCN."""
        groups: dict[str, list[Attribute]] = {}
        for a in self.attrs:
            if a.type == atype:
                groups.setdefault(a.name, []).append(a)
        out = {}
        for name, pieces in groups.items():
            pieces.sort(key=lambda a: (a.resident is False, a.lowest_vcn))
            out[name] = Stream(atype, name, pieces)
        return out

    def attr(self, atype: int, name: str = "") -> Attribute | None:
        for a in self.attrs:
            if a.type == atype and a.name == name:
                return a
        return None

    def __repr__(self) -> str:
        nm = self.names[0].name if self.names else "?"
        return f"<NtfsFile {self.number} {nm!r} seq {self.sequence} {len(self.attrs)} attrs>"


def build_file(
    rec: Record,
    get_record: Callable[[int], Record],
    value: Callable[[Attribute], bytes],
) -> NtfsFile:
    """The file whose base record is ``rec``: extension records merged, names decoded.

    ``get_record(n)`` gives another record, ``value(a)`` a non-resident attribute's value.
    Problems (a damaged list, a stale extension record) go to ``NtfsFile.problems``.
    """
    n = rec.number
    f = NtfsFile(n, rec.sequence, rec.flags, rec.link_count, list(rec.attrs))
    al = next((a for a in rec.attrs if a.type == AT_ATTRIBUTE_LIST), None)
    if al is not None:
        _merge_extensions(f, al, get_record, value)
    for a in f.attrs:
        try:
            if a.type == AT_STANDARD_INFORMATION and f.si is None and a.resident:
                f.si = parse_std_info(a.value)
            elif a.type == AT_FILE_NAME and a.resident:
                f.names.append(parse_file_name(a.value))
            elif a.type == AT_REPARSE_POINT and f.reparse is None:
                f.reparse = parse_reparse(a.value if a.resident else value(a))
        except DAMAGE as e:
            f.problems.append(f"{ATTR_NAMES.get(a.type)}: {e}")
    return f


def _merge_extensions(
    f: NtfsFile,
    al: Attribute,
    get_record: Callable[[int], Record],
    value: Callable[[Attribute], bytes],
) -> None:
    """Add the attributes of the extension records the $ATTRIBUTE_LIST ``al`` names."""
    n = f.number
    try:
        entries = parse_attribute_list(al.value if al.resident else value(al))
    except DAMAGE as e:
        f.problems.append(f"$ATTRIBUTE_LIST unreadable: {e}")
        entries = []
    others = sorted({e.record for e in entries if e.record != n})
    if len(others) > MAX_EXTENSION_RECORDS:
        f.problems.append(
            f"$ATTRIBUTE_LIST names {len(others)} records; only {MAX_EXTENSION_RECORDS} read"
        )
        others = others[:MAX_EXTENSION_RECORDS]
    found: dict[tuple, Attribute] = {}
    for m in others:
        try:
            ext = get_record(m)
        except (RecordError, CorruptImage) as e:
            f.problems.append(f"extension record {m}: {e}")
            continue
        if ext.base != n:
            f.problems.append(
                f"$ATTRIBUTE_LIST names record {m} whose base record is "
                f"{ext.base}, not {n} (stale entry or loop); ignored"
            )
            continue
        if any(a.type == AT_ATTRIBUTE_LIST for a in ext.attrs):
            f.problems.append(f"extension record {m} has its own $ATTRIBUTE_LIST (loop); ignored")
        for a in ext.attrs:
            if a.type != AT_ATTRIBUTE_LIST:
                # the attribute id tells apart attributes of one type and name in one
                # record: hard links' $FILE_NAMEs share (type, name, lowest VCN 0)
                found[(m, a.type, a.name, a.lowest_vcn, a.instance)] = a
    # In list order. Attributes from extension records get fresh ids past the base
    # record's, as The Sleuth Kit numbers them (its "type-id" addresses, compared in
    # the tests); ids restart in every record, so they would collide otherwise.
    nxt = max((a.instance for a in f.attrs), default=-1) + 1
    for e in entries:
        a = found.pop((e.record, e.type, e.name, e.lowest_vcn, e.instance), None)
        if a is None:
            continue
        f.attrs.append(dataclasses.replace(a, instance=nxt))
        nxt += 1
    f.attrs.extend(found.values())
