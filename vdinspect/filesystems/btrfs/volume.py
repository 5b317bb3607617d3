"""The device layer of a Btrfs filesystem: superblocks, chunks, logical reads, tree blocks.

:class:`BtrfsVolume` is the base of :class:`~.fs.BtrfsFileSystem`: it picks the
superblock (the valid copy with the highest generation among 64 KiB, 64 MiB and 256 GiB),
builds the chunk map (the superblock's system chunks, then the chunk tree), reads logical
addresses through it on one or more devices, and reads checked tree blocks (another copy
is tried when a block fails its checks on a mirrored profile).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import CorruptImage, NotRecognized, UnsupportedFeature
from ...io import ByteSource, FileSource, LRUCache
from ...units import is_pow2
from ...units import uuid_text as fmt_uuid
from ..base import FileSystem
from . import structs as S
from .bulk import LeafBatch, leaf_batches
from .chunks import ChunkError, ChunkMap, ChunkTable, parse_chunk, parse_sys_chunk_array
from .csum import digest
from .tree import KEY_MAX, KEY_MIN, Node, NodeError, parse_node, search, walk_blocks

if TYPE_CHECKING:
    from .tree import Node

NODE_CACHE = 2048  # tree blocks kept decoded (32 MiB of 16 KiB nodes)
MAX_READ = 1 << 28  # one logical read larger than this is a bug or a hostile size


@dataclass(slots=True)
class SuperCopy:
    """One valid superblock copy: where, its generation and the parsed Container."""

    device: int  # index into the devices given
    offset: int
    generation: int
    sb: object
    raw: bytes


def _xor(blocks: list[bytes]) -> bytes:
    """The byte-wise XOR of equal-length blocks (RAID5/6 P parity)."""
    import numpy as np

    acc = np.frombuffer(blocks[0], dtype=np.uint8).copy()
    for b in blocks[1:]:
        acc ^= np.frombuffer(b, dtype=np.uint8)
    return acc.tobytes()


class BtrfsVolume(FileSystem):
    """Superblock, chunk map and tree-block reads over one or several devices."""

    fstype = "btrfs"

    def _open_volume(self, devices: list[ByteSource]) -> None:
        self.devices_given = devices
        copies = [self._best_super(i, d) for i, d in enumerate(devices)]
        first = copies[0]
        if first is None:
            raise NotRecognized("no valid Btrfs superblock at 64 KiB, 64 MiB or 256 GiB",
                                path=self.name, structure="superblock",
                                offset=S.SUPER_INFO_OFFSET)
        sb = first.sb
        self.super_copy = first
        self.sb = sb
        self.fsid = bytes(sb.fsid)
        self.meta_fsid = (bytes(sb.metadata_uuid)
                          if sb.incompat_flags & S.INCOMPAT_METADATA_UUID else self.fsid)
        self.csum_type = int(sb.csum_type)
        if self.csum_type not in S.CSUM_LENGTHS:
            self.fail(UnsupportedFeature, f"unknown checksum type {self.csum_type}",
                      "superblock", first.offset + 0xC4)
        self.csum_len = S.CSUM_LENGTHS[self.csum_type]
        self.nodesize = sb.nodesize
        self.sectorsize = sb.sectorsize
        for what, v in (("nodesize", sb.nodesize), ("sectorsize", sb.sectorsize)):
            if v < 4096 or v > 65536 or not is_pow2(v):
                self.fail(CorruptImage, f"{what} {v} is not a power of two in 4..64 KiB",
                          "superblock", first.offset)
        if 4096 <= sb.sectorsize <= 65536 and is_pow2(sb.sectorsize):
            self.block_size = sb.sectorsize  # the data allocation unit: carving aligns to it
        if sb.nodesize < sb.sectorsize:
            self.fail(CorruptImage, "nodesize smaller than sectorsize", "superblock",
                      first.offset)
        self.label = sb.label.split(b"\0", 1)[0].decode("utf-8", "replace") or None
        self.uuid = fmt_uuid(self.fsid)
        # devices by devid; those of another filesystem are left out
        self.devs: dict[int, ByteSource] = {}
        for i, c in enumerate(copies):
            if c is None:
                self.finding("error", "superblock", S.SUPER_INFO_OFFSET,
                             f"{devices[i].name}: no valid Btrfs superblock; device ignored")
                continue
            if bytes(c.sb.fsid) != self.fsid:
                self.finding("error", "superblock", c.offset,
                             f"{devices[i].name}: belongs to filesystem "
                             f"{fmt_uuid(c.sb.fsid)}, not {self.uuid}; device ignored")
                continue
            devid = c.sb.dev_item.devid
            if devid in self.devs:
                self.finding("error", "superblock", c.offset,
                             f"{devices[i].name}: a second device with devid {devid}; ignored")
                continue
            self.devs[devid] = devices[i]
            if c.generation > self.sb.generation:  # the newest copy across the devices
                self.sb, self.super_copy = c.sb, c
        self.nodes: LRUCache[Node | None] = LRUCache(NODE_CACHE)
        self.bad_blocks: set[int] = set()  # tree blocks that could not be read (salvage)
        self.chunks = ChunkTable()
        self._load_chunks()

    # --- superblocks ------------------------------------------------------------------
    def _best_super(self, index: int, dev: ByteSource) -> SuperCopy | None:
        best = None
        for off in S.SUPER_MIRRORS:
            if off + S.SUPER_INFO_SIZE > dev.size:
                break
            raw = dev.read(off, S.SUPER_INFO_SIZE)
            if raw[0x40:0x48] != S.MAGIC:
                continue
            sb = S.Superblock.parse(raw)
            ctype = int(sb.csum_type)
            if ctype not in S.CSUM_LENGTHS:
                if off == S.SUPER_INFO_OFFSET and best is None:
                    best = SuperCopy(index, off, sb.generation, sb, raw)  # reported later
                continue
            n = S.CSUM_LENGTHS[ctype]
            if digest(ctype, raw[S.CSUM_SIZE:])[:n] != raw[:n]:
                self.finding("error" if off == S.SUPER_INFO_OFFSET else "warning",
                             "superblock", off, f"{dev.name}: superblock copy at {off:#x} "
                             "has a bad checksum")
                continue
            if sb.bytenr != off:
                self.finding("warning", "superblock", off,
                             f"{dev.name}: superblock copy at {off:#x} says it is at "
                             f"{sb.bytenr:#x}")
                continue
            if best is None or sb.generation > best.generation:
                best = SuperCopy(index, off, sb.generation, sb, raw)
        if best is not None and best.offset != S.SUPER_INFO_OFFSET:
            self.finding("warning", "superblock", best.offset,
                         f"{dev.name}: using the superblock copy at {best.offset:#x} "
                         "(newer than or in place of the primary)")
        return best

    # --- chunks -------------------------------------------------------------------------
    def _load_chunks(self) -> None:
        sb = self.sb
        base = self.super_copy.offset
        n = sb.sys_chunk_array_size
        if n > S.SYS_CHUNK_ARRAY_SIZE:
            self.problem("superblock", base + 0xA0, f"sys_chunk_array_size {n} > 2048")
            n = S.SYS_CHUNK_ARRAY_SIZE
        try:
            sys_chunks = parse_sys_chunk_array(bytes(sb.sys_chunk_array[:n]))
        except ChunkError as e:
            self.fail(CorruptImage, f"sys_chunk_array: {e}", "superblock", base + 0x32B)
        for c in sys_chunks:
            if not self.chunks.add(c):
                self.problem("sys_chunk_array", base + 0x32B,
                             f"chunk at {c.logical:#x} overlaps another")
        self.dev_items: dict[int, object] = {}
        lo = (S.FIRST_CHUNK_TREE_OBJECTID, S.CHUNK_ITEM, 0)
        for node, i in self.search(sb.chunk_root, sb.chunk_root_level, (1, S.DEV_ITEM, 0),
                                   KEY_MAX):
            k = node.keys[i]
            if k[1] == S.DEV_ITEM and k[0] == 1:
                data = node.data(i)
                if len(data) >= S.DevItem.sizeof():
                    self.dev_items[k[2]] = S.DevItem.parse(data)
                continue
            if k < lo or k[1] != S.CHUNK_ITEM:
                continue
            a, size = node.spans[i]
            try:
                c, _end = parse_chunk(node.buf, a, k[2], a + size)
            except ChunkError as e:
                self.problem("chunk tree", node.bytenr, str(e))
                continue
            if not self.chunks.add(c):
                self.problem("chunk tree", node.bytenr,
                             f"chunk at {c.logical:#x} overlaps another")
        missing = sorted({d for c in self.chunks.chunks for d, _o in c.stripes} - set(self.devs))
        if missing:
            self.finding("warning", "chunk tree", None,
                         f"devices {missing} are not given: what they hold is read from "
                         "another copy or rebuilt from RAID5/6 parity where the profile "
                         "allows, else reads as damaged")

    def _pieces(self, logical: int, length: int, mirror: int = 0
                ) -> list[tuple[ByteSource | None, int, int, int]]:
        """Where ``[logical, +length)`` lies: (device or None, physical, bytes, logical)."""
        if length > MAX_READ:
            self.fail(CorruptImage, f"read of {length} bytes", "chunk map", logical)
        out = []
        pos, end = logical, logical + length
        while pos < end:
            c = self.chunks.find(pos)
            if c is None:
                self.fail(CorruptImage, f"logical address {pos:#x} is in no chunk",
                          "chunk map", pos)
            dev = None
            copies = c.mirrors
            for k in range(copies):  # the copy asked for, else the next one present
                idx, phys, left = c.place(pos - c.logical, (mirror + k) % copies)
                n = min(end - pos, left, c.logical + c.length - pos)
                dev = self.devs.get(c.stripes[idx][0])
                if dev is not None and phys + n <= dev.size:
                    break
                dev = None
            out.append((dev, phys, n, pos))
            pos += n
        return out

    def mirrors(self, logical: int) -> int:
        c = self.chunks.find(logical)
        return c.mirrors if c is not None else 1

    def read_logical(self, logical: int, length: int, mirror: int = 0) -> bytes:
        """Bytes at a logical address (CorruptImage where no device holds them)."""
        parts = []
        for dev, phys, n, pos in self._pieces(logical, length, mirror):
            if dev is None:
                others = self._parity_sources(pos, n)
                if others is None:
                    self.fail(CorruptImage, f"logical {pos:#x} lies on a missing device or "
                              "past its end", "chunk map", pos)
                parts.append(_xor([d.read(p, n) for d, p in others]))
                continue
            parts.append(dev.read(phys, n))
        return b"".join(parts)

    def read_logical_into(self, logical: int, buffer) -> None:
        """Fill ``buffer`` with the bytes at a logical address (as :meth:`read_logical`,
        without the copy where a device holds them)."""
        mv = memoryview(buffer).cast("B")
        at = 0
        for dev, phys, n, pos in self._pieces(logical, len(mv)):
            if dev is None:
                mv[at:at + n] = self.read_logical(pos, n)
            else:
                dev.readinto(phys, mv[at:at + n])
            at += n

    def mapped(self, logical: int, length: int) -> tuple[memoryview, int] | None:
        """(the memory map of a host file, offset in it) of ``[logical, +length)`` where it
        lies in one piece stored as itself in one host file that can be mapped
        (``host_ranges``, :meth:`FileSource.view`: a raw image, a partition of it, a raw
        layer of a Disk), else None: the caller reads a copy instead."""
        pieces = self._pieces(logical, length)
        if len(pieces) != 1 or pieces[0][0] is None:
            return None
        dev, phys, n, _pos = pieces[0]
        ranges = dev.host_ranges(phys, n)  # through a Disk, a partition, a raw chain
        if not ranges or len(ranges) != 1 or ranges[0][0] is None:
            return None
        host, at, _n = ranges[0]
        view = host.view() if isinstance(host, FileSource) else None
        return None if view is None or at + n > len(view) else (view, at)

    def block_heads(self, logical: int, count: int, width: int, which: list[int]) -> bytes:
        """The first ``width`` bytes of the tree blocks ``which`` (ascending numbers below
        ``count``: block ``j`` is at ``logical + j * nodesize``), joined: the bytes that
        :meth:`read_logical` of all ``count`` blocks has there, one small read per block
        (CorruptImage where that read fails for want of a device). Where the device
        knows its holes (``seek_data``), headers in a hole at the start of a piece are
        zeros without a read."""
        ns, parts, k = self.nodesize, [], 0
        for dev, phys, n, pos in self._pieces(logical, count * ns):
            data = self.read_logical(pos, n) if dev is None else None
            seek = getattr(dev, "seek_data", None)
            hole = seek(phys) - phys if seek is not None else 0  # zeros up to here
            stop = pos + n
            while k < len(which):
                at = logical + which[k] * ns
                if at >= stop:
                    break
                a, b = max(at, pos) - pos, min(at + width, stop) - pos
                if data is not None:
                    parts.append(data[a:b])
                else:
                    parts.append(bytes(b - a) if b <= hole else dev.read(phys + a, b - a))
                if at + width > stop:  # the rest of this header is in the next piece
                    break
                k += 1
        return b"".join(parts)

    def _parity_sources(self, pos: int, n: int) -> list[tuple[ByteSource, int]] | None:
        """For a RAID5/6 data unit on a missing device: the (device, physical) of the other
        data units and P of its row, whose XOR rebuilds it (None when that cannot be)."""
        c = self.chunks.find(pos)
        if c is None or not c.type & (S.BG_RAID5 | S.BG_RAID6):
            return None
        idx, phys, _left = c.place(pos - c.logical)
        row_off = phys - c.stripes[idx][1]
        ndata = c.num_stripes - (2 if c.type & S.BG_RAID6 else 1)
        row = row_off // c.stripe_len
        skip = {idx}
        if c.type & S.BG_RAID6:
            skip.add((row + ndata + 1) % c.num_stripes)  # Q is not an XOR
        out = []
        for j, (devid, start) in enumerate(c.stripes):
            if j in skip:
                continue
            dev = self.devs.get(devid)
            if dev is None or start + row_off + n > dev.size:
                return None
            out.append((dev, start + row_off))
        return out

    def chunk(self, logical: int) -> ChunkMap | None:
        return self.chunks.find(logical)

    # --- tree blocks ------------------------------------------------------------------
    def search(self, root: int, level: int, lo=KEY_MIN, hi=KEY_MAX, get=None) -> Iterator[tuple[Node, int]]:
        """(leaf, index) of the items in ``[lo, hi]`` of the tree at ``root``."""
        return search(get or self.node, root, level, lo, hi, bad=self._bad_link)

    def walk(self, root: int, level: int) -> Iterator[Node]:
        """Every readable block of the tree at ``root``."""
        return walk_blocks(self.node, root, level, bad=self._bad_link)

    def leaf_batches(self, root: int, level: int
                     ) -> Iterator[tuple[Node | None, LeafBatch | None]]:
        """The leaves of the tree at ``root`` read and checked many at a time, in key
        order, with the nodes above them (:func:`.bulk.leaf_batches`)."""
        return leaf_batches(self.node, self._bad_link, self.read_logical_into, self.mapped,
                            root, level,
                            self.meta_fsid, self.nodesize, self.sectorsize,
                            (self.csum_type, self.csum_len))

    def _bad_link(self, node: Node, message: str) -> None:
        self.bad_blocks.add(node.bytenr)
        self.problem("tree block", node.bytenr, message)

    def _csum_ok(self, buf: bytes) -> bool:
        n = self.csum_len
        return digest(self.csum_type, buf[S.CSUM_SIZE:])[:n] == buf[:n]

    def node(self, bytenr: int, level: int | None) -> Node | None:
        """The checked tree block at ``bytenr`` (None in salvage mode when unreadable)."""
        return self.nodes.get((bytenr, level), lambda: self._load_node(bytenr, level))

    def _load_node(self, bytenr: int, level: int | None) -> Node | None:
        why = ""
        if bytenr % self.sectorsize:
            why = "tree block address not aligned to the sector size"
        else:
            for m in range(self.mirrors(bytenr)):
                try:
                    buf = self.read_logical(bytenr, self.nodesize, m)
                    node = parse_node(buf, bytenr, self.meta_fsid, self._csum_ok, level)
                except (NodeError, CorruptImage) as e:
                    why = getattr(e, "detail", None) or str(e)
                    continue
                if m:
                    self.finding("warning", "tree block", bytenr,
                                 f"copy {m + 1} used: the first copy is bad ({why})")
                return node
        self.problem("tree block", bytenr, why)
        self.bad_blocks.add(bytenr)
        return None
