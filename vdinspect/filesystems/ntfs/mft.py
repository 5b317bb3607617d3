"""MFT records (FILE record segments) and attribute records.

Facts from the Linux-NTFS project documentation ("MFT", "Attribute header", "Fixup")
cross-checked with mkntfs output and Windows-made volumes. A record is multi-sector
protected (the update sequence, undone by ``apply_fixup`` of volumes/multisector.py);
its attributes follow the header, each a common header then a resident form (the value
inside the record) or a non-resident form (a runlist of clusters elsewhere). The layouts
are declared once in :mod:`vdinspect.volumes.ntfs_layout` (the probe reads them too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from construct import If, Int64ul, Struct

from ...layout import flag_values, offset_of, struct_format
from ...volumes.multisector import RecordError
from ...volumes.ntfs_layout import (  # noqa: F401 (re-exported)
    AttributeFlags,
    AttributeHeader,
    AttributeType,
    CompressedSize,
    FileRecordHeader,
    FileRecordHeader31,
    NonResidentForm,
    RecordFlags,
    ResidentForm,
)

# whole attribute record heads (header + form), as the structure explorer shows them
ResidentAttribute = Struct(*AttributeHeader.subcons, *ResidentForm.subcons)  # 24 bytes
NonResidentAttribute = Struct(
    *AttributeHeader.subcons,
    *NonResidentForm.subcons,
    "compressed_size"
    / If(
        lambda c: c.length >= COMPRESSED_END
        and bool(c.compression_unit or c.flags.IS_COMPRESSED or c.flags.IS_SPARSE),
        Int64ul,
    )
    * "bytes of clusters actually allocated (compressed or sparse attributes only)",
)  # 64 or 72 bytes, then the runlist (at mapping_pairs_offset)

_AT = flag_values(AttributeType)
_REC = flag_values(RecordFlags)
_ATTRF = flag_values(AttributeFlags)

REC_IN_USE, REC_DIRECTORY = _REC["IN_USE"], _REC["IS_DIRECTORY"]
REC_EXTEND, REC_VIEW_INDEX = _REC["IS_4"], _REC["IS_VIEW_INDEX"]
ATTR_COMPRESSED, ATTR_ENCRYPTED = _ATTRF["IS_COMPRESSED"], _ATTRF["IS_ENCRYPTED"]
ATTR_SPARSE = _ATTRF["IS_SPARSE"]

AT_STANDARD_INFORMATION = _AT["$STANDARD_INFORMATION"]
AT_ATTRIBUTE_LIST = _AT["$ATTRIBUTE_LIST"]
AT_FILE_NAME = _AT["$FILE_NAME"]
AT_OBJECT_ID = _AT["$OBJECT_ID"]
AT_SECURITY_DESCRIPTOR = _AT["$SECURITY_DESCRIPTOR"]
AT_VOLUME_NAME = _AT["$VOLUME_NAME"]
AT_VOLUME_INFORMATION = _AT["$VOLUME_INFORMATION"]
AT_DATA = _AT["$DATA"]
AT_INDEX_ROOT = _AT["$INDEX_ROOT"]
AT_INDEX_ALLOCATION = _AT["$INDEX_ALLOCATION"]
AT_BITMAP = _AT["$BITMAP"]
AT_REPARSE_POINT = _AT["$REPARSE_POINT"]
AT_EA_INFORMATION = _AT["$EA_INFORMATION"]
AT_EA = _AT["$EA"]
AT_LOGGED_UTILITY_STREAM = _AT["$LOGGED_UTILITY_STREAM"]
AT_END = _AT["end"]

#: attribute type code -> name ("$DATA"), for messages and listings
ATTR_NAMES = {code: name for name, code in _AT.items() if code != AT_END}

MREF_MASK = (1 << 48) - 1

# fast paths for the record-by-record loops, from the declarations above
RECORD_FMT = struct_format(FileRecordHeader)
ATTR_FMT = struct_format(AttributeHeader)
RESIDENT_FMT = struct_format(ResidentForm)
NONRES_FMT = struct_format(NonResidentForm)
COMPRESSED_SIZE_FMT = struct_format(CompressedSize)
ATTR_TYPE = struct_format(Struct(AttributeHeader.type)).unpack_from  # read before the header
FORM_AT = AttributeHeader.sizeof()  # where the resident/non-resident form starts
RESIDENT_END = FORM_AT + ResidentForm.sizeof()  # 24: the shortest resident attribute
COMPRESSED_SIZE_AT = FORM_AT + NonResidentForm.sizeof()  # 64: the shortest non-resident one
COMPRESSED_END = COMPRESSED_SIZE_AT + CompressedSize.sizeof()  # 72
RECORD_HEAD = offset_of(FileRecordHeader, "next_attr_instance") + 2  # 42: attributes after
RECORD_NUMBER_AT = offset_of(FileRecordHeader31, "mft_record_number")  # 0x2C
RECORD_HEAD_31 = FileRecordHeader31.sizeof()  # 48: a 3.1 record's update sequence after


def split_ref(ref: int) -> tuple[int, int]:
    """A file reference as (record number, sequence number)."""
    return ref & MREF_MASK, ref >> 48


@dataclass(slots=True, eq=False)
class Attribute:
    """One attribute record: the header plus the resident value or the runlist bytes."""

    type: int
    name: str
    flags: int
    instance: int
    resident: bool
    value: bytes | None = None  # resident value
    lowest_vcn: int = 0
    highest_vcn: int = -1
    mapping_pairs: bytes = b""
    compression_unit: int = 0
    allocated_size: int = 0
    data_size: int = 0
    initialized_size: int = 0
    compressed_size: int | None = None
    record: int = 0  # the MFT record that holds this attribute
    offset: int = 0  # its offset inside that record

    @property
    def size(self) -> int:
        """Bytes of the attribute's value (data size for a non-resident one)."""
        return len(self.value) if self.resident else self.data_size

    @property
    def type_name(self) -> str:
        return ATTR_NAMES.get(self.type, f"{self.type:#x}")

    def __repr__(self) -> str:
        where = "resident" if self.resident else f"vcn {self.lowest_vcn}..{self.highest_vcn}"
        nm = f":{self.name}" if self.name else ""
        return f"<Attribute {self.type_name}{nm} id {self.instance} {where} size={self.size}>"


class RecordFlags:
    """``in_use`` and ``is_dir`` from a file record header's ``flags``: for a record, a
    file and a catalog row alike."""

    __slots__ = ()
    flags: int

    @property
    def in_use(self) -> bool:
        return bool(self.flags & REC_IN_USE)

    @property
    def is_dir(self) -> bool:
        return bool(self.flags & REC_DIRECTORY)


@dataclass(slots=True, eq=False)
class Record(RecordFlags):
    """A fixed-up MFT record: header fields and its attribute records."""

    number: int
    sequence: int
    flags: int
    link_count: int
    base_ref: int
    lsn: int
    attrs: list[Attribute] = field(default_factory=list)
    raw: bytes = b""

    @property
    def base(self) -> int:
        return self.base_ref & MREF_MASK

    def __repr__(self) -> str:
        state = "in use" if self.in_use else "free"
        return f"<Record {self.number} seq {self.sequence} {state} {len(self.attrs)} attrs>"


def parse_record(buf, number: int, keep_raw: bool = False) -> Record:
    """Parse a fixed-up FILE record (bytes or memoryview). RecordError if it is unusable."""
    size = len(buf)
    (_sig, _uo, _uc, lsn, seq, links, first, flags, in_use, _alloc, base_ref, _nxt) = (
        RECORD_FMT.unpack_from(buf, 0)
    )
    if first < RECORD_HEAD or first >= size or first & 7:
        raise RecordError(f"first attribute offset {first:#x} is not sane")
    if in_use > size or in_use < first:
        raise RecordError(f"bytes in use ({in_use}) is not between {first} and {size}")
    rec = Record(
        number,
        seq,
        flags,
        links,
        base_ref,
        lsn,
        parse_attributes(buf, first, in_use, number),
        bytes(buf) if keep_raw else b"",
    )
    return rec


def parse_attributes(buf, off: int, limit: int, number: int) -> list[Attribute]:
    """The attribute records between ``off`` and ``limit`` (RecordError when malformed)."""
    attrs = []
    attr_hdr = ATTR_FMT.unpack_from
    while off + 4 <= limit:
        atype = ATTR_TYPE(buf, off)[0]
        if atype == AT_END:
            break
        if off + FORM_AT > limit:
            raise RecordError(f"attribute at {off:#x} is cut off by the end of the record")
        atype, length, nonres, name_len, name_off, aflags, inst = attr_hdr(buf, off)
        if length < FORM_AT or length & 7 or off + length > limit:
            raise RecordError(f"attribute {atype:#x} at {off:#x} has a bad length {length}")
        name = ""
        if name_len:
            if name_off + 2 * name_len > length:
                raise RecordError(f"attribute {atype:#x} at {off:#x}: name outside it")
            name = bytes(buf[off + name_off : off + name_off + 2 * name_len]).decode(
                "utf-16-le", "replace"
            )
        if nonres == 0:
            if length < RESIDENT_END:
                raise RecordError(f"resident attribute {atype:#x} at {off:#x} is too short")
            vlen, voff, _rflags = RESIDENT_FMT.unpack_from(buf, off + FORM_AT)
            if voff + vlen > length:
                raise RecordError(f"attribute {atype:#x} at {off:#x}: value outside it")
            attrs.append(
                Attribute(
                    atype,
                    name,
                    aflags,
                    inst,
                    True,
                    bytes(buf[off + voff : off + voff + vlen]),
                    record=number,
                    offset=off,
                )
            )
        else:
            if length < COMPRESSED_SIZE_AT:
                raise RecordError(f"non-resident attribute {atype:#x} at {off:#x} is too short")
            lvcn, hvcn, mp_off, cu, alloc, dsize, isize = NONRES_FMT.unpack_from(buf, off + FORM_AT)
            csize = None
            if (cu or aflags & (ATTR_COMPRESSED | ATTR_SPARSE)) and length >= COMPRESSED_END:
                (csize,) = COMPRESSED_SIZE_FMT.unpack_from(buf, off + COMPRESSED_SIZE_AT)
            if max(alloc, dsize, isize) >= 1 << 62 or dsize > alloc or isize > alloc:
                raise RecordError(
                    f"attribute {atype:#x} at {off:#x}: sizes {dsize}/{isize}/"
                    f"{alloc} (data/initialized/allocated) are not sane"
                )
            if lvcn < 0 or lvcn > hvcn + 1 or hvcn >= 1 << 62:  # empty: 0..-1
                raise RecordError(f"attribute {atype:#x} at {off:#x}: VCNs {lvcn}..{hvcn}")
            if mp_off < COMPRESSED_SIZE_AT or mp_off > length:
                raise RecordError(f"attribute {atype:#x} at {off:#x}: runlist offset {mp_off}")
            attrs.append(
                Attribute(
                    atype,
                    name,
                    aflags,
                    inst,
                    False,
                    None,
                    lvcn,
                    hvcn,
                    bytes(buf[off + mp_off : off + length]),
                    cu,
                    alloc,
                    dsize,
                    isize,
                    csize,
                    record=number,
                    offset=off,
                )
            )
        off += length
    return attrs
