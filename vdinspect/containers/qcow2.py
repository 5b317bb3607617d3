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
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Padding,
    Struct,
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
MAX_REFTABLE_BYTES = 8 << 20 << 3

# unit states inside decoded L2 tables
S_UNALLOC, S_ZERO, S_DATA, S_COMP, S_DAMAGED = 0, 1, 2, 3, 4
STATE_NAME = {S_UNALLOC: UNALLOCATED, S_ZERO: ZERO, S_DATA: DATA, S_COMP: DATA, S_DAMAGED: DAMAGED}


def probe(head: bytes) -> bool:
    """QCOW2 files start with QFI\\xfb and a big-endian version of 2 or 3."""
    return len(head) >= 8 and head[:4] == MAGIC and int.from_bytes(head[4:8], "big") in (2, 3)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


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
    def _fail(self, exc_type, message: str, structure: str, offset: int | None):
        raise exc_type(message, path=self.path, structure=structure, offset=offset)

    def _parse_header(self) -> None:
        f = self.file
        if f.size < QCowHeader.sizeof():
            self._fail(
                CorruptImage, f"file is {f.size} bytes, shorter than the header", "header", 0
            )
        h = QCowHeader.parse(f.read(0, QCowHeader.sizeof()))
        if h.magic != MAGIC:
            self._fail(CorruptImage, "bad magic", "header", 0)
        if h.version not in (2, 3):
            self._fail(UnsupportedFeature, f"QCOW2 version {h.version}", "header.version", 4)
        if not 9 <= h.cluster_bits <= 21:
            self._fail(
                CorruptImage,
                f"cluster_bits {h.cluster_bits} outside 9..21",
                "header.cluster_bits",
                20,
            )
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
                self._fail(CorruptImage, "file too short for a version 3 header", "header", 72)
            v3.update(QCowHeaderV3.parse(f.read(72, 32)))
            v3.pop("_io", None)
            hl = v3["header_length"]
            if hl < 104 or hl > cs or hl > f.size:
                self._fail(
                    CorruptImage,
                    f"header_length {hl} is not in 104..cluster size",
                    "header.header_length",
                    100,
                )
            if hl >= 105:
                v3["compression_type"] = f.read(104, 1)[0]
            if v3["refcount_order"] > 6:
                self._fail(
                    CorruptImage,
                    f"refcount_order {v3['refcount_order']} > 6",
                    "header.refcount_order",
                    96,
                )
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
            self._fail(CorruptImage, f"virtual size {h.size} is absurd", "header.size", 24)
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
                self._fail(
                    CorruptImage,
                    f"header extension {ext.type:#x} of {ext.length} "
                    "bytes overruns the header cluster",
                    "header extension",
                    pos,
                )
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
                self._fail(
                    CorruptImage,
                    f"backing file name ({n} bytes) outside the file or too long",
                    "backing file name",
                    h.backing_file_offset,
                )
            self.backing_file = f.read(h.backing_file_offset, n).decode("utf-8", "replace")

    def _feature_list(self, field: int, kind: int) -> list[str]:
        return [self.feature_names.get((kind, b), f"bit {b}") for b in range(64) if field >> b & 1]

    def _check_features(self) -> None:
        h = self.header
        if h.crypt_method:
            kind = {1: "AES", 2: "LUKS"}.get(h.crypt_method, f"method {h.crypt_method}")
            self._fail(
                EncryptedImage,
                f"image is encrypted ({kind}); vdinspect does not decrypt",
                "header.crypt_method",
                32,
            )
        unknown = h.incompatible_features & ~INCOMPAT_KNOWN
        if unknown:
            names = ", ".join(self._feature_list(unknown, 0))
            self._fail(
                UnsupportedFeature,
                f"unknown incompatible features: {names}",
                "header.incompatible_features",
                72,
            )
        if h.compression_type not in (0, 1):
            self._fail(
                UnsupportedFeature,
                f"compression type {h.compression_type}",
                "header.compression_type",
                104,
            )
        if h.compression_type and not h.incompatible_features & INCOMPAT_COMPRESSION:
            self._fail(
                CorruptImage,
                "compression_type is set without its incompatible bit",
                "header.compression_type",
                104,
            )

    def _open_data_file(self) -> None:
        h = self.header
        if not h.incompatible_features & INCOMPAT_DATA_FILE:
            return
        if not self.data_file_name:
            self._fail(
                CorruptImage,
                "external data file bit set but no data file name",
                "header extension",
                h.header_length,
            )
        import os

        name = self.data_file_name
        cand = (
            name
            if os.path.isabs(name)
            else os.path.join(os.path.dirname(os.path.abspath(self.path)), name)
        )
        tried = [cand]
        if not os.path.isfile(cand):
            alt = os.path.join(os.path.dirname(os.path.abspath(self.path)), os.path.basename(name))
            tried.append(alt)
            cand = alt
        if not os.path.isfile(cand):
            raise MissingFile(
                f"external data file {name!r} not found",
                tried=tried,
                path=self.path,
                structure="external data file name",
            )
        self.data_file = FileSource(cand)
        self.data_file_path = cand

    @property
    def data_file_raw(self) -> bool:
        return bool(self.header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW)

    # --- tables ----------------------------------------------------------------------
    def _read_table(self, offset: int, nbytes: int, what: str, dtype=">u8") -> np.ndarray:
        if nbytes == 0:
            return np.zeros(0, dtype=np.uint64)
        if offset + nbytes > self.file.size:
            self._fail(
                CorruptImage,
                f"{what} ({nbytes} bytes) runs past the end of the file ({self.file.size} bytes)",
                what,
                offset,
            )
        return np.frombuffer(self.file.read(offset, nbytes), dtype=dtype).astype(np.uint64)

    def _read_l1(self, offset: int, n: int, what: str) -> np.ndarray:
        cs = self.cluster_size
        need = -(-self.size // (cs * self.l2_entries)) if self.size else 0
        if n < need:
            self._fail(
                CorruptImage,
                f"{what} has {n} entries, {need} needed for the virtual size",
                what,
                offset,
            )
        if n * 8 > MAX_L1_BYTES:
            self._fail(CorruptImage, f"{what} of {n} entries is too large", what, offset)
        if n and offset % cs:
            self._fail(CorruptImage, f"{what} is not cluster-aligned", what, offset)
        if self.strict or offset + n * 8 <= self.file.size:
            return self._read_table(offset, n * 8, what)
        # salvage: keep what is there, mark the rest as damaged
        have = max(0, (self.file.size - offset) // 8)
        self.finding("error", what, offset, f"{what} truncated: {have} of {n} entries in file")
        t = np.full(n, np.uint64(1), dtype=np.uint64)  # 1 = unreadable marker (misaligned)
        if have:
            t[:have] = self._read_table(offset, have * 8, what)
        return t

    def _l2_units(self, l2_offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode one L2 table into per-unit (state, host offset, raw entry) arrays."""
        return self._l2_cache.get(l2_offset, lambda: self._decode_l2(l2_offset))

    def _decode_l2(self, l2_offset: int):
        cs = self.cluster_size
        n = self.l2_entries
        raw = np.frombuffer(self.file.read(l2_offset, cs), dtype=">u8").astype(np.uint64)
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
            return units_state, units_host, e
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
            self._fail(CorruptImage, msg, structure, host)
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
            if l1e == 1 and not self.strict:  # truncated L1 (salvage marker)
                yield Run(vbase, vstop - vbase, DAMAGED)
            elif l2_off == 0:
                yield Run(vbase, vstop - vbase, UNALLOCATED)
            elif l2_off % cs or l2_off + cs > self.file.size:
                yield self._damaged(
                    vbase,
                    vstop,
                    "L1 table",
                    self.l1_table_offset + 8 * i,
                    f"L1 entry {i} points to an L2 table at {l2_off:#x}, "
                    + ("not cluster-aligned" if l2_off % cs else "past the end of the file"),
                )
            else:
                yield from self._runs_in_l2(
                    i, l2_off, vbase, max(start, vbase), min(end, vstop), unit
                )
            i += 1

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
                    yield Run(vs + room, ve - vs - room, ZERO)
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
                yield self._damaged(
                    vs,
                    ve,
                    "L2 table",
                    l2_off + k * self.l2_entry_size,
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
                self._fail(CorruptImage, msg, "compressed cluster", h)
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
        if h.nb_snapshots > 65536:
            self._fail(
                CorruptImage,
                f"{h.nb_snapshots} snapshots (QEMU allows 65536)",
                "header.nb_snapshots",
                60,
            )
        pos = h.snapshots_offset
        if pos % self.cluster_size:
            self._fail(CorruptImage, "snapshot table not cluster-aligned", "snapshot table", pos)
        for i in range(h.nb_snapshots):
            if pos + 40 > f.size:
                self._fail(
                    CorruptImage,
                    f"snapshot {i} header past the end of the file",
                    "snapshot table",
                    pos,
                )
            raw = SnapshotHeader.parse(f.read(pos, 40))
            extra_n = raw.extra_data_size
            total = 40 + extra_n + raw.id_str_size + raw.name_size
            if extra_n > 1024 or pos + total > f.size:
                self._fail(
                    CorruptImage,
                    f"snapshot {i} entry runs past the end of the file",
                    "snapshot table",
                    pos,
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
                    vm_clock=dt.timedelta(microseconds=s.raw.vm_clock_nsec / 1000),
                    vm_state_size=s.vm_state_size,
                    virtual_size=s.virtual_size(self.header.size),
                    l1_table_offset=s.raw.l1_table_offset,
                    l1_size=s.raw.l1_size,
                )
            )
        return rows

    def open_snapshot(self, ident: str | int) -> Qcow2Image:
        """A read-only view of the disk as it was at an internal snapshot."""
        self.find_snapshot(ident)
        return Qcow2Image(FileSource(self.path), path=self.path, strict=self.strict, snapshot=ident)

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
            self._fail(CorruptImage, "bitmap directory outside the file", "bitmap directory", off)
        data = self.file.read(off, size)
        rows, pos = [], 0
        for _ in range(b.nb_bitmaps):
            if pos + 24 > len(data):
                self._fail(
                    CorruptImage, "bitmap directory entry cut short", "bitmap directory", off + pos
                )
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
            bitmaps=[b["name"] for b in self.bitmaps()],
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
            self._fail(
                CorruptImage,
                f"refcount table of {h.refcount_table_clusters} clusters is absurd",
                "header.refcount_table_clusters",
                56,
            )
        n = min(n, max(0, self.file.size - h.refcount_table_offset))
        return self._read_table(h.refcount_table_offset, n & ~7, "refcount table")

    def refcounts(self) -> tuple[np.ndarray, list[dict]]:
        """Stored refcount of every host cluster in the file, and problems met reading them."""
        cs = self.cluster_size
        nclusters = -(-self.file.size // cs)
        out = np.zeros(nclusters, dtype=np.uint64)
        problems = []
        per_block = cs * 8 // self.refcount_bits
        reft = self.refcount_table()
        for i, e in enumerate(reft.tolist()):
            off = e & REFT_OFFSET_MASK
            if not off:
                continue
            if off % cs or off + cs > self.file.size:
                problems.append(
                    dict(
                        severity="error",
                        structure="refcount table",
                        host_offset=self.header.refcount_table_offset + 8 * i,
                        message=f"ERROR refcount block {i} at {off:#x} is "
                        + ("not cluster-aligned" if off % cs else "past the end of the file"),
                    )
                )
                continue
            first = i * per_block
            if first >= nclusters:
                continue
            block = _decode_refcounts(self.file.read(off, cs), self.refcount_bits)
            k = min(per_block, nclusters - first)
            out[first : first + k] = block[:k]
        return out, problems

    def _referenced(self) -> tuple[np.ndarray, list[dict], dict]:
        """Count the references to every host cluster, as QEMU's check does."""
        cs = self.cluster_size
        h = self.header
        nclusters = -(-self.file.size // cs)
        ref = np.zeros(nclusters, dtype=np.int64)
        problems: list[dict] = []
        stats = dict(allocated_clusters=0, compressed_clusters=0, fragmented_clusters=0)
        past_end: dict[int, int] = {}

        def inc(offset: int, length: int, what: str) -> None:
            if length <= 0:
                return
            a = offset // cs
            b = (offset + length - 1) // cs + 1
            if b > nclusters:
                for c in range(max(a, nclusters), b):
                    past_end[c] = past_end.get(c, 0) + 1
                    problems.append(
                        dict(
                            severity="error",
                            structure=what,
                            host_offset=c * cs,
                            message=f"ERROR cluster {c} refcount=0 reference="
                            f"{past_end[c]} ({what} past the end of the file)",
                        )
                    )
                b = nclusters
            if a < b:
                ref[a:b] += 1

        inc(0, cs, "header")
        if h.snapshots_offset and h.nb_snapshots:
            inc(h.snapshots_offset, getattr(self, "snapshot_table_length", 0), "snapshot table")
        inc(h.refcount_table_offset, h.refcount_table_clusters * cs, "refcount table")
        for e in self.refcount_table().tolist():
            off = e & REFT_OFFSET_MASK
            if off and off % cs == 0:
                inc(off, cs, "refcount block")
        copied_checks = []
        tables = [(self.header.l1_table_offset, self.header.l1_size, True, "L1 table")]
        for s in self.snapshot_list:
            tables.append(
                (s.raw.l1_table_offset, s.raw.l1_size, False, f"snapshot {s.id} L1 table")
            )
        for l1_off, l1_size, active, what in tables:
            inc(l1_off, l1_size * 8, what)
            try:
                l1 = self._read_table(l1_off, l1_size * 8, what)
            except CorruptImage as e:
                problems.append(
                    dict(
                        severity="error", structure=what, host_offset=l1_off, message=str(e.detail)
                    )
                )
                continue
            for i, l1e in enumerate(l1.tolist()):
                l2_off = l1e & L1E_OFFSET_MASK
                if not l2_off:
                    continue
                if l2_off % cs:
                    problems.append(
                        dict(
                            severity="error",
                            structure=what,
                            host_offset=l1_off + 8 * i,
                            message=f"ERROR offset={l2_off:x}: L2 table is not "
                            "cluster-aligned; L1 entry corrupted",
                        )
                    )
                    continue
                inc(l2_off, cs, "L2 table")
                if active:
                    copied_checks.append(("L2 table", l1_off + 8 * i, l1e, l2_off))
                if l2_off + cs > self.file.size:
                    continue
                self._count_l2(l2_off, active, inc, problems, stats, copied_checks)
        if self.bitmaps_ext is not None:
            try:
                bms = self.bitmaps()
            except CorruptImage as e:
                problems.append(
                    dict(
                        severity="error",
                        structure="bitmap directory",
                        host_offset=e.offset,
                        message=e.detail,
                    )
                )
                bms = []
            b = self.bitmaps_ext
            inc(b.bitmap_directory_offset, b.bitmap_directory_size, "bitmap directory")
            for bm in bms:
                inc(bm["bitmap_table_offset"], bm["bitmap_table_size"] * 8, "bitmap table")
                if bm["bitmap_table_offset"] + bm["bitmap_table_size"] * 8 <= self.file.size:
                    t = self._read_table(
                        bm["bitmap_table_offset"], bm["bitmap_table_size"] * 8, "bitmap table"
                    )
                    for e in t.tolist():
                        off = e & 0x00FFFFFFFFFFFE00
                        if off:
                            inc(off, cs, "bitmap data")
        if self.crypto_ext is not None:
            inc(self.crypto_ext.offset, self.crypto_ext.length, "encryption header")
        return ref, problems, dict(stats, copied=copied_checks)

    def _count_l2(self, l2_off, active, inc, problems, stats, copied_checks) -> None:
        cs = self.cluster_size
        _, _, e = self._l2_units(l2_off)
        prev_end = None  # like QEMU, fragmentation is counted within each L2 table
        for k, entry in enumerate(e.tolist()):
            if entry & QCOW_OFLAG_COMPRESSED:
                co = entry & self.coffset_mask
                nb = ((entry >> self.csize_shift) & self.csize_mask) + 1
                inc(co & ~511, nb * 512, "compressed cluster")
                if active:
                    stats["allocated_clusters"] += 1
                    stats["compressed_clusters"] += 1
                    stats["fragmented_clusters"] += 1  # compressed clusters always are
                    if entry & QCOW_OFLAG_COPIED:
                        problems.append(
                            dict(
                                severity="error",
                                structure="L2 table",
                                host_offset=l2_off + k * self.l2_entry_size,
                                message=f"ERROR: compressed cluster with COPIED flag: "
                                f"l2_entry={entry:x}",
                            )
                        )
                continue
            off = entry & L2E_OFFSET_MASK
            if not off and not (self.data_file is not None and entry & QCOW_OFLAG_COPIED):
                continue
            if active:
                stats["allocated_clusters"] += 1
                if prev_end is not None and off != prev_end:
                    stats["fragmented_clusters"] += 1
                prev_end = off + cs
            if off % cs:
                problems.append(
                    dict(
                        severity="error",
                        structure="L2 table",
                        host_offset=l2_off + k * self.l2_entry_size,
                        message=f"ERROR offset={off:x}: Cluster is not properly "
                        "aligned; L2 entry corrupted",
                    )
                )
                continue
            if self.data_file is None:
                inc(off, cs, "data cluster")
                if active:
                    copied_checks.append(
                        ("data cluster", l2_off + k * self.l2_entry_size, entry, off)
                    )

    def check(self) -> list[dict]:
        """Integrity findings, as ``qemu-img check`` reports them (one row per cluster)."""
        rows = list(self.findings)
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
            return rows
        try:
            stored, problems = self.refcounts()
            ref, ref_problems, extra = self._referenced()
        except CorruptImage as e:
            rows.append(
                dict(
                    severity="error", structure=e.structure, host_offset=e.offset, message=e.detail
                )
            )
            return rows
        rows += problems + ref_problems
        cs = self.cluster_size
        st = stored.astype(np.int64)
        for c in np.flatnonzero(st != ref).tolist():
            s, r = int(st[c]), int(ref[c])
            if s < r:
                rows.append(
                    dict(
                        severity="error",
                        structure="refcount",
                        host_offset=c * cs,
                        message=f"ERROR cluster {c} refcount={s} reference={r}",
                    )
                )
            else:
                rows.append(
                    dict(
                        severity="leak",
                        structure="refcount",
                        host_offset=c * cs,
                        message=f"Leaked cluster {c} refcount={s} reference={r}",
                    )
                )
        if not self.dirty:
            for what, where, entry, off in extra["copied"]:
                c = off // cs
                if c >= len(st):
                    continue
                want = st[c] == 1
                if bool(entry & QCOW_OFLAG_COPIED) != want:
                    rows.append(
                        dict(
                            severity="error",
                            structure=what,
                            host_offset=where,
                            message=f"ERROR OFLAG_COPIED {what}: entry={entry:x} "
                            f"refcount={int(st[c])}",
                        )
                    )
        return rows

    def check_summary(self) -> dict:
        """Counts as ``qemu-img check --output=json`` gives them."""
        rows = self.check()
        _, _, extra = self._referenced()
        return dict(
            corruptions=sum(r["severity"] == "error" for r in rows),
            leaks=sum(r["severity"] == "leak" for r in rows),
            allocated_clusters=extra["allocated_clusters"],
            compressed_clusters=extra["compressed_clusters"],
            fragmented_clusters=extra["fragmented_clusters"],
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
        for i, e in enumerate(self.refcount_table().tolist()):
            off = e & REFT_OFFSET_MASK
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
        for i, l1e in enumerate(self.l1.tolist()):
            off = l1e & L1E_OFFSET_MASK
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
        return rows


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
    try:
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)[:size]
    except zstandard.ZstdError as e:
        raise ValueError(str(e)) from e


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> Qcow2Image:
    return Qcow2Image(source, path=path, strict=strict)
