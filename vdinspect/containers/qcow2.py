"""QCOW2 (QEMU copy-on-write, versions 2 and 3).

Facts from QEMU's "qcow2 image format" document (docs/interop/qcow2.txt). All numbers on
disk are big-endian. The virtual disk is cut into clusters; a two-level table (L1 -> L2)
maps each guest cluster to a host cluster, a compressed cluster, a zero cluster, or
nothing (read from the backing file). Refcounts count the references to each host cluster.
"""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
from construct import (
    Bytes,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Padding,
    Struct,
    this,
)

from ..errors import (
    CorruptImage,
    EncryptedImage,
    MissingDependency,
    MissingFile,
    UnsupportedFeature,
)
from ..io import ByteSource, FileSource, LRUCache
from .base import DAMAGED, DATA, UNALLOCATED, ZERO, Image, ParentHint, Run, data_structures

FORMAT = "qcow2"
MAGIC = b"QFI\xfb"

# --- on-disk structures ----------------------------------------------------------------

QCowHeader = Struct(
    "magic" / Bytes(4) * "QFI\\xfb",
    "version" / Int32ub * "2 or 3",
    "backing_file_offset" / Int64ub * "host offset of the backing file name, 0 = none",
    "backing_file_size" / Int32ub * "length of the backing file name, bytes (< 1024)",
    "cluster_bits" / Int32ub * "log2 of the cluster size, bytes (9..21)",
    "size" / Int64ub * "virtual disk size, bytes",
    "crypt_method" / Int32ub * "0 none, 1 AES, 2 LUKS",
    "l1_size" / Int32ub * "entries in the active L1 table",
    "l1_table_offset" / Int64ub * "host offset of the active L1 table",
    "refcount_table_offset" / Int64ub * "host offset of the refcount table",
    "refcount_table_clusters" / Int32ub * "size of the refcount table, clusters",
    "nb_snapshots" / Int32ub * "number of internal snapshots",
    "snapshots_offset" / Int64ub * "host offset of the snapshot table",
)  # 72 bytes: the whole version 2 header

QCowHeaderV3 = Struct(
    "incompatible_features" / Int64ub * "bit 0 dirty, 1 corrupt, 2 external data file, "
    "3 compression type, 4 extended L2",
    "compatible_features" / Int64ub * "bit 0 lazy refcounts",
    "autoclear_features" / Int64ub * "bit 0 bitmaps consistent, 1 data file is raw",
    "refcount_order" / Int32ub * "refcount width = 1 << refcount_order bits",
    "header_length" / Int32ub * "length of the header structure, bytes (>= 104)",
)  # bytes 72..103

QCowHeaderFull = Struct(
    *QCowHeader.subcons,
    *QCowHeaderV3.subcons,
    "compression_type" / If(this.header_length > 104, Int8ub) * "0 zlib, 1 zstd "
    "(present when header_length > 104)",
    "padding" / Bytes(lambda c: max(0, c.header_length - 105)) * "zeros up to header_length",
)  # the whole version 3 header as stored (header_length bytes): what explain("header") shows

HeaderExtension = Struct(
    "type" / Int32ub * "extension type (0 = end of the list)",
    "length" / Int32ub * "length of the data, bytes (padded to 8 on disk)",
)

FeatureNameEntry = Struct(
    "type" / Int8ub * "0 incompatible, 1 compatible, 2 autoclear",
    "bit" / Int8ub * "bit number in that feature field",
    "name" / Bytes(46) * "NUL-padded ASCII name",
)

BitmapsExtension = Struct(
    "nb_bitmaps" / Int32ub * "number of persistent dirty bitmaps",
    Padding(4),
    "bitmap_directory_size" / Int64ub * "bytes",
    "bitmap_directory_offset" / Int64ub * "host offset",
)

BitmapDirectoryEntry = Struct(
    "bitmap_table_offset" / Int64ub * "host offset of the bitmap table",
    "bitmap_table_size" / Int32ub * "entries (u64) in the bitmap table",
    "flags" / Int32ub * "bit 0 in_use, 1 auto",
    "type" / Int8ub * "1 = dirty tracking bitmap",
    "granularity_bits" / Int8ub * "log2 of bytes per bit",
    "name_size" / Int16ub * "bytes",
    "extra_data_size" / Int32ub * "bytes",
)  # 24 bytes, then extra data, name, padding to 8

CryptoHeaderExtension = Struct(
    "offset" / Int64ub * "host offset of the encryption header",
    "length" / Int64ub * "length of the encryption header, bytes",
)

SnapshotHeader = Struct(
    "l1_table_offset" / Int64ub * "host offset of the snapshot's L1 table",
    "l1_size" / Int32ub * "entries in that L1 table",
    "id_str_size" / Int16ub * "bytes",
    "name_size" / Int16ub * "bytes",
    "date_sec" / Int32ub * "creation time, seconds since the epoch",
    "date_nsec" / Int32ub * "nanoseconds",
    "vm_clock_nsec" / Int64ub * "guest clock at the snapshot, ns",
    "vm_state_size" / Int32ub * "saved VM state, bytes (0 = disk-only)",
    "extra_data_size" / Int32ub * "bytes of extra data after this header",
)  # 40 bytes, then extra data, id, name, padding to 8

SnapshotExtraData = Struct(
    "vm_state_size_large" / Int64ub * "VM state size, bytes (64-bit)",
    "disk_size" / Int64ub * "virtual disk size at the snapshot, bytes",
    "icount" / Int64ub * "instruction count (record/replay), -1 = none",
)

EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_NAMES = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441
EXTENSION_NAMES = {
    EXT_BACKING_FORMAT: "backing format",
    EXT_FEATURE_NAMES: "feature name table",
    EXT_BITMAPS: "bitmaps",
    EXT_CRYPTO: "full disk encryption header pointer",
    EXT_DATA_FILE: "external data file name",
}

INCOMPAT_DIRTY, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE = 1 << 0, 1 << 1, 1 << 2
INCOMPAT_COMPRESSION, INCOMPAT_EXTL2 = 1 << 3, 1 << 4
INCOMPAT_KNOWN = 0x1F
COMPAT_LAZY_REFCOUNTS = 1 << 0
AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW = 1 << 0, 1 << 1
FEATURE_DEFAULT_NAMES = {
    (0, 0): "dirty",
    (0, 1): "corrupt",
    (0, 2): "external data file",
    (0, 3): "compression type",
    (0, 4): "extended L2 entries",
    (1, 0): "lazy refcounts",
    (2, 0): "bitmaps",
    (2, 1): "raw external data",
}

L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
QCOW_OFLAG_COPIED = 1 << 63
QCOW_OFLAG_COMPRESSED = 1 << 62
QCOW_OFLAG_ZERO = 1
MAX_L1_BYTES = 32 << 20  # QEMU's limit on L1 tables
L1E_RESERVED_MASK = 0x7F000000000001FF  # bits that must be zero in an L1 entry
L2E_STD_RESERVED_MASK = 0x3F000000000001FE  # ... in a standard (uncompressed) L2 entry
MAX_REFTABLE_BYTES = 8 << 20 << 3
MAX_CHECK_ROWS = 10_000  # check() lists this many refcount problems, then counts the rest

# unit states inside decoded L2 tables
S_UNALLOC, S_ZERO, S_DATA, S_COMP, S_DAMAGED = 0, 1, 2, 3, 4
STATE_NAME = {S_UNALLOC: UNALLOCATED, S_ZERO: ZERO, S_DATA: DATA, S_COMP: DATA, S_DAMAGED: DAMAGED}


def probe(head: bytes) -> bool:
    """QCOW2 files start with QFI\\xfb and a big-endian version of 2 or more.

    As in QEMU's probe, a later version is claimed here and then refused as unsupported
    (rather than read as a raw disk); version 1 is QCOW (v1).
    """
    return len(head) >= 8 and head[:4] == MAGIC and int.from_bytes(head[4:8], "big") >= 2


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


INT64_MAX = (1 << 63) - 1
# Report rows become DataFrames with nullable Int64 columns, built through float64 when a
# column mixes None and ints: above 2**53 values lose precision (and fail the cast). No
# host file holds 8 PiB, so a larger offset read from an image is garbage anyway.
FRAME_INT_MAX = (1 << 53) - 1


def _fit_int64(rows: list[dict], note: str) -> list[dict]:
    """Copies of report rows whose ``host_offset``/``length`` (read from a damaged image)
    fit the int64 DataFrame columns: a value that does not moves into the ``note`` text."""
    out = []
    for r in rows:
        for key in ("host_offset", "length"):
            v = r.get(key)
            if v is not None and not 0 <= v <= FRAME_INT_MAX:
                r = dict(r)
                r[key] = None
                r[note] = f"{r.get(note) or ''} ({key} {int(v):#x} is out of range)".lstrip()
        out.append(r)
    return out


def _int64_or_none(v: int | None) -> int | None:
    return v if v is None or 0 <= v <= FRAME_INT_MAX else None


class Snapshot:
    """One internal snapshot entry (``.raw`` keeps the parsed structure)."""

    def __init__(self, raw, extra, id_str: str, name: str, offset: int, length: int):
        self.raw = raw
        self.extra = extra
        self.id = id_str
        self.name = name
        self.host_offset = offset
        self.length = length

    @property
    def created(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.raw.date_sec + self.raw.date_nsec / 1e9, dt.UTC)

    @property
    def vm_state_size(self) -> int:
        if self.extra is not None and self.extra.vm_state_size_large is not None:
            return self.extra.vm_state_size_large
        return self.raw.vm_state_size

    def virtual_size(self, default: int) -> int:
        if self.extra is not None and self.extra.disk_size is not None:
            return self.extra.disk_size
        return default

    def __repr__(self) -> str:
        return f"<qcow2 Snapshot id={self.id} name={self.name!r}>"


class Qcow2Image(Image):
    """A QCOW2 image file; ``snapshot`` opens an internal snapshot's state instead."""

    format = FORMAT

    @property
    def header_struct(self) -> Struct:
        """The Struct of the header as stored at offset 0 (``explain("header")`` decodes it)."""
        return QCowHeaderFull if self.version >= 3 else QCowHeader

    def __init__(
        self,
        source: ByteSource,
        *,
        path: str | None = None,
        strict: bool = True,
        snapshot: str | int | None = None,
    ) -> None:
        super().__init__(source, path=path, strict=strict)
        self.data_file: ByteSource | None = None
        self._l2_cache: LRUCache = LRUCache(256)
        self._parse_header()
        self._parse_extensions()
        self._check_features()
        self._open_data_file()
        self.snapshot_list = self._read_snapshots()
        self.current_snapshot: Snapshot | None = None
        l1_offset, l1_size = self.header.l1_table_offset, self.header.l1_size
        if snapshot is not None:
            snap = self.find_snapshot(snapshot)
            self.current_snapshot = snap
            l1_offset, l1_size = snap.raw.l1_table_offset, snap.raw.l1_size
            self.size = snap.virtual_size(self.size)
        self.l1_table_offset = l1_offset
        self.l1 = self._read_l1(l1_offset, l1_size, "L1 table")

    # --- header --------------------------------------------------------------------

    def _parse_header(self) -> None:
        f = self.file
        if f.size < QCowHeader.sizeof():
            self.fail(CorruptImage, f"file is {f.size} bytes, shorter than the header", "header", 0)
        h = QCowHeader.parse(f.read(0, QCowHeader.sizeof()))
        if h.magic != MAGIC:
            self.fail(CorruptImage, "bad magic", "header", 0)
        if h.version not in (2, 3):
            self.fail(UnsupportedFeature, f"QCOW2 version {h.version}", "header.version", 4)
        if not 9 <= h.cluster_bits <= 21:
            self.fail(CorruptImage, f"cluster_bits {h.cluster_bits} outside 9..21", "header.cluster_bits", 20)
        self.version = h.version
        self.cluster_bits = h.cluster_bits
        self.cluster_size = cs = 1 << h.cluster_bits
        v3 = dict(
            incompatible_features=0,
            compatible_features=0,
            autoclear_features=0,
            refcount_order=4,
            header_length=72,
            compression_type=0,
        )
        if h.version >= 3:
            if f.size < 104:
                self.fail(CorruptImage, "file too short for a version 3 header", "header", 72)
            v3.update(QCowHeaderV3.parse(f.read(72, 32)))
            v3.pop("_io", None)
            hl = v3["header_length"]
            if hl < 104 or hl > cs or hl > f.size:
                self.fail(CorruptImage, f"header_length {hl} is not in 104..cluster size", "header.header_length", 100)
            if hl >= 105:
                v3["compression_type"] = f.read(104, 1)[0]
            if v3["refcount_order"] > 6:
                self.fail(CorruptImage, f"refcount_order {v3['refcount_order']} > 6", "header.refcount_order", 96)
        for k, v in v3.items():
            h[k] = v
        self.header = h
        self.size = h.size
        self.refcount_bits = 1 << h.refcount_order
        self.extended_l2 = bool(h.incompatible_features & INCOMPAT_EXTL2)
        self.l2_entry_size = 16 if self.extended_l2 else 8
        self.l2_entries = cs // self.l2_entry_size
        self.subclusters = 32 if self.extended_l2 else 1
        self.subcluster_size = cs // self.subclusters
        if h.size > (1 << 61):
            self.fail(CorruptImage, f"virtual size {h.size} is absurd", "header.size", 24)
        self.csize_shift = 62 - (h.cluster_bits - 8)
        self.csize_mask = (1 << (h.cluster_bits - 8)) - 1
        self.coffset_mask = (1 << self.csize_shift) - 1

    def _parse_extensions(self) -> None:
        h, f, cs = self.header, self.file, self.cluster_size
        self.extensions: list[dict] = []
        self.backing_format: str | None = None
        self.feature_names: dict[tuple[int, int], str] = dict(FEATURE_DEFAULT_NAMES)
        self.bitmaps_ext = None
        self.crypto_ext = None
        self.data_file_name: str | None = None
        pos = h.header_length
        limit = min(cs, f.size)
        if h.backing_file_offset and h.backing_file_offset > pos:
            limit = min(limit, h.backing_file_offset)
        for _ in range(4096):
            if pos + 8 > limit:
                break
            ext = HeaderExtension.parse(f.read(pos, 8))
            if ext.type == EXT_END:
                break
            if pos + 8 + ext.length > limit:
                message = (
                    f"header extension {ext.type:#x} of {ext.length} "
                    "bytes overruns the header cluster"
                )
                if self.strict:
                    self.fail(CorruptImage, message, "header extension", pos)
                # salvage: keep the extensions before it (a needed one that is lost, such
                # as a data file name, still refuses the image below)
                self.finding("error", "header extension", pos, f"{message}; the rest ignored")
                break
            data = f.read(pos + 8, ext.length)
            name = EXTENSION_NAMES.get(ext.type, "unknown")
            self.extensions.append(
                dict(type=ext.type, name=name, host_offset=pos, length=ext.length, data=data)
            )
            if ext.type == EXT_BACKING_FORMAT:
                self.backing_format = _cstr(data)
            elif ext.type == EXT_FEATURE_NAMES:
                for i in range(len(data) // 48):
                    e = FeatureNameEntry.parse(data[i * 48 : i * 48 + 48])
                    self.feature_names[(e.type, e.bit)] = _cstr(e.name)
            elif ext.type == EXT_BITMAPS and len(data) >= 24:
                self.bitmaps_ext = BitmapsExtension.parse(data)
            elif ext.type == EXT_CRYPTO and len(data) >= 16:
                self.crypto_ext = CryptoHeaderExtension.parse(data)
            elif ext.type == EXT_DATA_FILE:
                self.data_file_name = _cstr(data)
            pos += 8 + ((ext.length + 7) & ~7)
        self.backing_file: str | None = None
        if h.backing_file_offset:
            n = h.backing_file_size
            if n > 1023 or h.backing_file_offset + n > f.size:
                message = f"backing file name ({n} bytes) outside the file or too long"
                if self.strict:
                    self.fail(CorruptImage, message, "backing file name", h.backing_file_offset)
                # salvage: a parent nobody can find, so its ranges show as damaged
                self.finding("error", "backing file name", h.backing_file_offset, message)
                self.backing_file = "<unreadable backing file name>"
                return
            self.backing_file = f.read(h.backing_file_offset, n).decode("utf-8", "replace")

    def _feature_list(self, field: int, kind: int) -> list[str]:
        """Names of the set bits: our fixed names for known bits (stable whatever the image's
        feature name table says), the image's own names for the others."""
        names = {**self.feature_names, **FEATURE_DEFAULT_NAMES}
        return [names.get((kind, b), f"bit {b}") for b in range(64) if field >> b & 1]

    def _check_features(self) -> None:
        h = self.header
        if h.crypt_method:
            kind = {1: "AES", 2: "LUKS"}.get(h.crypt_method, f"method {h.crypt_method}")
            self.fail(EncryptedImage, f"image is encrypted ({kind}); vdinspect does not decrypt", "header.crypt_method", 32)
        unknown = h.incompatible_features & ~INCOMPAT_KNOWN
        if unknown:
            names = ", ".join(self._feature_list(unknown, 0))
            self.fail(UnsupportedFeature, f"unknown incompatible features: {names}", "header.incompatible_features", 72)
        if h.compression_type not in (0, 1):
            self.fail(UnsupportedFeature, f"compression type {h.compression_type}", "header.compression_type", 104)
        if h.compression_type and not h.incompatible_features & INCOMPAT_COMPRESSION:
            self.fail(CorruptImage, "compression_type is set without its incompatible bit", "header.compression_type", 104)

    def _open_data_file(self) -> None:
        h = self.header
        if not h.incompatible_features & INCOMPAT_DATA_FILE:
            return
        if not self.data_file_name:
            self.fail(CorruptImage, "external data file bit set but no data file name", "header extension", h.header_length)
        from ..io import paths

        # a name from the image: only inside the allowed folders (vdinspect.io.paths)
        policy, name = paths.current(), self.data_file_name
        found = policy.find([name], self.path)
        paths.report_outside(self, "external data file name", found, "external data file")
        if found.path is None:
            why = found.why()
            raise MissingFile(
                f"external data file {name!r} not found" + (f" ({why})" if why else ""),
                tried=found.tried,
                path=self.path,
                structure="external data file name",
            )
        self.data_file = policy.open(found.path, self.path)
        self.data_file_path = found.path

    @property
    def data_file_raw(self) -> bool:
        return bool(self.header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW)

    # --- tables ----------------------------------------------------------------------
    def _read_table(self, offset: int, nbytes: int, what: str, dtype=">u8") -> np.ndarray:
        if nbytes == 0:
            return np.zeros(0, dtype=np.uint64)
        if offset + nbytes > self.file.size:
            self.fail(CorruptImage, f"{what} ({nbytes} bytes) runs past the end of the file ({self.file.size} bytes)", what, offset)
        return np.frombuffer(self.file.read(offset, nbytes), dtype=dtype).astype(np.uint64)

    def _read_l1(self, offset: int, n: int, what: str) -> np.ndarray:
        cs = self.cluster_size
        need = -(-self.size // (cs * self.l2_entries)) if self.size else 0
        problems = []
        if n < need:
            problems.append(f"{what} has {n} entries, {need} needed for the virtual size")
        if n * 8 > MAX_L1_BYTES:
            problems.append(f"{what} of {n} entries is too large")
        if n and offset % cs:
            problems.append(f"{what} is not cluster-aligned")
        if problems and (self.strict or need * 8 > MAX_L1_BYTES):
            self.fail(CorruptImage, problems[0], what, offset)
        if not problems and (self.strict or offset + n * 8 <= self.file.size):
            return self._read_table(offset, n * 8, what)
        # salvage: keep the entries that can be trusted, mark the others as damaged
        for message in problems:
            self.finding("error", what, offset, f"{message}: unusable entries read as damaged")
        length = max(need, min(n, MAX_L1_BYTES // 8))
        usable = 0 if n and offset % cs else min(n, length)
        have = min(usable, max(0, (self.file.size - offset) // 8))
        if have < usable:
            self.finding("error", what, offset, f"{what} truncated: {have} of {n} entries in file")
        t = np.full(length, np.uint64(1), dtype=np.uint64)  # 1 = unreadable marker (misaligned)
        if have:
            t[:have] = self._read_table(offset, have * 8, what)
        return t

    def _l2_units(self, l2_offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode one L2 table into per-unit (state, host offset, raw entry) arrays."""
        return self._l2_cache.get(l2_offset, lambda: self._decode_l2(l2_offset))

    def _decode_l2(self, l2_offset: int):
        cs = self.cluster_size
        n = self.l2_entries
        # a table cut short by the end of the file (salvage): its missing entries are lost
        have = max(0, min(cs, self.file.size - l2_offset)) // self.l2_entry_size
        data = self.file.read(l2_offset, have * self.l2_entry_size) if have else b""
        raw = np.frombuffer(data.ljust(cs, b"\0"), dtype=">u8").astype(np.uint64)
        if self.extended_l2:
            e = raw[0::2]
            bitmap = raw[1::2]
        else:
            e = raw
            bitmap = None
        comp = (e & np.uint64(QCOW_OFLAG_COMPRESSED)) != 0
        off = (e & np.uint64(L2E_OFFSET_MASK)).astype(np.int64)
        zero_flag = (e & np.uint64(QCOW_OFLAG_ZERO)) != 0
        state = np.full(n, S_DATA, dtype=np.int8)
        has_offset = off != 0
        if self.data_file is not None:
            has_offset |= (e & np.uint64(QCOW_OFLAG_COPIED)) != 0
        state[~has_offset] = S_UNALLOC
        if self.version >= 3 and not self.extended_l2:
            state[zero_flag] = S_ZERO
        state[comp] = S_COMP
        coff = (e & np.uint64(self.coffset_mask)).astype(np.int64)
        host = np.where(comp, coff, off)
        host[(state == S_UNALLOC) | (state == S_ZERO)] = -1
        # a host cluster outside the file, or misaligned, cannot be read
        target_size = self.data_file.size if self.data_file is not None else self.file.size
        bad = (state == S_DATA) & ((off % cs != 0) | (off >= target_size))
        bad |= (state == S_COMP) & (coff >= self.file.size)
        if self.extended_l2:
            units_state, units_host = self._expand_subclusters(state, host, bitmap, bad)
            units_state.reshape(n, -1)[have:] = S_DAMAGED
            return units_state, units_host, e
        bad[have:] = True
        if bad.any():
            state = state.copy()
            state[bad] = S_DAMAGED
        return state, host, e

    def _expand_subclusters(self, state, host, bitmap, bad):
        n, sc = len(state), self.subclusters
        alloc = ((bitmap[:, None] >> np.arange(32, dtype=np.uint64)) & np.uint64(1)) != 0
        zero = ((bitmap[:, None] >> np.arange(32, 64, dtype=np.uint64)) & np.uint64(1)) != 0
        us = np.repeat(state, sc).reshape(n, sc).copy()
        uh = np.repeat(host, sc).reshape(n, sc).copy()
        plain = state == S_DATA
        us[plain[:, None] & ~alloc] = S_UNALLOC
        us[zero & ~(state == S_COMP)[:, None]] = S_ZERO
        unalloc_cl = state == S_UNALLOC
        us[unalloc_cl[:, None] & ~zero] = S_UNALLOC
        uh[plain] += (np.arange(sc, dtype=np.int64) * self.subcluster_size)[None, :]
        uh[us != S_DATA] = np.where(us[us != S_DATA] == S_COMP, uh[us != S_DATA], -1)
        bad_units = bad[:, None] & ((us == S_DATA) | (us == S_COMP))
        bad_units |= unalloc_cl[:, None] & alloc  # allocated subcluster without a cluster
        us[bad_units] = S_DAMAGED
        return us.reshape(-1), uh.reshape(-1)

    def _damaged(self, start: int, end: int, structure: str, host: int | None, msg: str):
        if self.strict:
            self.fail(CorruptImage, msg, structure, host)
        self.finding("error", structure, host, msg)
        return Run(start, end - start, DAMAGED)

    def _runs(self, start: int, end: int):
        cs = self.cluster_size
        unit = self.subcluster_size
        span = cs * self.l2_entries  # virtual bytes covered by one L2 table
        l1 = self.l1
        i = start // span
        while i * span < end:
            vbase = i * span
            vstop = min(vbase + span, self.size)
            l1e = int(l1[i]) if i < len(l1) else 0
            l2_off = l1e & L1E_OFFSET_MASK
            if l2_off == 0:
                # a stretch of equal empty entries (or salvage markers) is one run: a sparse
                # or salvaged L1 of 4 Mi entries must not cost a Python step per entry
                j = self._l1_stretch_end(i)
                vstop = min(j * span, self.size)
                marker = l1e == 1 and not self.strict  # truncated L1 (salvage marker)
                yield Run(vbase, vstop - vbase, DAMAGED if marker else UNALLOCATED)
                i = j
                continue
            elif l2_off % cs or l2_off + cs > self.file.size and (
                self.strict or l2_off >= self.file.size
            ):
                yield self._damaged(
                    vbase,
                    vstop,
                    "L1 table",
                    self.l1_table_offset + 8 * i,
                    f"L1 entry {i} points to an L2 table at {l2_off:#x}, "
                    + ("not cluster-aligned" if l2_off % cs else "past the end of the file"),
                )
            else:
                if l2_off + cs > self.file.size:  # salvage: the entries in the file are used
                    self.finding("error", "L2 table", l2_off, f"L2 table {i} at {l2_off:#x} is "
                                 f"cut short by the end of the file ({self.file.size} bytes)")
                yield from self._runs_in_l2(
                    i, l2_off, vbase, max(start, vbase), min(end, vstop), unit
                )
            i += 1

    def _l1_stretch_end(self, i: int) -> int:
        """The first L1 index after ``i`` whose entry differs from entry ``i``."""
        l1 = self.l1
        if i >= len(l1):  # past the table: empty up to the end of the disk
            return max(i + 1, -(-self.size // (self.cluster_size * self.l2_entries)))
        changes = getattr(self, "_l1_changes", None)
        if changes is None:
            changes = self._l1_changes = np.flatnonzero(l1[1:] != l1[:-1]) + 1
        k = int(np.searchsorted(changes, i, side="right"))
        return int(changes[k]) if k < len(changes) else len(l1)

    def _runs_in_l2(self, l1_index, l2_off, vbase, start, end, unit):
        state, host, _ = self._l2_units(l2_off)
        first = (start - vbase) // unit
        last = -(-(end - vbase) // unit)
        st = state[first:last]
        ho = host[first:last]
        units_per_cluster = self.subclusters
        idx = np.arange(first, last)
        brk = np.ones(len(st), dtype=bool)
        if len(st) > 1:
            same = st[1:] == st[:-1]
            contiguous = ho[1:] == ho[:-1] + unit
            comp = st[1:] == S_COMP
            cont_ok = np.where(
                comp,
                (ho[1:] == ho[:-1]) & (idx[1:] % units_per_cluster != 0),
                np.where(st[1:] == S_DATA, contiguous, True),
            )
            brk[1:] = ~(same & cont_ok)
        starts = np.flatnonzero(brk)
        stops = np.append(starts[1:], len(st))
        cs = self.cluster_size
        target = self.data_file if self.data_file is not None else self.file
        target_name = self.data_file_path if self.data_file is not None else self.path
        for a, b in zip(starts.tolist(), stops.tolist()):
            s = int(st[a])
            vs = vbase + (first + a) * unit
            ve = vbase + (first + b) * unit
            if s == S_DATA:
                h = int(ho[a])
                room = target.size - h
                if room < ve - vs:  # the last host cluster is cut short by end of file
                    yield Run(vs, room, DATA, host_file=target_name, host_offset=h, source=target)
                    if vs + room >= self.size:  # only past the virtual disk: never read
                        yield Run(vs + room, ve - vs - room, ZERO)
                    else:  # the file is cut short: QEMU reads zeros, we do not invent them
                        yield self._damaged(
                            vs + room, ve, "data cluster", target.size - target.size % cs,
                            f"data cluster cut short by the end of the file ({target.size} "
                            f"bytes): its last {ve - vs - room} bytes are missing",
                        )
                else:
                    yield Run(
                        vs, ve - vs, DATA, host_file=target_name, host_offset=h, source=target
                    )
            elif s == S_COMP:
                cl_start = vbase + ((first + a) // units_per_cluster) * cs
                e = int(self._l2_units(l2_off)[2][(first + a) // units_per_cluster])
                nb = ((e >> self.csize_shift) & self.csize_mask) + 1
                h = int(ho[a])
                csize = nb * 512 - (h & 511)
                yield Run(
                    vs,
                    ve - vs,
                    DATA,
                    host_file=self.path,
                    host_offset=h,
                    compressed=True,
                    source=self.file,
                    extra=(cl_start, csize),
                )
            elif s == S_DAMAGED:
                k = (first + a) // units_per_cluster
                e = int(self._l2_units(l2_off)[2][k])
                at = l2_off + k * self.l2_entry_size
                yield self._damaged(
                    vs,
                    ve,
                    "L2 table",
                    at,
                    f"L2 entry {k} (table {l1_index}) lies past the end of the file: the L2 "
                    "table is cut short" if at + self.l2_entry_size > self.file.size else
                    f"L2 entry {k} (table {l1_index}) = {e:#018x} points "
                    "outside the file or is misaligned",
                )
            else:
                yield Run(vs, ve - vs, STATE_NAME[s])

    def _read_compressed(self, run: Run) -> bytes:
        cs = self.cluster_size
        h = run.host_offset
        csize = min(run.extra[1], self.file.size - h)
        data = self.file.read(h, csize)
        try:
            if self.header.compression_type == 1:
                out = _zstd_decompress(data, cs)
            else:
                d = zlib.decompressobj(-15)
                out = d.decompress(data, cs)
        except (zlib.error, ValueError) as e:
            out = b""
            err = str(e)
        else:
            err = f"inflates to {len(out)} bytes, not {cs}"
        if len(out) != cs:
            msg = f"compressed cluster at {h:#x} is damaged ({err})"
            if self.strict:
                self.fail(CorruptImage, msg, "compressed cluster", h)
            self.finding("error", "compressed cluster", h, msg)
            return bytes(cs)
        return out

    # --- parents and snapshots -------------------------------------------------------
    @property
    def parent_hint(self) -> ParentHint | None:
        if not self.backing_file:
            return None
        return ParentHint(path=self.backing_file, format=self.backing_format)

    def _read_snapshots(self) -> list[Snapshot]:
        h, f = self.header, self.file
        out: list[Snapshot] = []
        if not h.nb_snapshots:
            return out
        pos = h.snapshots_offset
        self.snapshot_table_length = 0

        def bad(message: str, structure: str, offset: int) -> list[Snapshot]:
            # strict: refuse the image; salvage: keep the entries read so far (the
            # active disk does not depend on the snapshot table) and report the rest
            if self.strict:
                self.fail(CorruptImage, message, structure, offset)
            ignored = h.nb_snapshots - len(out)
            self.finding("error", structure, offset, f"{message}; {ignored} snapshot(s) ignored")
            self.snapshot_table_length = pos - h.snapshots_offset
            return out

        if h.nb_snapshots > 65536:
            return bad(
                f"{h.nb_snapshots} snapshots (QEMU allows 65536)", "header.nb_snapshots", 60
            )
        if pos % self.cluster_size:
            return bad("snapshot table not cluster-aligned", "snapshot table", pos)
        for i in range(h.nb_snapshots):
            if pos + 40 > f.size:
                return bad(f"snapshot {i} header past the end of the file", "snapshot table", pos)
            raw = SnapshotHeader.parse(f.read(pos, 40))
            extra_n = raw.extra_data_size
            total = 40 + extra_n + raw.id_str_size + raw.name_size
            if extra_n > 1024 or pos + total > f.size:
                return bad(
                    f"snapshot {i} entry runs past the end of the file", "snapshot table", pos
                )
            body = f.read(pos + 40, total - 40)
            extra = None
            if extra_n >= 8:
                ex = body[:extra_n] + bytes(max(0, 24 - extra_n))
                extra = SnapshotExtraData.parse(ex[:24])
                if extra_n < 16:
                    extra.disk_size = None
                if extra_n < 24:
                    extra.icount = None
            ident = body[extra_n : extra_n + raw.id_str_size].decode("utf-8", "replace")
            name = body[extra_n + raw.id_str_size :].decode("utf-8", "replace")
            length = (total + 7) & ~7
            out.append(Snapshot(raw, extra, ident, name, pos, length))
            pos += length
        self.snapshot_table_length = pos - h.snapshots_offset
        return out

    def find_snapshot(self, ident: str | int) -> Snapshot:
        """The internal snapshot with this id (tried first) or name."""
        from ..errors import NotFound

        key = str(ident)
        for s in self.snapshot_list:
            if s.id == key:
                return s
        for s in self.snapshot_list:
            if s.name == key:
                return s
        names = ", ".join(f"{s.id}:{s.name}" for s in self.snapshot_list) or "none"
        raise NotFound(f"{self.path}: no internal snapshot {key!r} (snapshots: {names})")

    def snapshots(self) -> list[dict]:
        rows = []
        for s in self.snapshot_list:
            rows.append(
                dict(
                    id=s.id,
                    name=s.name,
                    created=s.created,
                    # values a damaged entry puts beyond the int64 columns read as NA
                    vm_clock=dt.timedelta(microseconds=s.raw.vm_clock_nsec / 1000)
                    if s.raw.vm_clock_nsec <= INT64_MAX - 10**6  # float rounding margin
                    else None,
                    vm_state_size=_int64_or_none(s.vm_state_size),
                    virtual_size=_int64_or_none(s.virtual_size(self.header.size)),
                    l1_table_offset=s.raw.l1_table_offset,
                    l1_size=s.raw.l1_size,
                )
            )
        return rows

    def open_snapshot(self, ident: str | int) -> Qcow2Image:
        """A read-only view of the disk as it was at an internal snapshot."""
        self.find_snapshot(ident)
        src = FileSource(self.path)
        try:
            return Qcow2Image(src, path=self.path, strict=self.strict, snapshot=ident)
        except BaseException:
            src.close()
            raise

    # --- reports ---------------------------------------------------------------------
    @property
    def host_files(self) -> list[str]:
        out = [self.path]
        if self.data_file is not None:
            out.append(self.data_file_path)
        return out

    def _owned_sources(self) -> list[ByteSource]:
        return [self.file] + ([self.data_file] if self.data_file is not None else [])

    @property
    def subformat(self) -> str:
        return "v3" if self.version >= 3 else "v2"

    @property
    def dirty(self) -> bool:
        return bool(self.header.incompatible_features & INCOMPAT_DIRTY)

    @property
    def corrupt(self) -> bool:
        return bool(self.header.incompatible_features & INCOMPAT_CORRUPT)

    def flags(self) -> list[str]:
        h = self.header
        out = self._feature_list(h.incompatible_features, 0)
        out += self._feature_list(h.compatible_features, 1)
        out += self._feature_list(h.autoclear_features, 2)
        if h.compression_type == 1:
            out.append("zstd")
        return out

    def bitmaps(self) -> list[dict]:
        """The persistent dirty bitmaps listed in the bitmap directory."""
        b = self.bitmaps_ext
        if b is None:
            return []
        off, size = b.bitmap_directory_offset, b.bitmap_directory_size
        if size > 64 << 20 or off + size > self.file.size or b.nb_bitmaps > 65535:
            self.fail(CorruptImage, "bitmap directory outside the file", "bitmap directory", off)
        data = self.file.read(off, size)
        rows, pos = [], 0
        for _ in range(b.nb_bitmaps):
            if pos + 24 > len(data):
                self.fail(CorruptImage, "bitmap directory entry cut short", "bitmap directory", off + pos)
            e = BitmapDirectoryEntry.parse(data[pos : pos + 24])
            name_at = pos + 24 + e.extra_data_size
            name = data[name_at : name_at + e.name_size].decode("utf-8", "replace")
            rows.append(
                dict(
                    name=name,
                    granularity=1 << e.granularity_bits,
                    in_use=bool(e.flags & 1),
                    auto=bool(e.flags & 2),
                    bitmap_table_offset=e.bitmap_table_offset,
                    bitmap_table_size=e.bitmap_table_size,
                    host_offset=off + pos,
                )
            )
            pos = (name_at + e.name_size + 7) & ~7
        return rows

    def info_fields(self) -> dict:
        h = self.header
        try:
            bitmaps = [b["name"] for b in self.bitmaps()]
        except CorruptImage as e:  # salvage: the disk does not depend on the bitmaps
            if self.strict:
                raise
            self.finding("error", e.structure or "bitmap directory", e.offset, e.detail)
            bitmaps = None
        return dict(
            version=h.version,
            compat="1.1" if h.version >= 3 else "0.10",
            cluster_size=self.cluster_size,
            backing_file=self.backing_file,
            backing_format=self.backing_format,
            data_file=self.data_file_name,
            data_file_raw=self.data_file_raw if self.data_file_name else None,
            refcount_bits=self.refcount_bits,
            compression_type="zstd" if h.compression_type == 1 else "zlib",
            extended_l2=self.extended_l2,
            lazy_refcounts=bool(h.compatible_features & COMPAT_LAZY_REFCOUNTS),
            dirty=self.dirty,
            corrupt=self.corrupt,
            encrypted=False,
            snapshots=len(self.snapshot_list),
            bitmaps=bitmaps,
            extensions=[
                e["name"] if e["name"] != "unknown" else f"unknown {e['type']:#010x}"
                for e in self.extensions
            ],
            snapshot=self.current_snapshot.name if self.current_snapshot else None,
        )

    # --- refcounts, structures and check ---------------------------------------------
    def refcount_table(self) -> np.ndarray:
        h = self.header
        n = h.refcount_table_clusters * self.cluster_size
        if n > MAX_REFTABLE_BYTES:
            self.fail(CorruptImage, f"refcount table of {h.refcount_table_clusters} clusters is absurd", "header.refcount_table_clusters", 56)
        n = min(n, max(0, self.file.size - h.refcount_table_offset))
        return self._read_table(h.refcount_table_offset, n & ~7, "refcount table")

    def refcounts(self) -> tuple[np.ndarray, list[dict]]:
        """Stored refcount of every host cluster in the file, and problems met reading them.

        Clusters whose refcount block cannot be read (a misaligned refcount table entry)
        read as 0 here; :meth:`check` reports them.
        """
        nclusters = -(-self.file.size // self.cluster_size)
        values, _ = self._stored_refcounts(nclusters)
        return values, []

    def _pread(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset``; past the end of the file reads as zeros (as in QEMU)."""
        size = self.file.size
        if offset >= size:
            return bytes(n)
        k = min(n, size - offset)
        return self.file.read(offset, k) + bytes(n - k)

    def _refblock(self, index: int, cache: dict):
        """Decoded refcount block ``index`` (None: its table entry is misaligned)."""
        if index not in cache:
            reft = cache.setdefault("table", self.refcount_table())
            off = int(reft[index]) & REFT_OFFSET_MASK if index < len(reft) else 0
            if off % self.cluster_size:
                cache[index] = None
            elif not off:  # one shared (read-only) block: garbage offsets name many indexes
                if "zeros" not in cache:
                    n = self.cluster_size * 8 // self.refcount_bits
                    cache["zeros"] = np.zeros(n, np.uint64)
                cache[index] = cache["zeros"]
            else:
                block = self._pread(off, self.cluster_size)
                cache[index] = _decode_refcounts(block, self.refcount_bits)
        return cache[index]

    def _stored_refcounts(self, n: int, cache: dict | None = None):
        """Stored refcounts of clusters 0..n-1, and a mask of those that could be read."""
        cache = {} if cache is None else cache
        per_block = self.cluster_size * 8 // self.refcount_bits
        values = np.zeros(n, dtype=np.uint64)
        readable = np.ones(n, dtype=bool)
        for i in range(-(-n // per_block)):
            first = i * per_block
            k = min(per_block, n - first)
            block = self._refblock(i, cache)
            if block is None:
                readable[first : first + k] = False
            else:
                values[first : first + k] = block[:k]
        return values, readable

    def _check_refcounts(self) -> tuple[list[dict], dict]:
        """QEMU's ``qcow2_check_refcounts`` without repairs: rows and fragmentation counts.

        Follows block/qcow2-refcount.c: count every reference to every host cluster
        (header, L1/L2 tables, data, snapshots, refcount structures, bitmaps), compare with
        the stored refcounts (stored < counted: error, stored > counted: leak), then check
        the COPIED flags of the active tables against the stored refcounts.
        """
        cs, h = self.cluster_size, self.header
        fsize = self.file.size
        rmax = (1 << self.refcount_bits) - 1
        has_data_file = self.data_file is not None
        rows: list[dict] = []
        stats = dict(allocated_clusters=0, compressed_clusters=0, fragmented_clusters=0)
        counted = [np.zeros(-(-fsize // cs), dtype=np.int64)]  # grows like QEMU's table

        unlisted = {"error": 0, "leak": 0, "warning": 0}

        def row(severity: str, structure: str, offset: int | None, message: str) -> None:
            if len(rows) >= MAX_CHECK_ROWS:  # garbage tables can name a problem per 8 bytes
                unlisted[severity] = unlisted.get(severity, 0) + 1
                return
            rows.append(
                dict(severity=severity, structure=structure, host_offset=offset, message=message)
            )

        def inc(offset: int, length: int, what: str) -> None:
            if length <= 0:
                return
            if offset + length - fsize >= cs:
                row(
                    "error",
                    what,
                    offset,
                    f"ERROR: {what} at {offset:#x} ({length} bytes) reaches a cluster "
                    "or more past the end of the file",
                )
                return
            a, b = offset // cs, (offset + length - 1) // cs + 1
            if b > len(counted[0]):
                counted[0] = np.concatenate(
                    [counted[0], np.zeros(b - len(counted[0]), dtype=np.int64)]
                )
            seg = counted[0][a:b]
            full = seg >= rmax
            for c in (np.flatnonzero(full) + a).tolist():
                row("error", what, c * cs, f"ERROR: refcount overflow for cluster {c}")
            seg[~full] += 1
            for j in journal:  # walks being recorded by once()
                j.append((np.arange(a, b), 1))

        journal: list[list] = []
        walked: dict = {}
        # file bytes of distinct L2 tables each pass may walk: a sound image needs at most
        # the file size; misaligned entries (walked, as QEMU does) may overlap a little
        budget = [fsize + 2 * min(cs, fsize)] * 2

        def affordable(l2_off: int, which: int) -> bool:
            real = max(0, min(cs, fsize - l2_off))
            if not real:  # wholly past the end of the file: reads as zeros, nothing to walk
                return False
            budget[which] -= real
            if budget[which] >= 0:
                return True
            if budget[which] + real >= 0:  # the first table over the budget
                row(
                    "error",
                    "L2 table",
                    l2_off,
                    "ERROR: the L1 tables name more L2 tables than the file can hold "
                    "(misaligned or repeated entries); L2 tables from here on are not checked",
                )
            return False

        def once(key, walk, *args) -> None:
            """``walk(*args)`` (an L1 or L2 table) for the first reference to ``key``; later
            references replay its counts (its rows are not repeated). Tables shared by
            snapshots, or repeated by a corrupt table, then cost no second walk: check()
            stays linear in the file size whatever the tables say."""
            if key in walked:
                idx, n, delta = walked[key]
                counted[0][idx] += n
                for j in journal:
                    j.append((idx, n))
                for k, v in delta.items():
                    stats[k] += v
                return
            if key[0] == "L2" and not affordable(key[1], 0):
                walked[key] = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), {})
                return
            before = dict(stats)
            journal.append([])
            try:
                walk(*args)
            finally:
                parts = journal.pop()
            if parts:
                idx = np.concatenate([p[0] for p in parts])
                w = np.concatenate([np.broadcast_to(p[1], p[0].shape) for p in parts])
                idx, inv = np.unique(idx, return_inverse=True)
                n = np.bincount(inv.reshape(-1), weights=w).astype(np.int64)
            else:
                idx, n = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            walked[key] = (idx, n, {k: stats[k] - before[k] for k in stats})

        def check_l2(l2_off: int, active: bool) -> None:
            raw = np.frombuffer(self._pread(l2_off, cs), dtype=">u8").astype(np.uint64)
            ent = raw[0::2] if self.extended_l2 else raw
            bms = raw[1::2] if self.extended_l2 else np.zeros_like(raw)
            next_contiguous = 0  # QEMU counts fragmentation within each L2 table
            for k in np.flatnonzero((ent != 0) | (bms != 0)).tolist():  # skip empty entries
                e, bm = int(ent[k]), int(bms[k])
                where = l2_off + k * self.l2_entry_size
                off = e & L2E_OFFSET_MASK
                if e & QCOW_OFLAG_COMPRESSED:
                    kind = "compressed"
                elif e & QCOW_OFLAG_ZERO and not self.extended_l2:
                    kind = "zero-alloc" if off else "zero"
                elif not off:
                    kind = "normal" if has_data_file and e & QCOW_OFLAG_COPIED else "unallocated"
                else:
                    kind = "normal"
                if kind != "compressed" and e & L2E_STD_RESERVED_MASK:
                    row("error", "L2 table", where, f"ERROR L2 entry {e:#x} has reserved bits set")
                if kind == "compressed":
                    if e & QCOW_OFLAG_COPIED:
                        row(
                            "error",
                            "L2 table",
                            where,
                            f"ERROR: compressed cluster with COPIED flag: l2_entry={e:x}",
                        )
                    if has_data_file:
                        row("error", "L2 table", where, "ERROR compressed cluster with data file")
                        continue
                    if bm:
                        row(
                            "error",
                            "L2 table",
                            where,
                            "ERROR compressed cluster with a non-zero subcluster bitmap",
                        )
                        continue
                    co = e & self.coffset_mask
                    nb = ((e >> self.csize_shift) & self.csize_mask) + 1
                    inc(co, nb * 512 - (co & 511), "compressed cluster")
                    if active:
                        stats["allocated_clusters"] += 1
                        stats["compressed_clusters"] += 1
                        stats["fragmented_clusters"] += 1  # compressed clusters always are
                elif kind in ("normal", "zero-alloc"):
                    if (bm >> 32) & bm:
                        row(
                            "error",
                            "L2 table",
                            where,
                            f"ERROR offset={off:x}: subclusters both allocated and zero",
                        )
                    if off % cs:
                        row(
                            "error",
                            "L2 table",
                            where,
                            f"ERROR offset={off:x}: Cluster is not properly aligned; "
                            "L2 entry corrupted",
                        )
                    if active:
                        stats["allocated_clusters"] += 1
                        if next_contiguous and off != next_contiguous:
                            stats["fragmented_clusters"] += 1
                        next_contiguous = off + cs
                    if not has_data_file:
                        inc(off, cs, "data cluster")
                elif kind == "unallocated" and bm & 0xFFFFFFFF:
                    row(
                        "error",
                        "L2 table",
                        where,
                        "ERROR unallocated cluster with allocated subclusters",
                    )

        def check_l1(l1_off: int, l1_size: int, active: bool, what: str) -> None:
            if not l1_size:
                return
            inc(l1_off, l1_size * 8, what)
            l1 = np.frombuffer(self._pread(l1_off, l1_size * 8), dtype=">u8")
            l1 = l1.astype(np.uint64)
            for i in np.flatnonzero(l1).tolist():  # skip empty entries
                e = int(l1[i])
                if e & L1E_RESERVED_MASK:
                    row("error", what, l1_off + 8 * i, f"ERROR L1 entry {e:#x} has reserved bits")
                l2_off = e & L1E_OFFSET_MASK
                inc(l2_off, cs, "L2 table")
                if l2_off % cs:
                    row(
                        "error",
                        what,
                        l1_off + 8 * i,
                        f"ERROR l2_offset={l2_off:x}: Table is not cluster aligned; "
                        "L1 entry corrupted",
                    )
                once(("L2", l2_off, active), check_l2, l2_off, active)

        # what QEMU's calculate_refcounts() counts, in its order
        inc(0, cs, "header")
        # salvage mode opens an image whose l1_size is absurd: check what QEMU could load
        l1_n = min(h.l1_size, MAX_L1_BYTES // 8)
        check_l1(h.l1_table_offset, l1_n, True, "L1 table")
        if has_data_file and self.snapshot_list:
            row("error", "snapshot table", h.snapshots_offset, "ERROR snapshots with a data file")
        for s in self.snapshot_list:
            what = f"snapshot {s.id} L1 table"
            if s.raw.l1_table_offset % cs or s.raw.l1_size * 8 > MAX_L1_BYTES:
                row(
                    "error",
                    "snapshot table",
                    s.host_offset,
                    f"ERROR snapshot {s.id} ({s.name}): L1 table misaligned or too large",
                )
                continue
            key = ("L1", s.raw.l1_table_offset, s.raw.l1_size)
            once(key, check_l1, s.raw.l1_table_offset, s.raw.l1_size, False, what)
        if h.nb_snapshots:
            inc(h.snapshots_offset, getattr(self, "snapshot_table_length", 0), "snapshot table")
        inc(h.refcount_table_offset, h.refcount_table_clusters * cs, "refcount table")
        if self.crypto_ext is not None:
            inc(self.crypto_ext.offset, self.crypto_ext.length, "encryption header")
        if self.bitmaps_ext is not None and self.bitmaps_ext.nb_bitmaps:
            b = self.bitmaps_ext
            inc(b.bitmap_directory_offset, b.bitmap_directory_size, "bitmap directory")
            try:
                bms = self.bitmaps()
            except CorruptImage as e:
                row("error", "bitmap directory", e.offset, e.detail)
                bms = []
            for bm in bms:
                t_off, t_n = bm["bitmap_table_offset"], bm["bitmap_table_size"] * 8
                inc(t_off, t_n, "bitmap table")
                if t_n > MAX_L1_BYTES or t_off % cs or t_off + t_n > fsize:
                    row("error", "bitmap table", t_off, "ERROR bitmap table cannot be read")
                    break
                for e in self._read_table(t_off, t_n, "bitmap table").tolist():
                    off = e & 0x00FFFFFFFFFFFE00
                    if e & 0xFF000000000001FE or off % cs or (e & 1 and off):
                        row("error", "bitmap table", t_off, f"ERROR bad bitmap table entry {e:#x}")
                        continue
                    if off:
                        inc(off, cs, "bitmap data")
        reft = self.refcount_table()
        for i in np.flatnonzero(reft).tolist():  # empty entries need nothing
            e = int(reft[i])
            off = e & REFT_OFFSET_MASK
            where = h.refcount_table_offset + 8 * i
            if e & 0x1FF:
                row(
                    "error",
                    "refcount table",
                    where,
                    f"ERROR refcount table entry {i} has reserved bits set",
                )
                continue
            if off % cs:
                row(
                    "error",
                    "refcount table",
                    where,
                    f"ERROR refcount block {i} at {off:#x} is not cluster aligned",
                )
                continue
            if off // cs >= len(counted[0]):
                row(
                    "error",
                    "refcount table",
                    where,
                    f"ERROR refcount block {i} at {off:#x} is outside the image",
                )
                continue
            if off:
                inc(off, cs, "refcount block")
                if counted[0][off // cs] != 1:
                    row(
                        "error",
                        "refcount block",
                        off,
                        f"ERROR refcount block {i} refcount={int(counted[0][off // cs])}",
                    )

        # compare_refcounts()
        ref = counted[0]
        cache: dict = {"table": reft}
        stored, readable = self._stored_refcounts(len(ref), cache)
        st = np.minimum(stored, np.uint64(1 << 62)).astype(np.int64)
        per_block = cs * 8 // self.refcount_bits
        for blk in sorted({c // per_block for c in np.flatnonzero(~readable).tolist()}):
            row(
                "warning",
                "refcount table",
                h.refcount_table_offset + 8 * blk,
                f"refcounts of clusters {blk * per_block}.. cannot be read (misaligned "
                "refcount block): not compared",
            )
        for c in np.flatnonzero(readable & (st != ref)).tolist():
            s, r = int(st[c]), int(ref[c])
            if s < r:
                row("error", "refcount", c * cs, f"ERROR cluster {c} refcount={s} reference={r}")
            else:
                row("leak", "refcount", c * cs, f"Leaked cluster {c} refcount={s} reference={r}")

        # check_oflag_copied(): the active tables' COPIED flags against stored refcounts
        def stored_one(c: int) -> int | None:
            block = self._refblock(c // per_block, cache)
            return None if block is None else int(block[c % per_block])

        l1 = np.frombuffer(self._pread(h.l1_table_offset, l1_n * 8), dtype=">u8")
        l1 = l1.astype(np.uint64)
        copied_walked: set[int] = set()
        for i in np.flatnonzero(l1).tolist():
            l1e = int(l1[i])
            l2_off = l1e & L1E_OFFSET_MASK
            if not l2_off:
                continue
            rc = stored_one(l2_off // cs)
            if rc is not None and (rc == 1) != bool(l1e & QCOW_OFLAG_COPIED):
                row(
                    "error",
                    "L1 table",
                    h.l1_table_offset + 8 * i,
                    f"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1e:x} refcount={rc}",
                )
            if l2_off in copied_walked or not affordable(l2_off, 1):  # repeated: same rows
                continue
            copied_walked.add(l2_off)
            raw = np.frombuffer(self._pread(l2_off, cs), dtype=">u8").astype(np.uint64)
            ent = raw[0::2] if self.extended_l2 else raw
            for k in np.flatnonzero(ent).tolist():
                e = int(ent[k])
                off = e & L2E_OFFSET_MASK
                if e & QCOW_OFLAG_COMPRESSED:
                    continue
                zero = e & QCOW_OFLAG_ZERO and not self.extended_l2
                if not off and (zero or not (has_data_file and e & QCOW_OFLAG_COPIED)):
                    continue
                rc = 1 if has_data_file else stored_one(off // cs)
                if rc is not None and (rc == 1) != bool(e & QCOW_OFLAG_COPIED):
                    row(
                        "error",
                        "L2 table",
                        l2_off + k * self.l2_entry_size,
                        f"ERROR OFLAG_COPIED data cluster: l2_entry={e:x} refcount={rc}",
                    )
        if any(unlisted.values()):
            counts = ", ".join(f"{n} {k}s" for k, n in unlisted.items() if n)
            rows.append(
                dict(
                    severity="warning",
                    structure="check",
                    host_offset=None,
                    message=f"{counts} more not listed (only the first {MAX_CHECK_ROWS} "
                    "problems are)",
                )
            )
        stats.update(unlisted_errors=unlisted["error"], unlisted_leaks=unlisted["leak"])
        return rows, stats

    def check(self) -> list[dict]:
        """Integrity findings, as ``qemu-img check`` reports them (one row per cluster)."""
        rows = self.findings_rows()
        if self.dirty:
            rows.append(
                dict(
                    severity="warning",
                    structure="header.incompatible_features",
                    host_offset=72,
                    message="dirty bit set: refcounts may be stale "
                    "(lazy refcounts were not flushed)",
                )
            )
        if self.corrupt:
            rows.append(
                dict(
                    severity="warning",
                    structure="header.incompatible_features",
                    host_offset=72,
                    message="corrupt bit set: QEMU found the "
                    "metadata inconsistent and stopped writing",
                )
            )
        if self.current_snapshot is not None:
            return _fit_int64(rows, "message")
        try:
            found, _ = self._check_refcounts()
        except CorruptImage as e:
            rows.append(
                dict(
                    severity="error", structure=e.structure, host_offset=e.offset, message=e.detail
                )
            )
            return _fit_int64(rows, "message")
        return _fit_int64(rows + found, "message")

    def check_summary(self) -> dict:
        """Counts as ``qemu-img check --output=json`` gives them."""
        rows = self.check()
        try:
            _, stats = self._check_refcounts()
        except CorruptImage:
            stats = dict(allocated_clusters=0, compressed_clusters=0, fragmented_clusters=0)
        return dict(
            corruptions=sum(r["severity"] == "error" for r in rows)
            + stats.get("unlisted_errors", 0),
            leaks=sum(r["severity"] == "leak" for r in rows) + stats.get("unlisted_leaks", 0),
            allocated_clusters=stats["allocated_clusters"],
            compressed_clusters=stats["compressed_clusters"],
            fragmented_clusters=stats["fragmented_clusters"],
            total_clusters=-(-self.size // self.cluster_size),
        )

    def structures(self) -> list[dict]:
        h, cs, p = self.header, self.cluster_size, self.path
        rows = [
            dict(
                name="header",
                host_file=p,
                host_offset=0,
                length=h.header_length,
                description=f"QCOW2 v{h.version} header",
            )
        ]
        for e in self.extensions:
            rows.append(
                dict(
                    name=f"header extension: {e['name']}",
                    host_file=p,
                    host_offset=e["host_offset"],
                    length=8 + e["length"],
                    description=f"type {e['type']:#010x}",
                )
            )
        if h.backing_file_offset:
            rows.append(
                dict(
                    name="backing file name",
                    host_file=p,
                    host_offset=h.backing_file_offset,
                    length=h.backing_file_size,
                    description=self.backing_file,
                )
            )
        rows.append(
            dict(
                name="L1 table",
                host_file=p,
                host_offset=h.l1_table_offset,
                length=h.l1_size * 8,
                description=f"{h.l1_size} entries",
            )
        )
        rows.append(
            dict(
                name="refcount table",
                host_file=p,
                host_offset=h.refcount_table_offset,
                length=h.refcount_table_clusters * cs,
                description=f"{self.refcount_bits}-bit refcounts",
            )
        )
        try:
            reft = self.refcount_table()
        except CorruptImage as e:  # salvage: list the other structures
            if self.strict:
                raise
            self.finding("error", e.structure or "refcount table", e.offset, e.detail)
            reft = np.zeros(0, dtype=np.uint64)
        for i in np.flatnonzero(reft).tolist():
            off = int(reft[i]) & REFT_OFFSET_MASK
            if off:
                rows.append(
                    dict(
                        name=f"refcount block {i}",
                        host_file=p,
                        host_offset=off,
                        length=cs,
                        description=f"refcounts of {cs * 8 // self.refcount_bits} clusters",
                    )
                )
        if h.nb_snapshots:
            rows.append(
                dict(
                    name="snapshot table",
                    host_file=p,
                    host_offset=h.snapshots_offset,
                    length=self.snapshot_table_length,
                    description=f"{h.nb_snapshots} snapshots",
                )
            )
            for s in self.snapshot_list:
                rows.append(
                    dict(
                        name=f"snapshot {s.id} L1 table",
                        host_file=p,
                        host_offset=s.raw.l1_table_offset,
                        length=s.raw.l1_size * 8,
                        description=f"snapshot {s.name!r}",
                    )
                )
        if self.bitmaps_ext is not None:
            b = self.bitmaps_ext
            rows.append(
                dict(
                    name="bitmap directory",
                    host_file=p,
                    host_offset=b.bitmap_directory_offset,
                    length=b.bitmap_directory_size,
                    description=f"{b.nb_bitmaps} bitmaps",
                )
            )
        if self.crypto_ext is not None:
            rows.append(
                dict(
                    name="encryption header",
                    host_file=p,
                    host_offset=self.crypto_ext.offset,
                    length=self.crypto_ext.length,
                    description="LUKS header",
                )
            )
        l2_offsets = self.l1 & np.uint64(L1E_OFFSET_MASK)
        for i in np.flatnonzero(l2_offsets).tolist():  # a salvaged L1 may have 4 Mi entries
            off = int(l2_offsets[i])
            if off:
                rows.append(
                    dict(
                        name=f"L2 table {i}",
                        host_file=p,
                        host_offset=off,
                        length=cs,
                        description=f"maps guest {i * cs * self.l2_entries:#x}..",
                    )
                )
        rows += data_structures(self.runs())
        return _fit_int64(rows, "description")


def _decode_refcounts(block: bytes, bits: int) -> np.ndarray:
    """Refcount block entries: big-endian for 8 bits and more, LSB-first below."""
    if bits >= 8:
        return np.frombuffer(block, dtype=f">u{bits // 8}").astype(np.uint64)
    b = np.frombuffer(block, dtype=np.uint8)
    per = 8 // bits
    shifts = np.arange(per, dtype=np.uint8) * bits
    vals = (b[:, None] >> shifts[None, :]) & ((1 << bits) - 1)
    return vals.reshape(-1).astype(np.uint64)


def _zstd_decompress(data: bytes, size: int) -> bytes:
    try:
        import zstandard
    except ImportError as e:
        raise MissingDependency(
            "this QCOW2 image uses zstd compression; install the optional extra: "
            "pip install 'vdinspect[zstd]'"
        ) from e
    try:  # at most ``size`` bytes come out, whatever the frame claims (no zstd bomb)
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        with reader:
            parts, got = [], 0
            while got < size:
                chunk = reader.read(size - got)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        return b"".join(parts)
    except zstandard.ZstdError as e:
        raise ValueError(str(e)) from e


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> Qcow2Image:
    return Qcow2Image(source, path=path, strict=strict)
