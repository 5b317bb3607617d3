"""MFT records (FILE record segments), update-sequence fixups and attribute headers.

Facts from the Linux-NTFS project documentation ("MFT", "Attribute header", "Fixup")
cross-checked with mkntfs output and Windows-made volumes. Every multi-sector structure
(FILE records, INDX blocks) ends each 512-byte stride with the update sequence number;
the real last two bytes of each stride are kept in the update sequence array.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from construct import Bytes, Int16ul, Int32ul, Int64ul, Struct

# --- on-disk structures ----------------------------------------------------------------

FileRecordHeader = Struct(
    "signature" / Bytes(4) * '"FILE" ("BAAD" marks a record chkdsk found broken)',
    "usa_offset" / Int16ul * "offset of the update sequence array, bytes",
    "usa_count" / Int16ul * "entries in the array: 1 + number of 512-byte strides",
    "lsn" / Int64ul * "$LogFile sequence number of the last change",
    "sequence_number" / Int16ul * "bumped each time the record is freed",
    "link_count" / Int16ul * "hard links (indexed $FILE_NAME attributes)",
    "attrs_offset" / Int16ul * "offset of the first attribute, bytes",
    "flags" / Int16ul * "0x1 in use, 0x2 directory, 0x4 in $Extend, 0x8 view index",
    "bytes_in_use" / Int32ul * "used bytes of the record",
    "bytes_allocated" / Int32ul * "record size, bytes",
    "base_mft_record" / Int64ul * "file reference of the base record (0 in a base record)",
    "next_attr_instance" / Int16ul * "next attribute id to hand out",
)  # 42 bytes; NTFS 3.1 adds 2 reserved bytes and the record's own number (u32 at 0x2C)

AttributeHeader = Struct(
    "type" / Int32ul * "attribute type code (0xFFFFFFFF ends the list)",
    "length" / Int32ul * "bytes of this attribute record",
    "non_resident" / Bytes(1) * "0 resident, 1 non-resident",
    "name_length" / Bytes(1) * "UTF-16 units of the attribute name",
    "name_offset" / Int16ul * "offset of the name, bytes",
    "flags" / Int16ul * "0x0001 compressed, 0x4000 encrypted, 0x8000 sparse",
    "instance" / Int16ul * "attribute id, unique within the file",
)  # 16 bytes; then the resident or non-resident part

REC_IN_USE, REC_DIRECTORY, REC_EXTEND, REC_VIEW_INDEX = 0x1, 0x2, 0x4, 0x8
ATTR_COMPRESSED, ATTR_ENCRYPTED, ATTR_SPARSE = 0x0001, 0x4000, 0x8000

# attribute type codes
AT_STANDARD_INFORMATION = 0x10
AT_ATTRIBUTE_LIST = 0x20
AT_FILE_NAME = 0x30
AT_OBJECT_ID = 0x40
AT_SECURITY_DESCRIPTOR = 0x50
AT_VOLUME_NAME = 0x60
AT_VOLUME_INFORMATION = 0x70
AT_DATA = 0x80
AT_INDEX_ROOT = 0x90
AT_INDEX_ALLOCATION = 0xA0
AT_BITMAP = 0xB0
AT_REPARSE_POINT = 0xC0
AT_EA_INFORMATION = 0xD0
AT_EA = 0xE0
AT_LOGGED_UTILITY_STREAM = 0x100
AT_END = 0xFFFFFFFF

ATTR_NAMES = {
    0x10: "$STANDARD_INFORMATION",
    0x20: "$ATTRIBUTE_LIST",
    0x30: "$FILE_NAME",
    0x40: "$OBJECT_ID",
    0x50: "$SECURITY_DESCRIPTOR",
    0x60: "$VOLUME_NAME",
    0x70: "$VOLUME_INFORMATION",
    0x80: "$DATA",
    0x90: "$INDEX_ROOT",
    0xA0: "$INDEX_ALLOCATION",
    0xB0: "$BITMAP",
    0xC0: "$REPARSE_POINT",
    0xD0: "$EA_INFORMATION",
    0xE0: "$EA",
    0x100: "$LOGGED_UTILITY_STREAM",
}

MREF_MASK = (1 << 48) - 1
STRIDE = 512

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_HDR = struct.Struct("<4sHHQHHHHIIQH")  # FileRecordHeader
_ATTR = struct.Struct("<IIBBHHH")  # AttributeHeader
_RES = struct.Struct("<IH")  # value_length, value_offset
_NONRES = struct.Struct("<qqHB5xQQQ")  # lowest/highest vcn, mp offset, cu, sizes


def split_ref(ref: int) -> tuple[int, int]:
    """A file reference as (record number, sequence number)."""
    return ref & MREF_MASK, ref >> 48


class RecordError(ValueError):
    """A record (or INDX block) that cannot be used; the message says why."""


def apply_fixup(buf: bytearray, magic: bytes) -> None:
    """Check and undo the update sequence in ``buf`` in place (RecordError if broken)."""
    if buf[:4] != magic:
        raise RecordError(f"signature is {bytes(buf[:4])!r}, not {magic!r}")
    usa_off, usa_count = _U16(buf, 4)[0], _U16(buf, 6)[0]
    size = len(buf)
    if usa_count < 2 or usa_off & 1 or usa_off < 8 or usa_off + 2 * usa_count > size:
        raise RecordError(
            f"update sequence array (offset {usa_off}, {usa_count} entries) does not fit"
        )
    if (usa_count - 1) * STRIDE > size:
        raise RecordError(f"update sequence count {usa_count} is too large for {size} bytes")
    usn = buf[usa_off : usa_off + 2]
    for i in range(1, usa_count):
        end = i * STRIDE
        if buf[end - 2 : end] != usn:
            raise RecordError(f"fixup mismatch at byte {end - 2} (torn write or damage)")
        buf[end - 2 : end] = buf[usa_off + 2 * i : usa_off + 2 * i + 2]


def fixup_many(
    chunk: bytes, record_size: int, magic: bytes = b"FILE"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fix up every record of a chunk at once with numpy.

    Returns (records as a writable (n, record_size) uint8 array, mask of records with the
    magic, mask of records whose fixups check out). Records with an unusual update sequence
    layout are fixed one by one.
    """
    n = len(chunk) // record_size
    arr = np.frombuffer(chunk, dtype=np.uint8, count=n * record_size).reshape(n, record_size).copy()
    sig = arr[:, :4].copy().view("<u4")[:, 0]
    has_magic = sig == int.from_bytes(magic, "little")
    ok = np.zeros(n, dtype=bool)
    if not has_magic.any():
        return arr, has_magic, ok
    words = arr.view("<u2")
    usa_off = words[:, 2].astype(np.int64)
    usa_cnt = words[:, 3].astype(np.int64)
    strides = record_size // STRIDE
    std_off = int(np.bincount(usa_off[has_magic]).argmax())
    standard = has_magic & (usa_off == std_off) & (usa_cnt == strides + 1)
    if std_off + 2 * (strides + 1) <= record_size and std_off % 2 == 0 and std_off >= 8:
        idx = np.nonzero(standard)[0]
        if len(idx):
            w = words[idx]
            usn = w[:, std_off // 2]
            ends = np.arange(1, strides + 1) * (STRIDE // 2) - 1
            good = (w[:, ends] == usn[:, None]).all(axis=1)
            saved = w[:, std_off // 2 + 1 : std_off // 2 + 1 + strides]
            w[:, ends] = saved
            words[idx] = w
            ok[idx] = good
            # bad ones: restore nothing (they are skipped); undo the write for clarity
    else:
        standard[:] = False
    for i in np.nonzero(has_magic & ~standard)[0]:
        rec = bytearray(chunk[i * record_size : (i + 1) * record_size])
        try:
            apply_fixup(rec, magic)
        except RecordError:
            continue
        arr[i] = np.frombuffer(rec, dtype=np.uint8)
        ok[i] = True
    return arr, has_magic, ok


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


@dataclass(slots=True, eq=False)
class Record:
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
    def in_use(self) -> bool:
        return bool(self.flags & REC_IN_USE)

    @property
    def is_dir(self) -> bool:
        return bool(self.flags & REC_DIRECTORY)

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
        _HDR.unpack_from(buf, 0)
    )
    if first < 0x2A or first >= size or first & 7:
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
    attr_hdr = _ATTR.unpack_from
    while off + 4 <= limit:
        atype = _U32(buf, off)[0]
        if atype == AT_END:
            break
        if off + 16 > limit:
            raise RecordError(f"attribute at {off:#x} is cut off by the end of the record")
        atype, length, nonres, name_len, name_off, aflags, inst = attr_hdr(buf, off)
        if length < 16 or length & 7 or off + length > limit:
            raise RecordError(f"attribute {atype:#x} at {off:#x} has a bad length {length}")
        name = ""
        if name_len:
            if name_off + 2 * name_len > length:
                raise RecordError(f"attribute {atype:#x} at {off:#x}: name outside it")
            name = bytes(buf[off + name_off : off + name_off + 2 * name_len]).decode(
                "utf-16-le", "replace"
            )
        if nonres == 0:
            if length < 24:
                raise RecordError(f"resident attribute {atype:#x} at {off:#x} is too short")
            vlen, voff = _RES.unpack_from(buf, off + 16)
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
            if length < 64:
                raise RecordError(f"non-resident attribute {atype:#x} at {off:#x} is too short")
            lvcn, hvcn, mp_off, cu, alloc, dsize, isize = _NONRES.unpack_from(buf, off + 16)
            csize = None
            if (cu or aflags & (ATTR_COMPRESSED | ATTR_SPARSE)) and length >= 72:
                csize = struct.unpack_from("<Q", buf, off + 64)[0]
            if max(alloc, dsize, isize) >= 1 << 62 or dsize > alloc or isize > alloc:
                raise RecordError(
                    f"attribute {atype:#x} at {off:#x}: sizes {dsize}/{isize}/"
                    f"{alloc} (data/initialized/allocated) are not sane"
                )
            if lvcn < 0 or lvcn > hvcn + 1 or hvcn >= 1 << 62:  # empty: 0..-1
                raise RecordError(f"attribute {atype:#x} at {off:#x}: VCNs {lvcn}..{hvcn}")
            if mp_off < 64 or mp_off > length:
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
