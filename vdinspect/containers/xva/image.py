"""An XVA export (XenServer / XCP-ng ``xe vm-export``) seen as one of its VM's disks.

The tar holds ``ova.xml`` first, then for each VDI a folder ``Ref:NN`` of chunks named by
an 8-digit decimal number (``Ref:NN/00000042``), each followed by a sibling holding its
SHA-1 in hex (``.checksum``), or in newer exports its XXH64 (``.xxhash``, verified when the
optional ``xxhash`` package is installed). Chunks that are
all zeros are left out, except the first and the last. A chunk's place on the disk is found
as xapi's importer finds it: a gap in the numbers skips that many chunks of the first
chunk's length (1 MiB), and an empty chunk (a keep-alive the exporter sends when idle)
holds nothing and moves nothing.

An export made with ``compress=true`` is the same tar gzip-compressed: it is read in place
through :class:`~vdinspect.io.gzipsource.GzipSource` (its host offsets are then offsets
in the decompressed stream, named "<file> (gunzipped)"). One made with ``compress=zstd``
goes through :class:`~vdinspect.io.zstdsource.ZstdSource` ("<file> (zstd)"): frame by
frame when the stream has several frames, else spooled once to a temporary file; the
output is capped by what ``ova.xml`` declares (:func:`declared_bound`).

Checksums are verified by ``check()`` and on the first read of each chunk: a mismatching
chunk raises in strict mode; in salvage mode it reads as zeros and shows as ``damaged``.
"""

from __future__ import annotations

import hashlib
import re

from ...errors import CorruptImage, InvalidArgument
from ...io import ByteSource
from ...io.gzipsource import GzipSource
from ...io.sources import MemorySource
from ...io.zstdsource import ZstdSource, is_zstd
from ...lazy import np
from ...units import human
from ..base import DAMAGED, DATA, UNALLOCATED, Image, Run, extent_pieces, structure_row
from ..tar import Member, iter_members
from .ovaxml import Export, Vdi, parse_ova_xml

CHUNK = 1 << 20  # xapi's chunk_size
GZIP_MAGIC = b"\x1f\x8b"
MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data more than this
MAX_ZSTD_RATIO = 32768  # an RLE block: 4 bytes for 128 KiB (until ova.xml says better)
MEMBER_OVERHEAD = 4 * 512  # a chunk's tar header and padding, its checksum member's two
_CHUNK_NAME = re.compile(r"^(Ref:[^/]+)/(\d{8})(\.checksum|\.xxhash)?$")
UNKNOWN, GOOD, BAD = 0, 1, 2  # checksum state of a chunk


class XvaImage(Image):
    """One disk of an XVA export (``disk``: index, VDI name, uuid or ``Ref:NN``)."""

    format = "xva"

    def __init__(self, source, *, path: str | None = None, strict: bool = True,
                 disk: int | str | None = None) -> None:
        super().__init__(source, path=path, strict=strict)
        self.tar: ByteSource = source
        self.host_name = self.path
        if source.read(0, min(2, source.size)) == GZIP_MAGIC:  # xe vm-export compress=true
            self.tar = GzipSource(source, limit=max(1 << 30, source.size * MAX_DEFLATE_RATIO),
                                  name=f"{self.path} (gunzipped)", salvage=True)
            self.host_name = self.tar.name
            if self.tar.damage is not None:
                self.problem("gzip stream", self.tar.damage[0], f"{self.tar.damage[1]}; the "
                             f"first {self.tar.size} decompressed bytes are read")
        elif is_zstd(source.read(0, min(4, source.size))):  # compress=zstd
            self.tar = ZstdSource(source, limit=max(1 << 30, source.size * MAX_ZSTD_RATIO),
                                  name=f"{self.path} (zstd)", salvage=not strict,
                                  evidence=self.path, bound=declared_bound)
            self.host_name = self.tar.name
            if self.tar.damage is not None:
                self.problem("zstd stream", self.tar.damage[0], f"{self.tar.damage[1]}; the "
                             f"first {self.tar.size} decompressed bytes are read")
        source = self.tar
        members = list(iter_members(source, self))
        if not members or members[0].name != "ova.xml":
            self.fail(CorruptImage, "the first member is not ova.xml", "ova.xml", 0)
        self.ova_member = members[0]
        m = self.ova_member
        self.export: Export = parse_ova_xml(source.read(m.offset, m.size), self.path)
        chunks: dict[str, list[tuple[int, Member]]] = {}
        sums: dict[tuple[str, int], tuple[str, Member]] = {}
        for mem in members[1:]:
            got = _CHUNK_NAME.match(mem.name)
            if got is None:
                continue
            ref, num, ext = got.group(1), int(got.group(2)), got.group(3)
            if ext:
                sums[(ref, num)] = (ext[1:], mem)
            else:
                chunks.setdefault(ref, []).append((num, mem))
        self.vdi = self._choose(disk, chunks)
        self._layout(chunks.get(self.vdi.ref, []), sums)
        self.subformat = "chunked"
        self.cluster_size = CHUNK

    def _choose(self, disk, chunks) -> Vdi:
        vdis = [v for v in self.export.vdis if v.ref in chunks]
        vdis += [Vdi(r, None, None, None) for r in sorted(chunks)
                 if r not in {v.ref for v in self.export.vdis}]
        if not vdis:
            self.fail(CorruptImage, "the export holds no disk chunks", "ova.xml")
        self.vdis = vdis
        if disk is None:
            return vdis[0]
        if isinstance(disk, int) and not isinstance(disk, bool):
            if 0 <= disk < len(vdis):
                return vdis[disk]
        elif isinstance(disk, str):
            for v in vdis:
                if disk in (v.ref, v.name, v.uuid):
                    return v
        known = ", ".join(f"{i}: {v.name or v.ref}" for i, v in enumerate(vdis))
        raise InvalidArgument(f"{self.path}: no disk {disk!r} in the export; it has {known}")

    def _layout(self, chunks: list[tuple[int, Member]], sums) -> None:
        """Place the chunks on the disk (xapi's import rule) and pair them with checksums."""
        starts, lengths, hosts, names, kinds, digests = [], [], [], [], [], []
        pos, last, unit = 0, -1, None
        for num, mem in chunks:
            if num <= last:
                self.problem("chunk", mem.header, f"chunk {mem.name} comes after chunk "
                             f"{last:08d}: numbers must increase; skipped")
                continue
            unit = mem.size if unit is None else unit
            if mem.size > CHUNK or unit == 0:
                self.problem("chunk", mem.header, f"chunk {mem.name} holds {mem.size} bytes "
                             f"(more than {CHUNK}, or an empty first chunk); skipped")
                unit = CHUNK if unit == 0 else unit
                continue
            pos += (num - last - 1) * unit
            last = num
            if mem.size:
                starts.append(pos)
                lengths.append(mem.size)
                hosts.append(mem.offset)
                names.append(mem.name)
                kind, smem = sums.get((self.vdi.ref, num), (None, None))
                kinds.append(kind)
                digests.append(smem)
            pos += mem.size
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.hosts = np.asarray(hosts, dtype=np.int64)
        self.chunk_names = names
        self.sum_kinds = kinds
        self.sum_members = digests
        self.state = np.zeros(len(starts), dtype=np.uint8)
        end = pos
        size = self.vdi.virtual_size
        if size is None:
            self.finding("warning", "ova.xml", None, f"{self.vdi.ref}: no virtual_size; the "
                         "disk ends where its last chunk does")
            size = end
        if end > size:
            self.problem("chunk", None, f"chunks reach {end} bytes, past the disk's "
                         f"virtual size {size}; the excess is ignored")
        elif end < size - (unit or CHUNK):
            self.finding("warning", "chunk", None, f"{self.vdi.ref}: the last chunk ends at "
                         f"{end} bytes of {size} (an export always holds its last chunk): "
                         "the export may be truncated; the rest reads as zeros")
        self.size = size

    # -- checksums --------------------------------------------------------------------------
    def verify(self, i: int) -> int:
        """Check chunk ``i`` against its checksum sibling once: GOOD, BAD or UNKNOWN (none,
        or an ``.xxhash`` without the optional ``xxhash`` package). ``.checksum`` holds the
        SHA-1 in hex; ``.xxhash`` the XXH64 (seed 0) as 16 upper-case hex digits (xapi's
        stream_vdi)."""
        kind = self.sum_kinds[i]
        if self.state[i] != UNKNOWN or kind is None:
            return int(self.state[i])
        digest = _digester(kind)
        if digest is None:
            return UNKNOWN
        smem = self.sum_members[i]
        want = self.tar.read(smem.offset, min(smem.size, 128)).strip().lower()
        got = digest(self.tar.read(int(self.hosts[i]), int(self.lengths[i])))
        ok = got.encode() == want
        self.state[i] = GOOD if ok else BAD
        if not ok:
            self._damage_index = None  # the damaged ranges known so far changed
            name = "SHA-1" if kind == "checksum" else "XXH64"
            self.finding("error", "chunk", int(self.hosts[i]),
                         f"{self.chunk_names[i]}: {name} {got} does not match its .{kind} "
                         f"{want.decode('ascii', 'replace')}: damaged")
        return int(self.state[i])

    # -- the image protocol -------------------------------------------------------------------
    def _runs(self, start: int, end: int):
        for a, b, i in extent_pieces(self.starts, self.lengths, start, end):
            if i is None:
                yield Run(a, b - a, UNALLOCATED)
                continue
            state = DAMAGED if self.state[i] == BAD else DATA
            yield Run(a, b - a, state, host_file=self.host_name,
                      host_offset=int(self.hosts[i]) + a - int(self.starts[i]),
                      source=self.tar if state == DATA else None)

    def fill_run(self, run: Run, out: memoryview) -> None:
        if run.state == DATA:
            i = int(np.searchsorted(self.hosts, run.host_offset, side="right")) - 1
            if self.verify(i) == BAD:
                self.problem("chunk", int(self.hosts[i]), f"{self.chunk_names[i]}: checksum "
                             "mismatch (the chunk reads as zeros in salvage mode)")
                out[:] = bytes(len(out))
                return
        super().fill_run(run, out)

    def owned_sources(self) -> list[ByteSource]:
        return [self.file] if self.tar is self.file else [self.tar, self.file]

    def structure_rows(self) -> list[dict]:
        m = self.ova_member
        rows = [structure_row(
            "ova.xml", self.host_name, m.offset, m.size,
            "the export's metadata (XML-RPC value: VM, VBDs, VDIs)",
        )]
        if len(self.hosts):
            first = int(self.hosts[0])
            last = int(self.hosts[-1] + self.lengths[-1])
            rows.append(structure_row(
                f"chunks: {self.vdi.ref}", self.host_name, first, last - first,
                f"{len(self.hosts)} chunks of up to {human(CHUNK)} "
                "with their checksum members, in tar members",
            ))
        return rows

    def check_rows(self) -> list[dict]:
        from ...findings import CappedRows

        rows = CappedRows()
        missing = xx = 0
        for i in range(len(self.hosts)):
            if self.sum_kinds[i] is None:
                missing += 1
            elif self.verify(i) == UNKNOWN:
                xx += 1
        bad = int((self.state == BAD).sum())
        good = int((self.state == GOOD).sum())
        for r in self.findings_rows():
            rows.add(r["severity"], r["structure"], r["host_offset"], r["message"])
        if missing:
            rows.add("warning", "chunk", None, f"{missing} chunks have no checksum member")
        if xx:
            rows.add("info", "chunk", None, f"{xx} chunks carry .xxhash checksums, which are "
                     "not verified: that needs the optional xxhash package "
                     "(pip install 'vdinspect[xxhash]')")
        rows.add("info", "chunk", None, f"{good} chunk checksums match, {bad} do not",
                 topic="summary")
        if isinstance(self.tar, ZstdSource):
            rows.add("info", "zstd stream", None, self.tar.describe(), topic="summary")
            if self.tar.bad_frames:  # found by reads after the open
                rows.add("error", "zstd frame", None, f"{len(self.tar.bad_frames)} zstd frames "
                         "do not decompress; their bytes read as zeros", topic="summary")
        return rows.finish()

    def info_fields(self) -> dict:
        ver = self.export.version
        return dict(
            vm_name=self.export.vm_name,
            vm_uuid=self.export.vm_uuid,
            cpus=self.export.cpus,
            memory=self.export.memory,
            uuid=self.vdi.uuid,
            disk_ref=self.vdi.ref,
            disk_name=self.vdi.name,
            disks=[f"{v.ref}: {v.name or '?'} ({_size(v.virtual_size)})" for v in self.vdis],
            chunks=len(self.hosts),
            export_version=ver.get("export_vsn"),
            product_version=ver.get("product_version"),
            exported_from=ver.get("hostname"),
            compression=("zstd" if isinstance(self.tar, ZstdSource) else
                         "gzip" if isinstance(self.tar, GzipSource) else None),
            decompression=self.tar.describe() if isinstance(self.tar, ZstdSource) else None,
        )


def declared_bound(head: bytes) -> int | None:
    """The most a decompressed export can hold, from its first bytes: ``ova.xml`` and the
    virtual sizes it declares (each VDI's chunks, their checksum members and tar headers,
    and 64 MiB for keep-alive chunks). None while ``head`` does not yet hold ``ova.xml``
    whole or when a size is not declared; CorruptImage when the first member is not it."""
    try:
        first = next(iter_members(MemorySource(head), None, stop_short=True), None)
    except CorruptImage:
        first = None
    if first is None:
        if len(head) >= 1024:
            raise CorruptImage("the decompressed stream is not a tar starting with ova.xml",
                               structure="ova.xml", offset=0)
        return None
    if first.name != "ova.xml":
        raise CorruptImage(f"the first member is {first.name!r}, not ova.xml",
                           structure="ova.xml", offset=first.header)
    if first.offset + first.size > len(head):
        return None
    try:
        export = parse_ova_xml(head[first.offset:first.offset + first.size], "ova.xml")
    except CorruptImage:
        return None  # the open names it
    sizes = [v.virtual_size for v in export.vdis]
    if not sizes or any(n is None for n in sizes):
        return None
    data = sum(sizes) + sum(-(-n // CHUNK) for n in sizes) * MEMBER_OVERHEAD
    return first.offset + first.size + data + (64 << 20)


def _size(n: int | None) -> str:
    return "?" if n is None else human(n)


def _digester(kind: str):
    """hex digest function for a checksum member kind, None when it cannot be computed."""
    if kind == "checksum":
        return lambda data: hashlib.sha1(data).hexdigest()
    try:
        import xxhash
    except ImportError:
        return None
    return lambda data: xxhash.xxh64(data).hexdigest()
