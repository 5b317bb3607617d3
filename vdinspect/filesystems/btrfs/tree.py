"""Btrfs B-trees: nodes and leaves, decoded and searched by key range.

A tree block (``nodesize`` bytes) starts with a header; a leaf (level 0) follows it with
``nritems`` item headers (key, data offset, data size) whose data is packed from the end
of the block backwards, an internal node with ``nritems`` key pointers (first key of the
child, its logical address). Keys order as (objectid, type, offset) tuples.

Every block read is checked (checksum, its own address, filesystem id, level, item
bounds) before it is used; a search descends only to children whose level is one less,
so a hostile tree cannot loop, and holds at most ``MAX_LEVEL`` blocks on its path.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import numpy as np

from ...layout import numpy_dtype
from . import structs as S

Key = tuple[int, int, int]
KEY_MIN: Key = (0, 0, 0)
KEY_MAX: Key = ((1 << 64) - 1, 255, (1 << 64) - 1)


class NodeError(ValueError):
    """A tree block that fails its checks (the caller names where)."""


class Node:
    """A decoded tree block. Leaves keep ``spans`` (data start, size) per item; nodes keep
    the children's logical addresses in ``ptrs``. ``keys`` (tuples, for bisecting) are
    built on first use; ``cols`` keeps the leaf's item headers as numpy columns
    (objectid, type, offset, data start, data size) for bulk scans, and a node's keys
    (objectid, type, offset)."""

    __slots__ = ("bytenr", "level", "owner", "generation", "_keys", "ptrs", "_spans",
                 "buf", "cols")

    def __init__(self, bytenr: int, level: int, owner: int, generation: int, keys, ptrs,
                 spans, buf: bytes, cols=None) -> None:
        self.bytenr, self.level, self.owner, self.generation = bytenr, level, owner, generation
        self._keys, self.ptrs, self._spans, self.buf, self.cols = keys, ptrs, spans, buf, cols

    @property
    def keys(self) -> list[Key]:
        if self._keys is None:
            obj, typ, off = self.cols[0], self.cols[1], self.cols[2]
            self._keys = list(zip(obj.tolist(), typ.tolist(), off.tolist()))
        return self._keys

    @property
    def spans(self) -> list[tuple[int, int]]:
        if self._spans is None:
            self._spans = list(zip(self.cols[3].tolist(), self.cols[4].tolist()))
        return self._spans

    def first_last(self) -> tuple[Key, Key] | None:
        """The first and last keys (None for an empty block)."""
        if self._keys is not None:
            return (self._keys[0], self._keys[-1]) if self._keys else None
        if self.cols is None or not len(self.cols[0]):
            return None
        o, t, f = self.cols[0], self.cols[1], self.cols[2]
        return (int(o[0]), int(t[0]), int(f[0])), (int(o[-1]), int(t[-1]), int(f[-1]))

    def data(self, i: int) -> bytes:
        a, n = self.spans[i]
        return self.buf[a:a + n]


_ITEM_N = S.ITEM_FMT.size
_PTR_N = S.KEY_PTR_FMT.size
_ITEM_DT = numpy_dtype(S.Item)
_PTR_DT = numpy_dtype(S.KeyPtr)


def _check_order(obj, typ, off) -> None:
    """Keys must rise strictly ((objectid, type, offset) order)."""
    if len(obj) < 2:
        return
    o0, o1, t0, t1, f0, f1 = obj[:-1], obj[1:], typ[:-1], typ[1:], off[:-1], off[1:]
    up = (o1 > o0) | ((o1 == o0) & ((t1 > t0) | ((t1 == t0) & (f1 > f0))))
    if not up.all():
        i = int(np.argmin(up)) + 1
        raise NodeError(f"keys out of order at ({obj[i]}, {typ[i]}, {off[i]})")


def parse_node(buf: bytes, bytenr: int, fsid: bytes, csum_ok, level: int | None) -> Node:
    """Decode and check one tree block. ``csum_ok(buf)`` checks the header checksum;
    ``level`` is the level the parent says the block has (None for a root: any)."""
    nodesize = len(buf)
    if nodesize < S.HEADER_SIZE:
        raise NodeError("tree block shorter than its header")
    (_csum, h_fsid, h_bytenr, _flags, _ctu, gen, owner, nritems,
     h_level) = S.HEADER_FMT.unpack_from(buf, 0)
    if not csum_ok(buf):
        raise NodeError("tree block checksum mismatch")
    if h_bytenr != bytenr:
        raise NodeError(f"tree block says it is at {h_bytenr:#x}, read from {bytenr:#x}")
    if h_fsid != fsid:
        raise NodeError("tree block belongs to another filesystem (fsid differs)")
    if h_level >= S.MAX_LEVEL or (level is not None and h_level != level):
        raise NodeError(f"tree block level {h_level}, expected {level}")
    room = nodesize - S.HEADER_SIZE
    if h_level == 0:
        if nritems * _ITEM_N > room:
            raise NodeError(f"{nritems} items do not fit in a {nodesize}-byte leaf")
        if not nritems:
            return Node(bytenr, 0, owner, gen, [], [], [], buf)
        items = np.frombuffer(buf, _ITEM_DT, count=nritems, offset=S.HEADER_SIZE)
        obj, typ, off = items["key.objectid"], items["key.type"], items["key.offset"]
        start = items["offset"].astype(np.int64) + S.HEADER_SIZE
        size = items["size"].astype(np.int64)
        floor = S.HEADER_SIZE + nritems * _ITEM_N
        outside = (start < floor) | (start + size > nodesize)
        if outside.any():
            i = int(np.argmax(outside))
            raise NodeError(f"item ({obj[i]}, {typ[i]}, {off[i]}) data "
                            f"[{start[i] - S.HEADER_SIZE}, +{size[i]}) outside the leaf's "
                            "data area")
        _check_order(obj, typ, off)
        return Node(bytenr, 0, owner, gen, None, [], None, buf, (obj, typ, off, start, size))
    if nritems == 0 or nritems * _PTR_N > room:
        raise NodeError(f"{nritems} key pointers in a {nodesize}-byte node")
    ptr = np.frombuffer(buf, _PTR_DT, count=nritems, offset=S.HEADER_SIZE)
    obj, typ, off = ptr["key.objectid"], ptr["key.type"], ptr["key.offset"]
    _check_order(obj, typ, off)
    keys = list(zip(obj.tolist(), typ.tolist(), off.tolist()))
    ptrs = ptr["blockptr"].tolist()
    return Node(bytenr, h_level, owner, gen, keys, ptrs, [], buf, (obj, typ, off))


def _raise(node: Node, message: str) -> None:
    raise NodeError(message)


def child(get_node, node: Node, i: int, upper: Key | None, bad) -> Node | None:
    """Child ``i`` of ``node`` if it is readable and its keys lie in the range the parent
    gives it (first key equal to the pointer's, last below the next pointer's): a block
    placed under two pointers, or keys out of place, would repeat items or loop."""
    child = get_node(node.ptrs[i], node.level - 1)
    if child is None:
        return None
    ends = child.first_last()
    if ends is None:
        bad(child, "empty tree block below a node")
        return None
    if ends[0] != node.keys[i] or (upper is not None and ends[1] >= upper):
        bad(child, f"keys {ends[0]}..{ends[1]} outside the range its parent at "
                   f"{node.bytenr:#x} gives it")
        return None
    return child


def search(get_node, root: int, root_level: int, lo: Key = KEY_MIN, hi: Key = KEY_MAX,
           bad=_raise) -> Iterator[tuple[Node, int]]:
    """(leaf, item index) for every item with ``lo <= key <= hi``, in key order.

    ``get_node(bytenr, level)`` returns a checked Node, or None for a block that could not
    be read (salvage: its items are skipped); ``bad(node, message)`` hears of a child out
    of place (it raises, or returns and the child is skipped). Levels fall by one at each
    step, so the recursion is at most ``MAX_LEVEL`` deep.
    """
    top = get_node(root, root_level)
    if top is not None:
        yield from _search(get_node, top, lo, hi, None, bad)


def _search(get_node, node: Node, lo: Key, hi: Key, upper: Key | None, bad
            ) -> Iterator[tuple[Node, int]]:
    keys = node.keys
    if node.level == 0:
        i = bisect.bisect_left(keys, lo)
        n = len(keys)
        while i < n and keys[i] <= hi:
            yield node, i
            i += 1
        return
    i = max(0, bisect.bisect_right(keys, lo) - 1)
    n = len(keys)
    while i < n and keys[i] <= hi:
        nxt = keys[i + 1] if i + 1 < n else upper
        kid = child(get_node, node, i, nxt, bad)
        if kid is not None:
            yield from _search(get_node, kid, lo, hi, nxt, bad)
        i += 1


def walk_blocks(get_node, root: int, root_level: int, bad=_raise) -> Iterator[Node]:
    """Every readable block of a tree, parents before children (depth first)."""
    top = get_node(root, root_level)
    if top is None:
        return
    stack: list[tuple[Node, Key | None]] = [(top, None)]
    while stack:
        node, upper = stack.pop()
        yield node
        if node.level:
            keys = node.keys
            kids = []
            for i in range(len(keys)):
                nxt = keys[i + 1] if i + 1 < len(keys) else upper
                kid = child(get_node, node, i, nxt, bad)
                if kid is not None:
                    kids.append((kid, nxt))
            stack.extend(reversed(kids))


def leaf_groups(get_node, root: int, root_level: int, bad=_raise
                ) -> Iterator[tuple[Node, list[tuple[int, Key | None]]]]:
    """The tree's readable blocks above the leaves, in key order, each with the leaf
    children it points at (index, upper key bound) for the caller to read together (a
    root that is a leaf comes with no children). The checks of :func:`child` apply to
    every node here; the caller applies them to the leaves (through :func:`child`
    wherever its own bulk checks fail, so that the same findings are made)."""
    top = get_node(root, root_level)
    if top is None:
        return
    stack: list[tuple[Node, Key | None]] = [(top, None)]
    while stack:
        node, upper = stack.pop()
        keys = node.keys
        bounds = [(i, keys[i + 1] if i + 1 < len(keys) else upper)
                  for i in range(len(keys))] if node.level else []
        if node.level != 1:
            yield node, []
            kids = []
            for i, nxt in bounds:
                c = child(get_node, node, i, nxt, bad)
                if c is not None:
                    kids.append((c, nxt))
            stack.extend(reversed(kids))
        else:
            yield node, bounds
