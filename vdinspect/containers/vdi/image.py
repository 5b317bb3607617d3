"""VDI: VirtualBox Disk Image (dynamic, fixed, differencing and the old undo images).

Facts from the VirtualBox source (VDICore.h and VDI.cpp), checked against QEMU block/vdi.c
and real images. All integers are little-endian; UUIDs are stored as IPRT writes them (the
first three fields little-endian, like a Microsoft GUID).

A file is a 72-byte pre-header (a text banner "<<< ... VirtualBox Disk Image >>>", the
signature 0xbeda107f, the version) and a header (version 1.1: ``cbHeader`` says how long;
384 bytes, or 400 with the LCHS geometry; version 0 had a shorter fixed layout). The header
points to the block map (``offBlocks``: one u32 per block) and the data area (``offData``).
A block map entry is the index of the block's data in the data area, 0xffffffff for a free
block (never written: zeros, or the parent's data in a differencing image) or 0xfffffffe for
a zero block (reads as zeros). Block ``i`` with index ``n`` lies at
``offData + n * (cbBlock + cbBlockExtra) + cbBlockExtra``.

A differencing (or undo) image names its parent by UUID only: ``uuidLinkage`` is the
parent's ``uuidCreate`` and ``uuidParentModify`` the parent's ``uuidModify`` when the child
was made. VirtualBox keeps such children in the machine's ``Snapshots/`` folder as
``{uuid}.vdi``; :meth:`VdiImage.find_parent` looks there and reads the headers of the
``*.vdi`` files nearby to find the one whose ``uuidCreate`` matches.
"""

from __future__ import annotations

import os
import struct
import uuid as uuidlib
from collections.abc import Mapping
from functools import cached_property

from ...errors import CorruptImage, NotRecognized, UnsupportedFeature
from ...io import ByteSource, paths
from ...lazy import np
from ...units import is_pow2
from .. import readplan
from ..base import DAMAGED, DATA, MAX_LIGHT_ENTRIES, Image, ParentHint, Run, table_runs
from ..runs import S_DAMAGED, S_DATA, S_UNALLOC, S_ZERO, UNIT_CODES, unit_runs
from .check import VdiReport
from .structs import (
    BLOCK_ENTRY,
    BLOCK_FREE,
    BLOCK_ZERO,
    DIFF,
    FLAG_NAMES,
    FORMAT,
    IMAGE_TYPE_NAMES,
    IMAGE_TYPES,
    KNOWN_FLAGS,
    MAX_SCAN,
    MAX_SIZE,
    PREHEADER_SIZE,
    SECTOR,
    SIGNATURE,
    SNAPSHOTS_FOLDER,
    UNDO,
    VERSION_0,
    Header0,
    Header1,
    Header1Plus,
    PreHeader,
    geometry,
    header_text,
    parse_headers,
    peek_uuid,
    uuid_text,
    vdi_uuid,
)

#: read-plan piece kind of each block code of ``_plan_units``: data, free, zero, damaged
PLAN_KINDS = [readplan.DATA, readplan.HOLE, readplan.ZERO, readplan.SLOW]

class VdiImage(VdiReport, Image):
    """A VDI file: dynamic, fixed, differencing or undo."""

    format = FORMAT

    def __init__(self, source: ByteSource, *, path: str | None = None, strict: bool = True):
        super().__init__(source, path=path, strict=strict)
        self._read_headers()
        self._check_header()
        self._read_block_map()
        if not self._map_sound():
            self._check_blocks()
        # else: the map is decoded on first use (``info`` needs none of it: no numpy)

    # --- header ----------------------------------------------------------------------

    def _at(self, field: str) -> int:
        """Host offset of a header field (for messages)."""
        struct = Header0 if self.version == VERSION_0 else Header1Plus
        pos = PREHEADER_SIZE
        for sc in struct.subcons:
            if sc.name == field:
                return pos
            pos += sc.sizeof()
        return PREHEADER_SIZE

    def _read_headers(self) -> None:
        f = self.file
        if f.size < PREHEADER_SIZE:
            self.fail(CorruptImage, f"file is {f.size} bytes, shorter than the pre-header", "pre-header", 0)
        head = f.read(0, min(f.size, PREHEADER_SIZE + Header1Plus.sizeof()))
        pre = PreHeader.parse(head[:PREHEADER_SIZE])
        if pre.u32Signature != SIGNATURE:
            self.fail(NotRecognized, f"signature {pre.u32Signature:#010x} is not 0xbeda107f", "pre-header.u32Signature", 64)
        self.preheader = pre
        self.version = pre.u32Version
        major = pre.u32Version >> 16
        if major != 1 and pre.u32Version != VERSION_0:
            self.fail(UnsupportedFeature, f"VDI version {major}.{pre.u32Version & 0xFFFF}", "pre-header.u32Version", 68)
        need = PREHEADER_SIZE + (Header1.sizeof() if major == 1 else Header0.sizeof())
        if f.size < need:
            self.fail(CorruptImage, f"file is {f.size} bytes, too short for the version "
                f"{major}.{pre.u32Version & 0xFFFF} header ({need} bytes)", "header", PREHEADER_SIZE)
        _, h = parse_headers(head)
        if major == 1:
            if h.cbHeader < Header1.sizeof():
                self.fail(CorruptImage, f"header size {h.cbHeader} is smaller than {Header1.sizeof()}", "header.cbHeader", PREHEADER_SIZE)
            if PREHEADER_SIZE + h.cbHeader > f.size:
                self.fail(CorruptImage, f"header size {h.cbHeader} runs past the end of the file ({f.size} bytes)", "header.cbHeader", PREHEADER_SIZE)
        self.header = h
        self.banner = header_text(pre.szFileInfo).rstrip("\n")

    def _check_header(self) -> None:
        h, n = self.header, self.file.size
        if h.u32Type not in IMAGE_TYPES:
            self.fail(CorruptImage, f"image type {h.u32Type} is not 1 (normal), 2 (fixed), 3 (undo) or 4 (diff)", "header.u32Type", self._at("u32Type"))
        self.image_type = h.u32Type
        self.subformat = IMAGE_TYPES[h.u32Type]
        bs = h.cbBlock
        if bs < SECTOR or not is_pow2(bs):
            self.fail(CorruptImage, f"block size {bs} is not a power of two of at least 512", "header.cbBlock", self._at("cbBlock"))
        if h.cbDisk == 0 or h.cBlocks == 0:
            self.fail(CorruptImage, f"empty disk (cbDisk {h.cbDisk}, cBlocks {h.cBlocks})", "header.cbDisk", self._at("cbDisk"))
        extra = h.cbBlockExtra
        if extra and not is_pow2(extra):
            self.fail(CorruptImage, f"block extra size {extra} is neither 0 nor a power of two", "header.cbBlockExtra", self._at("cbBlockExtra"))
        self.block_size = self.cluster_size = bs
        self.block_extra = extra
        self.block_stride = bs + extra
        if h.cbDisk > MAX_SIZE:
            self.fail(CorruptImage, f"disk size {h.cbDisk} is absurdly large", "header.cbDisk", self._at("cbDisk"))
        self.size = h.cbDisk & ~(SECTOR - 1)  # VirtualBox rounds an odd size down
        if h.cbDisk % SECTOR:
            self.finding(
                "warning",
                "header.cbDisk",
                self._at("cbDisk"),
                f"disk size {h.cbDisk} is not a multiple of 512: VirtualBox reads "
                f"{self.size} bytes (QEMU rounds up to {self.size + SECTOR})",
            )
        if h.cBlocks * bs < h.cbDisk:
            self.problem("header.cBlocks", self._at("cBlocks"), f"{h.cBlocks} blocks of {bs} bytes cannot hold the {h.cbDisk}-byte disk")
            self.size = h.cBlocks * bs  # salvage: the disk the block map can describe
        if h.cBlocksAllocated > h.cBlocks:
            self.problem("header.cBlocksAllocated", self._at("cBlocksAllocated"), f"{h.cBlocksAllocated} blocks allocated, more than the {h.cBlocks} blocks of "
                "the disk")
        map_end = h.offBlocks + 4 * h.cBlocks
        v1 = self.version != VERSION_0
        if v1 and (h.offBlocks < PREHEADER_SIZE + max(Header1.sizeof(), h.cbHeader)):
            self.problem("header.offBlocks", self._at("offBlocks"), f"block map offset {h.offBlocks:#x} lies inside the header")
        if map_end > n:
            self.problem("block map", h.offBlocks, f"block map of {h.cBlocks} entries at {h.offBlocks:#x} runs past the end of "
                f"the file ({n} bytes)")
        if v1 and h.offData < map_end:
            self.problem("header.offData", self._at("offData"), f"data offset {h.offData:#x} lies inside the block map "
                f"({h.offBlocks:#x}..{map_end:#x})")
        if h.offData > n:
            self.problem("header.offData", self._at("offData"), f"data offset {h.offData:#x} lies past the end of the file ({n} bytes)")
        if self.image_type in (DIFF, UNDO) and self.uuid_linkage is None:
            self.problem("header.uuidLinkage", self._at("uuidLinkage"), "differencing image names no parent (uuidLinkage is all zeros)")

    # --- block map -------------------------------------------------------------------
    def _read_block_map(self) -> None:
        h, n = self.header, self.file.size
        have = max(0, min(h.cBlocks, (n - h.offBlocks) // 4)) if h.offBlocks < n else 0
        self._raw_map = self.file.read(h.offBlocks, have * 4) if have else b""
        self.blocks_needed = -(-self.size // self.block_size)
        self._in_map: int | None = None  # entries naming a data block, once counted

    @cached_property
    def block_map(self) -> np.ndarray:
        """The block map (little-endian uint32 block indexes), decoded on first use."""
        return np.frombuffer(self._raw_map, dtype=BLOCK_ENTRY)

    def _map_sound(self) -> bool:
        """Without numpy: True when :meth:`_check_blocks` would find nothing (every data
        block below cBlocksAllocated, whole inside the file, none named twice); then the
        map is decoded only when first used. False: check it at open as before."""
        h, n = self.header, self.file.size
        count = len(self._raw_map) // 4
        if count > MAX_LIGHT_ENTRIES:
            return False
        used = [e for e in struct.unpack(f"<{count}I", self._raw_map) if e < BLOCK_ZERO]
        self._in_map = len(used)
        if used and (max(used) >= h.cBlocksAllocated or len(set(used)) < len(used)
                     or h.offData + max(used) * self.block_stride + self.block_extra
                     + self.block_size > n):
            return False
        return True

    # the masks _check_blocks sets at open: for a sound map (not checked there), none set
    @cached_property
    def _past_eof(self) -> np.ndarray:
        return np.zeros(len(self.block_map), dtype=bool)

    @cached_property
    def _partial(self) -> np.ndarray:
        return np.zeros(len(self.block_map), dtype=bool)

    @cached_property
    def _bad(self) -> np.ndarray:
        return np.zeros(len(self.block_map), dtype=bool)

    @cached_property
    def _crossed(self) -> np.ndarray:
        return np.zeros(len(self.block_map), dtype=bool)

    def _hosts(self, entries: np.ndarray) -> np.ndarray:
        """Host offsets of the data of blocks with these map entries (entries whose data
        could not lie inside the file must be masked out first: int64 would overflow)."""
        return self.header.offData + entries.astype(np.int64) * self.block_stride + self.block_extra

    def _host(self, i: int) -> int:
        """Host offset of block ``i``'s data, exactly (any entry, as a Python int)."""
        return self.header.offData + int(self.block_map[i]) * self.block_stride + self.block_extra

    def _bad_entries(self, limit: int = 100) -> list[tuple[int, str]]:
        """(block, message) for map entries that cannot be right, one per entry, worst
        reason first: an index past the disk's blocks, data past the end of the file, an
        index not below cBlocksAllocated."""
        h, n = self.header, self.file.size
        bm = self.block_map
        out = []
        for i in np.flatnonzero(self._bad)[:limit].tolist():
            e = int(bm[i])
            if e >= h.cBlocks:
                msg = f"block {i} has index {e}, too large (the disk has {h.cBlocks} blocks)"
            elif self._past_eof[i]:
                host = self._host(i)
                msg = (
                    f"block {i} (index {e}) has its data at {host:#x}, past the end of the "
                    f"file ({n} bytes)"
                )
            else:
                msg = f"block {i} has index {e}, not below cBlocksAllocated ({h.cBlocksAllocated})"
            out.append((i, msg))
        return out

    def _check_blocks(self) -> None:
        """Find map entries past the allocated blocks or past the end of the file: raise when
        strict; in salvage mode blocks past the end read as damaged and check() lists them."""
        h, n, bs = self.header, self.file.size, self.block_size
        bm = self.block_map
        idx = np.flatnonzero(bm < BLOCK_ZERO)
        # an index past the last block the file could hold is past the end (and would
        # overflow int64 below); the others are checked exactly
        room = max(0, n - h.offData) // self.block_stride
        fits = bm[idx] <= room
        near = idx[fits]
        hosts = self._hosts(bm[near])
        need = np.minimum(bs, np.maximum(self.size - near.astype(np.int64) * bs, 0))
        need[near >= self.blocks_needed] = bs
        self._past_eof = np.zeros(len(bm), dtype=bool)
        self._past_eof[idx[~fits]] = True
        self._past_eof[near[hosts + need > n]] = True
        # of those, the blocks whose data starts inside the file (read up to its end)
        self._partial = np.zeros(len(bm), dtype=bool)
        self._partial[near[(hosts + need > n) & (hosts < n)]] = True
        self._bad = self._past_eof.copy()
        self._bad[idx[bm[idx] >= h.cBlocksAllocated]] = True
        if self.strict and self._bad.any():
            i, msg = self._bad_entries(1)[0]
            count = int(self._bad.sum())
            if count > 1:
                msg += f"; {count} bad entries"
            self.fail(CorruptImage, msg, "block map", h.offBlocks + 4 * i)
        # a data block claimed by two map entries (cross-linked): the first (lowest block
        # number) keeps it, the others are damaged; so the blocks read are disjoint and a
        # small file cannot stand for millions of runs. check() lists them; strict refuses.
        ok = np.flatnonzero((bm < BLOCK_ZERO) & (~self._past_eof | self._partial))
        order = ok[np.argsort(bm[ok], kind="stable")]
        srt = bm[order]
        dup = np.flatnonzero(srt[1:] == srt[:-1]) + 1
        self._crossed = np.zeros(len(bm), dtype=bool)
        self._crossed[order[dup]] = True
        if len(dup):
            i, first = int(order[dup[0]]), int(order[dup[0] - 1])
            if self.strict:
                self.fail(CorruptImage, f"block {i} uses index {int(bm[i])}, also used by "
                          f"block {first}" + (f"; {len(dup)} such blocks" if len(dup) > 1 else ""),
                          "block map", h.offBlocks + 4 * i)
            self.finding("warning", "block map", h.offBlocks,
                         f"{len(dup)} block{'s use data blocks' if len(dup) > 1 else ' uses a data block'}"
                         " another block uses (cross-linked): read as damaged")

    # --- runs ------------------------------------------------------------------------
    def _runs(self, start: int, end: int):
        # past the end of a short block map (salvage mode only): damaged
        return table_runs(start, end, self.block_size, len(self.block_map), self._block_runs,
                          DAMAGED)

    def _block_runs(self, first: int, stop: int):
        """The runs of blocks ``first..stop-1`` (cut short by the end of the file: one by
        one)."""
        e = self.block_map[first:stop]
        state = np.full(len(e), S_DATA, dtype=np.int8)
        state[e == BLOCK_FREE] = S_UNALLOC
        state[e == BLOCK_ZERO] = S_ZERO
        state[self._past_eof[first:stop] | self._crossed[first:stop]] = S_DAMAGED
        partial = self._partial[first:stop] & ~self._crossed[first:stop]
        host = np.where(state == S_DATA, self._hosts(np.where(state == S_DATA, e, 0)), -1)
        yield unit_runs(first, self.block_size, state, host, S_DATA, UNIT_CODES, partial,
                        [(self.path, self.file)], self._damaged_block)

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan: one block map entry per block (damaged or cut-short blocks
        take the runs)."""
        state, host = self._plan_units()
        if -(-end // self.block_size) > len(state):
            return None
        return plan if readplan.plan_units(plan := [], PLAN_KINDS, state, host, 0,
                                           self.block_size, start, end, self.file) else None

    def locate(self, offset: int, length: int) -> readplan.Located:
        """One block map lookup for a read inside one block; else the plan decides."""
        i, within = divmod(offset, self.block_size)
        state, host = self._plan_units()
        if within + length > self.block_size or i >= len(state):
            return None
        return readplan.locate_unit(PLAN_KINDS, state, host, i, within, length, self.file)

    def _plan_units(self) -> tuple[np.ndarray, np.ndarray]:
        """Each block's read-plan code (an index into PLAN_KINDS) and data host offset,
        made once from the block map and the damage found at open."""
        got = self.__dict__.get("_plan_table")
        if got is None:
            bm = self.block_map
            state = np.zeros(len(bm), dtype=np.int8)
            state[bm == BLOCK_FREE] = 1
            state[bm == BLOCK_ZERO] = 2
            state[self._past_eof | self._crossed | self._partial] = 3
            data = state == 0
            host = np.zeros(len(bm), dtype=np.int64)
            host[data] = self._hosts(bm[data])
            got = self._plan_table = (state, host)
        return got

    def _damaged_block(self, i: int):
        """A block whose data runs past the end of the file: what is there, then damaged."""
        bs, n = self.block_size, self.file.size
        host = self._host(i)
        room = max(0, min(bs, n - host))
        if room:
            yield Run(i * bs, room, DATA, host_file=self.path, host_offset=host, source=self.file)
        yield Run(i * bs + room, bs - room, DAMAGED)

    # --- identity and parents --------------------------------------------------------
    def _uuid(self, field: str) -> uuidlib.UUID | None:
        raw = bytes(self.header[field])
        return None if raw == bytes(16) else vdi_uuid(raw)

    @property
    def uuid_create(self) -> uuidlib.UUID | None:
        return self._uuid("uuidCreate")

    @property
    def uuid_modify(self) -> uuidlib.UUID | None:
        return self._uuid("uuidModify")

    @property
    def uuid_linkage(self) -> uuidlib.UUID | None:
        return self._uuid("uuidLinkage")

    @property
    def uuid_parent_modify(self) -> uuidlib.UUID | None:
        return self._uuid("uuidParentModify")

    @property
    def is_differencing(self) -> bool:
        return self.image_type in (DIFF, UNDO)

    @property
    def parent_hint(self) -> ParentHint | None:
        link = self.uuid_linkage
        if not self.is_differencing or link is None:
            return None
        return ParentHint(
            path=f"{{{link}}}.vdi",
            uuid=str(link),
            extra=dict(uuid_parent_modify=uuid_text(self.uuid_parent_modify)),
        )

    def parent_search_paths(self) -> list[str]:
        """Where VirtualBox keeps a parent: the folder names and folders to scan, in order."""
        here = os.path.dirname(os.path.abspath(self.path))
        dirs = [here, os.path.join(here, SNAPSHOTS_FOLDER)]
        if os.path.basename(here) == SNAPSHOTS_FOLDER:
            dirs.append(os.path.dirname(here))
        return dirs

    def find_parent(self, parents=None) -> tuple[str | None, list[str]]:
        """The parent's path (None if not found) and every place looked at.

        Looks in ``parents`` (a mapping keyed by the parent's UUID, ``{uuid}`` or
        ``{uuid}.vdi``; or folders and files), then for ``{uuid}.vdi`` beside the image, in
        its ``Snapshots/`` folder and (for an image inside ``Snapshots/``) the machine folder,
        then reads the headers of the ``*.vdi`` files in those folders for a matching
        ``uuidCreate``. A file named after the UUID (or given in ``parents``) whose header
        disagrees is returned last, so :meth:`verify_parent` reports the mismatch, if nothing
        better turns up.
        """
        link = self.uuid_linkage
        if not self.is_differencing or link is None:
            return None, []
        names = [f"{{{link}}}.vdi", f"{link}.vdi"]
        tried: list[str] = []
        fallback: list[str] = []  # named after the UUID (or given) but with another uuidCreate
        me = os.path.realpath(self.path)

        policy = paths.current()  # every file looked at goes through the path policy

        def usable(p: str) -> bool:
            return policy.refusal(p, self.path) is None

        def look(p: str) -> str | None:
            p = os.fspath(p)
            if p not in tried:
                tried.append(p)
            if not usable(p) or os.path.realpath(p) == me:
                return None
            if peek_uuid(p, self.path) == link:
                return p
            fallback.append(p)
            return None

        dirs: list[str] = []
        if isinstance(parents, Mapping):
            for key in (str(link), f"{{{link}}}", *names):
                if key in parents:
                    p = os.fspath(parents[key])
                    tried.append(p)
                    if usable(p):
                        return p, tried
        elif parents is not None:
            entries = [parents] if isinstance(parents, str | os.PathLike) else list(parents)
            for entry in entries:
                entry = os.fspath(entry)
                if os.path.isdir(entry):
                    dirs.append(entry)
                elif (got := look(entry)) is not None:
                    return got, tried
        dirs += [d for d in self.parent_search_paths() if policy.inside(d, self.path)]
        for d in dirs:
            for name in names:
                if (got := look(os.path.join(d, name))) is not None:
                    return got, tried
        for d in dirs:
            got = self._scan(d, link, tried, me, usable, self.path)
            if got is not None:
                return got, tried
        return (fallback[0] if fallback else None), tried

    @staticmethod
    def _scan(folder: str, link: uuidlib.UUID, tried: list[str], me: str, usable, referrer: str
              ) -> str | None:
        """The first ``*.vdi`` in ``folder`` whose header's uuidCreate is ``link`` (of those
        ``usable`` says the path policy lets ``referrer`` open)."""
        if not os.path.isdir(folder):
            return None
        tried.append(os.path.join(folder, "*.vdi (headers read)"))
        try:
            names = sorted(e for e in os.listdir(folder) if e.lower().endswith(".vdi"))
        except OSError:
            return None
        for name in names[:MAX_SCAN]:
            p = os.path.join(folder, name)
            if usable(p) and os.path.realpath(p) != me and peek_uuid(p, referrer) == link:
                return p
        return None

    def verify_parent(self, parent: Image) -> None:
        """The parent's uuidCreate must be this image's uuidLinkage."""
        link = self.uuid_linkage
        where = self._at("uuidLinkage")
        if isinstance(parent, VdiImage):
            theirs = parent.uuid_create
        else:
            theirs = parent.info_fields().get("uuid")
            if theirs is None:
                self.finding(
                    "info",
                    "header.uuidLinkage",
                    where,
                    f"parent {parent.path} is a {parent.format} image without a UUID: "
                    "the link cannot be checked",
                )
                return
        if str(theirs).lower() != str(link).lower():
            self.problem("header.uuidLinkage", where, f"parent {parent.path} has UUID {theirs}, this differencing image expects "
                f"{link} (uuidLinkage)")
        if isinstance(parent, VdiImage):
            pm = self.uuid_parent_modify
            if pm is not None and pm != parent.uuid_modify:
                self.finding(
                    "warning",
                    "header.uuidParentModify",
                    self._at("uuidParentModify"),
                    f"the parent's modification UUID is {parent.uuid_modify}, this image "
                    f"expects {pm}: the parent may have been written to after this image "
                    "was made",
                )
            if parent.size != self.size:
                self.finding(
                    "warning",
                    "header.cbDisk",
                    self._at("cbDisk"),
                    f"virtual size {self.size} differs from the parent's {parent.size}",
                )

    # --- reports ---------------------------------------------------------------------
    def flags(self) -> list[str]:
        f = self.header.fFlags
        out = [FLAG_NAMES[b] for b in sorted(FLAG_NAMES) if f & b]
        out += [f"flag {1 << b:#x}" for b in range(32) if f >> b & 1 and not KNOWN_FLAGS >> b & 1]
        return out

    @property
    def allocated_blocks(self) -> int:
        if self._in_map is None:
            self._in_map = int((self.block_map < BLOCK_ZERO).sum())
        return self._in_map

    TABLES = ((r"block map", BLOCK_ENTRY, "describe_block_entry"),)

    def describe_block_entry(self, v: int) -> str:
        """What a block map entry says: free, zero, or a block number in the file."""
        if v == BLOCK_FREE:
            return "free: read from the parent (or zeros)"
        if v == BLOCK_ZERO:
            return "zero block"
        return f"data block number {v}"

    def info_fields(self) -> dict:
        h, v = self.header, self.version
        out = dict(
            uuid=uuid_text(self.uuid_create),
            banner=self.banner,
            version=f"{v >> 16}.{v & 0xFFFF}",
            image_type=IMAGE_TYPE_NAMES[self.image_type],
            image_flags=h.fFlags,
            description=header_text(h.szComment),
            header_size=h.cbHeader,
            offset_blocks=h.offBlocks,
            offset_data=h.offData,
            disk_size=h.cbDisk,
            block_size=h.cbBlock,
            block_extra=h.cbBlockExtra,
            blocks=h.cBlocks,
            blocks_allocated=h.cBlocksAllocated,
            blocks_in_map=self.allocated_blocks,
            legacy_geometry=geometry(h.LegacyGeometry),
            lchs_geometry=geometry(h.LCHSGeometry),
            uuid_modify=uuid_text(self.uuid_modify),
        )
        if self.is_differencing or self.uuid_linkage is not None:
            out.update(
                parent_uuid=uuid_text(self.uuid_linkage),
                uuid_parent_modify=uuid_text(self.uuid_parent_modify),
            )
        return out


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> VdiImage:
    return VdiImage(source, path=path, strict=strict)
