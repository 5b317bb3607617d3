"""The bytes of a file's streams: resident, runlists (plain or sparse), LZNT1, WOF.

:func:`stream_source` turns one attribute (its pieces' runlists merged) into a
ByteSource: a resident value, a :class:`~.runlist.RunSource` over the volume's clusters,
or a :class:`CompressedSource` decoding LZNT1 compression units. :func:`content` picks a
file's stream, WOF-compressed files (CompactOS) decoded by :class:`~.wof.WofSource`.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ...errors import CorruptImage, InvalidArgument, NotFound
from ...findings import Findings
from ...io import ByteSource, LRUCache, MemorySource, Zero
from ..base import DIR, Entry
from .attributes import IO_REPARSE_TAG_WOF
from .file import NtfsFile, Stream
from .lznt1 import LZNT1Error
from .lznt1 import decompress as lznt1_decompress
from .mft import AT_DATA, ATTR_COMPRESSED, ATTR_NAMES, Attribute
from .recovery import refuse_unusable
from .runlist import Run, RunlistError, RunSource, decode_runlist, overlapping
from .wof import PROVIDER_FILE, WOF_STREAM, WofSource, parse_wof_reparse

if TYPE_CHECKING:
    from .fs import NTFS


def decode_pieces(
    fs: NTFS, pieces: list[Attribute], what: str, damaged: list | None = None
) -> list[Run]:
    """Runs of a non-resident attribute from all its pieces (ordered by first VCN).

    In salvage mode a damaged runlist gives the runs before the fault (the rest reads
    as zeros) and appends the error to ``damaged``.
    """
    runs: list[Run] = []
    for a in sorted(pieces, key=lambda a: a.lowest_vcn):
        try:
            got = decode_runlist(a.mapping_pairs, a.lowest_vcn, fs.clusters)
        except RunlistError as e:
            msg = f"{what} {ATTR_NAMES.get(a.type, hex(a.type))} runlist: {e}"
            fs.problem(f"MFT record {a.record}", fs.record_offset(a.record), msg)
            if damaged is not None:
                damaged.append(e)
            got = e.runs
        runs.extend(got)
    return runs


def stream_source(fs: NTFS, f: NtfsFile, s: Stream, name: str) -> ByteSource:
    """The bytes of an attribute (resident, plain, sparse or LZNT1-compressed)."""
    if s.resident:
        return MemorySource(s.first.value, name=name)
    damaged: list = []
    runs = decode_pieces(fs, s.pieces, f"record {f.number}", damaged)
    where, at = f"MFT record {f.number}", fs.record_offset(f.number)
    hit = overlapping(runs)
    if hit is not None:
        fs.finding(
            "warning", where, at, f"{name}: runs at clusters {hit[0].lcn} and {hit[1].lcn} overlap"
        )
    first = s.first
    size = first.data_size
    covered = sum(r.length for r in runs) * fs.cluster_size
    if size > covered and not damaged:
        fs.problem(
            where, at, f"{name}: data size {size} is larger than the {covered} bytes its "
            "runlist covers"
        )
        size = covered  # salvage: cut to what the runlist covers
    if first.flags & ATTR_COMPRESSED and first.compression_unit:
        return CompressedSource(
            fs.source,
            runs,
            fs.cluster_size,
            1 << first.compression_unit,
            size,
            first.initialized_size,
            name,
            fs,
        )
    return RunSource(fs.source, runs, fs.cluster_size, size, first.initialized_size, name=name)


def content(fs: NTFS, entry: Entry) -> ByteSource:
    """The bytes of a listing's entry: its file's unnamed or named $DATA, WOF decoded."""
    if entry.kind == DIR:
        raise InvalidArgument(f"{fs.name}: {entry.path} is a directory")
    refuse_unusable(fs, entry)
    key = entry.key
    if not isinstance(key, tuple) or len(key) < 2 or key[0] is None:
        return Zero(0)
    n, stream = key[0], key[1]
    f = fs.file(n)
    streams = f.streams(AT_DATA)
    label = f"{fs.name}:{entry.path or entry.name}"
    if stream == "" and f.reparse is not None and f.reparse.tag == IO_REPARSE_TAG_WOF:
        provider, algo = parse_wof_reparse(f.reparse.data)
        wof = streams.get(WOF_STREAM)
        if provider == PROVIDER_FILE and wof is not None:
            size = streams[""].size if "" in streams else entry.size
            return WofSource(
                stream_source(fs, f, wof, label + ":" + WOF_STREAM), size, algo, name=label
            )
    s = streams.get(stream)
    if s is None:
        if stream == "":
            return Zero(0)
        raise NotFound(f"{fs.name}: {entry.path} has no stream {stream!r}")
    # a stream cut short (salvage) keeps entry.size: extraction reports it incomplete
    return stream_source(fs, f, s, label)


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
        fs: Findings | None,
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
                msg = f"compression unit {k}: {e}"
                if self.fs is None:
                    raise CorruptImage(msg, path=self.name, structure="LZNT1",
                                       offset=stored[0][0] * self.cs) from None
                self.fs.problem("LZNT1", stored[0][0] * self.cs, f"{self.name}: {msg}")
                self.bad_units.add(k)  # salvage: the unit reads as zeros
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
