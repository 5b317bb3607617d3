"""NTFS multi-sector protection: the update sequence of FILE records and INDX blocks.

Every multi-sector NTFS structure starts with this header and ends each 512-byte stride
with the update sequence number; the real last two bytes of each stride are kept in the
update sequence array (Linux-NTFS documentation, "Fixup"; the stride is 512 bytes
whatever the sector size). It lives in this lower layer so that both the volume probe
(the volume label in $Volume) and the NTFS driver use this one implementation.
"""

from __future__ import annotations

from construct import Bytes, Int16ul, Struct

from ..layout import offset_of, struct_format

MultiSectorHeader = Struct(
    "magic" / Bytes(4) * '"FILE" for MFT records, "INDX" for index blocks ("BAAD": broken)',
    "usa_ofs" / Int16ul * "offset of the update sequence array, bytes",
    "usa_count" / Int16ul * "entries in the array: 1 (the number) + one per 512-byte stride",
)  # 8 bytes

STRIDE = 512  # bytes protected by one update sequence entry
_USA = struct_format(Struct(*MultiSectorHeader.subcons[1:]))
_USA_AT = offset_of(MultiSectorHeader, "usa_ofs")


class RecordError(ValueError):
    """A record (or INDX block) that cannot be used; the message says why."""


def apply_fixup(buf: bytearray, magic: bytes) -> None:
    """Check and undo the update sequence in ``buf`` in place (RecordError if broken)."""
    if buf[:4] != magic:
        raise RecordError(f"signature is {bytes(buf[:4])!r}, not {magic!r}")
    usa_off, usa_count = _USA.unpack_from(buf, _USA_AT)
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
