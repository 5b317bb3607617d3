"""The NTFS driver: volume, MFT, files, directories, streams, deleted files.

Layout of the facts: boot.py (boot sector), mft.py (records, fixups, attribute headers),
attributes.py (attribute values), runlist.py (mapping pairs), index.py (directory B+
trees), lznt1.py (compressed files), wof.py (CompactOS files). This module ties them
together behind the FileSystem protocol, listing the volume as The Sleuth Kit's
``fls -r -p`` does: metadata files at the root, named $DATA streams as ``file:stream``
rows, deleted files in their old directory (or under ``/$OrphanFiles``).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ...errors import CorruptImage, InvalidArgument, NotFound
from ...io import ByteSource, LRUCache, MemorySource, Zero
from .. import base as _base
from ..base import DIR, FILE, FILES_COLUMNS, MAX_DEPTH, SYMLINK, Entry, FileSystem
from .attributes import (
    _MAX_FT,
    FA_ENCRYPTED,
    IO_REPARSE_TAG_WOF,
    NS_DOS,
    FileNameAttr,
    Reparse,
    StdInfo,
    display_name_rank,
    filetime,
    parse_attribute_list,
    parse_file_name,
    parse_reparse,
    parse_std_info,
    parse_volume_information,
)
from .boot import Geometry, parse_boot
from .index import all_blocks, walk_index
from .lznt1 import LZNT1Error
from .lznt1 import decompress as lznt1_decompress
from .mft import (
    _ATTR,
    _HDR,
    _NONRES,
    _RES,
    _U32,
    AT_ATTRIBUTE_LIST,
    AT_BITMAP,
    AT_DATA,
    AT_FILE_NAME,
    AT_INDEX_ALLOCATION,
    AT_INDEX_ROOT,
    AT_REPARSE_POINT,
    AT_STANDARD_INFORMATION,
    AT_VOLUME_INFORMATION,
    AT_VOLUME_NAME,
    ATTR_COMPRESSED,
    ATTR_ENCRYPTED,
    ATTR_NAMES,
    ATTR_SPARSE,
    MREF_MASK,
    REC_DIRECTORY,
    REC_IN_USE,
    Attribute,
    Record,
    RecordError,
    apply_fixup,
    fixup_many,
    parse_record,
)
from .runlist import Run, RunlistError, RunSource, decode_runlist, overlapping
from .wof import ALGORITHMS, WOF_STREAM, WofSource, parse_wof_reparse

_U64 = struct.Struct("<Q").unpack_from
MAX_PATH = getattr(_base, "MAX_PATH", 32767)  # longer paths are not followed
ROOT = 5
FIRST_USER_RECORD = 16
MIRROR_RECORDS = 4  # $MFTMirr holds at least records 0-3
SYSTEM_NAMES = [
    "$MFT",
    "$MFTMirr",
    "$LogFile",
    "$Volume",
    "$AttrDef",
    ".",
    "$Bitmap",
    "$Boot",
    "$BadClus",
    "$Secure",
    "$UpCase",
    "$Extend",
]
ORPHANS = "$OrphanFiles"
SCAN_CHUNK = 4 << 20  # bytes of MFT read at once by the sequential scan
MAX_ATTR_LIST = 1 << 22  # an $ATTRIBUTE_LIST larger than 4 MiB is corrupt
MAX_EXTENSION_RECORDS = 4096

TIME_FIELDS = ("created", "modified", "accessed", "changed")
RUNS_DAMAGED = 0x10000  # our mark in Info.data flags: the runlist could not be decoded


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
class NtfsFile:
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

    @property
    def in_use(self) -> bool:
        return bool(self.flags & REC_IN_USE)

    @property
    def is_dir(self) -> bool:
        return bool(self.flags & REC_DIRECTORY)

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


@dataclass(slots=True, eq=False)
class Info:
    """What the listing needs of one file, kept for the whole volume by the MFT scan."""

    number: int
    sequence: int
    flags: int
    link_count: int
    si: StdInfo | None
    names: list[FileNameAttr]
    data: list[tuple[str, int, int, int, int]]  # (stream name, size, allocated, flags, id)
    i30_id: int | None
    reparse: Reparse | None
    wof: str | None  # WOF algorithm name
    runs: list[tuple[int, int]] | None  # allocated (lcn, clusters) of all $DATA (free files)

    @property
    def in_use(self) -> bool:
        return bool(self.flags & REC_IN_USE)

    @property
    def is_dir(self) -> bool:
        return bool(self.flags & REC_DIRECTORY)


UNUSABLE = "unusable"  # third member of the key of an entry whose record is unusable


@dataclass
class Catalog:
    """The MFT read once: per-record info, directory children, deleted files, orphans."""

    infos: dict[int, Info]
    live: dict[int, list[tuple[Info, FileNameAttr]]]
    dead: dict[int, list[tuple[Info, FileNameAttr]]]
    orphans: list[tuple[Info, FileNameAttr | None]]
    #: in-use-looking records that could not be used (fixups, parse errors, unreadable)
    unusable: set[int] = field(default_factory=set)


class NTFS(FileSystem):
    """An NTFS volume (versions 1.2 to 3.1) on a ByteSource."""

    fstype = "ntfs"
    case_sensitive = False

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True):
        super().__init__(source, name=name, strict=strict)
        self.geometry = self._read_boot()
        g = self.geometry
        self.cluster_size = g.cluster_size
        self.record_size = g.record_size
        self.clusters = g.clusters
        self._records: LRUCache[Record] = LRUCache(4096)
        self._files: LRUCache[NtfsFile] = LRUCache(1024)
        self._indexes: LRUCache[list] = LRUCache(64)
        self._catalog: Catalog | None = None
        self._upcase_map: dict | None = None
        self._ascii_upper = False
        self._bitmap: ByteSource | None = None
        self.mft = self._load_mft()
        self.nrecords = self.mft.size // self.record_size
        self.label, self.version, self.volume_flags = self._volume_info()
        self.uuid = g.serial_hex
        self.serial = g.serial_hex

    # --- boot sector and $MFT --------------------------------------------------------
    def _read_boot(self) -> Geometry:
        src = self.source
        raw = src.read(0, 512) if src.size >= 512 else b""
        geo, why = parse_boot(raw, 0)
        if geo is None:
            if self.strict:
                raise CorruptImage(
                    f"not a usable NTFS boot sector: {why}",
                    path=self.name,
                    structure="boot sector",
                    offset=0,
                )
            for ssize in (512, 4096, 1024, 2048):
                off = src.size - ssize
                if off <= 0:
                    continue
                geo2, _ = parse_boot(src.read(off, 512), off)
                if geo2 is not None:
                    self.finding(
                        "error",
                        "boot sector",
                        0,
                        f"primary boot sector unusable ({why}); used the backup at offset {off:#x}",
                    )
                    geo = geo2
                    break
            if geo is None:
                raise CorruptImage(
                    f"not a usable NTFS boot sector ({why}) and no backup "
                    "boot sector at the end of the volume",
                    path=self.name,
                    structure="boot sector",
                    offset=0,
                )
        if geo.volume_size > src.size:
            self.finding(
                "warning",
                "boot sector",
                0,
                f"volume is {geo.volume_size} bytes but only {src.size} are present "
                "(truncated image)",
            )
        return geo

    def _read_raw(self, offset: int, length: int) -> bytes | None:
        if offset < 0 or offset + length > self.source.size:
            return None
        return self.source.read(offset, length)

    def _parse_at(self, raw: bytes | None, number: int) -> Record:
        if raw is None:
            raise RecordError("outside the volume")
        buf = bytearray(raw)
        apply_fixup(buf, b"FILE")
        return parse_record(buf, number)

    def _load_mft(self) -> RunSource:
        g = self.geometry
        cs, rs = self.cluster_size, self.record_size
        off = g.mft_lcn * cs
        try:
            rec0 = self._parse_at(self._read_raw(off, rs), 0)
        except RecordError as e:
            if self.strict:
                raise CorruptImage(
                    f"MFT record 0 ($MFT) is unusable: {e}",
                    path=self.name,
                    structure="$MFT record 0",
                    offset=off,
                ) from None
            moff = g.mftmirr_lcn * cs
            try:
                rec0 = self._parse_at(self._read_raw(moff, rs), 0)
            except RecordError as e2:
                raise CorruptImage(
                    f"MFT record 0 is unusable ({e}) and so is its $MFTMirr copy ({e2})",
                    path=self.name,
                    structure="$MFT record 0",
                    offset=off,
                ) from None
            self.finding(
                "error", "$MFT record 0", off, f"record 0 unusable ({e}); used the copy in $MFTMirr"
            )
        datas = [a for a in rec0.attrs if a.type == AT_DATA and a.name == ""]
        first = next((a for a in datas if not a.resident and a.lowest_vcn == 0), None)
        if first is None:
            raise CorruptImage(
                "$MFT has no non-resident $DATA attribute",
                path=self.name,
                structure="$MFT record 0",
                offset=off,
            )
        pieces = [a for a in datas if not a.resident]
        runs = self._decode_pieces(pieces, "$MFT")
        size = first.data_size
        if size < 16 * rs or size > self.geometry.volume_size:
            raise CorruptImage(
                f"$MFT data size {size} is not sane",
                path=self.name,
                structure="$MFT record 0",
                offset=off,
            )
        mft = RunSource(
            self.source,
            runs,
            cs,
            size - size % rs,
            first.initialized_size,
            name=f"{self.name}:$MFT",
        )
        al = next((a for a in rec0.attrs if a.type == AT_ATTRIBUTE_LIST), None)
        if al is not None:  # a very fragmented $MFT: more runs in extension records
            try:
                value = al.value if al.resident else self._small_value(al)
                entries = parse_attribute_list(value)
                for m in sorted({e.record for e in entries if e.type == AT_DATA and e.record}):
                    ext = parse_record(self._fixed(mft.read(m * rs, rs)), m)
                    pieces += [
                        a
                        for a in ext.attrs
                        if a.type == AT_DATA and a.name == "" and not a.resident
                    ]
                runs = self._decode_pieces(pieces, "$MFT")
                mft = RunSource(
                    self.source,
                    runs,
                    cs,
                    size - size % rs,
                    first.initialized_size,
                    name=f"{self.name}:$MFT",
                )
            except (RecordError, RunlistError, CorruptImage, InvalidArgument) as e:
                if self.strict:
                    raise CorruptImage(
                        f"$MFT attribute list: {e}",
                        path=self.name,
                        structure="$MFT record 0",
                        offset=off,
                    ) from None
                self.finding("error", "$MFT record 0", off, f"$MFT attribute list: {e}")
        return mft

    @staticmethod
    def _fixed(raw: bytes) -> bytearray:
        buf = bytearray(raw)
        apply_fixup(buf, b"FILE")
        return buf

    def _decode_pieces(
        self, pieces: list[Attribute], what: str, damaged: list | None = None
    ) -> list[Run]:
        """Runs of a non-resident attribute from all its pieces (ordered by first VCN).

        In salvage mode a damaged runlist gives the runs before the fault (the rest reads
        as zeros) and appends the error to ``damaged``.
        """
        runs: list[Run] = []
        for a in sorted(pieces, key=lambda a: a.lowest_vcn):
            try:
                got = decode_runlist(a.mapping_pairs, a.lowest_vcn, self.clusters)
            except RunlistError as e:
                where = f"MFT record {a.record}"
                msg = f"{what} {ATTR_NAMES.get(a.type, hex(a.type))} runlist: {e}"
                if self.strict:
                    raise CorruptImage(
                        msg, path=self.name, structure=where, offset=self._record_offset(a.record)
                    ) from None
                self.finding(
                    "error", where, self._record_offset(a.record), msg + "; the rest reads as zeros"
                )
                if damaged is not None:
                    damaged.append(e)
                got = e.runs
            runs.extend(got)
        return runs

    def _record_offset(self, n: int) -> int | None:
        """Where record ``n`` sits in the volume (None when the $MFT map does not say)."""
        mft = getattr(self, "mft", None)
        if mft is None:
            return self.geometry.mft_lcn * self.cluster_size + n * self.record_size
        vcn, within = divmod(n * self.record_size, self.cluster_size)
        for r in mft.runs:
            if r.vcn <= vcn < r.vcn + r.length and r.lcn is not None:
                return (r.lcn + vcn - r.vcn) * self.cluster_size + within
        return None

    # --- records and files ------------------------------------------------------------
    def record(self, n: int) -> Record:
        """MFT record ``n``, fixed up and parsed (RecordError when unusable)."""
        return self._records.get(n, lambda: self._load_record(n))

    def _load_record(self, n: int) -> Record:
        if not 0 <= n < self.nrecords:
            raise RecordError(f"record {n} is past the end of the MFT ({self.nrecords} records)")
        rs = self.record_size
        try:
            return parse_record(self._fixed(self.mft.read(n * rs, rs)), n)
        except (RecordError, CorruptImage) as e:
            if n < MIRROR_RECORDS and not self.strict:
                moff = self.geometry.mftmirr_lcn * self.cluster_size + n * rs
                try:
                    rec = self._parse_at(self._read_raw(moff, rs), n)
                except RecordError:
                    raise e from None
                self.finding(
                    "error",
                    f"MFT record {n}",
                    self._record_offset(n),
                    f"unusable ({e}); used the copy in $MFTMirr",
                )
                return rec
            raise

    def file(self, n: int) -> NtfsFile:
        """The file whose base record is ``n`` (attributes of extension records merged)."""
        return self._files.get(n, lambda: self._build_file(self.record(n), self.record))

    def _build_file(self, rec: Record, get_record) -> NtfsFile:
        n = rec.number
        f = NtfsFile(n, rec.sequence, rec.flags, rec.link_count, list(rec.attrs))
        al = next((a for a in rec.attrs if a.type == AT_ATTRIBUTE_LIST), None)
        if al is not None:
            try:
                value = al.value if al.resident else self._attr_list_value(al)
                entries = parse_attribute_list(value)
            except (RecordError, RunlistError, CorruptImage, InvalidArgument) as e:
                f.problems.append(f"$ATTRIBUTE_LIST unreadable: {e}")
                entries = []
            others = sorted({e.record for e in entries if e.record != n})
            if len(others) > MAX_EXTENSION_RECORDS:
                f.problems.append(
                    f"$ATTRIBUTE_LIST names {len(others)} records; "
                    f"only {MAX_EXTENSION_RECORDS} read"
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
                    f.problems.append(
                        f"extension record {m} has its own $ATTRIBUTE_LIST (loop); ignored"
                    )
                for a in ext.attrs:
                    if a.type != AT_ATTRIBUTE_LIST:
                        found[(m, a.type, a.name, a.lowest_vcn)] = a
            # In list order. Attributes from extension records get fresh ids past the base
            # record's, as The Sleuth Kit numbers them (its "type-id" addresses, compared in
            # the tests); ids restart in every record, so they would collide otherwise.
            nxt = max((a.instance for a in f.attrs), default=-1) + 1
            for e in entries:
                a = found.pop((e.record, e.type, e.name, e.lowest_vcn), None)
                if a is None:
                    continue
                f.attrs.append(dataclasses.replace(a, instance=nxt))
                nxt += 1
            f.attrs.extend(found.values())
        for a in f.attrs:
            try:
                if a.type == AT_STANDARD_INFORMATION and f.si is None and a.resident:
                    f.si = parse_std_info(a.value)
                elif a.type == AT_FILE_NAME and a.resident:
                    f.names.append(parse_file_name(a.value))
                elif a.type == AT_REPARSE_POINT and f.reparse is None:
                    value = a.value if a.resident else self._small_value(a)
                    f.reparse = parse_reparse(value)
            except (RecordError, RunlistError, CorruptImage, InvalidArgument) as e:
                f.problems.append(f"{ATTR_NAMES.get(a.type)}: {e}")
        return f

    def _attr_list_value(self, a: Attribute) -> bytes:
        if a.data_size > MAX_ATTR_LIST:
            raise RecordError(f"$ATTRIBUTE_LIST of {a.data_size} bytes is absurd")
        return self._small_value(a)

    def _small_value(self, a: Attribute) -> bytes:
        if a.data_size > MAX_ATTR_LIST:
            raise RecordError(f"{ATTR_NAMES.get(a.type)} of {a.data_size} bytes is absurd")
        runs = decode_runlist(a.mapping_pairs, 0, self.clusters) if a.mapping_pairs else []
        return RunSource(
            self.source, runs, self.cluster_size, a.data_size, a.initialized_size
        ).read(0, a.data_size)

    def _file_or_none(self, n: int) -> NtfsFile | None:
        try:
            f = self.file(n)
        except (RecordError, CorruptImage) as e:
            self.finding("error", f"MFT record {n}", self._record_offset(n), f"skipped: {e}")
            return None
        for p in f.problems:
            self.finding("error", f"MFT record {n}", self._record_offset(n), p)
        return f

    # --- streams --------------------------------------------------------------------
    def stream_source(self, f: NtfsFile, s: Stream, name: str) -> ByteSource:
        """The bytes of an attribute (resident, plain, sparse or LZNT1-compressed)."""
        if s.resident:
            return MemorySource(s.first.value, name=name)
        damaged: list = []
        runs = self._decode_pieces(s.pieces, f"record {f.number}", damaged)
        hit = overlapping(runs)
        if hit is not None:
            self.finding(
                "warning",
                f"MFT record {f.number}",
                self._record_offset(f.number),
                f"{name}: runs at clusters {hit[0].lcn} and {hit[1].lcn} overlap",
            )
        first = s.first
        size = first.data_size
        covered = sum(r.length for r in runs) * self.cluster_size
        if size > covered and not damaged:
            msg = f"{name}: data size {size} is larger than the {covered} bytes its runlist covers"
            if self.strict:
                raise CorruptImage(
                    msg,
                    path=self.name,
                    structure=f"MFT record {f.number}",
                    offset=self._record_offset(f.number),
                )
            self.finding(
                "error",
                f"MFT record {f.number}",
                self._record_offset(f.number),
                msg + "; cut to that size",
            )
            size = covered
        if first.flags & ATTR_COMPRESSED and first.compression_unit:
            return CompressedSource(
                self.source,
                runs,
                self.cluster_size,
                1 << first.compression_unit,
                size,
                first.initialized_size,
                name,
                self,
            )
        return RunSource(
            self.source, runs, self.cluster_size, size, first.initialized_size, name=name
        )

    def content(self, entry: Entry) -> ByteSource:
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        self._refuse_unusable(entry)
        key = entry.key
        if not isinstance(key, tuple) or len(key) < 2 or key[0] is None:
            return Zero(0)
        n, stream = key[0], key[1]
        f = self.file(n)
        streams = f.streams(AT_DATA)
        label = f"{self.name}:{entry.path or entry.name}"
        if stream == "" and f.reparse is not None and f.reparse.tag == IO_REPARSE_TAG_WOF:
            provider, algo = parse_wof_reparse(f.reparse.data)
            wof = streams.get(WOF_STREAM)
            if provider == 2 and wof is not None:
                size = streams[""].size if "" in streams else entry.size
                return WofSource(
                    self.stream_source(f, wof, label + ":" + WOF_STREAM), size, algo, name=label
                )
        s = streams.get(stream)
        if s is None:
            if stream == "":
                return Zero(0)
            raise NotFound(f"{self.name}: {entry.path} has no stream {stream!r}")
        # a stream cut short (salvage) keeps entry.size: extraction reports it incomplete
        return self.stream_source(f, s, label)

    def readlink_entry(self, entry: Entry) -> str:
        if entry.target is None:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a symbolic link")
        return entry.target

    # --- names ----------------------------------------------------------------------
    def _upcase(self) -> dict:
        """$UpCase as a str.translate table (only the characters it changes)."""
        if self._upcase_map is None:
            table: dict = {}
            try:
                f = self.file(10)
                s = f.streams(AT_DATA).get("")
                if s is None or s.size < 2 * 65536:
                    raise RecordError("$UpCase has no 128 KiB $DATA")
                raw = self.stream_source(f, s, "$UpCase").read(0, 2 * 65536)
                up = np.frombuffer(raw, dtype="<u2")
                diff = np.nonzero(up != np.arange(65536, dtype=np.uint16))[0]
                table = {int(i): int(up[i]) for i in diff}
                ascii_up = {i: ord(chr(i).upper()) for i in range(128) if chr(i).upper() != chr(i)}
                self._ascii_upper = {k: v for k, v in table.items() if k < 128} == ascii_up
            except (RecordError, RunlistError, CorruptImage, InvalidArgument) as e:
                self.finding("warning", "$UpCase", None, f"unreadable ({e}); using str.upper")
                table = {}
            self._upcase_map = table
        return self._upcase_map

    def fold(self, name: str) -> str:
        """A name upper-cased as NTFS compares names ($UpCase)."""
        table = self._upcase()
        if not table or (name.isascii() and self._ascii_upper):
            return name.upper()  # the same for ASCII when $UpCase maps a-z as usual
        return name.translate(table)

    def _same(self, a: str, b: str) -> bool:
        return a == b or self.fold(a) == self.fold(b)

    # --- volume ---------------------------------------------------------------------
    def _volume_info(self) -> tuple[str | None, str | None, int]:
        try:
            f = self.file(3)
        except (RecordError, CorruptImage) as e:
            if self.strict:
                raise CorruptImage(
                    f"$Volume record unusable: {e}",
                    path=self.name,
                    structure="MFT record 3",
                    offset=self._record_offset(3),
                ) from None
            self.finding("error", "MFT record 3", self._record_offset(3), f"$Volume: {e}")
            return None, None, 0
        label = version = None
        flags = 0
        vn = f.attr(AT_VOLUME_NAME)
        if vn is not None and vn.resident:
            label = vn.value.decode("utf-16-le", "replace") or None
        vi = f.attr(AT_VOLUME_INFORMATION)
        if vi is not None and vi.resident:
            try:
                major, minor, flags = parse_volume_information(vi.value)
                version = f"{major}.{minor}"
            except RecordError as e:
                self.finding("error", "$Volume", None, str(e))
        if flags & 0x0001:
            self.finding(
                "warning",
                "$Volume",
                self._record_offset(3),
                "volume is marked dirty (not cleanly unmounted)",
            )
        return label, version, flags

    def info(self) -> dict:
        g = self.geometry
        return dict(
            fstype="ntfs",
            label=self.label,
            uuid=self.uuid,
            serial=self.serial,
            version=self.version,
            volume_size=g.volume_size,
            sector_size=g.sector_size,
            cluster_size=g.cluster_size,
            clusters=g.clusters,
            mft_record_size=g.record_size,
            index_record_size=g.index_record_size,
            mft_records=self.nrecords,
            mft_offset=g.mft_lcn * g.cluster_size,
            mftmirr_offset=g.mftmirr_lcn * g.cluster_size,
            dirty=bool(self.volume_flags & 1),
            volume_flags=self.volume_flags,
            boot_sector="primary" if g.boot_offset == 0 else f"backup@{g.boot_offset:#x}",
        )

    def structures(self) -> list[dict]:
        g = self.geometry
        cs = self.cluster_size
        rows = [
            dict(
                name="boot sector",
                host_offset=g.boot_offset,
                length=512,
                description=f"NTFS boot sector: {g.sector_size} B sectors, {cs} B "
                f"clusters, MFT at cluster {g.mft_lcn}",
            )
        ]
        backup = g.volume_size
        if backup + 512 <= self.source.size:
            rows.append(
                dict(
                    name="backup boot sector",
                    host_offset=backup,
                    length=512,
                    description="copy of the boot sector past the last cluster",
                )
            )
        for n in range(12):
            try:
                f = self.file(n)
            except (RecordError, CorruptImage):
                continue
            nm = SYSTEM_NAMES[n] if n != ROOT else "root directory"
            off = self._record_offset(n)
            rows.append(
                dict(
                    name=f"MFT record {n}",
                    host_offset=off,
                    length=self.record_size,
                    description=f"{nm} record",
                )
            )
            for a in f.attrs:
                if a.resident:
                    continue
                try:
                    runs = decode_runlist(a.mapping_pairs, a.lowest_vcn, self.clusters)
                except RunlistError:
                    continue
                for i, r in enumerate(runs):
                    if r.lcn is None:
                        continue
                    label = f"{nm} {ATTR_NAMES.get(a.type, hex(a.type))}"
                    if a.name:
                        label += f":{a.name}"
                    rows.append(
                        dict(
                            name=label + (f" run {i}" if len(runs) > 1 else ""),
                            host_offset=r.lcn * cs,
                            length=r.length * cs,
                            description=f"clusters {r.lcn}..{r.lcn + r.length - 1}",
                        )
                    )
        return rows

    def check(self) -> list[dict]:
        g = self.geometry
        backup = g.volume_size
        raw = self._read_raw(backup, 512) if g.boot_offset == 0 else None
        if g.boot_offset == 0:
            if raw is None:
                self.finding(
                    "warning", "backup boot sector", backup, "missing (the volume is cut short)"
                )
            elif raw != self.source.read(0, 512):
                geo, why = parse_boot(raw)
                self.finding(
                    "warning",
                    "backup boot sector",
                    backup,
                    "differs from the primary"
                    + (f" and is unusable ({why})" if geo is None else ""),
                )
        rs = self.record_size
        for n in range(MIRROR_RECORDS):
            a = self._read_raw(g.mftmirr_lcn * self.cluster_size + n * rs, rs)
            try:
                b = self.mft.read(n * rs, rs)
            except (CorruptImage, InvalidArgument):
                continue
            if a is not None and a != b:
                self.finding(
                    "warning",
                    "$MFTMirr",
                    g.mftmirr_lcn * self.cluster_size + n * rs,
                    f"record {n} differs from $MFT",
                )
        self._scan()
        return list(self.findings)

    # --- the catalog (one sequential pass over the MFT) ------------------------------
    def _scan(self) -> Catalog:
        if self._catalog is not None:
            return self._catalog
        rs = self.record_size
        per = max(1, SCAN_CHUNK // rs)
        infos: dict[int, Info] = {}
        unusable: set[int] = set()
        pending: dict[int, Record] = {}  # records that need merging (attr lists, extensions)
        n = 0
        while n < self.nrecords:
            count = min(per, self.nrecords - n)
            try:
                chunk = self.mft.read(n * rs, count * rs)
            except CorruptImage as e:
                self.finding(
                    "error",
                    "$MFT",
                    self._record_offset(n),
                    f"records {n}..{n + count - 1} unreadable: {e}",
                )
                unusable.update(range(n, n + count))
                n += count
                continue
            arr, has_magic, ok = fixup_many(chunk, rs)
            for i in np.nonzero(has_magic)[0].tolist():
                num = n + i
                if not ok[i]:
                    rec = self._mirror_record(num)
                    if rec is None:
                        self.finding(
                            "error",
                            f"MFT record {num}",
                            self._record_offset(num),
                            "update sequence fixup mismatch; record skipped",
                        )
                        unusable.add(num)
                        continue
                else:
                    quick = self._quick_info(arr[i].data, num)
                    if quick is not None:
                        infos[num] = quick
                        continue
                    try:
                        rec = parse_record(arr[i].data, num)
                    except RecordError as e:
                        self.finding(
                            "error", f"MFT record {num}", self._record_offset(num), f"skipped: {e}"
                        )
                        unusable.add(num)
                        continue
                if rec.base_ref & MREF_MASK and rec.base != num:
                    pending[num] = rec
                    continue
                if any(a.type == AT_ATTRIBUTE_LIST for a in rec.attrs):
                    pending[num] = rec
                    continue
                info = self._info(self._build_file(rec, self.record))
                infos[num] = info
            n += count

        def get(m: int) -> Record:
            r = pending.get(m)
            return r if r is not None else self.record(m)

        for num, rec in pending.items():
            if rec.base_ref & MREF_MASK and rec.base != num:
                base = rec.base
                if base not in pending and base not in infos:
                    self.finding(
                        "warning",
                        f"MFT record {num}",
                        self._record_offset(num),
                        f"extension record of record {base}, which is unusable",
                    )
                continue
            f = self._build_file(rec, get)
            for p in f.problems:  # a deleted file's extension records are often reused
                self.finding(
                    "error" if f.in_use else "info",
                    f"MFT record {num}",
                    self._record_offset(num),
                    p,
                )
            infos[num] = self._info(f)
        self._catalog = self._link(infos)
        self._catalog.unusable = unusable
        return self._catalog

    def _mirror_record(self, n: int) -> Record | None:
        if n >= MIRROR_RECORDS or self.strict:
            return None
        try:
            return self.record(n)
        except (RecordError, CorruptImage):
            return None

    def _quick_info(self, buf, num: int) -> Info | None:
        """The scan's fast path: Info straight from a fixed-up record's bytes.

        Gives exactly what ``_info(_build_file(...))`` gives for an ordinary base record;
        anything unusual (attribute lists, extension records, pieces, damage) returns None
        and goes the general way, which also reports the problems.
        """
        (_sig, _uo, _uc, _lsn, seq, links, first, flags, used, _al, base_ref, _nx) = (
            _HDR.unpack_from(buf, 0)
        )
        size = len(buf)
        if base_ref & MREF_MASK or first < 0x2A or first & 7 or used > size or used < first:
            return None
        in_use = flags & REC_IN_USE
        si = None
        names: list[FileNameAttr] = []
        data: list[tuple[str, int, int, int, int]] = []
        i30 = reparse = None
        runs: list[tuple[int, int]] | None = None
        off = first
        try:
            while off + 4 <= used:
                atype = _U32(buf, off)[0]
                if atype == 0xFFFFFFFF:
                    break
                if off + 16 > used:
                    return None
                atype, length, nonres, nlen, noff, aflags, inst = _ATTR.unpack_from(buf, off)
                if length < 16 or length & 7 or off + length > used or atype == AT_ATTRIBUTE_LIST:
                    return None
                name = ""
                if nlen:
                    if noff + 2 * nlen > length:
                        return None
                    if atype in (AT_DATA, AT_INDEX_ROOT):
                        name = bytes(buf[off + noff : off + noff + 2 * nlen]).decode(
                            "utf-16-le", "replace"
                        )
                if nonres == 0:
                    if length < 24:
                        return None
                    vlen, voff = _RES.unpack_from(buf, off + 16)
                    if voff + vlen > length:
                        return None
                    v = off + voff
                    if atype == AT_STANDARD_INFORMATION:
                        if si is None:
                            si = parse_std_info(bytes(buf[v : v + vlen]))
                    elif atype == AT_FILE_NAME:
                        names.append(parse_file_name(buf[v : v + vlen]))
                    elif atype == AT_DATA:
                        data.append((name, vlen, 0, aflags, inst))
                    elif atype == AT_INDEX_ROOT:
                        if name == "$I30" and i30 is None:
                            i30 = inst
                    elif atype == AT_REPARSE_POINT:
                        if reparse is not None:
                            return None
                        reparse = parse_reparse(bytes(buf[v : v + vlen]))
                else:
                    if length < 64:
                        return None
                    lvcn, hvcn, mp_off, cu, alloc, dsize, isize = _NONRES.unpack_from(buf, off + 16)
                    if (
                        max(alloc, dsize, isize) >= 1 << 62
                        or dsize > alloc
                        or isize > alloc
                        or lvcn != 0
                        or hvcn >= 1 << 62
                        or hvcn < -1
                        or mp_off < 64
                        or mp_off > length
                    ):
                        return None
                    if atype == AT_REPARSE_POINT:
                        return None
                    if atype == AT_DATA:
                        allocated = alloc
                        if (
                            (cu or aflags & (ATTR_COMPRESSED | ATTR_SPARSE))
                            and length >= 72
                            and aflags & (ATTR_COMPRESSED | ATTR_SPARSE)
                        ):
                            allocated = _U64(buf, off + 64)[0]
                        if not in_use:
                            try:
                                got = decode_runlist(
                                    bytes(buf[off + mp_off : off + length]), 0, self.clusters
                                )
                                runs = (runs or []) + [
                                    (r.lcn, r.length) for r in got if r.lcn is not None
                                ]
                            except RunlistError:
                                return None
                        data.append((name, dsize, allocated, aflags, inst))
                off += length
        except RecordError:
            return None
        if len({d[0] for d in data}) != len(data):
            return None
        data.sort(key=lambda d: d[0])
        return Info(num, seq, flags, links, si, names, data, i30, reparse, _wof_name(reparse), runs)

    def _info(self, f: NtfsFile) -> Info:
        data = []
        runs = None
        for s in f.streams(AT_DATA).values():
            data.append((s.name, s.size, s.allocated, s.flags, s.instance))
            if not f.in_use and not s.resident:
                try:
                    got = []
                    for a in s.pieces:
                        got += decode_runlist(a.mapping_pairs, a.lowest_vcn, self.clusters)
                    runs = (runs or []) + [(r.lcn, r.length) for r in got if r.lcn is not None]
                except RunlistError:
                    runs = None
                    data[-1] = (s.name, s.size, s.allocated, s.flags | RUNS_DAMAGED, s.instance)
        data.sort(key=lambda d: d[0])
        i30 = next(
            (a.instance for a in f.attrs if a.type == AT_INDEX_ROOT and a.name == "$I30"), None
        )
        wof = _wof_name(f.reparse)
        return Info(
            f.number,
            f.sequence,
            f.flags,
            f.link_count,
            f.si,
            f.names,
            data,
            i30,
            f.reparse,
            wof,
            runs,
        )

    def _link(self, infos: dict[int, Info]) -> Catalog:
        """Hang every name on its parent directory (live or deleted), or on the orphans."""
        live: dict[int, list] = {}
        dead: dict[int, list] = {}
        orphans: list = []
        for num, info in infos.items():
            if num == ROOT:
                continue
            names = _display_names(info.names)
            if not names:
                if not info.in_use and info.si is not None:  # TSK's OrphanFile-N
                    orphans.append((info, None))
                continue
            for fn in names:
                parent = infos.get(fn.parent)
                ok = parent is not None and parent.is_dir and fn.parent != num
                if ok and fn.parent_seq:
                    if parent.sequence != fn.parent_seq and not (
                        not info.in_use
                        and not parent.in_use
                        and parent.sequence == (fn.parent_seq + 1) & 0xFFFF
                    ):
                        ok = False
                if ok and info.in_use and not parent.in_use:
                    ok = False
                if not ok:
                    if fn.parent == num and num != ROOT:
                        self.finding(
                            "error",
                            f"MFT record {num}",
                            self._record_offset(num),
                            f"{fn.name!r} names itself as its parent directory",
                        )
                    orphans.append((info, fn))
                elif info.in_use:
                    live.setdefault(fn.parent, []).append((info, fn))
                else:
                    dead.setdefault(fn.parent, []).append((info, fn))
        # names whose parent chain never reaches the root: parent-reference loops
        reached = {ROOT}
        todo = [ROOT]
        while todo:
            d = todo.pop()
            for group in (live.get(d, ()), dead.get(d, ())):
                for info, _fn in group:
                    if info.is_dir and info.number not in reached:
                        reached.add(info.number)
                        todo.append(info.number)
        for table in (live, dead):
            for parent in [p for p in table if p not in reached]:
                for info, fn in table.pop(parent):
                    self.finding(
                        "error",
                        f"MFT record {info.number}",
                        self._record_offset(info.number),
                        f"{fn.name!r}: its parent directories never reach the root "
                        f"(parent reference loop through record {parent})",
                    )
                    orphans.append((info, fn))
        orphans.sort(key=lambda t: t[0].number)
        return Catalog(infos, live, dead, orphans)

    # --- entries --------------------------------------------------------------------
    def root(self) -> Entry:
        info = self._info_of(ROOT)
        if info is None or not info.is_dir:
            raise CorruptImage(
                "the root directory (MFT record 5) is unusable",
                path=self.name,
                structure="MFT record 5",
                offset=self._record_offset(ROOT),
            )
        fn = next((x for x in info.names if x.parent == ROOT), None)
        e = self._entries(info, fn, deleted=False, name="")[0]
        e.path, e.parent = "/", ""
        return e

    def _info_of(self, n: int) -> Info | None:
        if self._catalog is not None:
            info = self._catalog.infos.get(n)
            if info is not None:
                return info
        f = self._file_or_none(n)
        return None if f is None else self._info(f)

    def _entries(
        self,
        info: Info,
        fn: FileNameAttr | None,
        deleted: bool,
        name: str | None = None,
        short: str | None = None,
        times: bool = True,
    ) -> list[Entry]:
        """The rows of one name of a file: the file itself, then its named $DATA streams."""
        si = info.si
        if name is None:
            name = fn.name if fn is not None else f"OrphanFile-{info.number}"
        rp = info.reparse
        kind = DIR if info.is_dir else FILE
        target = None
        if rp is not None and rp.is_link:
            kind = SYMLINK
            target = rp.target
        main = next((d for d in info.data if d[0] == ""), None)
        size = main[1] if main is not None and kind != DIR else 0
        attrs = si.attributes if si is not None else (fn.attributes if fn else 0)
        if si is not None:
            ft = [si.created, si.modified, si.accessed, si.changed]
            times = [filetime(t) for t in ft] if times else [None, None, None, None]
        else:
            ft = times = [None, None, None, None]
        fnt = [fn.created, fn.modified, fn.accessed, fn.changed] if fn is not None else [None] * 4
        encrypted = bool(attrs & FA_ENCRYPTED) or any(d[3] & ATTR_ENCRYPTED for d in info.data)
        recoverable = deleted and self._recoverable(info)
        if info.is_dir:
            tsk = f"{info.number}-144-{info.i30_id}" if info.i30_id is not None else None
        else:
            tsk = f"{info.number}-128-{main[4]}" if main is not None else None
        extra = dict(
            stream=None,
            tsk_addr=tsk,
            attributes=attrs,
            reparse_tag=rp.tag_name if rp is not None else None,
            encrypted=encrypted,
            compressed=(info.wof or ("lznt1" if main and main[3] & ATTR_COMPRESSED else None)),
            sparse=bool(main and main[3] & ATTR_SPARSE),
            owner_id=si.owner_id if si else None,
            security_id=si.security_id if si else None,
            short_name=short,
            sequence=info.sequence,
            si_created_ft=ft[0],
            si_modified_ft=ft[1],
            si_accessed_ft=ft[2],
            si_changed_ft=ft[3],
            fn_created_ft=fnt[0],
            fn_modified_ft=fnt[1],
            fn_accessed_ft=fnt[2],
            fn_changed_ft=fnt[3],
        )
        e = Entry(
            name=name,
            kind=kind,
            size=size,
            allocated=main[2] if main is not None and kind != DIR else 0,
            created=times[0],
            modified=times[1],
            accessed=times[2],
            changed=times[3],
            inode=info.number,
            links=info.link_count,
            deleted=deleted,
            recoverable=recoverable,
            target=target,
            key=(info.number, "", info.sequence),
            raw=info,
            extra=extra,
        )
        out = [e]
        for sname, ssize, salloc, sflags, sid in info.data:
            if sname == "" or (info.wof and sname == WOF_STREAM):
                continue
            x = dict(extra)
            x.update(
                stream=sname,
                tsk_addr=f"{info.number}-128-{sid}",
                encrypted=encrypted or bool(sflags & ATTR_ENCRYPTED),
                compressed="lznt1" if sflags & ATTR_COMPRESSED else None,
                sparse=bool(sflags & ATTR_SPARSE),
                reparse_tag=None,
            )
            out.append(
                Entry(
                    name=f"{name}:{sname}",
                    kind=FILE,
                    size=ssize,
                    allocated=salloc,
                    created=times[0],
                    modified=times[1],
                    accessed=times[2],
                    changed=times[3],
                    inode=info.number,
                    links=info.link_count,
                    deleted=deleted,
                    recoverable=recoverable,
                    key=(info.number, sname, info.sequence),
                    raw=info,
                    extra=x,
                )
            )
        return out

    def _recoverable(self, info: Info) -> bool:
        if any(d[3] & RUNS_DAMAGED for d in info.data):
            return False
        if not info.runs:
            return True
        bm = self._volume_bitmap()
        if bm is None:
            return False
        for lcn, length in info.runs:
            a, b = lcn // 8, (lcn + length + 7) // 8
            if b > bm.size:
                return False
            bits = np.unpackbits(
                np.frombuffer(bm.read(a, b - a), dtype=np.uint8), bitorder="little"
            )
            lo = lcn - a * 8
            if bits[lo : lo + length].any():
                return False
        return True

    def _volume_bitmap(self) -> ByteSource | None:
        if self._bitmap is None:
            try:
                f = self.file(6)
                s = f.streams(AT_DATA)[""]
                self._bitmap = self.stream_source(f, s, "$Bitmap")
            except (RecordError, CorruptImage, KeyError) as e:
                self.finding("error", "$Bitmap", self._record_offset(6), f"unreadable: {e}")
                self._bitmap = MemorySource(b"")
        return self._bitmap if self._bitmap.size else None

    def _orphan_dir(self) -> Entry:
        return Entry(
            name=ORPHANS,
            kind=DIR,
            size=0,
            key=(None, ORPHANS),
            extra=dict(stream=None, tsk_addr=None),
        )

    def _hardlink_key(self, entry: Entry):
        """Live names of one MFT record (each stream on its own) are hard links."""
        if entry.deleted or entry.inode is None or not entry.links or entry.links < 2:
            return None
        return entry.inode, entry.extra.get("stream")

    def _dir_id(self, entry: Entry):
        return entry.inode if entry.inode is not None else entry.key

    # --- directories ----------------------------------------------------------------
    def _index_entries(self, n: int) -> tuple[list[tuple[int, int, FileNameAttr]], list[str]]:
        """The $I30 index of directory ``n``: (record, sequence, $FILE_NAME) in order."""

        def load():
            problems: list[str] = []
            f = self.file(n)
            root = f.attr(AT_INDEX_ROOT, "$I30")
            if root is None or not root.resident:
                return [], ["no resident $I30 $INDEX_ROOT"]
            alloc = f.streams(AT_INDEX_ALLOCATION).get("$I30")
            bitmap = f.streams(AT_BITMAP).get("$I30")
            bsize = self.geometry.index_record_size
            read_block = in_use = None
            if len(root.value) >= 16:
                bsize = struct.unpack_from("<I", root.value, 8)[0] or bsize
            if bsize & (bsize - 1) or not 256 <= bsize <= 1 << 21:
                return [], [f"index block size {bsize} is not sane"]
            vcn_size = self.cluster_size if bsize >= self.cluster_size else 512
            if alloc is not None:
                src = self.stream_source(f, alloc, f"record {n} $I30")

                def read_block(vcn: int) -> bytes:
                    off = vcn * vcn_size
                    if off + bsize > src.size:
                        raise RecordError(f"VCN {vcn} is past the $INDEX_ALLOCATION")
                    return src.read(off, bsize)

                if bitmap is not None:
                    bits = self.stream_source(f, bitmap, f"record {n} $I30 bitmap").read(
                        0, min(bitmap.size, 1 << 20)
                    )

                    def in_use(vcn: int) -> bool:
                        i = vcn * vcn_size // bsize
                        return i // 8 < len(bits) and bool(bits[i // 8] >> (i % 8) & 1)

            walk = walk_index(root.value, read_block, in_use)
            problems += [m for _o, m in walk.problems]
            entries = walk.entries
            if walk.problems and read_block is not None:  # damaged tree: read every block
                flat = all_blocks(read_block, src.size // bsize, bsize // vcn_size, in_use)
                seen = {(e.ref, e.key) for e in entries}
                entries = entries + [e for e in flat.entries if (e.ref, e.key) not in seen]
            out = []
            for e in entries:
                try:
                    fn = parse_file_name(e.key)
                except RecordError as err:
                    problems.append(f"index entry: {err}")
                    continue
                out.append((e.ref & MREF_MASK, e.ref >> 48, fn))
            return out, problems

        return self._indexes.get(n, load)

    def _unusable_entry(self, ref: int, fn: FileNameAttr) -> Entry:
        """A name an index lists for a record that cannot be used: what the index keeps."""
        times = [filetime(t) for t in (fn.created, fn.modified, fn.accessed, fn.changed)]
        return Entry(
            name=fn.name,
            kind=DIR if fn.is_dir else FILE,
            size=0 if fn.is_dir else fn.data_size,
            created=times[0],
            modified=times[1],
            accessed=times[2],
            changed=times[3],
            inode=ref,
            key=(ref, None, UNUSABLE),
            raw=fn,
            extra=dict(stream=None, note=f"MFT record {ref} is unusable: listed from its "
                       "directory's index; its content cannot be read"),
        )

    def _refuse_unusable(self, entry: Entry) -> None:
        key = entry.key
        if isinstance(key, tuple) and len(key) == 3 and key[2] == UNUSABLE:
            raise CorruptImage(
                f"{entry.path or entry.name}: the MFT record is unusable; only its name, "
                "size and times are known (from the directory index)",
                path=self.name,
                structure=f"MFT record {key[0]}",
                offset=self._record_offset(key[0]),
            )

    def list_dir(self, entry: Entry) -> list[Entry]:
        self._refuse_unusable(entry)
        if entry.key == (None, ORPHANS):
            cat = self._scan()
            out = []
            for info, fn in cat.orphans:
                out += self._entries(info, fn, deleted=not info.in_use)
            return out
        n = entry.inode
        cat = self._scan()
        info = cat.infos.get(n)
        if info is None or not info.is_dir:
            raise NotFound(f"{self.name}: {entry.path} is not a directory")
        rows: list[Entry] = []
        if entry.deleted or not info.in_use:
            for child, fn in cat.dead.get(n, []):
                rows += self._entries(child, fn, deleted=True, short=_short(child, fn))
            return self._sorted(rows)
        seen: set[tuple[int, str]] = set()
        try:
            idx, problems = self._index_entries(n)
        except (RecordError, CorruptImage) as e:
            idx, problems = [], [str(e)]
        for p in problems:
            self.finding(
                "error",
                f"directory record {n}",
                self._record_offset(n),
                f"{entry.path or '/'}: {p}",
            )
        by_rec: dict[int, list[tuple[int, FileNameAttr]]] = {}
        for ref, seq, fn in idx:
            by_rec.setdefault(ref, []).append((seq, fn))
        for ref, names in by_rec.items():
            if ref == n and n == ROOT and all(fn.name == "." for _s, fn in names):
                continue  # the root's "." entry (any other entry naming its own
                # directory is listed, and the walk reports it as a loop)
            child = cat.infos.get(ref)
            if child is None:
                self.finding(
                    "error",
                    f"directory record {n}",
                    self._record_offset(n),
                    f"{entry.path or '/'}: index entry {names[0][1].name!r} names "
                    f"record {ref}, which is unusable",
                )
                # still listed, from what the index keeps of it (name, size, times), so
                # that listings and extraction reports name what was lost
                for fn in _display_names([x for _s, x in names]):
                    rows.append(self._unusable_entry(ref, fn))
                continue
            if names[0][0] and child.sequence != names[0][0] and child.in_use:
                self.finding(
                    "warning",
                    f"directory record {n}",
                    self._record_offset(n),
                    f"{entry.path or '/'}: index entry {names[0][1].name!r} is stale "
                    f"(sequence {names[0][0]}, record has {child.sequence})",
                )
                continue
            for fn in _display_names([x for _s, x in names]):
                fn = _record_fn(child, fn)
                seen.add((ref, fn.name))
                rows += self._entries(child, fn, deleted=not child.in_use, short=_short(child, fn))
        # names whose parent reference says they live here but the index does not list
        # (a damaged or incomplete index): listed all the same, as the MFT scan does
        fallback = [(c, fn) for c, fn in cat.live.get(n, []) if (c.number, fn.name) not in seen]
        if fallback:
            self.finding(
                "warning",
                f"directory record {n}",
                self._record_offset(n),
                f"{entry.path or '/'}: {len(fallback)} entries found only through "
                "parent references (not in the directory index)",
            )
            for c, fn in fallback:
                seen.add((c.number, fn.name))
                rows += self._entries(c, fn, deleted=False, short=_short(c, fn))
        for c, fn in cat.dead.get(n, []):
            if (c.number, fn.name) not in seen:
                rows += self._entries(c, fn, deleted=True, short=_short(c, fn))
        rows = self._sorted(rows)
        if n == ROOT:
            rows.append(self._orphan_dir())
        return rows

    def _sorted(self, rows: list[Entry]) -> list[Entry]:
        """Index (upcase) order, live before deleted; streams stay after their file."""
        groups: list[list[Entry]] = []
        for e in rows:
            if e.extra.get("stream") is not None and groups:
                groups[-1].append(e)
            else:
                groups.append([e])
        fold = self.fold
        groups.sort(key=lambda g: (g[0].deleted, fold(g[0].name), g[0].name, g[0].inode or 0))
        return [e for g in groups for e in g]

    # --- lookup (index walk, no MFT scan) and streams -----------------------------------
    def lookup(self, path: str, *, deleted: bool = False) -> Entry:
        if not isinstance(path, str):
            raise InvalidArgument(f"path must be a str, not {type(path).__name__}")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        entry = self.root()
        for i, part in enumerate(parts):
            if part == "..":
                raise InvalidArgument(f"{self.name}: '..' is not allowed in {path!r}")
            if entry.kind != DIR:
                raise NotFound(f"{self.name}: {'/' + '/'.join(parts[:i])} is not a directory")
            last = i == len(parts) - 1
            child = self._child(entry, part, deleted)
            if child is None and last and ":" in part:
                fname, stream = part.split(":", 1)
                if stream.upper().endswith(":$DATA"):
                    stream = stream[:-6]
                base = self._child(entry, fname, deleted) if fname else None
                if base is not None and stream == "":
                    child = base
                elif base is not None:
                    for s in self._entries(base.raw, None, base.deleted, name=base.name):
                        sname = s.extra.get("stream")
                        if sname is not None and self._same(sname, stream):
                            s.extra.update(
                                {
                                    k: v
                                    for k, v in base.extra.items()
                                    if k.startswith("fn_") or k == "short_name"
                                }
                            )
                            child = s
                            break
            if child is None:
                raise NotFound(f"{self.name}: no such file or directory: {path}")
            child.parent = entry.path
            child.path = ("/" if entry.path in ("", "/") else entry.path + "/") + child.name
            entry = child
        return entry

    def _child(self, d: Entry, name: str, deleted: bool) -> Entry | None:
        """A directory's child by name, through its index when it is a live directory."""
        if d.key == (None, ORPHANS) or d.deleted:
            kids = self.list_dir(d)
        else:
            if d.path in ("/", "") and self._same(name, ORPHANS):
                return self._orphan_dir()
            try:
                idx, problems = self._index_entries(d.inode)
            except (RecordError, CorruptImage):
                idx, problems = [], ["unreadable"]
            key = self.fold(name)
            hits = [(ref, seq, fn) for ref, seq, fn in idx if self.fold(fn.name) == key]
            hits.sort(key=lambda h: (h[2].name != name, display_name_rank(h[2].namespace)))
            for ref, _seq, fn in hits:
                info = self._info_of(ref)
                if info is None or not info.in_use:
                    continue
                names = _display_names([x for r, _s, x in idx if r == ref])
                show = _record_fn(info, fn if fn in names else (names[0] if names else fn))
                return self._entries(info, show, deleted=False, short=_short(info, show))[0]
            if not (deleted or problems or self._catalog is not None):
                return None  # a healthy index does not have it (no MFT scan just for this)
            kids = self.list_dir(d)  # parent references, deleted files
        live = [c for c in kids if not c.deleted and self._same(c.name, name)]
        dead = [c for c in kids if c.deleted and self._same(c.name, name)]
        exact = [c for c in live if c.name == name]
        pick = exact or live or (dead if deleted else [])
        return pick[0] if pick else None

    # --- the fast whole-volume walk ----------------------------------------------------
    def iter_entries(
        self, path: str = "/", *, recursive: bool = True, deleted: bool = True
    ) -> Iterator[Entry]:
        """Every entry below ``path``; the whole volume comes from one pass over the MFT
        (unless records are unusable: only directory indexes still name those)."""
        if path.strip("/") != "" or not recursive or self._scan().unusable:
            yield from super().iter_entries(path, recursive=recursive, deleted=deleted)
            return
        yield from self._walk_volume(deleted, times=True)

    def _walk_volume(self, deleted: bool, times: bool) -> Iterator[Entry]:
        """The whole volume from the catalog, in the base walk's order.

        ``times=False`` leaves the datetime fields empty (files() fills its time columns
        from the raw FILETIMEs at once).
        """
        cat = self._scan()
        top = self.root()

        def children(d: Entry) -> list[Entry]:
            if d.key == (None, ORPHANS):
                return self.list_dir(d)
            n = d.inode
            rows: list[Entry] = []
            if not d.deleted:
                for c, fn in cat.live.get(n, []):
                    rows += self._entries(c, fn, deleted=False, short=_short(c, fn), times=times)
            for c, fn in cat.dead.get(n, []):
                rows += self._entries(c, fn, deleted=True, short=_short(c, fn), times=times)
            return rows

        stack: list[tuple[Entry, tuple]] = [(top, (ROOT,))]
        listed = {(ROOT, False)}  # as FileSystem._walk: each directory listed once
        while stack:
            d, ancestors = stack.pop()
            kids = children(d)
            if d is top:
                kids = self._sorted(kids) + [self._orphan_dir()]
            else:
                kids = self._sorted(kids)
            subdirs = []
            for c in kids:
                if c.deleted and not deleted:
                    continue
                c.parent = d.path
                c.path = ("/" if d.path in ("", "/") else d.path + "/") + c.name
                yield c
                if c.kind == DIR and c.extra.get("stream") is None:
                    ident = self._dir_id(c)
                    if ident in ancestors:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{c.path}: directory loop (points back to an ancestor)",
                        )
                        continue
                    if (ident, c.deleted) in listed:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{c.path}: directory already listed under another name "
                            "(a directory hard link); not followed",
                        )
                        continue
                    if len(ancestors) >= MAX_DEPTH:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{c.path}: deeper than {MAX_DEPTH} levels; not followed",
                        )
                        continue
                    if len(c.path) > MAX_PATH:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{c.path[:200]}...: path longer than {MAX_PATH} characters; "
                            "not followed",
                        )
                        continue
                    listed.add((ident, c.deleted))
                    subdirs.append((c, ancestors + (ident,)))
            stack.extend(reversed(subdirs))

    def files(self, path: str = "/", *, recursive: bool = True, deleted: bool = True):
        """The files() frame; for the whole volume it is built column by column from the
        catalog, times straight from the raw FILETIMEs with numpy (the same frame the base
        class builds, in a fraction of the time)."""
        if path.strip("/") != "" or not recursive or self._scan().unusable:
            # (unusable records are named only by directory indexes: the index walk)
            return super().files(path, recursive=recursive, deleted=deleted)
        import pandas as pd

        from ...frames import build_column, files_frame

        entries = list(self._walk_volume(deleted, times=False))
        if not entries:
            return self._add_damage(files_frame([]), lambda: entries)
        schema = files_frame([])
        data: dict[str, object] = {}
        for c in FILES_COLUMNS:
            if c in TIME_FIELDS:
                ft = np.array([e.extra.get(f"si_{c}_ft") or 0 for e in entries], dtype=np.uint64)
                bad = (ft == 0) | (ft >= _MAX_FT)
                us = np.where(bad, 0, ft).astype(np.int64) // 10 - _EPOCH_US
                us[bad] = np.iinfo(np.int64).min  # NaT
                data[c] = pd.Series(us.view("datetime64[us]")).dt.tz_localize("UTC")
            else:
                data[c] = build_column([getattr(e, c) for e in entries], str(schema[c].dtype))
        for k in dict.fromkeys(k for e in entries for k in e.extra):
            data[k] = build_column([e.extra.get(k) for e in entries], None)
        return self._add_damage(pd.DataFrame(data), lambda: entries)


def _wof_name(rp: Reparse | None) -> str | None:
    """The compression a WOF reparse point names (None for other reparse points)."""
    if rp is None or rp.tag != IO_REPARSE_TAG_WOF:
        return None
    try:
        provider, algo = parse_wof_reparse(rp.data)
    except ValueError:
        return "?"
    return (
        ALGORITHMS.get(algo, (f"algorithm {algo}", 0))[0]
        if provider == 2
        else f"provider {provider}"
    )


_EPOCH_US = 11644473600 * 1_000_000  # microseconds from 1601-01-01 to 1970-01-01


def _display_names(names: list[FileNameAttr]) -> list[FileNameAttr]:
    """The names Windows shows, per parent: DOS-only names only when nothing else exists."""
    by_parent: dict[int, list[FileNameAttr]] = {}
    for fn in names:
        by_parent.setdefault(fn.parent, []).append(fn)
    out = []
    for group in by_parent.values():
        long = [fn for fn in group if fn.namespace != NS_DOS]
        out += long if long else group[:1]
    return out


def _record_fn(info: Info, fn: FileNameAttr) -> FileNameAttr:
    """The record's own $FILE_NAME for an index key (index copies of times go stale)."""
    for x in info.names:
        if x.name == fn.name and x.parent == fn.parent:
            return x
    return fn


def _short(info: Info, fn: FileNameAttr | None) -> str | None:
    """The DOS 8.3 name that goes with ``fn`` (same parent), if the file has one."""
    if fn is None or fn.namespace != 1:
        return None
    for x in info.names:
        if x.namespace == NS_DOS and x.parent == fn.parent:
            return x.name
    return None


class CompressedSource(ByteSource):
    """An LZNT1-compressed attribute, decompressed one compression unit at a time.

    Each unit covers ``unit`` clusters (16 normally). A unit whose clusters are all
    allocated is stored as is; one with fewer allocated clusters followed by a sparse tail
    holds LZNT1 data; a wholly sparse unit reads as zeros.
    """

    def __init__(
        self,
        volume: ByteSource,
        runs: list[Run],
        cluster_size: int,
        unit: int,
        size: int,
        initialized: int,
        name: str,
        fs: NTFS,
    ) -> None:
        self.volume = volume
        self.runs = runs
        self.cs = cluster_size
        self.unit = unit
        self.unit_bytes = unit * cluster_size
        self.size = size
        self.initialized = min(size, initialized)
        self.name = name
        self.fs = fs
        self.cache: LRUCache[bytes] = LRUCache(8)
        self.starts = [r.vcn for r in runs]
        self.bad_units: set[int] = set()  # units whose LZNT1 data did not decode (salvage)

    def _clusters(self, vcn: int, count: int) -> list[tuple[int | None, int]]:
        import bisect

        out = []
        end = vcn + count
        i = max(0, bisect.bisect_right(self.starts, vcn) - 1)
        while vcn < end and i < len(self.runs):
            r = self.runs[i]
            if vcn < r.vcn:
                n = min(end, r.vcn) - vcn
                out.append((None, n))
                vcn += n
                continue
            if vcn >= r.vcn + r.length:
                i += 1
                continue
            n = min(end, r.vcn + r.length) - vcn
            out.append((None if r.lcn is None else r.lcn + vcn - r.vcn, n))
            vcn += n
            i += 1
        if vcn < end:
            out.append((-1, end - vcn))  # past the runlist: not a sparse run
        return out

    def _unit_data(self, k: int) -> bytes:
        def load() -> bytes:
            pieces = self._clusters(k * self.unit, self.unit)
            stored = [(lcn, n) for lcn, n in pieces if lcn is not None and lcn >= 0]
            nstored = sum(n for _l, n in stored)
            if nstored == 0:
                return bytes(self.unit_bytes)
            sparse_tail = any(lcn is None for lcn, _n in pieces)
            parts = []
            for lcn, n in stored:
                off = lcn * self.cs
                if off + n * self.cs > self.volume.size:
                    raise CorruptImage(
                        "compressed run past the end of the volume",
                        path=self.name,
                        structure="runlist",
                        offset=off,
                    )
                parts.append(self.volume.read(off, n * self.cs))
            data = b"".join(parts)
            if nstored >= self.unit or not sparse_tail:  # stored as is
                return data + bytes(self.unit_bytes - len(data))
            try:
                return lznt1_decompress(data, self.unit_bytes)
            except LZNT1Error as e:
                if self.fs.strict:
                    raise CorruptImage(
                        f"compression unit {k}: {e}",
                        path=self.name,
                        structure="LZNT1",
                        offset=stored[0][0] * self.cs,
                    ) from None
                self.fs.finding(
                    "error",
                    "LZNT1",
                    stored[0][0] * self.cs,
                    f"{self.name}: compression unit {k}: {e}; read as zeros",
                )
                self.bad_units.add(k)
                return bytes(self.unit_bytes)

        return self.cache.get(k, load)

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        """Whole compression units: one damaged cluster spoils the unit it is in; units
        past the runlist's end and units that did not decode are damaged too. The cost
        follows the runs and the damage, not the units (a size may claim terabytes)."""
        ub, cs, lim = self.unit_bytes, self.cs, min(end, self.initialized)
        if lim <= start:
            return []
        vol = self.volume
        out = [(k * ub, (k + 1) * ub) for k in self.bad_units]
        for r in self.runs:
            if r.lcn is None or r.lcn * cs >= vol.size:
                continue
            host = r.lcn * cs
            for a, b in vol._damage_pairs(host, min(vol.size, host + r.length * cs)):
                v0, v1 = r.vcn * cs + a - host, r.vcn * cs + b - host
                out.append((v0 // ub * ub, -(-v1 // ub) * ub))
        tail = max((r.vcn + r.length for r in self.runs), default=0) * cs // ub * ub
        out.append((tail, self.initialized))
        return [(max(a, start), min(b, lim)) for a, b in out if min(b, lim) > max(a, start)]

    def seek_data(self, offset: int) -> int:
        """The first offset >= ``offset`` in a compression unit with stored clusters
        (``size`` if none): wholly sparse units read as zeros and are skipped, not read."""
        import bisect

        ub, unit, runs = self.unit_bytes, self.unit, self.runs
        first = offset // ub * unit  # the first cluster of offset's unit
        for i in range(max(0, bisect.bisect_right(self.starts, first) - 1), len(runs)):
            r = runs[i]
            if r.lcn is None or r.vcn + r.length <= first:
                continue
            at = max(offset, r.vcn // unit * ub)
            return at if at < self.initialized else self.size
        return self.size

    def _read(self, offset: int, length: int) -> bytes:
        parts = []
        end = offset + length
        while offset < end:
            k, within = divmod(offset, self.unit_bytes)
            n = min(end - offset, self.unit_bytes - within)
            if offset >= self.initialized:
                parts.append(bytes(n))
            else:
                data = self._unit_data(k)[within : within + n]
                if offset + n > self.initialized:
                    keep = self.initialized - offset
                    data = data[:keep] + bytes(n - keep)
                parts.append(data)
            offset += n
        return b"".join(parts)


def open_filesystem(source: ByteSource, *, name: str | None = None, strict: bool = True) -> NTFS:
    """Open the NTFS volume on ``source``."""
    return NTFS(source, name=name, strict=strict)
