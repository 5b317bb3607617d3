"""XFS log intents: the work a mount's log recovery would still carry out.

An intent item (EFI, RUI, CUI, BUI, ATTRI, XMI) announces deferred work and its done item
(EFD, RUD, CUD, BUD, ATTRD, XMD), logged when the work commits, names the intent's id.
An intent whose done item is not in the log is finished by recovery after the replay. We
carry out, in memory and in log order:

- an EFI (extent free): its extents join the free-space view (``free_ranges``, carving,
  the allocation check of deleted files);
- a BUI (file mapping update, one extent each): MAP lays the extent into the owner's fork
  map, UNMAP cuts the range out of it. UNMAP frees nothing: the kernel carries it out
  with ``XFS_BMAPI_REMAP`` (a swap moves the blocks to another file; a reflink remap
  logs the refcount decrease, and any free it leads to, as its own CUI and EFI);
- a CUI (refcount updates): a DECREASE frees the blocks it leaves with no owner (a block
  the refcount btree has no shared record for has one owner; a shared one keeps the
  others), as the kernel frees them; increases and CoW staging updates free nothing.

Nothing else reads the refcount btree (reads, listings and ``check()`` rest on the fork
maps), so the counts an open intent leaves stale change nothing read.

An intent with a bad record is dropped whole with an error finding, as the kernel drops
it. The others (reverse map, attribute, exchange) are named in a warning: the volume is
read as the log left it, without that work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ...layout import struct_format
from . import structs as S
from .bmap import DATA, UNWRITTEN, ExtentMap

if TYPE_CHECKING:
    from .fs import XfsFileSystem

ITEM_NAMES = {0x1236: "EFI", 0x1237: "EFD", 0x1238: "IUNLINK", 0x123D: "DQUOT",
              0x123E: "QUOTAOFF", 0x1240: "RUI", 0x1241: "RUD", 0x1242: "CUI", 0x1243: "CUD",
              0x1244: "BUI", 0x1245: "BUD", 0x1246: "ATTRI", 0x1247: "ATTRD", 0x1248: "XMI",
              0x1249: "XMD"}
DONE_OF = {0x1237: 0x1236, 0x1241: 0x1240, 0x1243: 0x1242, 0x1245: 0x1244, 0x1247: 0x1246,
           0x1249: 0x1248}  # done item -> the intent it closes
WHAT = {0x1240: "reverse-mapping btree updates", 0x1246: "extended attribute updates",
        0x1248: "file mapping exchanges"}
_HEAD = struct_format(S.XfsIntentHead)
_EXT64 = struct_format(S.XfsExtent64)
_EXT32 = struct_format(S.XfsExtent32)
_MAP = struct_format(S.XfsMapExtent)
_PHYS = struct_format(S.XfsPhysExtent)
_BMAP_FLAGS = (0xFF | S.XFS_BMAP_EXTENT_ATTR_FORK | S.XFS_BMAP_EXTENT_UNWRITTEN
               | S.XFS_BMAP_EXTENT_REALTIME)
_CUI_FLAGS = 0xFF | S.XFS_REFCOUNT_EXTENT_REALTIME
REFLINK = S.RoCompat.flags["REFLINK"]  # sb_features_ro_compat: shared extents


@dataclass
class Intents:
    """Intents of the replayed transactions and what carrying out the open ones did."""

    pending: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (kind, id)
    freed: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # agno: [a, b)
    maps: dict[tuple[int, bool], list[tuple]] = field(default_factory=dict)
    decreases: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # CUI, by AG
    applied: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    notes: list[tuple[str, str]] = field(default_factory=list)  # severity, text

    def collect(self, first: bytes) -> bool:
        """Take in an item's format region; False when it is not an intent or done item."""
        if len(first) < _HEAD.size:
            return False
        kind, _size, _n, ident = _HEAD.unpack_from(first)
        if kind in DONE_OF:
            self.pending.pop((DONE_OF[kind], ident), None)  # an older intent: on disk
            return True
        if kind in DONE_OF.values():
            self.pending[(kind, ident)] = first
            return True
        return False

    def settle(self, fs: XfsFileSystem) -> None:
        """Carry out the intents no done item closed, in log order."""
        for (kind, ident), first in self.pending.items():
            name = ITEM_NAMES[kind]
            if kind == S.XFS_LI_EFI:
                why = self._free(fs, first)
            elif kind == S.XFS_LI_BUI:
                why = self._bmap(fs, first)
            elif kind == S.XFS_LI_CUI:
                why = self._refcount(fs, first)
            else:
                self.skipped[name] += 1
                self.notes.append(("warning", f"{name} {ident:#x} ({WHAT[kind]}) has no "
                                   f"{ITEM_NAMES[kind + 1]} in the log: a mount would carry "
                                   "it out; not applied here"))
                continue
            if why:
                self.skipped[name] += 1
                self.notes.append(("error", f"{name} {ident:#x}: {why}; dropped, as the "
                                   "kernel drops it"))
            else:
                self.applied[name] += 1

    def _free(self, fs: XfsFileSystem, first: bytes) -> str | None:
        g = fs.geo
        _k, _s, n, _i = _HEAD.unpack_from(first)
        body = first[_HEAD.size:]
        if n < 1 or len(body) not in (n * _EXT64.size, n * _EXT32.size):
            return f"{len(body)} bytes for {n} extents"
        rec = _EXT64 if len(body) == n * _EXT64.size else _EXT32
        exts = [rec.unpack_from(body, i * rec.size)[:2] for i in range(n)]
        for start, length in exts:
            if length & S.XFS_EFI_EXTLEN_REALTIME_EXT:
                return "a realtime extent (the realtime device is not read)"
            if not length or not g.fsb_valid(start, length):
                return f"extent at fsblock {start} of {length} blocks is outside the volume"
        mask = (1 << g.agblklog) - 1
        for start, length in exts:
            agbno = start & mask
            self.freed.setdefault(start >> g.agblklog, []).append((agbno, agbno + length))
        return None

    def _bmap(self, fs: XfsFileSystem, first: bytes) -> str | None:
        g = fs.geo
        _k, _s, n, _i = _HEAD.unpack_from(first)
        if n != 1 or len(first) < _HEAD.size + _MAP.size:
            return f"{n} mappings (a BUI holds one)"
        owner, start, off, length, flags = _MAP.unpack_from(first, _HEAD.size)
        op = flags & 0xFF
        if op not in (S.XFS_BMAP_MAP, S.XFS_BMAP_UNMAP) or flags & ~_BMAP_FLAGS:
            return f"unknown mapping flags {flags:#x}"
        if flags & S.XFS_BMAP_EXTENT_REALTIME:
            return "a realtime mapping (the realtime device is not read)"
        if not length or not g.ino_valid(owner) or not g.fsb_valid(start, length):
            return (f"mapping of {length} blocks at fsblock {start} for inode {owner} is "
                    "outside the volume")
        attr = bool(flags & S.XFS_BMAP_EXTENT_ATTR_FORK)
        unwritten = bool(flags & S.XFS_BMAP_EXTENT_UNWRITTEN)
        self.maps.setdefault((owner, attr), []).append((op, off, start, length, unwritten))
        return None

    def _refcount(self, fs: XfsFileSystem, first: bytes) -> str | None:
        g = fs.geo
        _k, _s, n, _i = _HEAD.unpack_from(first)
        body = first[_HEAD.size:]
        if n < 1 or len(body) != n * _PHYS.size:
            return f"{len(body)} bytes for {n} extents"
        if not g.raw["sb_features_ro_compat"] & REFLINK:
            return "a refcount update on a volume without reflink"
        exts = [_PHYS.unpack_from(body, i * _PHYS.size) for i in range(n)]
        for start, length, flags in exts:
            if flags & ~_CUI_FLAGS or not 1 <= flags & 0xFF <= 4:
                return f"unknown refcount flags {flags:#x}"
            if flags & S.XFS_REFCOUNT_EXTENT_REALTIME:
                return "a realtime extent (the realtime device is not read)"
            if not length or not g.fsb_valid(start, length):
                return f"extent at fsblock {start} of {length} blocks is outside the volume"
        mask = (1 << g.agblklog) - 1
        for start, length, flags in exts:
            if flags & 0xFF == S.XFS_REFCOUNT_DECREASE:  # the others free nothing
                agbno = start & mask
                self.decreases.setdefault(start >> g.agblklog, []).append(
                    (agbno, agbno + length))
        return None

    # --- used by the reader ----------------------------------------------------------
    def free_view(self, agno: int, starts: np.ndarray, ends: np.ndarray,
                  shared: Callable[[int], tuple] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """An AG's free extents (sorted [start, end) agbno arrays) with what the open
        intents free joined in (``shared(agno)``: the refcount btree's shared extents,
        asked only when an open CUI decreases a refcount in the AG)."""
        extra = list(self.freed.get(agno, ()))
        if self.decreases.get(agno) and shared is not None:
            extra += _decreased_to_zero(self.decreases[agno], *shared(agno))
        return join_free(starts, ends, extra)

    def remap(self, fs: XfsFileSystem, ino: int, attr: bool, emap: ExtentMap) -> ExtentMap:
        """A fork's extent map with the open BUIs for it carried out in log order."""
        ops = self.maps.get((ino, attr))
        if not ops:
            return emap
        g = fs.geo
        rows = list(zip(emap.startoff.tolist(), emap.block.tolist(), emap.count.tolist(),
                        emap.state.tolist(), emap.fsb.tolist()))
        for op, off, fsb, length, unwritten in ops:
            rows = _cut(rows, off, off + length)
            if op == S.XFS_BMAP_MAP:
                rows.append((off, g.fsb_to_block(fsb), length, UNWRITTEN if unwritten else DATA, fsb))
        rows.sort()
        cols = list(zip(*rows)) if rows else [()] * 5
        return ExtentMap(*cols, emap.meta)


def join_free(starts: np.ndarray, ends: np.ndarray, extra: list[tuple[int, int]]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted free [start, end) arrays with the ranges ``extra`` joined in (merged)."""
    if not extra:
        return starts, ends
    a = np.concatenate([starts, np.array([x for x, _ in extra], dtype=np.int64)])
    b = np.concatenate([ends, np.array([y for _, y in extra], dtype=np.int64)])
    order = np.argsort(a, kind="stable")
    out_a: list[int] = []
    out_b: list[int] = []
    for x, y in zip(a[order].tolist(), b[order].tolist()):
        if out_b and x <= out_b[-1]:
            out_b[-1] = max(out_b[-1], y)
        else:
            out_a.append(x)
            out_b.append(y)
    return np.array(out_a, dtype=np.int64), np.array(out_b, dtype=np.int64)


def _decreased_to_zero(decs: list[tuple[int, int]], rs: np.ndarray, re_: np.ndarray,
                       rc: np.ndarray) -> list[tuple[int, int]]:
    """The [a, b) agbno ranges the refcount decreases ``decs`` leave with no owner: a
    block has the owners its shared record gives (``rs``/``re_``/``rc``, sorted), else
    one; it is freed when as many decreases cover it (the kernel then frees it)."""
    ds = np.sort(np.array([a for a, _ in decs], dtype=np.int64))
    de = np.sort(np.array([b for _, b in decs], dtype=np.int64))
    lo, hi = int(ds[0]), int(de[-1])
    i, j = int(np.searchsorted(re_, lo, side="right")), int(np.searchsorted(rs, hi))
    cuts = np.unique(np.concatenate([ds, de, rs[i:j], re_[i:j]]))
    cuts = cuts[(cuts >= lo) & (cuts <= hi)]
    a, b = cuts[:-1], cuts[1:]  # elementary segments: one count and one owner number each
    n = np.searchsorted(ds, a, side="right") - np.searchsorted(de, a, side="right")
    k = np.searchsorted(rs, a, side="right") - 1
    inside = (k >= 0) & (a < re_[np.maximum(k, 0)]) if len(rs) else np.zeros(len(a), bool)
    owners = np.where(inside, rc[np.maximum(k, 0)] if len(rc) else 1, 1)
    out: list[tuple[int, int]] = []
    for x, y in zip(a[(n > 0) & (owners <= n)].tolist(), b[(n > 0) & (owners <= n)].tolist()):
        if out and out[-1][1] == x:
            out[-1] = (out[-1][0], y)
        else:
            out.append((x, y))
    return out


def _cut(rows: list[tuple], lo: int, hi: int) -> list[tuple]:
    """Extent rows (startoff, block, count, state, fsb) with logical [lo, hi) removed."""
    out = []
    for off, block, count, state, fsb in rows:
        end = off + count
        if end <= lo or off >= hi:
            out.append((off, block, count, state, fsb))
            continue
        if off < lo:
            out.append((off, block, lo - off, state, fsb))
        if end > hi:
            skip = hi - off
            out.append((hi, block + skip, end - hi, state, fsb + skip))
    return out
