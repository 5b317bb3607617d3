"""VHDX (Microsoft Hyper-V virtual hard disk, version 2).

Facts from Microsoft's open specification [MS-VHDX]; log replay cross-checked with QEMU's
block/vhdx-log.c. All numbers on disk are little-endian; GUIDs are Microsoft GUIDs
(``uuid.UUID(bytes_le=...)``). Layout: a 1 MiB header section (file identifier, two
headers, two region tables), then regions the region table places anywhere in the file: the
log, the metadata region (block size, disk size, sector sizes, parent locator) and the block
allocation table (BAT), whose entries map each payload block of the virtual disk to a
1 MiB-aligned host offset. A pending log is replayed in memory only (:class:`OverlaySource`):
the file is never written.
"""

from __future__ import annotations

import bisect
import uuid

import numpy as np
from construct import Bytes, Int16ul, Int32ul, Int64ul, Padding, Struct

from ..errors import CorruptImage, NotRecognized, UnsupportedFeature
from ..io import ByteSource, LRUCache
from .base import DAMAGED, DATA, UNALLOCATED, ZERO, Image, ParentHint, Run, misplaced

FORMAT = "vhdx"
SIGNATURE = b"vhdxfile"

K, M = 1 << 10, 1 << 20

# --- on-disk structures ----------------------------------------------------------------

FileIdentifier = Struct(
    "signature" / Bytes(8) * '"vhdxfile"',
    "creator" / Bytes(512) * "UTF-16LE name of the program that made the file, NUL-padded",
)  # at offset 0; the rest of the first 64 KiB is reserved

VhdxHeader = Struct(
    "signature" / Bytes(4) * '"head"',
    "checksum" / Int32ul * "CRC-32C over the 4 KiB header with this field taken as zero",
    "sequence_number" / Int64ul * "the valid header with the higher number is current",
    "file_write_guid" / Bytes(16) * "changed on every open for writing",
    "data_write_guid" / Bytes(16) * "changed before the first guest-visible write of a session",
    "log_guid" / Bytes(16) * "identifies the log entries to replay; all zero = no log",
    "log_version" / Int16ul * "0",
    "version" / Int16ul * "1",
    "log_length" / Int32ul * "bytes, a multiple of 1 MiB",
    "log_offset" / Int64ul * "host offset of the log, a multiple of 1 MiB",
)  # 80 bytes of a 4 KiB structure (the rest reserved); copies at 64 KiB and 128 KiB

RegionTableHeader = Struct(
    "signature" / Bytes(4) * '"regi"',
    "checksum" / Int32ul * "CRC-32C over the 64 KiB table with this field taken as zero",
    "entry_count" / Int32ul * "entries that follow (at most 2047)",
    "reserved" / Int32ul,
)  # 16 bytes; copies at 192 KiB and 256 KiB

RegionTableEntry = Struct(
    "guid" / Bytes(16) * "which region (BAT, metadata, ...)",
    "file_offset" / Int64ul * "host offset, a multiple of 1 MiB",
    "length" / Int32ul * "bytes, a multiple of 1 MiB",
    "flags" / Int32ul * "bit 0 Required: refuse the file if the region is not understood",
)  # 32 bytes

MetadataTableHeader = Struct(
    "signature" / Bytes(8) * '"metadata"',
    "reserved" / Int16ul,
    "entry_count" / Int16ul * "entries that follow (at most 2047)",
    Padding(20),
)  # 32 bytes at the start of the metadata region (table: 64 KiB)

MetadataTableEntry = Struct(
    "item_id" / Bytes(16) * "which metadata item",
    "offset" / Int32ul * "bytes from the start of the metadata region (>= 64 KiB)",
    "length" / Int32ul * "bytes (at most 1 MiB)",
    "flags" / Int32ul * "bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired",
    "reserved2" / Int32ul,
)  # 32 bytes

FileParameters = Struct(
    "block_size" / Int32ul * "payload block size, bytes (1 MiB..256 MiB, a power of 2)",
    "flags" / Int32ul * "bit 0 LeaveBlocksAllocated, bit 1 HasParent",
)

ParentLocatorHeader = Struct(
    "locator_type" / Bytes(16) * "B04AEFB7-D19E-4A81-B789-25B8E9445913 for a VHDX parent",
    "reserved" / Int16ul,
    "key_value_count" / Int16ul * "key/value entries that follow",
)  # 20 bytes

ParentLocatorEntry = Struct(
    "key_offset" / Int32ul * "bytes from the start of the locator item",
    "value_offset" / Int32ul * "bytes from the start of the locator item",
    "key_length" / Int16ul * "bytes of UTF-16LE",
    "value_length" / Int16ul * "bytes of UTF-16LE",
)  # 12 bytes

LogEntryHeader = Struct(
    "signature" / Bytes(4) * '"loge"',
    "checksum" / Int32ul * "CRC-32C over the whole entry with this field taken as zero",
    "entry_length" / Int32ul * "bytes, a multiple of 4 KiB",
    "tail" / Int32ul * "log offset of the oldest entry still needed (start of the sequence)",
    "sequence_number" / Int64ul * "entries of a sequence count up by one; never 0",
    "descriptor_count" / Int32ul * "descriptors that follow this header",
    "reserved" / Int32ul,
    "log_guid" / Bytes(16) * "must equal the header's LogGuid",
    "flushed_file_offset" / Int64ul * "file size when the entry was written (before it)",
    "last_file_offset" / Int64ul * "file size the entry needs (after it)",
)  # 64 bytes; descriptors follow, 32 bytes each, filling whole 4 KiB sectors

ZeroDescriptor = Struct(
    "signature" / Bytes(4) * '"zero"',
    "reserved" / Int32ul,
    "zero_length" / Int64ul * "bytes to zero, a multiple of 4 KiB",
    "file_offset" / Int64ul * "host offset, a multiple of 4 KiB",
    "sequence_number" / Int64ul * "the entry's sequence number",
)

DataDescriptor = Struct(
    "signature" / Bytes(4) * '"desc"',
    "trailing_bytes" / Bytes(4) * "last 4 bytes of the 4 KiB sector",
    "leading_bytes" / Bytes(8) * "first 8 bytes of the 4 KiB sector",
    "file_offset" / Int64ul * "host offset, a multiple of 4 KiB",
    "sequence_number" / Int64ul * "the entry's sequence number",
)

DataSector = Struct(
    "signature" / Bytes(4) * '"data"',
    "sequence_high" / Int32ul * "high 32 bits of the sequence number",
    "data" / Bytes(4084) * "bytes 8..4091 of the sector to write",
    "sequence_low" / Int32ul * "low 32 bits of the sequence number",
)  # 4 KiB, one per data descriptor, after the descriptor sectors


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


BAT_GUID = _guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_GUID = _guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMETERS_GUID = _guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE_GUID = _guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE_83_DATA_GUID = _guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE_GUID = _guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE_GUID = _guid("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR_GUID = _guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
VHDX_PARENT_LOCATOR_TYPE = _guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")
REGION_NAMES = {BAT_GUID: "BAT", METADATA_GUID: "metadata"}
METADATA_NAMES = {
    FILE_PARAMETERS_GUID: "file parameters",
    VIRTUAL_DISK_SIZE_GUID: "virtual disk size",
    PAGE_83_DATA_GUID: "page 83 data",
    LOGICAL_SECTOR_SIZE_GUID: "logical sector size",
    PHYSICAL_SECTOR_SIZE_GUID: "physical sector size",
    PARENT_LOCATOR_GUID: "parent locator",
}
REQUIRED_ITEMS = (
    FILE_PARAMETERS_GUID,
    VIRTUAL_DISK_SIZE_GUID,
    PAGE_83_DATA_GUID,
    LOGICAL_SECTOR_SIZE_GUID,
    PHYSICAL_SECTOR_SIZE_GUID,
)

HEADER_OFFSETS = (64 * K, 128 * K)
HEADER_SIZE = 4 * K
REGION_TABLE_OFFSETS = (192 * K, 256 * K)
REGION_TABLE_SIZE = 64 * K
HEADER_SECTION = 1 * M
METADATA_TABLE_SIZE = 64 * K
MAX_TABLE_ENTRIES = 2047
MAX_ITEM_LENGTH = 1 * M
MAX_VIRTUAL_SIZE = 64 << 40  # the specification's limit: 64 TiB
MAX_FILE_OFFSET = 1 << 50
MAX_SALVAGED_BAT = 1 << 20  # BAT entries a salvage open may stand in for when the file cut it
MAX_SALVAGED_REGION = 1 << 30  # longer regions running past the end of the file are corrupt
LOG_SECTOR = 4 * K
SECTOR_BITMAP_BLOCK = 1 * M
SECTORS_PER_CHUNK = 1 << 23  # sectors one 1 MiB sector bitmap block describes

# payload BAT entry states (bits 0-2 of an entry)
PAYLOAD_BLOCK_NOT_PRESENT = 0
PAYLOAD_BLOCK_UNDEFINED = 1
PAYLOAD_BLOCK_ZERO = 2
PAYLOAD_BLOCK_UNMAPPED = 3
PAYLOAD_BLOCK_UNMAPPED_V095 = 5  # the value draft 0.95 of the specification used
PAYLOAD_BLOCK_FULLY_PRESENT = 6
PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7
SB_BLOCK_NOT_PRESENT = 0
SB_BLOCK_PRESENT = 6
PAYLOAD_STATE_NAMES = {
    0: "PAYLOAD_BLOCK_NOT_PRESENT",
    1: "PAYLOAD_BLOCK_UNDEFINED",
    2: "PAYLOAD_BLOCK_ZERO",
    3: "PAYLOAD_BLOCK_UNMAPPED",
    4: "reserved state 4",
    5: "PAYLOAD_BLOCK_UNMAPPED (v0.95)",
    6: "PAYLOAD_BLOCK_FULLY_PRESENT",
    7: "PAYLOAD_BLOCK_PARTIALLY_PRESENT",
}

# per-block codes of the decoded BAT
B_UNALLOC, B_ZERO, B_DATA, B_PARTIAL, B_DAMAGED = 0, 1, 2, 3, 4


def probe(head: bytes) -> bool:
    """VHDX files start with the file identifier signature "vhdxfile"."""
    return len(head) >= 8 and head[:8] == SIGNATURE


# --- CRC-32C (Castagnoli) ----------------------------------------------------------------

_CRC_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _crc_table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC_POLY if c & 1 else c >> 1
        out.append(c)
    return out


_CRC_TABLE = _crc_table()
_CRC_NP = np.array(_CRC_TABLE, dtype=np.uint32)
# columns of the "feed 2**k zero bytes" linear map on the CRC register, and byte tables of it
_SHIFT_COLUMNS: dict[int, list[int]] = {
    1: [_CRC_TABLE[(1 << b) & 0xFF] ^ ((1 << b) >> 8) for b in range(32)]
}
_SHIFT_TABLES: dict[int, tuple[np.ndarray, ...]] = {}

try:  # an optional C implementation, used only to go faster
    import crc32c as _crc32c_mod

    _fast_crc32c = _crc32c_mod.crc32c
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import google_crc32c as _google_crc32c

        _fast_crc32c = _google_crc32c.value
    except ImportError:
        _fast_crc32c = None


def _apply_columns(cols: list[int], x: int) -> int:
    r = 0
    b = 0
    while x:
        if x & 1:
            r ^= cols[b]
        x >>= 1
        b += 1
    return r


def _shift_columns(n: int) -> list[int]:
    cols = _SHIFT_COLUMNS.get(n)
    if cols is None:
        half = _shift_columns(n // 2)
        cols = _SHIFT_COLUMNS[n] = [_apply_columns(half, c) for c in half]
    return cols


def _shift_tables(n: int) -> tuple[np.ndarray, ...]:
    tabs = _SHIFT_TABLES.get(n)
    if tabs is None:
        cols = _shift_columns(n)
        v = np.arange(256, dtype=np.uint32)
        out = []
        for j in range(4):
            t = np.zeros(256, dtype=np.uint32)
            for i in range(8):
                t ^= np.where((v >> i) & 1 == 1, np.uint32(cols[8 * j + i]), np.uint32(0))
            out.append(t)
        tabs = _SHIFT_TABLES[n] = tuple(out)
    return tabs


def _crc32c_numpy(data) -> int:
    """CRC-32C of a long buffer: many lanes at once with numpy, then joined pairwise."""
    n = len(data)
    lane = 128 if n <= 128 * K else 256
    k = -(-n // lane)
    buf = np.zeros(k * lane, dtype=np.uint8)
    pad = k * lane - n
    buf[pad:] = np.frombuffer(data, dtype=np.uint8)
    buf[pad : pad + 4] ^= 0xFF  # the initial value 0xFFFFFFFF, folded into the first 4 bytes
    lanes = np.ascontiguousarray(buf.reshape(k, lane).T)
    r = np.zeros(k, dtype=np.uint32)
    table = _CRC_NP
    for j in range(lane):
        r = table[(r ^ lanes[j]) & 0xFF] ^ (r >> 8)
    span = lane
    while len(r) > 1:
        if len(r) & 1:  # a leading all-zero lane changes nothing
            r = np.concatenate([np.zeros(1, dtype=np.uint32), r])
        a, b = r[0::2], r[1::2]
        t0, t1, t2, t3 = _shift_tables(span)
        r = t0[a & 0xFF] ^ t1[(a >> 8) & 0xFF] ^ t2[(a >> 16) & 0xFF] ^ t3[a >> 24] ^ b
        span *= 2
    return int(r[0]) ^ 0xFFFFFFFF


def crc32c(data) -> int:
    """CRC-32C (Castagnoli) of ``data``, as VHDX checksums use it."""
    if _fast_crc32c is not None:
        return int(_fast_crc32c(bytes(data)))
    if len(data) < 8 * K:
        crc = 0xFFFFFFFF
        t = _CRC_TABLE
        for b in bytes(data):
            crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    return _crc32c_numpy(data)


def checksum_ok(block: bytes, at: int = 4) -> bool:
    """True when the CRC-32C stored at ``at`` matches ``block`` with that field zeroed."""
    if len(block) < at + 4:
        return False
    stored = int.from_bytes(block[at : at + 4], "little")
    return crc32c(block[:at] + bytes(4) + block[at + 4 :]) == stored


# --- small helpers -----------------------------------------------------------------------


def guid_str(raw: bytes) -> str:
    """A Microsoft GUID from its 16 on-disk bytes, as lowercase text."""
    return str(uuid.UUID(bytes_le=bytes(raw)))


def _utf16(raw: bytes) -> str:
    text = bytes(raw).decode("utf-16-le", "replace")
    return text.split("\0", 1)[0]


def _norm_guid_text(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(uuid.UUID(text.strip().strip("{}")))
    except ValueError:
        return text.strip().lower()


def _windows_basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


class OverlaySource(ByteSource):
    """A host file seen through the writes of a replayed log, kept in memory.

    Segments are ``[start, end)`` ranges with bytes (or ``None`` for zeros); later writes
    replace earlier ones. Past the end of the file, unwritten bytes read as zeros.
    """

    def __init__(self, base: ByteSource, name: str | None = None) -> None:
        self.base = base
        self.name = name or base.name
        self.size = base.size
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._data: list[bytes | None] = []

    @property
    def segments(self) -> list[tuple[int, int, bool]]:
        """The replaced host ranges as ``(start, end, is_zero)``, neighbours joined."""
        out: list[tuple[int, int, bool]] = []
        for s, e, d in zip(self._starts, self._ends, self._data):
            z = d is None
            if out and out[-1][1] == s and out[-1][2] == z:
                out[-1] = (out[-1][0], e, z)
            else:
                out.append((s, e, z))
        return out

    def write(self, offset: int, data: bytes | None, length: int | None = None) -> None:
        """Lay ``data`` (or ``length`` zero bytes when data is None) over the file."""
        length = len(data) if data is not None else int(length or 0)
        if length <= 0:
            return
        start, end = offset, offset + length
        i = bisect.bisect_right(self._ends, start)
        j = i
        keep_left = keep_right = None
        while j < len(self._starts) and self._starts[j] < end:
            s, e, d = self._starts[j], self._ends[j], self._data[j]
            if s < start:
                keep_left = (s, start, None if d is None else d[: start - s])
            if e > end:
                keep_right = (end, e, None if d is None else d[end - s :])
            j += 1
        new = [x for x in (keep_left, (start, end, data), keep_right) if x is not None]
        self._starts[i:j] = [x[0] for x in new]
        self._ends[i:j] = [x[1] for x in new]
        self._data[i:j] = [x[2] for x in new]
        self.size = max(self.size, end)

    def extend(self, size: int) -> None:
        """Make the file at least ``size`` bytes long (as replaying would)."""
        self.size = max(self.size, size)

    def _read(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.readinto(offset, buf)
        return bytes(buf)

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        length = len(mv)
        self._check_range(offset, length)
        end = offset + length
        i = bisect.bisect_right(self._ends, offset)
        touched = i < len(self._starts) and self._starts[i] < end
        if not touched and end <= self.base.size:
            self.base.readinto(offset, mv)
            return
        n = min(length, max(0, self.base.size - offset))
        if n:
            self.base.readinto(offset, mv[:n])
        if n < length:
            mv[n:] = bytes(length - n)
        while i < len(self._starts) and self._starts[i] < end:
            s, e, d = self._starts[i], self._ends[i], self._data[i]
            a, b = max(s, offset), min(e, end)
            if d is None:
                mv[a - offset : b - offset] = bytes(b - a)
            else:
                mv[a - offset : b - offset] = d[a - s : b - s]
            i += 1

    def close(self) -> None:
        self.base.close()


class LogEntry:
    """One valid log entry (``.raw`` is its header) and where it sits in the log."""

    def __init__(self, raw, log_offset: int, descriptors: list, sectors: list[bytes]):
        self.raw = raw
        self.log_offset = log_offset
        self.descriptors = descriptors  # (kind, parsed descriptor)
        self.sectors = sectors  # the 4 KiB payload of each data descriptor, in order

    @property
    def sequence_number(self) -> int:
        return self.raw.sequence_number

    @property
    def length(self) -> int:
        return self.raw.entry_length

    def __repr__(self) -> str:
        return (
            f"<vhdx LogEntry seq={self.raw.sequence_number} at log+{self.log_offset:#x} "
            f"{len(self.descriptors)} descriptors>"
        )


class VhdxImage(Image):
    """A VHDX file: fixed, dynamic or differencing (.avhdx)."""

    format = FORMAT

    def __init__(self, source: ByteSource, *, path: str | None = None, strict: bool = True):
        super().__init__(source, path=path, strict=strict)
        self.host = OverlaySource(source, name=self.path)
        self.log_entries: list[LogEntry] = []
        self.log_replay: dict | None = None
        self._bitmap_cache: LRUCache = LRUCache(256)
        self.has_parent = self.leave_blocks_allocated = False
        self.payload_state = np.zeros(0, dtype=np.int8)
        self._parse_file_identifier()
        self._parse_headers()
        self._replay_log()
        self._parse_region_tables()
        self._parse_metadata()
        self._read_bat()

    # --- helpers ---------------------------------------------------------------------

    def _problem(self, structure: str, offset: int | None, message: str) -> None:
        """A contradiction: CorruptImage under strict, an error finding in salvage mode."""
        if self.strict:
            self.fail(CorruptImage, message, structure, offset)
        self.finding("error", structure, offset, message)

    def _host_read(self, offset: int, length: int, structure: str, source=None) -> bytes:
        src = source if source is not None else self.host
        if offset < 0 or length < 0 or offset + length > src.size:
            self.fail(CorruptImage, f"{structure} ({length} bytes) runs past the end of the file ({src.size} bytes)", structure, offset)
        return src.read(offset, length)

    # --- header section --------------------------------------------------------------
    def _parse_file_identifier(self) -> None:
        f = self.file
        if f.size < 8 or f.read(0, 8) != SIGNATURE:
            self.fail(NotRecognized, "no vhdxfile signature", "file identifier", 0)
        if f.size < HEADER_SECTION:
            self.fail(CorruptImage, f"file is {f.size} bytes, shorter than the 1 MiB header section", "header section", 0)
        self.file_identifier = FileIdentifier.parse(f.read(0, FileIdentifier.sizeof()))
        self.creator = _utf16(self.file_identifier.creator)

    def _parse_headers(self) -> None:
        self.headers: list = []
        self.header_valid: list[bool] = []
        for i, off in enumerate(HEADER_OFFSETS):
            block = self.file.read(off, HEADER_SIZE)
            h = VhdxHeader.parse(block)
            if h.signature != b"head":
                why = "bad signature"
            elif not checksum_ok(block):
                why = "CRC-32C mismatch"
            elif h.version != 1:
                why = f"unknown version {h.version}"
            else:
                why = None
            self.headers.append(h)
            self.header_valid.append(why is None)
            if why is not None:
                self.finding(
                    "warning", f"header {i + 1}", off, f"header {i + 1} is not valid ({why})"
                )
        v1, v2 = self.header_valid
        if v1 and v2:
            h1, h2 = self.headers
            if h1.sequence_number == h2.sequence_number:
                cur = 0
                if VhdxHeader.build(h1) != VhdxHeader.build(h2):
                    self.finding(
                        "warning",
                        "header",
                        HEADER_OFFSETS[0],
                        "both headers have sequence number "
                        f"{h1.sequence_number} but differ; using header 1",
                    )
            else:
                cur = 0 if h1.sequence_number > h2.sequence_number else 1
        elif v1 or v2:
            cur = 0 if v1 else 1
            self.finding(
                "warning",
                f"header {2 - cur}",
                HEADER_OFFSETS[1 - cur],
                f"falling back to header {cur + 1} (header {2 - cur} is not valid)",
            )
        else:
            if self.strict:
                self.fail(CorruptImage, "neither header is valid", "header", HEADER_OFFSETS[0])
            sig = [h.signature == b"head" for h in self.headers]
            if not any(sig):
                self.fail(CorruptImage, "neither header has the head signature", "header", HEADER_OFFSETS[0])
            seqs = [h.sequence_number if s else -1 for h, s in zip(self.headers, sig)]
            cur = 0 if seqs[0] >= seqs[1] else 1
            self.finding(
                "error",
                "header",
                HEADER_OFFSETS[cur],
                f"neither header is valid; using header {cur + 1} anyway (salvage)",
            )
        self.current_header = cur
        self.header = self.headers[cur]

    # --- log ------------------------------------------------------------------------
    @property
    def log_guid(self) -> str:
        return guid_str(self.header.log_guid)

    @property
    def has_log(self) -> bool:
        return self.header.log_guid != bytes(16)

    def _replay_log(self) -> None:
        h = self.header
        hoff = HEADER_OFFSETS[self.current_header]
        if not self.has_log or h.log_length == 0:
            return
        if h.log_version != 0:
            self.fail(UnsupportedFeature, f"log version {h.log_version}", "header.log_version", hoff + 64)
        if h.log_offset % M or h.log_offset < HEADER_SECTION or h.log_length % M:
            self.problem("header", hoff, f"log at {h.log_offset:#x} (+{h.log_length:#x}) is not 1 MiB-aligned "
                "or lies in the header section")
            return
        if h.log_offset + h.log_length > self.file.size:
            self.problem("log", h.log_offset, f"log ({h.log_length} bytes) runs past the end of the file ({self.file.size})")
            return
        active = self._find_active_sequence()
        if not active:
            self.finding(
                "info",
                "log",
                h.log_offset,
                "LogGuid is set but the log holds no valid sequence: nothing to replay",
            )
            return
        self._apply_log(active)

    def _log_bytes(self, pos: int, length: int) -> bytes:
        """``length`` bytes of the circular log from log offset ``pos``."""
        h = self.header
        first = min(length, h.log_length - pos)
        data = self.file.read(h.log_offset + pos, first)
        if first < length:
            data += self.file.read(h.log_offset, length - first)
        return data

    def _parse_log_entry(self, pos: int, budget: list[int]) -> LogEntry | None:
        """The entry at log offset ``pos`` if it is valid, else None."""
        h = self.header
        raw = self._log_bytes(pos, 64)
        if raw[:4] != b"loge":
            return None
        e = LogEntryHeader.parse(raw)
        n = e.entry_length
        if (
            n < LOG_SECTOR
            or n % LOG_SECTOR
            or n > h.log_length
            or e.sequence_number == 0
            or e.log_guid != h.log_guid
            or e.tail % LOG_SECTOR
            or e.tail >= h.log_length
        ):
            return None
        desc_sectors = -(-(e.descriptor_count + 2) // 128)
        if desc_sectors * LOG_SECTOR > n:
            return None
        budget[0] -= n
        if budget[0] < 0:
            if self.strict:
                self.fail(CorruptImage, "log entries claim more bytes than the log could hold; giving up the scan", "log", h.log_offset + pos)
            return None
        body = self._log_bytes(pos, n)
        if not checksum_ok(body):
            return None
        descriptors = []
        sectors = []
        data_at = desc_sectors * LOG_SECTOR
        for i in range(e.descriptor_count):
            d = body[64 + 32 * i : 96 + 32 * i]
            sig = d[:4]
            if sig == b"zero":
                z = ZeroDescriptor.parse(d)
                if z.zero_length % LOG_SECTOR or z.file_offset % LOG_SECTOR:
                    return None
                if z.sequence_number != e.sequence_number:
                    return None
                descriptors.append(("zero", z))
            elif sig == b"desc":
                dd = DataDescriptor.parse(d)
                if dd.file_offset % LOG_SECTOR or dd.sequence_number != e.sequence_number:
                    return None
                if data_at + LOG_SECTOR > n:
                    return None
                ds = DataSector.parse(body[data_at : data_at + LOG_SECTOR])
                if ds.signature != b"data":
                    return None
                if (ds.sequence_high << 32 | ds.sequence_low) != e.sequence_number:
                    return None
                sectors.append(dd.leading_bytes + ds.data + dd.trailing_bytes)
                data_at += LOG_SECTOR
                descriptors.append(("data", dd))
            else:
                return None
        return LogEntry(e, pos, descriptors, sectors)

    def _find_active_sequence(self) -> list[LogEntry]:
        """The active sequence: the valid run of entries with the highest sequence number
        whose last (head) entry's tail points at one of its own entries."""
        h = self.header
        nslots = h.log_length // LOG_SECTOR
        # 4 KiB slots that start with the entry signature
        candidates: list[int] = []
        step = 256  # slots per read (1 MiB)
        for first in range(0, nslots, step):
            cnt = min(step, nslots - first)
            chunk = self.file.read(h.log_offset + first * LOG_SECTOR, cnt * LOG_SECTOR)
            sigs = np.frombuffer(chunk, dtype="<u4")[:: LOG_SECTOR // 4]
            hits = np.flatnonzero(sigs == int.from_bytes(b"loge", "little"))
            candidates.extend((first + hits).tolist())
        budget = [4 * h.log_length + 4 * M]
        entries: dict[int, LogEntry] = {}
        for slot in candidates:
            e = self._parse_log_entry(slot * LOG_SECTOR, budget)
            if e is not None:
                entries[slot] = e
        succ: dict[int, int] = {}
        for slot, e in entries.items():
            nxt = (slot + e.length // LOG_SECTOR) % nslots
            ne = entries.get(nxt)
            if ne is not None and ne.sequence_number == e.sequence_number + 1 and nxt != slot:
                succ[slot] = nxt
        has_pred = set(succ.values())
        best: list[LogEntry] = []
        for slot in entries:
            if slot in has_pred:
                continue
            chain = [entries[slot]]
            total = entries[slot].length
            cur = slot
            while cur in succ:
                cur = succ[cur]
                total += entries[cur].length
                if total > h.log_length:  # cannot hold more than the log; a loop
                    break
                chain.append(entries[cur])
            head = chain[-1]
            tail_at = next((i for i, e in enumerate(chain) if e.log_offset == head.raw.tail), None)
            if tail_at is None:
                continue
            seq = chain[tail_at:]
            if not best or head.sequence_number > best[-1].sequence_number:
                best = seq
        self._log_valid_entries = len(entries)
        return best

    def _apply_log(self, active: list[LogEntry]) -> None:
        h = self.header
        file_size = self.file.size
        data_sectors = zero_ranges = 0
        for e in active:
            if e.raw.flushed_file_offset > file_size:
                self.problem("log", h.log_offset + e.log_offset, f"log entry {e.sequence_number} says the file was "
                    f"{e.raw.flushed_file_offset} bytes, but it is {file_size}: truncated")
            if e.raw.last_file_offset > MAX_FILE_OFFSET:
                self.problem("log", h.log_offset + e.log_offset, f"log entry {e.sequence_number} has an absurd LastFileOffset")
                return
            k = 0
            for kind, d in e.descriptors:
                if d.file_offset > MAX_FILE_OFFSET or (
                    kind == "zero" and d.file_offset + d.zero_length > MAX_FILE_OFFSET
                ):
                    self.problem("log", h.log_offset + e.log_offset, f"log entry {e.sequence_number} writes at an absurd offset "
                        f"{d.file_offset:#x}")
                    return
                if kind == "data":
                    self.host.write(d.file_offset, e.sectors[k])
                    k += 1
                    data_sectors += 1
                else:
                    self.host.write(d.file_offset, None, d.zero_length)
                    zero_ranges += 1
        head = active[-1]
        if head.raw.last_file_offset > self.host.size:
            self.host.extend(-(-head.raw.last_file_offset // M) * M)
        self.log_entries = active
        self.log_replay = dict(
            entries=len(active),
            data_sectors=data_sectors,
            zero_ranges=zero_ranges,
            first_sequence=active[0].sequence_number,
            last_sequence=head.sequence_number,
            ranges=self.host.segments,
            file_size=self.host.size,
        )

    # --- region tables ---------------------------------------------------------------
    def _parse_region_table(self, off: int):
        if off + REGION_TABLE_SIZE > self.host.size:
            return None, [], "past the end of the file"
        block = self.host.read(off, REGION_TABLE_SIZE)
        rh = RegionTableHeader.parse(block)
        if rh.signature != b"regi":
            return rh, [], "bad signature"
        if not checksum_ok(block):
            return rh, [], "CRC-32C mismatch"
        if rh.entry_count > MAX_TABLE_ENTRIES:
            return rh, [], f"{rh.entry_count} entries (at most 2047)"
        entries = [
            RegionTableEntry.parse(block[16 + 32 * i : 48 + 32 * i]) for i in range(rh.entry_count)
        ]
        return rh, entries, None

    def _parse_region_tables(self) -> None:
        tables = [self._parse_region_table(off) for off in REGION_TABLE_OFFSETS]
        self.region_tables_valid = [t[2] is None for t in tables]
        for i, (_, _, why) in enumerate(tables):
            if why is not None:
                self.finding(
                    "warning",
                    f"region table {i + 1}",
                    REGION_TABLE_OFFSETS[i],
                    f"region table {i + 1} is not valid ({why})",
                )
        if tables[0][2] is None:
            cur = 0
            if tables[1][2] is None and [RegionTableEntry.build(e) for e in tables[0][1]] != [
                RegionTableEntry.build(e) for e in tables[1][1]
            ]:
                self.finding(
                    "warning",
                    "region table 2",
                    REGION_TABLE_OFFSETS[1],
                    "the two region tables differ; using region table 1",
                )
        elif tables[1][2] is None:
            cur = 1
            self.finding(
                "warning",
                "region table 1",
                REGION_TABLE_OFFSETS[0],
                "falling back to region table 2 (region table 1 is not valid)",
            )
        else:
            self.fail(CorruptImage, "neither region table is valid", "region table", 192 * K)
        self.current_region_table = cur
        self.region_table, self.regions = tables[cur][0], tables[cur][1]
        found: dict[bytes, object] = {}
        for i, r in enumerate(self.regions):
            where = REGION_TABLE_OFFSETS[cur] + 16 + 32 * i
            known = r.guid in REGION_NAMES
            if known and r.guid in found:
                self.fail(CorruptImage, f"{REGION_NAMES[r.guid]} region listed twice", "region table entry", where)
            if not known:
                if r.flags & 1:
                    self.fail(UnsupportedFeature, f"required region {guid_str(r.guid)} is not understood", "region table entry", where)
                continue
            found[r.guid] = r
            name = REGION_NAMES[r.guid]
            if r.file_offset % M or r.length % M or r.file_offset < HEADER_SECTION or not r.length:
                self.fail(CorruptImage, f"{name} region at {r.file_offset:#x} (+{r.length:#x}) is not "
                    "1 MiB-aligned or lies in the header section", "region table entry", where)
            if r.file_offset + r.length > self.host.size:
                msg = (f"{name} region ({r.length} bytes) runs past the end of the file "
                       f"({self.host.size} bytes)")
                if r.file_offset < self.host.size and r.length <= MAX_SALVAGED_REGION:
                    # the file is cut short inside the region: salvage mode keeps what it
                    # holds of it (every read is checked)
                    self.problem(f"{name} region", r.file_offset, msg)
                else:
                    self.fail(CorruptImage, msg, f"{name} region", r.file_offset)
        for g in (BAT_GUID, METADATA_GUID):
            if g not in found:
                self.fail(CorruptImage, f"no {REGION_NAMES[g]} region in the region table", "region table", REGION_TABLE_OFFSETS[cur])
        self.bat_region = found[BAT_GUID]
        self.metadata_region = found[METADATA_GUID]
        spans = [
            (r.file_offset, r.file_offset + r.length, REGION_NAMES[r.guid]) for r in found.values()
        ]
        if self.has_log and self.header.log_length:
            lo = self.header.log_offset
            spans.append((lo, lo + self.header.log_length, "log"))
        spans.sort()
        for (_a0, a1, an), (b0, _, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                self.problem(f"{bn} region", b0, f"{bn} region overlaps the {an} region")

    # --- metadata --------------------------------------------------------------------
    def _parse_metadata(self) -> None:
        mr = self.metadata_region
        base = mr.file_offset
        table = self._host_read(base, min(METADATA_TABLE_SIZE, mr.length), "metadata table")
        mh = MetadataTableHeader.parse(table)
        if mh.signature != b"metadata":
            self.fail(CorruptImage, "bad metadata table signature", "metadata table", base)
        if mh.entry_count > MAX_TABLE_ENTRIES:
            self.fail(CorruptImage, f"{mh.entry_count} metadata entries (at most 2047)", "metadata table", base)
        self.metadata_table = mh
        self.metadata_entries = []
        items: dict[bytes, bytes] = {}
        for i in range(mh.entry_count):
            where = base + 32 + 32 * i
            me = MetadataTableEntry.parse(table[32 + 32 * i : 64 + 32 * i])
            self.metadata_entries.append(me)
            name = METADATA_NAMES.get(me.item_id)
            if name is None:
                if me.flags & 4:
                    self.fail(UnsupportedFeature, f"required metadata item {guid_str(me.item_id)} is not understood", "metadata table entry", where)
                continue
            if me.item_id in items:
                self.fail(CorruptImage, f"metadata item {name} listed twice", "metadata table entry", where)
            if me.length > MAX_ITEM_LENGTH or (
                me.length and (me.offset < METADATA_TABLE_SIZE or me.offset + me.length > mr.length)
            ):
                self.fail(CorruptImage, f"metadata item {name} at +{me.offset:#x} ({me.length} bytes) lies "
                    "outside the metadata region", "metadata table entry", where)
            items[me.item_id] = self._host_read(base + me.offset, me.length, f"metadata {name}")
        for g in REQUIRED_ITEMS:
            if g not in items:
                self.fail(CorruptImage, f"required metadata item {METADATA_NAMES[g]} is missing", "metadata table", base)

        def need(g: bytes, n: int) -> bytes:
            v = items[g]
            if len(v) < n:
                self.fail(CorruptImage, f"metadata item {METADATA_NAMES[g]} is {len(v)} bytes, {n} needed", f"metadata {METADATA_NAMES[g]}", base)
            return v

        fp = FileParameters.parse(need(FILE_PARAMETERS_GUID, 8))
        self.file_parameters = fp
        self.block_size = fp.block_size
        self.leave_blocks_allocated = bool(fp.flags & 1)
        self.has_parent = bool(fp.flags & 2)
        self.virtual_disk_size = int.from_bytes(need(VIRTUAL_DISK_SIZE_GUID, 8)[:8], "little")
        self.page83_data = need(PAGE_83_DATA_GUID, 16)[:16]
        self.virtual_disk_id = guid_str(self.page83_data)
        self.logical_sector_size = int.from_bytes(need(LOGICAL_SECTOR_SIZE_GUID, 4)[:4], "little")
        self.physical_sector_size = int.from_bytes(need(PHYSICAL_SECTOR_SIZE_GUID, 4)[:4], "little")
        self.metadata_items = items
        bs = self.block_size
        if bs < M or bs > 256 * M or bs & (bs - 1):
            self.fail(CorruptImage, f"block size {bs} is not a power of 2 in 1 MiB..256 MiB", "metadata file parameters", base)
        if self.logical_sector_size not in (512, 4096):
            self.fail(CorruptImage, f"logical sector size {self.logical_sector_size} (512 or 4096 expected)", "metadata logical sector size", base)
        if self.physical_sector_size not in (512, 4096):
            self.finding(
                "warning",
                "metadata physical sector size",
                base,
                f"physical sector size {self.physical_sector_size} (512 or 4096 expected)",
            )
        vs = self.virtual_disk_size
        if vs > MAX_VIRTUAL_SIZE or vs % self.logical_sector_size:
            self.fail(CorruptImage, f"virtual disk size {vs} is above 64 TiB or not a multiple of the sector size", "metadata virtual disk size", base)
        self.size = vs
        self.cluster_size = bs
        self.parent_locator: dict[str, str] = {}
        self.parent_locator_type: str | None = None
        if PARENT_LOCATOR_GUID in items:
            self._parse_parent_locator(items[PARENT_LOCATOR_GUID], base)
        elif self.has_parent:
            self.fail(CorruptImage, "HasParent is set but there is no parent locator", "metadata table", base)

    def _parse_parent_locator(self, data: bytes, base: int) -> None:
        where = "metadata parent locator"
        if len(data) < ParentLocatorHeader.sizeof():
            self.fail(CorruptImage, "parent locator shorter than its header", where, base)
        ph = ParentLocatorHeader.parse(data)
        self.parent_locator_type = guid_str(ph.locator_type)
        if 20 + 12 * ph.key_value_count > len(data):
            self.fail(CorruptImage, f"{ph.key_value_count} parent locator entries do not fit in {len(data)} bytes", where, base)
        out: dict[str, str] = {}
        for i in range(ph.key_value_count):
            e = ParentLocatorEntry.parse(data[20 + 12 * i : 32 + 12 * i])
            if (
                e.key_offset + e.key_length > len(data)
                or e.value_offset + e.value_length > len(data)
                or e.key_length % 2
                or e.value_length % 2
            ):
                self.fail(CorruptImage, f"parent locator entry {i} points outside the item", where, base)
            key = data[e.key_offset : e.key_offset + e.key_length].decode("utf-16-le", "replace")
            val = data[e.value_offset : e.value_offset + e.value_length].decode(
                "utf-16-le", "replace"
            )
            out[key] = val
        self.parent_locator = out

    # --- BAT -------------------------------------------------------------------------
    def _read_bat(self) -> None:
        bs, lss = self.block_size, self.logical_sector_size
        self.chunk_ratio = cr = SECTORS_PER_CHUNK * lss // bs
        self.sectors_per_block = bs // lss
        nblocks = -(-self.size // bs)
        nbitmaps = -(-nblocks // cr)
        if self.has_parent:
            nentries = nbitmaps * (cr + 1)
        else:
            nentries = nblocks + (nblocks - 1) // cr if nblocks else 0
        self.payload_blocks = nblocks
        self.bat_entries = nentries
        br = self.bat_region
        if nentries * 8 > br.length:
            self.fail(CorruptImage, f"BAT region of {br.length} bytes is too small for {nentries} entries", "BAT", br.file_offset)
        have = nentries
        cut = br.file_offset + nentries * 8 > self.host.size
        if cut and not self.strict and nentries <= MAX_SALVAGED_BAT:
            have = max(0, (self.host.size - br.file_offset) // 8)  # salvage: a cut-short BAT
        bat = np.zeros(nentries, dtype=np.uint64)
        if have:
            raw = self._host_read(br.file_offset, have * 8, "BAT")
            bat[:have] = np.frombuffer(raw, dtype="<u8")
        self.bat = bat
        self.bat_have = have
        k = np.arange(nblocks, dtype=np.int64)
        pidx = k + k // cr
        pe = bat[pidx]
        pstate = (pe & np.uint64(7)).astype(np.int8)
        mb = np.minimum(pe >> np.uint64(20), np.uint64(MAX_FILE_OFFSET >> 20)).astype(np.int64)
        poff = mb << 20
        self.payload_state = pstate
        self.payload_offset = poff
        # sector bitmap entries (one per chunk; the last may be absent in a non-diff file)
        sidx = np.arange(nbitmaps, dtype=np.int64) * (cr + 1) + cr
        sidx = sidx[sidx < nentries]
        se = bat[sidx]
        self.bitmap_state = (se & np.uint64(7)).astype(np.int8)
        smb = np.minimum(se >> np.uint64(20), np.uint64(MAX_FILE_OFFSET >> 20)).astype(np.int64)
        self.bitmap_offset = smb << 20
        self.bitmap_index = sidx

        code = np.full(nblocks, B_UNALLOC, dtype=np.int8)
        if self.has_parent:
            code[pstate == PAYLOAD_BLOCK_NOT_PRESENT] = B_UNALLOC
            for s in (
                PAYLOAD_BLOCK_UNDEFINED,
                PAYLOAD_BLOCK_ZERO,
                PAYLOAD_BLOCK_UNMAPPED,
                PAYLOAD_BLOCK_UNMAPPED_V095,
            ):
                code[pstate == s] = B_ZERO
        else:
            code[pstate == PAYLOAD_BLOCK_ZERO] = B_ZERO
        code[pstate == PAYLOAD_BLOCK_FULLY_PRESENT] = B_DATA
        code[pstate == PAYLOAD_BLOCK_PARTIALLY_PRESENT] = B_PARTIAL
        code[pstate == 4] = B_DAMAGED
        hsize = self.host.size
        present = (code == B_DATA) | (code == B_PARTIAL)
        bad = present & ((poff < HEADER_SECTION) | (poff >= hsize))
        # a partially present block needs its chunk's sector bitmap block
        sb_ok = np.zeros(nbitmaps, dtype=bool)
        n_sb = len(self.bitmap_state)
        sb_ok[:n_sb] = (
            (self.bitmap_state == SB_BLOCK_PRESENT)
            & (self.bitmap_offset >= HEADER_SECTION)
            & (self.bitmap_offset + SECTOR_BITMAP_BLOCK <= hsize)
        )
        bad |= (code == B_PARTIAL) & ~sb_ok[k // cr] if nblocks else np.zeros(0, dtype=bool)
        bad |= pidx >= have  # entries lost with the end of the file
        code[bad] = B_DAMAGED
        # blocks over the file's own regions or over another block (cross-linked) are
        # damaged too, never read (containers.base.misplaced)
        starts, lens, labels = self._allocated_spans()
        h = self.header
        own = [(0, HEADER_SECTION), (br.file_offset, br.file_offset + br.length),
               (self.metadata_region.file_offset,
                self.metadata_region.file_offset + self.metadata_region.length)]
        if h.log_length:
            own.append((h.log_offset, h.log_offset + h.log_length))
        region, clash = misplaced(starts, starts + lens, own)
        wrong = labels[(region >= 0) | clash]
        self._misplaced = np.zeros(nblocks, dtype=bool)
        self._misplaced[wrong[wrong >= 0]] = True
        self._misplaced |= (code == B_PARTIAL) & np.isin(k // cr, -1 - wrong[wrong < 0])
        code[self._misplaced & ((code == B_DATA) | (code == B_PARTIAL))] = B_DAMAGED
        self.block_code = code

    def _block_problem(self, k: int) -> str:
        st = int(self.payload_state[k])
        off = int(self.payload_offset[k])
        if k + k // self.chunk_ratio >= self.bat_have:
            return (f"BAT entry for payload block {k} lies past the end of the file "
                    f"({self.host.size} bytes): the BAT is cut short")
        if st == 4:
            return f"BAT entry for payload block {k} has the reserved state 4"
        if self._misplaced[k] and HEADER_SECTION <= off < self.host.size:
            return (f"payload block {k} at {off:#x} (or its sector bitmap block) overlaps the "
                    "file's own regions or another block: an impossible place")
        if st == PAYLOAD_BLOCK_PARTIALLY_PRESENT and HEADER_SECTION <= off < self.host.size:
            return f"payload block {k} is partially present but its sector bitmap block is missing"
        where = "past the end of the file" if off >= self.host.size else "inside the header section"
        return f"BAT entry for payload block {k} points to {off:#x}, {where}"

    def _bat_entry_offset(self, k: int) -> int:
        return self.bat_region.file_offset + 8 * (k + k // self.chunk_ratio)

    # --- runs ------------------------------------------------------------------------
    def _runs(self, start: int, end: int):
        bs = self.block_size
        size = self.size
        b = start // bs
        last = -(-end // bs)
        code, off = self.block_code, self.payload_offset
        step = 1 << 16
        while b < last:
            stop = min(last, b + step)
            st = code[b:stop]
            ho = off[b:stop]
            brk = np.ones(len(st), dtype=bool)
            if len(st) > 1:
                same = st[1:] == st[:-1]
                cont = np.where(st[1:] == B_DATA, ho[1:] == ho[:-1] + bs, True)
                single = (st[1:] == B_PARTIAL) | (st[1:] == B_DAMAGED)
                brk[1:] = ~(same & cont) | single
            starts = np.flatnonzero(brk)
            stops = np.append(starts[1:], len(st))
            for a, z in zip(starts.tolist(), stops.tolist()):
                c = int(st[a])
                vs = (b + a) * bs
                ve = min((b + z) * bs, size)
                if c == B_DATA:
                    yield from self._data_run(vs, ve, int(ho[a]))
                elif c == B_PARTIAL:
                    yield from self._partial_runs(b + a, vs, ve)
                elif c == B_DAMAGED:
                    k = b + a
                    self.problem("BAT", self._bat_entry_offset(k), self._block_problem(k))
                    yield Run(vs, ve - vs, DAMAGED)
                elif c == B_ZERO:
                    yield Run(vs, ve - vs, ZERO)
                else:
                    yield Run(vs, ve - vs, UNALLOCATED)
            b = stop

    def _data_run(self, vs: int, ve: int, host: int):
        room = self.host.size - host
        if room < ve - vs:  # the last block is cut short by the end of the file
            if room > 0:
                yield Run(vs, room, DATA, host_file=self.path, host_offset=host, source=self.host)
            # the file is cut short: QEMU reads zeros, we do not invent them
            self.problem("payload block", max(host, self.host.size), f"payload block data for disk bytes {vs + max(room, 0):#x}..{ve:#x} "
                          f"lies past the end of the file ({self.host.size} bytes): the file "
                          "is cut short")
            yield Run(vs + max(room, 0), ve - vs - max(room, 0), DAMAGED)
        else:
            yield Run(vs, ve - vs, DATA, host_file=self.path, host_offset=host, source=self.host)

    def _block_sector_runs(self, k: int) -> list[tuple[int, int, bool]]:
        """(first sector, end sector, present) runs of payload block ``k``'s sector bitmap."""

        def load():
            cr, spb = self.chunk_ratio, self.sectors_per_block
            sb = int(self.bitmap_offset[k // cr])
            at = sb + (k % cr) * (spb // 8)
            raw = self._host_read(at, spb // 8, "sector bitmap block")
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
            edges = np.flatnonzero(np.diff(bits)) + 1
            s = np.concatenate([[0], edges]).tolist()
            e = np.concatenate([edges, [spb]]).tolist()
            return [(a, z, bool(bits[a])) for a, z in zip(s, e)]

        return self._bitmap_cache.get(k, load)

    def _partial_runs(self, k: int, vs: int, ve: int):
        lss = self.logical_sector_size
        bstart = k * self.block_size
        host = int(self.payload_offset[k])
        for a, z, present in self._block_sector_runs(k):
            rs, re = bstart + a * lss, min(bstart + z * lss, ve)
            if rs >= ve:
                break
            if present:
                yield from self._data_run(rs, re, host + a * lss)
            else:
                yield Run(rs, re - rs, UNALLOCATED)

    # --- parents ---------------------------------------------------------------------
    @property
    def parent_hint(self) -> ParentHint | None:
        if not self.has_parent:
            return None
        loc = self.parent_locator
        names = []
        if loc.get("relative_path"):
            names.append(loc["relative_path"])
        for key in ("absolute_win32_path", "volume_path"):
            if loc.get(key):
                names.append(_windows_basename(loc[key]))
        if not names:
            return None
        seen: list[str] = []
        for n in names:
            if n not in seen:
                seen.append(n)
        return ParentHint(
            path=seen[0],
            format=FORMAT,
            uuid=_norm_guid_text(loc.get("parent_linkage")),
            alternatives=seen[1:],
            extra=dict(loc),
        )

    def verify_parent(self, parent: Image) -> None:
        """The parent's DataWriteGuid must be this file's parent_linkage (or linkage2)."""
        want = {
            _norm_guid_text(self.parent_locator.get(k))
            for k in ("parent_linkage", "parent_linkage2")
        } - {None}
        if not isinstance(parent, VhdxImage):
            self.finding(
                "warning",
                "parent locator",
                None,
                f"parent {parent.path} is not a VHDX file; its identity cannot be checked",
            )
            return
        have = guid_str(parent.header.data_write_guid)
        if want and have not in want:
            msg = (
                f"parent {parent.path} has DataWriteGuid {have}, but this file expects "
                f"parent_linkage {self.parent_locator.get('parent_linkage')}: the parent "
                "changed after this differencing file was made"
            )
            if self.strict:
                self.fail(CorruptImage, msg, "parent locator", None)
            self.finding("error", "parent locator", None, msg)
        if parent.size != self.size:
            self.finding(
                "warning",
                "parent locator",
                None,
                f"parent virtual size {parent.size} differs from this file's {self.size}",
            )

    # --- reports ---------------------------------------------------------------------
    @property
    def subformat(self) -> str:
        if self.has_parent:
            return "differencing"
        st = self.payload_state
        if self.leave_blocks_allocated and bool(
            np.all((st == PAYLOAD_BLOCK_FULLY_PRESENT) | (st == PAYLOAD_BLOCK_ZERO))
        ):
            return "fixed"
        return "dynamic"

    @property
    def data_write_guid(self) -> str:
        return guid_str(self.header.data_write_guid)

    @property
    def file_write_guid(self) -> str:
        return guid_str(self.header.file_write_guid)

    def flags(self) -> list[str]:
        out = []
        if self.has_parent:
            out.append("has parent")
        if self.leave_blocks_allocated:
            out.append("leave blocks allocated")
        if self.log_replay:
            out.append("log replayed in memory")
        return out

    def info_fields(self) -> dict:
        h = self.header
        return dict(
            uuid=self.virtual_disk_id,
            creator=self.creator,
            block_size=self.block_size,
            logical_sector_size=self.logical_sector_size,
            physical_sector_size=self.physical_sector_size,
            data_write_guid=self.data_write_guid,
            file_write_guid=self.file_write_guid,
            has_parent=self.has_parent,
            leave_blocks_allocated=self.leave_blocks_allocated,
            parent_locator=dict(self.parent_locator) if self.parent_locator else None,
            log_guid=self.log_guid,
            log_version=h.log_version,
            log_offset=h.log_offset,
            log_length=h.log_length,
            log_replayed=self.log_replay["entries"] if self.log_replay else 0,
            header_sequence_number=h.sequence_number,
            current_header=self.current_header + 1,
        )

    def _allocated_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Host ranges the BAT points to, unchecked: (starts, lengths, labels) where a label
        k >= 0 is payload block k and -1 - c is sector bitmap block c."""
        st = self.payload_state
        ks = np.flatnonzero(
            (st == PAYLOAD_BLOCK_FULLY_PRESENT) | (st == PAYLOAD_BLOCK_PARTIALLY_PRESENT)
        )
        cs = np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT)
        starts = np.concatenate([self.payload_offset[ks], self.bitmap_offset[cs]])
        lens = np.concatenate(
            [np.full(len(ks), self.block_size, np.int64), np.full(len(cs), SECTOR_BITMAP_BLOCK)]
        )
        labels = np.concatenate([ks, -1 - cs])
        return starts.astype(np.int64), lens.astype(np.int64), labels

    def structures(self) -> list[dict]:
        rows: list[dict] = []

        def row(name: str, off: int, length: int, desc: str) -> None:
            rows.append(
                dict(
                    name=name, host_file=self.path, host_offset=off, length=length, description=desc
                )
            )

        row("file identifier", 0, 64 * K, f"vhdxfile, creator {self.creator!r}")
        for i, off in enumerate(HEADER_OFFSETS):
            state = "current" if i == self.current_header else "valid"
            state = state if self.header_valid[i] else "not valid"
            row(
                f"header {i + 1}",
                off,
                HEADER_SIZE,
                f"sequence {self.headers[i].sequence_number}, {state}",
            )
        for i, off in enumerate(REGION_TABLE_OFFSETS):
            state = "current" if i == self.current_region_table else "copy"
            state = state if self.region_tables_valid[i] else "not valid"
            row(
                f"region table {i + 1}",
                off,
                REGION_TABLE_SIZE,
                f"{len(self.regions)} entries, {state}",
            )
        h = self.header
        if h.log_length:
            if self.log_replay:
                what = f"{self.log_replay['entries']} entries replayed in memory"
            else:
                what = "LogGuid set, nothing to replay" if self.has_log else "empty"
            row("log", h.log_offset, h.log_length, what)
            for e in self.log_entries:
                row(
                    f"log entry {e.sequence_number}",
                    h.log_offset + e.log_offset,
                    e.length,
                    f"{len(e.descriptors)} descriptors",
                )
        mr = self.metadata_region
        row("metadata region", mr.file_offset, mr.length, f"{len(self.metadata_entries)} items")
        row(
            "metadata table",
            mr.file_offset,
            METADATA_TABLE_SIZE,
            f"{self.metadata_table.entry_count} entries",
        )
        for me in self.metadata_entries:
            name = METADATA_NAMES.get(me.item_id, f"item {guid_str(me.item_id)}")
            row(f"metadata: {name}", mr.file_offset + me.offset, me.length, f"flags {me.flags:#x}")
        row(
            "BAT",
            self.bat_region.file_offset,
            self.bat_entries * 8,
            f"{self.payload_blocks} payload blocks of {self.block_size} bytes, "
            f"chunk ratio {self.chunk_ratio}",
        )
        for c in np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT).tolist():
            row(
                f"sector bitmap block {c}",
                int(self.bitmap_offset[c]),
                SECTOR_BITMAP_BLOCK,
                f"sectors of payload blocks {c * self.chunk_ratio}..",
            )
        # payload blocks, coalesced into contiguous host ranges
        bs = self.block_size
        ks = np.flatnonzero((self.block_code == B_DATA) | (self.block_code == B_PARTIAL))
        if len(ks):
            offs = self.payload_offset[ks]
            order = np.argsort(offs, kind="stable")
            offs, ks = offs[order], ks[order]
            brk = np.ones(len(offs), dtype=bool)
            brk[1:] = offs[1:] != offs[:-1] + bs
            starts = np.flatnonzero(brk)
            stops = np.append(starts[1:], len(offs))
            for a, z in zip(starts.tolist(), stops.tolist()):
                row(
                    "payload blocks",
                    int(offs[a]),
                    (z - a) * bs,
                    f"{z - a} blocks from block {int(ks[a])}",
                )
        return rows

    def check(self) -> list[dict]:
        """Findings: bad checksums and fallbacks, the replayed log, bad or overlapping BAT
        entries."""
        rows = self.findings_rows()

        def add(sev, structure, off, msg):
            row = dict(severity=sev, structure=structure, host_offset=off, message=msg)
            if row not in rows:
                rows.append(row)

        if self.log_replay:
            r = self.log_replay
            spans = ", ".join(
                f"[{s:#x}, {e:#x}){' zero' if z else ''}" for s, e, z in r["ranges"][:20]
            )
            more = f" and {len(r['ranges']) - 20} more" if len(r["ranges"]) > 20 else ""
            add(
                "info",
                "log",
                self.header.log_offset,
                f"replayed {r['entries']} log entries (sequence {r['first_sequence']}.."
                f"{r['last_sequence']}: {r['data_sectors']} data sectors, {r['zero_ranges']} "
                f"zero ranges) in memory over file ranges {spans}{more}; the file is unchanged",
            )
        try:
            self._check_bat(add)
        except Exception as e:  # never raise from check()
            add("error", "BAT", self.bat_region.file_offset, f"BAT check failed: {e}")
        return rows

    def _check_bat(self, add) -> None:
        bs = self.block_size
        hsize = self.host.size
        st = self.payload_state
        off = self.payload_offset
        diff = self.has_parent
        for k in np.flatnonzero(self.block_code == B_DAMAGED).tolist():
            add("error", "BAT", self._bat_entry_offset(k), self._block_problem(k))
        data = np.flatnonzero(self.block_code == B_DATA)
        short = data[(off[data] + bs > hsize) & (off[data] < hsize)]
        for k in short.tolist():
            add(
                "warning",
                "BAT",
                self._bat_entry_offset(k),
                f"payload block {k} at {int(off[k]):#x} is cut short by the end of the file; "
                "its tail reads as zeros",
            )
        if not diff:
            for k in np.flatnonzero(st == PAYLOAD_BLOCK_PARTIALLY_PRESENT).tolist():
                add(
                    "error",
                    "BAT",
                    self._bat_entry_offset(k),
                    f"payload block {k} is PARTIALLY_PRESENT in a file without a parent",
                )
            for c in np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT).tolist():
                add(
                    "warning",
                    "BAT",
                    self.bat_region.file_offset + 8 * int(self.bitmap_index[c]),
                    f"sector bitmap block {c} is present in a file without a parent",
                )
        bad_sb = (self.bitmap_state != SB_BLOCK_NOT_PRESENT) & (
            self.bitmap_state != SB_BLOCK_PRESENT
        )
        for c in np.flatnonzero(bad_sb).tolist():
            add(
                "error",
                "BAT",
                self.bat_region.file_offset + 8 * int(self.bitmap_index[c]),
                f"sector bitmap entry {c} has the reserved state {int(self.bitmap_state[c])}",
            )
        for c in np.flatnonzero(self.bitmap_state == SB_BLOCK_PRESENT).tolist():
            o = int(self.bitmap_offset[c])
            if o < HEADER_SECTION or o + SECTOR_BITMAP_BLOCK > hsize:
                add(
                    "error",
                    "BAT",
                    self.bat_region.file_offset + 8 * int(self.bitmap_index[c]),
                    f"sector bitmap block {c} at {o:#x} lies outside the file",
                )
        # overlaps between allocated blocks and with the file's own regions
        starts, lens, labels = self._allocated_spans()
        keep = starts < hsize
        starts, lens, labels = starts[keep], lens[keep], labels[keep]
        if not len(starts):
            return
        h = self.header
        fixed = [
            (0, HEADER_SECTION, "header section"),
            (self.bat_region.file_offset, self.bat_region.length, "BAT region"),
            (self.metadata_region.file_offset, self.metadata_region.length, "metadata region"),
        ]
        if h.log_length:
            fixed.append((h.log_offset, h.log_length, "log"))

        def name(label: int) -> str:
            return f"payload block {label}" if label >= 0 else f"sector bitmap block {-1 - label}"

        order = np.argsort(starts, kind="stable")
        ss, ee, ll = starts[order], starts[order] + lens[order], labels[order]
        running_end = np.maximum.accumulate(ee)
        over = np.flatnonzero(ss[1:] < running_end[:-1]) + 1
        for i in over[:1000].tolist():
            add(
                "error",
                "BAT",
                int(ss[i]),
                f"{name(int(ll[i]))} at {int(ss[i]):#x} overlaps another block",
            )
        for fs, fn, fname in fixed:
            hit = np.flatnonzero((ss < fs + fn) & (ee > fs))
            for i in hit[:1000].tolist():
                add(
                    "error",
                    "BAT",
                    int(ss[i]),
                    f"{name(int(ll[i]))} at {int(ss[i]):#x} overlaps the {fname}",
                )


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> VhdxImage:
    """Open a VHDX file (log replayed in memory if one is pending)."""
    return VhdxImage(source, path=path or getattr(source, "path", None), strict=strict)


__all__ = ["FORMAT", "probe", "open_image", "VhdxImage", "OverlaySource", "crc32c"]
