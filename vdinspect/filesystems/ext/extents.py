"""Where a file's bytes are: ext4 extent trees, ext2/3 block maps, and the file source.

Extent trees (inode flag EXTENTS_FL) start in ``i_block``: a 12-byte header, then up to
four 12-byte entries; interior nodes hold index entries pointing at blocks that are nodes
one level down, leaves hold extents (logical block, length, physical block). A length
above 32768 marks an uninitialised extent (allocated, reads as zeros). Block maps (ext2/3)
hold 12 direct block numbers, then single, double and triple indirect blocks of 32-bit
block numbers; 0 is a hole.

Every walk is bounded: tree depth at most 5 and decreasing by one per level, entry counts
checked against the node size, each node or indirect block visited once (a block that is
reached twice is a loop), every block number checked against the volume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from construct import Int16ul, Int32ul, Struct

from ...io import ByteSource
from ...io.mapped import MappedSource
from ...layout import offset_of, struct_format
from ...lazy import np
from .inode import Inode

if TYPE_CHECKING:
    from .fs import ExtFileSystem
    from .inode import InodeRecord

# --- on-disk structures ----------------------------------------------------------------

ExtentHeader = Struct(
    "eh_magic" / Int16ul * "0xF30A",
    "eh_entries" / Int16ul * "valid entries after the header",
    "eh_max" / Int16ul * "capacity of the node, entries",
    "eh_depth" / Int16ul * "0 = leaf (extents follow), else index entries",
    "eh_generation" / Int32ul * "tree generation (unused)",
)  # 12 bytes

ExtentIdx = Struct(
    "ei_block" / Int32ul * "first logical block covered by the child",
    "ei_leaf_lo" / Int32ul * "child node's block, low 32 bits",
    "ei_leaf_hi" / Int16ul * "child node's block, high 16 bits",
    "ei_unused" / Int16ul * "zero",
)  # 12 bytes

Extent = Struct(
    "ee_block" / Int32ul * "first logical block",
    "ee_len" / Int16ul * "blocks; > 32768 = uninitialised, length ee_len - 32768",
    "ee_start_hi" / Int16ul * "first physical block, high 16 bits",
    "ee_start_lo" / Int32ul * "first physical block, low 32 bits",
)  # 12 bytes

# fast decoders, generated from the layouts above
EXTENT_HEADER = struct_format(ExtentHeader)
EXTENT = struct_format(Extent)
EXTENT_IDX = struct_format(ExtentIdx)
_I_BLOCK_AT = offset_of(Inode, "i_block")
_HS, _ES = EXTENT_HEADER.size, EXTENT.size  # an index entry has the size of an extent
EXTENT_MAGIC = 0xF30A
MAX_DEPTH = 5
INIT_MAX_LEN = 32768

# states of mapped runs
DATA, UNINIT, DAMAGED = 0, 1, 2


class BlockMap:
    """A file's mapping, sorted by logical block: parallel numpy arrays of runs.

    ``lblk``/``count``/``pblk`` in blocks, ``state`` DATA, UNINIT (reads as zeros) or
    DAMAGED (unreadable: zeros in salvage mode). ``meta`` lists the tree's own blocks
    (index nodes, leaves, indirect blocks). Unmapped logical blocks are holes.
    """

    __slots__ = ("lblk", "count", "pblk", "state", "meta")

    def __init__(self, lblk, count, pblk, state, meta: list[int]) -> None:
        self.lblk = np.asarray(lblk, dtype=np.int64)
        self.count = np.asarray(count, dtype=np.int64)
        self.pblk = np.asarray(pblk, dtype=np.int64)
        self.state = np.asarray(state, dtype=np.int8)
        self.meta = meta

    @classmethod
    def empty(cls) -> BlockMap:
        return cls([], [], [], [], [])

    def __len__(self) -> int:
        return len(self.lblk)

    @property
    def mapped_blocks(self) -> int:
        return int(self.count.sum())

    def data_runs(self) -> list[tuple[int, int]]:
        """(physical block, count) of the runs that hold data."""
        keep = self.state == DATA
        return list(zip(self.pblk[keep].tolist(), self.count[keep].tolist()))

    def __repr__(self) -> str:
        return f"<BlockMap {len(self)} runs, {self.mapped_blocks} blocks>"


def _coalesce(lblk: np.ndarray, pblk: np.ndarray, state: np.ndarray) -> tuple:
    """Per-block arrays (sorted by lblk) joined into runs of consecutive blocks."""
    if len(lblk) == 0:
        return lblk, lblk, lblk, state
    brk = np.ones(len(lblk), dtype=bool)
    brk[1:] = (np.diff(lblk) != 1) | (np.diff(pblk) != 1) | (np.diff(state) != 0)
    starts = np.flatnonzero(brk)
    counts = np.diff(np.append(starts, len(lblk)))
    return lblk[starts], counts, pblk[starts], state[starts]


def extent_map(fs: ExtFileSystem, ino: InodeRecord, max_lblk: int) -> BlockMap:
    """The extent tree of ``ino``, extents starting at or past ``max_lblk`` left out."""
    where = f"inode {ino.number} extent tree"
    runs: list[tuple[int, int, int, int]] = []
    meta: list[int] = []
    visited: set[int] = set()
    blocks_count = fs.block_limit

    def walk(node: bytes, node_block: int | None, expect_depth: int | None, offset: int) -> None:
        if len(node) < _HS:
            fs.problem(where, offset, "extent node too small")
            return
        magic, entries, emax, depth, _gen = EXTENT_HEADER.unpack_from(node, 0)
        if magic != EXTENT_MAGIC:
            fs.problem(where, offset, f"bad extent header magic {magic:#06x}")
            return
        capacity = (len(node) - _HS) // _ES
        if emax > capacity or entries > emax:
            fs.problem(
                where,
                offset,
                f"extent node claims {entries} of {emax} entries; room for {capacity}",
            )
            entries = min(entries, capacity)
        if depth > MAX_DEPTH or (expect_depth is not None and depth != expect_depth):
            fs.problem(
                where,
                offset,
                f"extent node depth {depth} "
                f"(expected {expect_depth if expect_depth is not None else '<= 5'})",
            )
            return
        if depth == 0:
            for i in range(entries):
                lb, ln, hi, lo = EXTENT.unpack_from(node, _HS + _ES * i)
                state = DATA
                if ln > INIT_MAX_LEN:
                    ln -= INIT_MAX_LEN
                    state = UNINIT
                if ln == 0 or lb >= max_lblk:
                    continue
                pb = (hi << 32) | lo
                if pb == 0 or pb + ln > blocks_count:
                    fs.problem(
                        where,
                        offset + _HS + _ES * i,
                        f"extent of {ln} blocks at block {pb} is outside the volume "
                        f"({blocks_count} blocks)",
                    )
                    state = DAMAGED
                runs.append((lb, ln, pb, state))
            return
        for i in range(entries):
            _lb, leaf_lo, leaf_hi, _u = EXTENT_IDX.unpack_from(node, _HS + _ES * i)
            child = (leaf_hi << 32) | leaf_lo
            if child == 0 or child >= blocks_count:
                fs.problem(
                    where,
                    offset + _HS + _ES * i,
                    f"extent index points at block {child}, outside the volume",
                )
                continue
            if child in visited or child == node_block:
                fs.problem(
                    where, offset + _HS + _ES * i, f"extent tree loop: block {child} is reached twice"
                )
                continue
            visited.add(child)
            meta.append(child)
            data = fs.read_blocks(child, 1, where)
            walk(data, child, depth - 1, child * fs.block_size)

    walk(ino.i_block, None, None, ino.offset + _I_BLOCK_AT)
    if not runs:
        return BlockMap([], [], [], [], meta)
    runs.sort()
    out: list[tuple[int, int, int, int]] = []
    end = -1
    for lb, ln, pb, st in runs:
        if lb < end:  # overlapping extents: keep the first mapping of each block
            fs.problem(where, ino.offset, f"extents overlap at logical block {lb}")
            cut = end - lb
            if cut >= ln:
                continue
            lb, ln, pb = lb + cut, ln - cut, pb + cut
        if lb + ln > max_lblk:
            ln = max_lblk - lb
        out.append((lb, ln, pb, st))
        end = lb + ln
    arr = np.array(out, dtype=np.int64).reshape(-1, 4)
    return BlockMap(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], meta)


def plain_extents(ino: InodeRecord, nblocks: int,
                  blocks_count: int) -> list[tuple[int, int, int]] | None:
    """The extents of a tree held whole in the inode (depth 0), as (logical block, blocks,
    physical block) in order, cut at ``nblocks``, when :func:`extent_map` would find
    nothing to say about them (header sound, every extent initialised, inside the volume,
    in order, not overlapping); None otherwise (use :func:`extent_map`). The listing's
    shortcut: no BlockMap arrays for a folder's few extents."""
    node = ino.i_block
    magic, entries, emax, depth, _gen = EXTENT_HEADER.unpack_from(node, 0)
    if magic != EXTENT_MAGIC or depth or emax > (len(node) - _HS) // _ES or entries > emax:
        return None
    out = []
    end = 0
    for i in range(entries):
        lb, ln, hi, lo = EXTENT.unpack_from(node, _HS + _ES * i)
        pb = (hi << 32) | lo
        if ln > INIT_MAX_LEN or lb < end or (ln and (pb == 0 or pb + ln > blocks_count)):
            return None
        if ln == 0 or lb >= nblocks:
            continue
        out.append((lb, min(ln, nblocks - lb), pb))
        end = lb + ln
    return out


def blockmap_map(fs: ExtFileSystem, ino: InodeRecord, nblocks: int) -> BlockMap:
    """The ext2/3 block map of ``ino`` for its first ``nblocks`` logical blocks."""
    where = f"inode {ino.number} block map"
    bs = fs.block_size
    per = bs // 4
    blocks_count = fs.block_limit
    ls: list[np.ndarray] = []
    ps: list[np.ndarray] = []
    meta: list[int] = []
    visited: set[int] = set()
    ptrs = np.frombuffer(ino.i_block, dtype="<u4").astype(np.int64)

    def add_leaf(arr: np.ndarray, lbase: int, offset: int) -> None:
        idx = np.flatnonzero(arr)
        if not len(idx):
            return
        vals = arr[idx]
        bad = vals >= blocks_count
        if bad.any():
            fs.problem(
                where,
                offset + 4 * int(idx[np.argmax(bad)]),
                f"{int(bad.sum())} block pointers outside the volume ({blocks_count} blocks)",
            )
        ls.append(lbase + idx)
        ps.append(np.where(bad, -1, vals))

    def walk(block: int, level: int, lbase: int, offset: int) -> None:
        if block >= blocks_count:
            fs.problem(where, offset, f"indirect block {block} is outside the volume")
            return
        if block in visited:
            fs.problem(where, offset, f"block map loop: indirect block {block} reached twice")
            return
        visited.add(block)
        meta.append(block)
        span = per ** (level - 1)
        n = min(per, -(-(nblocks - lbase) // span))
        arr = np.frombuffer(fs.read_blocks(block, 1, where), dtype="<u4")[:n].astype(np.int64)
        if level == 1:
            add_leaf(arr, lbase, block * bs)
            return
        for i in np.flatnonzero(arr).tolist():
            walk(int(arr[i]), level - 1, lbase + i * span, block * bs + 4 * i)

    add_leaf(ptrs[: min(12, nblocks)], 0, ino.offset + _I_BLOCK_AT)
    lbase = 12
    for level in (1, 2, 3):
        if lbase >= nblocks:
            break
        ptr = int(ptrs[11 + level])
        if ptr:
            walk(ptr, level, lbase, ino.offset + _I_BLOCK_AT + 4 * (11 + level))
        lbase += per**level
    if not ls:
        return BlockMap([], [], [], [], meta)
    lblk = np.concatenate(ls)
    pblk = np.concatenate(ps)
    state = np.where(pblk < 0, DAMAGED, DATA).astype(np.int8)
    order = np.argsort(lblk, kind="stable")
    lblk, pblk, state = lblk[order], pblk[order], state[order]
    lb, cnt, pb, st = _coalesce(lblk, pblk, state)
    return BlockMap(lb, cnt, pb, st, meta)


def mapped_source(dev: ByteSource, block_size: int, size: int, bmap: BlockMap,
                  name: str) -> MappedSource:
    """A file's bytes: mapped runs read from the volume, holes and uninitialised runs as
    zeros, runs whose tree block was unreadable as damaged zeros; exactly ``size`` bytes."""
    return MappedSource.from_blocks(dev, size, block_size, bmap.lblk, bmap.count, bmap.pblk,
                                    bmap.state, data=DATA, damaged=DAMAGED, name=name)
