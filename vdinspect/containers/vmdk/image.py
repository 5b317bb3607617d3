"""The VMDK reader: a descriptor (a text file, or text inside a sparse extent) and its extents.

The disk is the extents one after another. Text descriptors name their extent files
relative to the descriptor's folder. A child disk names its parent with
``parentFileNameHint`` and links to it by content ID: its ``parentCID`` must be the
parent's ``CID`` (``ffffffff`` = no parent).
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterator

from ...errors import CorruptImage, MissingFile, NotRecognized, UnsupportedFeature
from ...findings import check_row
from ...io import ByteSource, FileSource, paths
from .. import readplan
from ..base import Image, ParentHint, Run, structure_row
from ..runs import RunTable
from .cowd import CowdExtent
from .descriptor import (
    FLAT_TYPES,
    MAX_DESCRIPTOR,
    NO_PARENT,
    SPARSE_TYPES,
    Descriptor,
    ExtentLine,
    looks_like_descriptor,
    parse_descriptor,
)
from .extent import Extent, FlatExtent, MissingExtent, ZeroExtent
from .sesparse import SeSparseExtent, probe_sesparse
from .sparse import SparseExtent, read_sparse_header
from .structs import COWD_MAGIC, SECTOR, SPARSE_MAGIC

FORMAT = "vmdk"
#: more virtual disk than this (512 TiB) is a corrupt descriptor or header
MAX_DISK_BYTES = 1 << 49
#: how VMware and QEMU name the extents of a split sparse disk: NAME-s001.vmdk, -s002, ...
SPLIT_EXTENT_NAME = re.compile(r"-s(\d{3,})\.vmdk$", re.IGNORECASE)


def probe(head: bytes) -> bool:
    """Hosted sparse ("KDMV"), ESX sparse ("COWD"), seSparse, or a text descriptor."""
    if len(head) >= 4 and head[:4] in (SPARSE_MAGIC, COWD_MAGIC):
        return True
    return probe_sesparse(head) or looks_like_descriptor(head)


class VmdkImage(Image):
    """A VMDK disk: ``descriptor`` (may be None for a bare extent) and ``extents``."""

    format = FORMAT

    def __init__(
        self,
        source: ByteSource,
        *,
        path: str | None = None,
        strict: bool = True,
        folder: str | None = None,
    ):
        super().__init__(source, path=path, strict=strict)
        #: where extent names are resolved: the descriptor's folder (or the one given)
        self.folder = folder if folder is not None else os.path.dirname(os.path.abspath(self.path))
        self.descriptor: Descriptor | None = None
        self.descriptor_embedded = False
        self.lone_extent = False  # a sparse extent opened without any descriptor
        self.descriptor_synthesised = False  # set by reassemble.open_descriptor_text
        self.extents: list[Extent] = []
        self._opened: dict[str, FileSource] = {}
        try:
            self._open()
        except BaseException:
            self._close_extents()
            raise
        self.size = self.extents[-1].end if self.extents else 0
        self._starts = [e.start for e in self.extents]
        sparse = [e for e in self.extents if hasattr(e, "grain_bytes")]
        self.cluster_size = sparse[0].grain_bytes if sparse else None
        #: the header of the first sparse extent (None when every extent is flat or zero)
        self.header = sparse[0].header if sparse else None

    # --- opening -------------------------------------------------------------------------

    def _open(self) -> None:
        f = self.file
        head = f.read(0, min(f.size, 4096))
        if len(head) < 4:
            self.fail(CorruptImage, f"file is {f.size} bytes: not a VMDK", "header", 0)
        magic = head[:4]
        if magic == SPARSE_MAGIC:
            h = read_sparse_header(f, self.path)
            if h.capacity == 0 and h.descriptorOffset:
                # a descriptor stored inside a sparse container (QEMU reads these too)
                text = self._embedded_text(h.descriptorOffset, h.descriptorSize or 1)
                self.descriptor_embedded = True
                self._open_descriptor(text)
                return
            ext = SparseExtent(self, 0, None, 0, 0, self.path, f)
            self.extents = [ext]
            loc = ext.descriptor_location()
            if loc:
                self.descriptor_embedded = True
                self.descriptor = self._parse(self._embedded_text(*[x // SECTOR for x in loc]))
                self._check_embedded(ext)
                if len(self.descriptor.extents) == 1:
                    ext.line = self.descriptor.extents[0]  # its access and name, for info()
            if self.descriptor is None or not (self.descriptor.extents or
                                               self.descriptor.entries):
                self._lone_extent(ext)
        elif magic == COWD_MAGIC:
            self.extents = [CowdExtent(self, 0, None, 0, 0, self.path, f)]
        elif probe_sesparse(head):
            self.extents = [SeSparseExtent(self, 0, None, 0, 0, self.path, f)]
        elif looks_like_descriptor(head):
            if f.size > MAX_DESCRIPTOR:
                self.fail(CorruptImage, f"a text descriptor of {f.size} bytes is too large", "descriptor", 0)
            self._open_descriptor(f.read(0, f.size))
        else:
            self.fail(NotRecognized, "not a VMDK descriptor or extent", "header", 0)

    def _lone_extent(self, ext: SparseExtent) -> None:
        """A sparse extent that carries no descriptor (the split extents of a
        twoGbMaxExtentSparse disk): it reads as a disk of its own capacity; say what it
        stands for in the disk it came from."""
        self.descriptor, self.descriptor_embedded, self.lone_extent = None, False, True
        c = ext.capacity
        m = SPLIT_EXTENT_NAME.search(os.path.basename(self.path))
        guess = ""
        if m and int(m.group(1)) >= 1:
            k = int(m.group(1)) - 1
            guess = (f"; its name suggests k = {k}: guest bytes [{k * c:#x}, {(k + 1) * c:#x}) "
                     "if the extents before it are as large as this one")
        self.finding(
            "info",
            "descriptor",
            None,
            "descriptor lost: this sparse extent carries no descriptor (a split disk keeps it "
            f"in a separate .vmdk file), so it is opened alone as a disk of its {c} bytes. If "
            "it is extent k (from 0) of the original disk and each extent before it holds E "
            f"bytes, it covers guest bytes [k*E, k*E + {c}) of that disk; the extent cannot say "
            f"which k it is{guess}. vdinspect.open_vmdk_extents(paths) reads the whole disk "
            "from all its extents",
        )

    def _embedded_text(self, offset_sectors: int, size_sectors: int) -> bytes:
        off = offset_sectors * SECTOR
        n = min(size_sectors * SECTOR, MAX_DESCRIPTOR, max(0, self.file.size - off))
        if off >= self.file.size or n <= 0:
            msg = f"embedded descriptor at {off:#x} is outside the file"
            if self.strict:
                self.fail(CorruptImage, msg, "embedded descriptor", off)
            self.finding("error", "embedded descriptor", off, msg)
            return b""
        return self.file.read(off, n)

    def _parse(self, data: bytes) -> Descriptor:
        d = parse_descriptor(data)
        where = 0
        if self.descriptor_embedded and self.extents:
            loc = self.extents[0].descriptor_location()
            where = loc[0] if loc else 0
        for line_no, msg in d.problems:
            self.finding(
                "warning", "descriptor", where, f"line {line_no}: {msg}" if line_no else msg
            )
        return d

    def _check_embedded(self, ext: SparseExtent) -> None:
        d = self.descriptor
        if d is None or not d.extents:
            return
        total = sum(x.size for x in d.extents)
        if total != ext.size:
            self.finding(
                "warning",
                "embedded descriptor",
                ext.descriptor_location()[0],
                f"the descriptor's extents cover {total} bytes, the sparse header "
                f"{ext.size}; the header is used",
            )

    def _open_descriptor(self, data: bytes) -> None:
        d = self._parse(data)
        self.descriptor = d
        if not d.extents:
            self.fail(CorruptImage, "the descriptor lists no extents", "descriptor", 0)
        pos = 0
        for k, line in enumerate(d.extents):
            if line.sectors == 0:
                self.finding(
                    "warning",
                    f"extent {k}",
                    None,
                    f"extent line {line.line_no} has no sectors and is ignored",
                )
                continue
            size = line.size
            if size > MAX_DISK_BYTES or pos + size > MAX_DISK_BYTES:
                self.fail(CorruptImage, f"extent line {line.line_no} gives {line.sectors} sectors: absurd", f"descriptor extent {k}", 0)
            self.extents.append(self._open_extent(k, line, pos))
            pos += size

    def _source_for(self, k: int, line: ExtentLine) -> tuple[str, FileSource] | None:
        # a name from the descriptor: only inside the allowed folders (vdinspect.io.paths)
        policy = paths.current()
        found = policy.find([line.filename], os.path.join(self.folder, "descriptor"))
        tried = found.tried
        paths.report_outside(self, f"extent {k}", found, f"extent {k} file")
        if found.path is None:
            msg = found.not_found(f"extent {k} file {line.filename!r}")
            if self.strict:
                raise MissingFile(msg, tried=tried, path=self.path, structure=f"extent {k}")
            self.finding(
                "error",
                f"extent {k}",
                None,
                f"{msg} (tried: {', '.join(tried)}); its range reads as damaged",
            )
            return None
        real = os.path.realpath(found.path)
        if real == os.path.realpath(self.path) and isinstance(self.file, FileSource):
            return found.path, self.file
        if real not in self._opened:
            self._opened[real] = policy.open(found.path, os.path.join(self.folder, "descriptor"))
        return found.path, self._opened[real]

    def _open_extent(self, k: int, line: ExtentLine, start: int) -> Extent:
        size = line.size
        if line.type == "ZERO":
            return ZeroExtent(self, k, line, start, size)
        if line.type not in FLAT_TYPES + SPARSE_TYPES + ("SESPARSE",):
            self.fail(UnsupportedFeature, f"extent type {line.type!r}", f"descriptor extent {k}")
        got = self._source_for(k, line)
        if got is None:
            return MissingExtent(self, k, line, start, size)
        path, src = got
        if line.type in FLAT_TYPES:
            return FlatExtent(self, k, line, start, size, path, src, line.offset * SECTOR)
        try:
            ext = self._open_sparse(k, line, start, size, path, src)
        except CorruptImage as e:
            if self.strict:
                raise
            # salvage: an extent whose header or tables are gone stands for damaged bytes
            self.finding(
                "error",
                e.structure or "sparse header",
                e.offset,
                f"{os.path.basename(path)}: extent {k} cannot be read ({e.detail}); its range "
                f"(disk bytes {start:#x}..{start + size:#x}) reads as damaged",
            )
            return MissingExtent(self, k, line, start, size, path, src)
        if ext.capacity != size:
            self.finding(
                "warning",
                f"extent {k}",
                None,
                f"{ext.label}the descriptor gives {size} bytes, the extent header "
                f"{ext.capacity}; the descriptor is used",
            )
        return ext

    def _open_sparse(self, k: int, line: ExtentLine, start: int, size: int, path: str, src):
        """The sparse extent (hosted, COWD or seSparse, by its magic) of extent line ``k``."""
        magic = src.read(0, min(16, src.size))
        if line.type == "SESPARSE" or probe_sesparse(magic):
            return SeSparseExtent(self, k, line, start, size, path, src)
        if magic[:4] == COWD_MAGIC:
            return CowdExtent(self, k, line, start, size, path, src)
        if magic[:4] == SPARSE_MAGIC:
            return SparseExtent(self, k, line, start, size, path, src)
        raise CorruptImage(
            f"extent {k} is not a sparse extent (no KDMV/COWD magic)",
            path=path,
            structure="sparse header",
            offset=0,
        )

    # --- reading ---------------------------------------------------------------------------
    def extent_spans(self, start: int, end: int) -> Iterator[tuple[Extent, int, int]]:
        """``(extent, ls, le)`` for each extent ``[start, end)`` reaches, in order, with the
        part it reaches in the extent's own offsets (``ls < le``)."""
        k = max(0, bisect.bisect_right(self._starts, start) - 1)
        while k < len(self.extents) and self.extents[k].start < end:
            ext = self.extents[k]
            ls = max(start, ext.start) - ext.start
            le = min(end, ext.end) - ext.start
            if le > ls:
                yield ext, ls, le
            k += 1

    def _runs(self, start: int, end: int):
        for ext, ls, le in self.extent_spans(start, end):
            for r in ext.runs(ls, le):
                if isinstance(r, RunTable):
                    yield r.clip_merge(ls, le).shifted(ext.start)
                    continue
                if r.end <= ls or r.start >= le or r.length <= 0:
                    continue
                r = r.clip(ls, le)
                r.start += ext.start
                if r.compressed:
                    r.extra = (r.extra[0] + ext.start, r.extra[1])
                yield r

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The extents' read plans, moved to disk offsets."""
        one = self.extents[0] if len(self.extents) == 1 else None
        if one is not None and one.start == 0 and end <= one.end:
            return one.plan(start, end)
        plan: readplan.Plan = []
        for ext, ls, le in self.extent_spans(start, end):
            part = ext.plan(ls, le)
            if part is None:
                return None
            for a, b, kind, host, src in part:
                readplan.add_piece(plan, a + ext.start, b + ext.start, kind, host, src)
        if not plan or plan[0][0] != start or plan[-1][1] != end:
            return None  # extents that do not cover the range: the runs say why
        return plan

    def locate(self, offset: int, length: int) -> readplan.Located:
        """The extent holding the whole range answers; a range over two takes the plan."""
        ext = self.extents[0] if len(self.extents) == 1 else \
            self.extents[max(0, bisect.bisect_right(self._starts, offset) - 1)]
        if ext.start <= offset and offset + length <= ext.end:
            return ext.locate(offset - ext.start, length)
        return None

    def _read_compressed(self, run: Run) -> bytes:
        vstart, bound = run.extra
        k = max(0, bisect.bisect_right(self._starts, vstart) - 1)
        ext = self.extents[k]
        return ext.read_grain(run.host_offset, vstart - ext.start, bound)

    # --- identity and parents ------------------------------------------------------------
    @property
    def create_type(self) -> str | None:
        """``createType`` of the descriptor, or what the extent header implies."""
        if self.descriptor is not None and self.descriptor.create_type:
            return self.descriptor.create_type
        if not self.extents:
            return None
        e = self.extents[0]
        if isinstance(e, SparseExtent):
            return "streamOptimized" if e.compressed else "monolithicSparse"
        if isinstance(e, CowdExtent):
            return "vmfsSparse"
        if isinstance(e, SeSparseExtent):
            return "seSparse"
        return None

    @property
    def subformat(self) -> str | None:  # type: ignore[override]
        """The sub-format: the createType."""
        return self.create_type

    @property
    def cid(self) -> int | None:
        """This disk's content ID (from the descriptor)."""
        return self.descriptor.cid if self.descriptor is not None else None

    @property
    def parent_cid(self) -> int | None:
        """The content ID the parent must have (0xffffffff = none)."""
        return self.descriptor.parent_cid if self.descriptor is not None else None

    @property
    def parent_file_name_hint(self) -> str | None:
        """The descriptor's ``parentFileNameHint``."""
        return self.descriptor.parent_file_name_hint if self.descriptor is not None else None

    @property
    def parent_hint(self) -> ParentHint | None:
        """Where the parent is, unless parentCID says there is none."""
        hint = self.parent_file_name_hint
        if not hint or self.parent_cid == NO_PARENT:
            return None
        return ParentHint(path=hint, format=FORMAT, extra=dict(parent_cid=self.parent_cid))

    def verify_parent(self, parent: Image) -> None:
        """The child's parentCID must equal the parent's CID."""
        want = self.parent_cid
        have = getattr(parent, "cid", None)
        if want is None or have is None:
            self.finding(
                "warning",
                "descriptor.parentCID",
                None,
                "cannot verify the parent: a CID is missing",
            )
            return
        if want != have:
            msg = (
                f"parentCID {want:08x} does not match the CID {have:08x} of the parent "
                f"{parent.path}: the parent changed after this child was made"
            )
            if self.strict:
                self.fail(CorruptImage, msg, "descriptor.parentCID")
            self.finding("error", "descriptor.parentCID", None, msg)

    # --- reports -------------------------------------------------------------------------
    @property
    def host_files(self) -> list[str]:
        """The descriptor and every extent file found."""
        out = [self.path]
        for e in self.extents:
            if e.path is not None and e.path not in out:
                out.append(e.path)
        return out

    def owned_sources(self) -> list[ByteSource]:
        return [self.file] + list(self._opened.values())

    def _close_extents(self) -> None:
        for src in self._opened.values():
            src.close()

    def flags(self) -> list[str]:
        """Header flags of the sparse extents, and unclean shutdowns."""
        out = []
        for e in self.extents:
            if isinstance(e, SparseExtent):
                out += [f for f in e.flag_names if f not in out]
                if e.file_header.uncleanShutdown and "unclean shutdown" not in out:
                    out.append("unclean shutdown")
        return out

    TABLES = (
        (r"(redundant )?grain directory.*", "<u4", "describe_gd_entry"),
        (r"(redundant )?grain table.*", "<u4", "describe_gt_entry"),
    )

    def describe_gd_entry(self, v: int) -> str:
        """What a grain directory entry says: where its grain table is."""
        return f"grain table at sector {v} ({v * 512:#x})" if v else "no grain table"

    def describe_gt_entry(self, v: int) -> str:
        """What a grain table entry says: 0 unallocated, 1 zeroed, else a sector."""
        if v == 0:
            return "unallocated: read from the parent (or zeros)"
        if v == 1:
            return "zeroed grain (reads as zeros)"
        return f"grain at sector {v} ({v * 512:#x})"

    def info_fields(self) -> dict:
        """Descriptor and DDB fields, CIDs and one row per extent."""
        d = self.descriptor
        ddb = d.ddb if d is not None else {}

        def geo(key: str):
            """A ``ddb.geometry.*`` value as an int."""
            v = ddb.get(f"geometry.{key}")
            try:
                return int(v) if v is not None else None
            except ValueError:
                return None

        cid, pcid = self.cid, self.parent_cid
        return dict(
            uuid=ddb.get("uuid") or ddb.get("uuid.image"),
            create_type=self.create_type,
            descriptor_version=d.version if d is not None else None,
            descriptor=self._descriptor_kind(),
            encoding=d.encoding if d is not None else None,
            cid=f"{cid:08x}" if cid is not None else None,
            parent_cid=f"{pcid:08x}" if pcid is not None else None,
            parent_file_name_hint=self.parent_file_name_hint,
            backing_file=self.parent_hint.path if self.parent_hint else None,
            adapter_type=ddb.get("adapterType"),
            geometry=dict(cylinders=geo("cylinders"), heads=geo("heads"), sectors=geo("sectors")),
            hardware_version=ddb.get("virtualHWVersion"),
            tools_version=ddb.get("toolsVersion"),
            ddb=ddb,
            extents=[e.info_fields() for e in self.extents],
        )

    def _descriptor_kind(self) -> str | None:
        if self.descriptor_embedded:
            return "embedded"
        if self.descriptor_synthesised:
            return "synthesised (in memory)"
        if self.descriptor is not None:
            return "file"
        return "none (extent opened alone)" if self.lone_extent else None

    def structure_rows(self) -> list[dict]:
        """Descriptor and extent structures, in host-file order."""
        rows = []
        if self.descriptor is not None and not self.descriptor_embedded:
            rows.append(
                structure_row(
                    "descriptor",
                    self.path,
                    0,
                    self.file.size,
                    f"text descriptor, createType {self.create_type}",
                )
            )
        files = {p: n for n, p in enumerate(self.host_files)}
        for e in self.extents:
            rows += e.structure_rows()
        for r in rows:  # a corrupt header can name offsets no file has
            r["host_offset"], r["length"] = _int64(r["host_offset"]), _int64(r["length"])
        return sorted(rows, key=lambda r: (files.get(r["host_file"], 0), r["host_offset"] or 0))

    def check_rows(self) -> list[dict]:
        """Findings met while reading plus each extent's checks.

        A finding a read recorded for a problem an extent's check reports too (same structure,
        host offset and file) is left out, so reading before ``check()`` does not change its
        counts."""
        checked: list[dict] = []
        for e in self.extents:
            try:
                checked += e.check_rows()
            except CorruptImage as err:
                checked.append(
                    check_row("error", err.structure, err.offset, str(err.detail))
                )
        labels = sorted({e.label for e in self.extents if e.label}, key=len, reverse=True)

        def key(r: dict) -> tuple:
            m = r.get("message") or ""
            label = next((x for x in labels if m.startswith(x)), "")
            return r["structure"], _int64(r.get("host_offset")), label

        known = {key(r) for r in checked}
        rows = [r for r in self.findings_rows() if key(r) not in known] + checked
        out: list[dict] = []
        seen: set[tuple] = set()
        for r in rows:
            r = dict(r, host_offset=_int64(r.get("host_offset")))
            k = (r["severity"], r["structure"], r["host_offset"], r["message"])
            if k not in seen:
                seen.add(k)
                out.append(r)
        return out


def _int64(v: int | None) -> int | None:
    """``v`` if it fits the int64 columns of the report frames, else None."""
    return v if v is not None and 0 <= v < 1 << 63 else None


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> VmdkImage:
    """Open a VMDK descriptor, or a sparse extent on its own."""
    return VmdkImage(source, path=path, strict=strict)
