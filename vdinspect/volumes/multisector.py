"""NTFS multi-sector protection: the update sequence of FILE records and INDX blocks.

Every multi-sector NTFS structure starts with this header and ends each 512-byte stride
with the update sequence number; the real last two bytes of each stride are kept in the
update sequence array (Linux-NTFS documentation, "Fixup"; the stride is 512 bytes
whatever the sector size). It lives in this lower layer so that both the volume probe
(the volume label in $Volume) and the NTFS driver use this one implementation;
:func:`fixup_many` is its numpy form for the driver's sequential MFT scan.
"""

from __future__ import annotations

from construct import Bytes, Int16ul, Struct

from ..layout import offset_of, struct_format
from ..lazy import np

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
    usa_off = words[:, _USA_AT // 2].astype(np.int64)
    usa_cnt = words[:, _USA_AT // 2 + 1].astype(np.int64)
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
