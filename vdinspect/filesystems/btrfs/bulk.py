"""Many leaves of a Btrfs tree read, checked and decoded together.

Reading a tree block by block costs a read, a checksum, a header parse and a key-order
check in Python for each block. The leaves below one node are usually close together in
their chunk, so :func:`leaf_batches` reads them in a few large reads, checks their
checksums (the C CRC-32C per leaf) and headers, item bounds and key order with numpy
over the whole batch, and decodes every item header of the batch at once. A leaf that
fails any of these checks goes through the block-by-block path (:func:`.tree.child`),
which tries the other copies and makes the same findings as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import CorruptImage
from ...io.checksums import crc32c
from ...layout import field_slice, numpy_dtype, offset_of
from . import structs as S
from .csum import digest
from .tree import Key, Node, child, leaf_groups

HEADER_DT = numpy_dtype(S.Header)
ITEM_DT = numpy_dtype(S.Item)
ITEM_N = ITEM_DT.itemsize
HS = S.HEADER_SIZE
_FSID = field_slice(S.Header, "fsid")
_OWNER_AT, _OWNER_DT = offset_of(S.Header, "owner"), HEADER_DT["owner"]
_CRC_AT, _CRC_DT = offset_of(S.Header, "csum"), numpy_dtype(S.Crc32cCsum)["crc32c"]
MAX_BATCH = 512  # leaves held at once (32 MiB of 64 KiB leaves)


def _keys(objs, typs, offs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array(objs, dtype=np.uint64), np.array(typs, dtype=np.uint8),
            np.array(offs, dtype=np.uint64))


def _less(a, b) -> np.ndarray:
    """Element-wise ``a < b`` of keys given as (objectid, type, offset) arrays."""
    (o1, t1, f1), (o2, t2, f2) = a, b
    return (o1 < o2) | ((o1 == o2) & ((t1 < t2) | ((t1 == t2) & (f1 < f2))))


class LeafBatch:
    """Checked leaves (``nodesize`` bytes of ``flat`` from ``base[r]`` for row ``r``, at
    the logical addresses ``bytenr``: ``flat`` is a buffer of rows or a device's memory
    map) and their items as columns, row by row: ``leaf`` (row), ``obj``, ``typ``,
    ``off`` (the key), ``start`` and ``size`` (the data, bytes from the leaf's start);
    :meth:`sorted` gives a selection of them in key order. ``direct`` says which rows
    are the first copy read at their address (not another copy, not a root node)."""

    def __init__(self, flat: np.ndarray, base: np.ndarray, bytenr: np.ndarray,
                 nritems: np.ndarray, direct: np.ndarray | None = None) -> None:
        self.flat, self.base, self.bytenr = flat, base, bytenr
        self.direct = np.zeros(len(bytenr), dtype=bool) if direct is None else direct
        self.rank: np.ndarray | None = None  # key order of the rows, when not theirs
        nr = nritems.astype(np.int64)
        self.leaf = np.repeat(np.arange(len(nr), dtype=np.int64), nr)
        mv = memoryview(flat)  # each leaf's item headers follow its header: one slice each
        items = np.frombuffer(b"".join([mv[a:a + n] for a, n in zip(
            (base + HS).tolist(), (nr * ITEM_N).tolist()) if n]), dtype=ITEM_DT)
        self.obj, self.typ, self.off = (items["key.objectid"], items["key.type"],
                                        items["key.offset"])
        self.start = items["offset"].astype(np.int64) + HS
        self.size = items["size"].astype(np.int64)

    def in_key_order(self, order: np.ndarray) -> LeafBatch:
        """Say that row ``r`` is the ``order[r]``-th leaf in key order (rows are read in
        address order; :meth:`sorted` puts items back in key order)."""
        if len(order) > 1 and (np.diff(order) < 0).any():
            self.rank = order
        return self

    def sorted(self, sel: np.ndarray) -> np.ndarray:
        """The items ``sel`` (ascending) in key order."""
        if self.rank is None or len(sel) < 2:
            return sel
        return sel[np.argsort(self.rank[self.leaf[sel]], kind="stable")]

    def gather_at(self, pos: np.ndarray, width: int) -> np.ndarray:
        """``width`` bytes at each flat position ``pos`` (all inside ``rows``)."""
        if not len(pos) or len(self.flat) < width:
            return np.zeros((len(pos), width), dtype=np.uint8)
        return sliding_window_view(self.flat, width)[pos]

    def gather(self, sel: np.ndarray, width: int) -> np.ndarray:
        """The first ``width`` data bytes of the items ``sel`` (each at least that long)."""
        return self.gather_at(self.at(sel), width)

    def at(self, sel: np.ndarray) -> np.ndarray:
        """Where the data of the items ``sel`` start in ``flat``."""
        return self.base[self.leaf[sel]] + self.start[sel]

    def data(self, k: int) -> bytes:
        """Item ``k``'s data."""
        a = int(self.base[self.leaf[k]]) + int(self.start[k])
        return self.flat[a:a + int(self.size[k])].tobytes()

    def not_root_tree(self) -> np.ndarray:
        """The addresses of the rows read from their first copy whose header names
        another owner than the root tree (a scan for older root tree leaves, reading the
        same first copies, can pass over them)."""
        owner = np.ascontiguousarray(self.gather_at(
            self.base + _OWNER_AT, _OWNER_DT.itemsize)).view(_OWNER_DT).reshape(-1)
        return self.bytenr[self.direct & (owner != S.ROOT_TREE_OBJECTID)]

    def address(self, k: int) -> int:
        """The logical address of the leaf holding item ``k``."""
        return int(self.bytenr[self.leaf[k]])


def _csums_ok(flat: np.ndarray, base: np.ndarray, ns: int, csum_type: int, csum_len: int
              ) -> np.ndarray:
    """Whether the header checksum of each leaf (``ns`` bytes of ``flat`` from each
    ``base``) matches its bytes."""
    mv = memoryview(flat)
    out = np.zeros(len(base), dtype=bool)
    starts = base.tolist()
    if csum_type == 0:
        at = base[:, None] + _CRC_AT + np.arange(_CRC_DT.itemsize)
        stored = np.ascontiguousarray(flat[at]).view(_CRC_DT).reshape(-1).tolist()
        for k, (a, want) in enumerate(zip(starts, stored)):
            out[k] = crc32c(mv[a + S.CSUM_SIZE:a + ns]) == want
        return out
    for k, a in enumerate(starts):
        out[k] = digest(csum_type, mv[a + S.CSUM_SIZE:a + ns])[:csum_len] == \
            mv[a:a + csum_len]
    return out


def _runs(addr: np.ndarray, ok: np.ndarray, ns: int) -> list[np.ndarray]:
    """The rows ``ok`` in runs of adjacent blocks (``addr`` ascending)."""
    todo = np.flatnonzero(ok)
    if not len(todo):
        return []
    cut = np.flatnonzero((np.diff(addr[todo]) != ns) | (np.diff(todo) != 1)) + 1
    return np.split(todo, cut)


def _read_rows(rows: np.ndarray, addr: np.ndarray, ok: np.ndarray, read) -> None:
    """Fill ``rows`` with the blocks at ``addr`` (ascending), each run of adjacent blocks
    in one read (``ok`` cleared where a read fails)."""
    for run in _runs(addr, ok, rows.shape[1]):
        a, b = int(run[0]), int(run[-1]) + 1
        try:
            read(int(addr[a]), rows[a:b])
        except CorruptImage:  # the block-by-block path says where and why
            ok[a:b] = False


def _map_rows(addr: np.ndarray, ok: np.ndarray, ns: int, mapped
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """(a device's memory map as bytes, where each row ``ok`` starts in it) when every
    run of adjacent blocks lies in one piece of the same mapped device; else None (the
    rows are read into a buffer)."""
    view, base = None, np.zeros(len(addr), dtype=np.int64)
    for run in _runs(addr, ok, ns):
        a = int(run[0])
        try:
            got = mapped(int(addr[a]), len(run) * ns)
        except CorruptImage:
            return None
        if got is None or (view is not None and got[0] is not view):
            return None
        view = got[0]
        base[run] = got[1] + np.arange(len(run), dtype=np.int64) * ns
    return None if view is None else (np.frombuffer(view, dtype=np.uint8), base)


def _check(flat: np.ndarray, base: np.ndarray, addr: np.ndarray, ok: np.ndarray,
           parent: Node, kids: list[tuple[int, Key | None]], fsid: bytes, ns: int,
           csum: tuple[int, int]) -> LeafBatch | None:
    """Clear ``ok`` for each leaf that fails a check of ``parse_node`` or ``child``; the
    batch of the leaves that pass (None when none does)."""
    win = sliding_window_view(flat, HS)
    heads = win[np.where(ok, base, 0)]
    hd = np.ascontiguousarray(heads).view(HEADER_DT).reshape(-1)
    ok &= hd["bytenr"] == addr
    ok &= hd["level"] == 0
    ok &= (heads[:, _FSID] == np.frombuffer(fsid, dtype=np.uint8)).all(axis=1)
    nr = hd["nritems"].astype(np.int64)
    ok &= (nr > 0) & (nr * ITEM_N <= ns - HS)
    which = np.flatnonzero(ok)
    ok[which] = _csums_ok(flat, base[which], ns, *csum)
    if not ok.any():
        return None
    nr = np.where(ok, nr, 0)
    b = LeafBatch(flat, base, addr, nr, ok.copy())
    bad = (b.start < HS + nr[b.leaf] * ITEM_N) | (b.start + b.size > ns)
    keys = (b.obj, b.typ, b.off)
    same = b.leaf[1:] == b.leaf[:-1]
    bad[1:] |= same & ~_less(tuple(x[:-1] for x in keys), tuple(x[1:] for x in keys))
    last = np.cumsum(nr) - 1
    first = last - nr + 1
    has = nr > 0
    at = np.array([i for i, _u in kids], dtype=np.int64)
    want = tuple(c[at] for c in parent.cols[:3])
    fk = tuple(x[first[has]] for x in keys)
    ok[has] &= (fk[0] == want[0][has]) & (fk[1] == want[1][has]) & (fk[2] == want[2][has])
    bounded = np.array([u is not None for _i, u in kids], dtype=bool) & has
    if bounded.any():
        up = _keys(*zip(*(u for _i, u in (kids[j] for j in np.flatnonzero(bounded)))))
        ok[bounded] &= _less(tuple(x[last[bounded]] for x in keys), up)
    if bad.any():
        ok[np.unique(b.leaf[bad])] = False
    return b


def leaf_batches(get_node: Callable, bad: Callable, read: Callable, mapped: Callable,
                 root: int, level: int, fsid: bytes, nodesize: int, sectorsize: int,
                 csum: tuple[int, int]) -> Iterator[tuple[Node | None, LeafBatch | None]]:
    """(node above the leaves, batch of its leaves) for the tree at ``root``, in key
    order. ``get_node``/``bad`` are those of :func:`.tree.search`; ``read(logical,
    buffer)`` fills a buffer; ``mapped(logical, length)`` gives (memory map, offset) of
    bytes that lie in one mapped piece, else None; ``csum`` is (checksum type, bytes
    used). A root that is a leaf comes as (None, its batch); a node with no leaf children
    as (node, None). A batch's bytes may be reused for the next one: keep copies, not
    views."""
    buf = None
    for node, kids in leaf_groups(get_node, root, level, bad):
        if node.level == 0:
            flat = np.frombuffer(node.buf, dtype=np.uint8)
            yield None, LeafBatch(flat, np.zeros(1, dtype=np.int64),
                                  np.array([node.bytenr], dtype=np.uint64),
                                  np.array([len(node.cols[0]) if node.cols else 0]))
            continue
        if not kids:
            yield node, None
            continue
        if buf is None or len(buf) < min(len(kids), MAX_BATCH):
            buf = np.empty((min(len(kids), MAX_BATCH), nodesize), dtype=np.uint8)
        for at in range(0, len(kids), MAX_BATCH):
            part = kids[at:at + MAX_BATCH]
            yield node, _batch(get_node, bad, read, mapped, node, part, fsid, nodesize,
                               sectorsize, csum, buf)


def _batch(get_node, bad, read, mapped, node: Node, kids, fsid, ns, sectorsize, csum,
           buf: np.ndarray) -> LeafBatch:
    addr = np.array([node.ptrs[i] for i, _u in kids], dtype=np.uint64)
    order = np.argsort(addr, kind="stable")  # read in address order, items in key order
    if (order != np.arange(len(order))).any():
        kids = [kids[j] for j in order.tolist()]
        addr = addr[order]
    ok = addr % np.uint64(sectorsize) == 0
    rows = buf[:len(kids)]
    view = _map_rows(addr, ok, ns, mapped)
    if view is None:
        _read_rows(rows, addr, ok, read)
        flat, base = rows.reshape(-1), np.arange(len(kids), dtype=np.int64) * ns
    else:
        flat, base = view
    checked = _check(flat, base, addr, ok, node, kids, fsid, ns, csum)
    if checked is not None and ok.all():
        return checked.in_key_order(order)
    if view is not None:  # the slow path below mends rows: copy the mapped ones
        for j in np.flatnonzero(ok).tolist():
            rows[j] = flat[base[j]:base[j] + ns]
    good = ok.copy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    for j in sorted(np.flatnonzero(~ok).tolist(), key=rank.__getitem__):  # the slow path
        i, upper = kids[j]
        leaf = child(get_node, node, i, upper, bad)
        if leaf is not None and leaf.level == 0 and len(leaf.buf) == ns:
            rows[j] = np.frombuffer(leaf.buf, dtype=np.uint8)
            good[j] = True
    rows, addr, order, direct = rows[good], addr[good], order[good], ok[good]
    hd = np.ascontiguousarray(rows[:, :HS]).view(HEADER_DT).reshape(-1)
    return LeafBatch(rows.reshape(-1), np.arange(len(rows), dtype=np.int64) * ns, addr,
                     hd["nritems"], direct).in_key_order(order)
