"""The NTFS driver: the volume behind the FileSystem protocol.

Layout of the facts: boot.py (boot sector), mft.py (records, attribute headers),
attributes.py (attribute values), runlist.py (mapping pairs), index.py (directory B+
trees), lznt1.py, xpress.py, lzx.py and wof.py (compressed files). Layout of the driver:
file.py (a file's records merged), stream.py (a stream's bytes), catalog.py (the MFT
read once), listing.py (rows, the whole-volume walk), columns.py (files() of the
whole volume as columns), directory.py (indexes, lookup),
recovery.py (deleted and orphan files), slack.py (names in index slack), mftscan.py
(records a damaged $MFT map lost), report.py (info, structures, check). This module
opens the volume (boot sector, $MFT, $Volume), reads records and files, and answers the
protocol, listing the volume as The Sleuth Kit's ``fls -r -p`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage, InvalidArgument
from ...io import ByteSource, LRUCache
from ...units import SECTOR_PROBE_ORDER
from ...volumes.multisector import apply_fixup
from ..base import Entry, FileSystem, free_runs
from ..walk import paused_gc
from . import columns, directory, listing, mftscan, recovery, report, stream
from .attributes import FileNameAttr, parse_attribute_list
from .boot import BOOT_SECTOR_SIZE, Geometry, parse_boot
from .catalog import MIRROR_RECORDS, ROOT, Catalog, Info, file_info, scan
from .file import DAMAGE, MAX_ATTR_LIST, NtfsFile, Stream, build_file
from .mft import (
    AT_ATTRIBUTE_LIST,
    AT_DATA,
    ATTR_NAMES,
    Attribute,
    Record,
    RecordError,
    parse_record,
)
from .runlist import Run, RunSource, decode_runlist

if TYPE_CHECKING:
    import pandas as pd

UPCASE_RECORD = 10  # $UpCase
UPCASE_BYTES = 2 * 65536  # one UTF-16 unit per BMP character
BACKUP_SECTOR_SIZES = SECTOR_PROBE_ORDER  # where to look for the backup boot sector


class NTFS(FileSystem):
    """An NTFS volume (versions 1.2 to 3.1) on a ByteSource."""

    fstype = "ntfs"
    case_sensitive = False

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True):
        super().__init__(source, name=name, strict=strict)
        self.geometry = self._read_boot()
        g = self.geometry
        self.cluster_size = self.block_size = g.cluster_size
        self.record_size = g.record_size
        self.clusters = g.clusters
        self._records: LRUCache[Record] = LRUCache(4096)
        self._files: LRUCache[NtfsFile] = LRUCache(1024)
        self._indexes: LRUCache[tuple] = LRUCache(64)
        self._slack: LRUCache[tuple] = LRUCache(64)
        self._blocks: LRUCache[bytes] = LRUCache(256)  # raw INDX blocks (walk, then slack)
        self._catalog: Catalog | None = None
        self._upcase_map: dict | None = None
        self._ascii_upper = False
        self._bitmap: ByteSource | None = None
        self.mft = self._load_mft()
        self.nrecords = self.mft.size // self.record_size
        #: records the $MFT map lost, found by scanning the volume (number -> offset)
        self.rescued: dict[int, int] = {}
        if mftscan.unmapped(self):  # (a cut runlist, or runs past a truncated volume)
            covered = sum(r.length for r in self.mft.runs if r.lcn is not None) * self.cluster_size
            if covered < self.mft.size:
                self.problem("$MFT record 0", g.mft_lcn * self.cluster_size,
                             f"the $MFT runlist maps {covered} of its {self.mft.size} bytes")
            if not self.strict:
                self.rescued = mftscan.rescue(self)
        self.label, self.version, self.volume_flags = report.volume_info(self)
        self.uuid = g.serial_hex
        self.serial = g.serial_hex

    # --- boot sector and $MFT --------------------------------------------------------
    def _read_boot(self) -> Geometry:
        src = self.source
        raw = src.read(0, BOOT_SECTOR_SIZE) if src.size >= BOOT_SECTOR_SIZE else b""
        geo, why = parse_boot(raw, 0)
        if geo is None:
            if self.strict:
                self.fail(CorruptImage, f"not a usable NTFS boot sector: {why}", "boot sector", 0)
            for ssize in BACKUP_SECTOR_SIZES:
                off = src.size - ssize
                if off <= 0:
                    continue
                geo, _ = parse_boot(src.read(off, BOOT_SECTOR_SIZE), off)
                if geo is not None:
                    self.finding(
                        "error",
                        "boot sector",
                        0,
                        f"primary boot sector unusable ({why}); used the backup at offset {off:#x}",
                    )
                    break
            if geo is None:
                self.fail(
                    CorruptImage,
                    f"not a usable NTFS boot sector ({why}) and no backup "
                    "boot sector at the end of the volume",
                    "boot sector",
                    0,
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

    def read_raw(self, offset: int, length: int) -> bytes | None:
        """``length`` bytes of the volume at ``offset``, None when they are not all there."""
        if offset < 0 or offset + length > self.source.size:
            return None
        return self.source.read(offset, length)

    def _parse_at(self, raw: bytes | None, number: int) -> Record:
        if raw is None:
            raise RecordError("outside the volume")
        return parse_record(_fixed(raw), number)

    def _load_mft(self) -> RunSource:
        g = self.geometry
        cs, rs = self.cluster_size, self.record_size
        off = g.mft_lcn * cs
        where = "$MFT record 0"
        try:
            rec0 = self._parse_at(self.read_raw(off, rs), 0)
        except RecordError as e:
            if self.strict:
                self.fail(CorruptImage, f"MFT record 0 ($MFT) is unusable: {e}", where, off)
            try:
                rec0 = self._parse_at(self.read_raw(g.mftmirr_lcn * cs, rs), 0)
            except RecordError as e2:
                self.fail(
                    CorruptImage,
                    f"MFT record 0 is unusable ({e}) and so is its $MFTMirr copy ({e2})",
                    where,
                    off,
                )
            self.finding("error", where, off, f"record 0 unusable ({e}); used the copy in $MFTMirr")
        self._records.get(0, lambda: rec0)  # kept: $MFT's $BITMAP is read from it later
        datas = [a for a in rec0.attrs if a.type == AT_DATA and a.name == ""]
        first = next((a for a in datas if not a.resident and a.lowest_vcn == 0), None)
        if first is None:
            self.fail(CorruptImage, "$MFT has no non-resident $DATA attribute", where, off)
        pieces = [a for a in datas if not a.resident]
        size = first.data_size

        def source(pieces: list[Attribute]) -> RunSource:
            runs = self.decode_pieces(pieces, "$MFT")
            return RunSource(self.source, runs, cs, size - size % rs, first.initialized_size,
                             name=f"{self.name}:$MFT")

        mft = source(pieces)
        if size < 16 * rs or size > self.geometry.volume_size:
            self.fail(CorruptImage, f"$MFT data size {size} is not sane", where, off)
        al = next((a for a in rec0.attrs if a.type == AT_ATTRIBUTE_LIST), None)
        if al is not None:  # a very fragmented $MFT: more runs in extension records
            try:
                value = al.value if al.resident else self.attribute_value(al)
                entries = parse_attribute_list(value)
                for m in sorted({e.record for e in entries if e.type == AT_DATA and e.record}):
                    ext = parse_record(_fixed(mft.read(m * rs, rs)), m)
                    pieces += [a for a in ext.attrs
                               if a.type == AT_DATA and a.name == "" and not a.resident]
                mft = source(pieces)
            except DAMAGE as e:
                self.problem(where, off, f"$MFT attribute list: {e}")
        return mft

    def decode_pieces(
        self, pieces: list[Attribute], what: str, damaged: list | None = None
    ) -> list[Run]:
        """Runs of a non-resident attribute from all its pieces (see stream.decode_pieces)."""
        return stream.decode_pieces(self, pieces, what, damaged)

    def record_offset(self, n: int) -> int | None:
        """Where record ``n`` sits in the volume (None when the $MFT map does not say)."""
        mft = getattr(self, "mft", None)
        rescued = getattr(self, "rescued", None)
        if rescued and n in rescued:
            return rescued[n]
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
        if n in self.rescued:  # found by the FILE record scan
            return self._parse_at(self.read_raw(self.rescued[n], rs), n)
        try:
            return parse_record(_fixed(self.mft.read(n * rs, rs)), n)
        except (RecordError, CorruptImage) as e:
            if n < MIRROR_RECORDS and not self.strict:
                moff = self.geometry.mftmirr_lcn * self.cluster_size + n * rs
                try:
                    rec = self._parse_at(self.read_raw(moff, rs), n)
                except RecordError:
                    raise e from None
                self.finding(
                    "error",
                    f"MFT record {n}",
                    self.record_offset(n),
                    f"unusable ({e}); used the copy in $MFTMirr",
                )
                return rec
            raise

    def file(self, n: int) -> NtfsFile:
        """The file whose base record is ``n`` (attributes of extension records merged)."""
        return self._files.get(
            n, lambda: build_file(self.record(n), self.record, self.attribute_value)
        )

    def attribute_value(self, a: Attribute) -> bytes:
        """The whole value of a small non-resident attribute (at most 4 MiB)."""
        if a.data_size > MAX_ATTR_LIST:
            raise RecordError(f"{ATTR_NAMES.get(a.type)} of {a.data_size} bytes is absurd")
        runs = decode_runlist(a.mapping_pairs, 0, self.clusters) if a.mapping_pairs else []
        return RunSource(
            self.source, runs, self.cluster_size, a.data_size, a.initialized_size
        ).read(0, a.data_size)

    def file_or_none(self, n: int) -> NtfsFile | None:
        """The file of record ``n``, its problems recorded; None (recorded) if unusable."""
        try:
            f = self.file(n)
        except (RecordError, CorruptImage) as e:
            self.finding("error", f"MFT record {n}", self.record_offset(n), f"skipped: {e}")
            return None
        for p in f.problems:
            self.finding("error", f"MFT record {n}", self.record_offset(n), p)
        return f

    def stream_source(self, f: NtfsFile, s: Stream, name: str) -> ByteSource:
        """The bytes of an attribute (resident, plain, sparse or LZNT1-compressed)."""
        return stream.stream_source(self, f, s, name)

    # --- the catalog, indexes, bitmap (read once, kept) ---------------------------------
    def catalog(self) -> Catalog:
        """The MFT read once (catalog.scan), kept for the life of the volume."""
        if self._catalog is None:
            self._catalog = scan(self)
        return self._catalog

    @property
    def scanned(self) -> bool:
        """Whether the whole MFT has been read already."""
        return self._catalog is not None

    def info_of(self, n: int) -> Info | None:
        """The listing facts of record ``n`` (from the catalog when it has been read)."""
        if self._catalog is not None:
            info = self._catalog.infos.get(n)
            if info is not None:
                return info
        f = self.file_or_none(n)
        return None if f is None else file_info(f, self.clusters)

    def index_entries(self, n: int) -> tuple[list[tuple[int, int, FileNameAttr]], list[str]]:
        """The $I30 index of directory ``n``: (record, sequence, $FILE_NAME), problems."""
        return self._indexes.get(n, lambda: directory.load_index(self, n))

    def volume_bitmap(self) -> ByteSource | None:
        """$Bitmap's bytes (None when it cannot be read)."""
        if self._bitmap is None:
            self._bitmap = recovery.load_volume_bitmap(self)
        return self._bitmap if self._bitmap.size else None

    # --- names ----------------------------------------------------------------------
    def free_ranges(self) -> list[tuple[int, int]]:
        """The clusters $Bitmap marks free, as (offset, length) byte ranges of the volume."""
        bm = self.volume_bitmap()
        if bm is None:
            return super().free_ranges()
        clusters = self.geometry.volume_size // self.cluster_size
        step = 1 << 20  # bytes of bitmap a window: 8 Mi clusters

        def masks():
            for at in range(0, min(bm.size, -(-clusters // 8)), step):
                raw = bm.read(at, min(step, bm.size - at))
                bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
                n = max(0, min(len(bits), clusters - at * 8))
                yield at * 8 * self.cluster_size, ~bits[:n].astype(bool)

        return free_runs(masks(), self.cluster_size, self.source.size)

    def _upcase(self) -> dict:
        """$UpCase as a str.translate table (only the characters it changes)."""
        if self._upcase_map is None:
            table: dict = {}
            try:
                f = self.file(UPCASE_RECORD)
                s = f.streams(AT_DATA).get("")
                if s is None or s.size < UPCASE_BYTES:
                    raise RecordError("$UpCase has no 128 KiB $DATA")
                raw = self.stream_source(f, s, "$UpCase").read(0, UPCASE_BYTES)
                up = np.frombuffer(raw, dtype="<u2")
                diff = np.nonzero(up != np.arange(65536, dtype=np.uint16))[0]
                table = {int(i): int(up[i]) for i in diff}
                ascii_up = {i: ord(chr(i).upper()) for i in range(128) if chr(i).upper() != chr(i)}
                self._ascii_upper = {k: v for k, v in table.items() if k < 128} == ascii_up
            except DAMAGE as e:
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

    def same_name(self, a: str, b: str) -> bool:
        return listing.same(self, a, b)

    # --- the FileSystem protocol ------------------------------------------------------
    def root(self) -> Entry:
        info = self.info_of(ROOT)
        if (info is None or not info.is_dir) and not self.strict:
            info = self.catalog().infos.get(ROOT)  # the stand-in root (catalog.scan)
        if info is None or not info.is_dir:
            self.fail(CorruptImage, "the root directory (MFT record 5) is unusable",
                      "MFT record 5", self.record_offset(ROOT))
        fn = next((x for x in info.names if x.parent == ROOT), None)
        e = listing.entries(self, info, fn, deleted=False, name="")[0]
        e.path, e.parent = "/", ""
        return e

    def list_dir(self, entry: Entry) -> list[Entry]:
        return directory.list_dir(self, entry)

    def lookup(self, path: str, *, deleted: bool = False) -> Entry:
        return directory.lookup(self, path, deleted=deleted)

    def content(self, entry: Entry) -> ByteSource:
        return stream.content(self, entry)

    def readlink_entry(self, entry: Entry) -> str:
        if entry.target is None:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a symbolic link")
        return entry.target

    def directory_damage(self, entry: Entry) -> int:
        return directory.index_damage(self, entry)

    def index_block(self, n: int, vcn: int, load) -> bytes:
        """Directory ``n``'s raw INDX block at ``vcn`` (``load()`` reads it), kept a while:
        the index walk and the slack pass read the same blocks."""
        return self._blocks.get((n, vcn), load)

    def index_slack(self, n: int) -> tuple[list, bool]:
        """Directory ``n``'s INDX slack entries, and whether an in-use block is unusable."""
        return self._slack.get(n, lambda: directory.read_slack(self, n))

    def slack_rows(self, n: int, listed: list[tuple[int | None, str]]) -> list[Entry]:
        """Deleted names in directory ``n``'s index slack that ``listed`` (the
        ``(record, folded name)`` of its files, listing.listed_names) lacks."""
        return directory.slack_listing(self, n, listed)

    def can_list_deleted_dir(self, entry: Entry) -> bool:
        return not recovery.name_only(entry)

    def hardlink_key(self, entry: Entry) -> tuple | None:
        return listing.hardlink_key(entry)

    def dir_id(self, entry: Entry) -> int | tuple:
        return listing.dir_id(entry)

    def info_fields(self) -> dict:
        return report.info(self)

    def structure_rows(self) -> list[dict]:
        return report.structures(self)

    def run_checks(self) -> None:
        report.check(self)

    # --- the fast whole-volume walk ----------------------------------------------------
    def iter_entries(
        self, path: str = "/", *, recursive: bool = True, deleted: bool = True
    ) -> Iterator[Entry]:
        """Every entry below ``path``; the whole volume comes from one pass over the MFT
        (unless records are unusable: only directory indexes still name those)."""
        if path.strip("/") != "" or not recursive or self.catalog().unusable:
            yield from super().iter_entries(path, recursive=recursive, deleted=deleted)
            return
        yield from listing.walk_volume(self, deleted, times=True)

    def files(
        self, path: str = "/", *, recursive: bool = True, deleted: bool = True
    ) -> pd.DataFrame:
        """The files() frame; for the whole volume it is built column by column from the
        catalog (listing.volume_columns: the same frame the base class builds, faster)."""
        from ...frames import files_columns_frame

        with paused_gc():
            if path.strip("/") != "" or not recursive or self.catalog().unusable:
                # (unusable records are named only by directory indexes: the index walk)
                return super().files(path, recursive=recursive, deleted=deleted)
            if self.volume_damaged():  # (the damaged column needs every row's Entry)
                entries = list(listing.walk_volume(self, deleted, times=False))
                cols = listing.volume_columns(entries)
                cols["damaged"] = self.damaged_column(cols["kind"], lambda: entries)
                return files_columns_frame(cols)
            cols = columns.volume_columns(self, deleted)
            cols["damaged"] = self.damaged_column(cols["kind"], list)
            return files_columns_frame(cols)


    def column_batches(self, path: str = "/", *, recursive: bool = True,
                       deleted: bool = True, rows: int = 1024) -> Iterator[tuple[dict, dict]]:
        """The rows of ``files()`` streamed as ``(columns, notes)``, ``rows`` at a time
        (notes are already on the rows: {}). The whole volume comes from the catalog
        walk (times decoded column-wise, as ``files()`` does); anything else from the
        Entry walk, each batch made columns."""
        from itertools import islice

        from ...frames import entry_columns

        whole = path.strip("/") == "" and recursive and not self.catalog().unusable
        it = (listing.walk_volume(self, deleted, times=False) if whole
              else self.iter_entries(path, recursive=recursive, deleted=deleted))
        columns = listing.volume_columns if whole else entry_columns
        while chunk := list(islice(it, rows)):
            # cut where the extra columns change, as the Entry writer does (a column
            # first seen part way is not given to the rows before it)
            start, keys = 0, chunk[0].extra.keys()
            for i, e in enumerate(chunk):
                if e.extra.keys() != keys:
                    yield columns(chunk[start:i]), {}
                    start, keys = i, e.extra.keys()
            yield columns(chunk[start:]), {}


def _fixed(raw: bytes) -> bytearray:
    """A FILE record with its update sequence undone (RecordError when it is broken)."""
    buf = bytearray(raw)
    apply_fixup(buf, b"FILE")
    return buf


def open_filesystem(source: ByteSource, *, name: str | None = None, strict: bool = True) -> NTFS:
    """Open the NTFS volume on ``source``."""
    return NTFS(source, name=name, strict=strict)
