"""Snapshot chains: find and open parents, stack the layers, resolve reads and runs.

Layer 0 is the base; the last layer is the top (the image the user opened). A range the
top does not hold (``unallocated``) falls through to the layer below, and so on; ranges
past a parent's end read as zeros.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Mapping
from numbers import Integral

from .containers import readplan
from .containers.base import (
    BACKING,
    DAMAGED,
    DATA,
    Image,
    Run,
    damage_from_runs,
)
from .containers.registry import get_format, open_image
from .containers.runs import STATE_CODE, UNALLOCATED_CODE, RunTable
from .errors import CorruptImage, InvalidArgument, MissingParent, NotFound, UnsupportedFeature
from .io import (
    NOT_STORED,
    ByteSource,
    FileSource,
    FilledSource,
    HostPieces,
    HostRanges,
    Slice,
    filled_bytes,
    join_host_ranges,
)
from .io.paths import PathPolicy, report_outside, split_name
from .lazy import np

MAX_DEPTH = 1000
FEW_RANGES = 64  # pending ranges a layer is asked about one by one (more: one query)
DATA_CODE, BACKING_CODE = STATE_CODE[DATA], STATE_CODE[BACKING]

ParentsArg = str | os.PathLike | Iterable[str | os.PathLike] | Mapping[str, str] | None


class MissingLayer(Image):
    """Stands in for a parent that could not be opened (salvage mode): all ``damaged``."""

    format = "missing"

    def __init__(self, size: int, hint_path: str | None, tried: list[str], why: str = "") -> None:
        from .io import Zero

        super().__init__(
            Zero(size, name=hint_path or "<missing parent>"),
            path=hint_path or "<missing parent>",
            strict=False,
        )
        self.size = size
        self.tried = tried
        self.finding(
            "error",
            "parent",
            None,
            f"parent {hint_path!r} is missing (tried: {', '.join(tried) or 'nothing'})"
            + (f" ({why})" if why else "")
            + "; its ranges read as zeros and show as damaged",
        )

    def _runs(self, start: int, end: int):
        yield Run(start, end - start, DAMAGED)

    @property
    def file_size(self) -> int:
        return 0

    @property
    def host_files(self) -> list[str]:
        return []  # nothing on disk (the recorded name may not even be a valid path)


class EmbeddedSource(Slice):
    """An image stored at ``offset`` of a host file (length: to the end by default); it
    owns the host file and closes it."""

    def __init__(self, path: str, offset: int, length: int | None = None) -> None:
        try:  # any integer type (a NumPy integer taken from scan_images()) is an int here
            offset = operator.index(offset)
            length = None if length is None else operator.index(length)
        except TypeError as e:
            raise InvalidArgument(f"{path}: offset and length must be integers") from e
        host = FileSource(path)
        try:
            if length is None:
                length = host.size - offset
            super().__init__(host, offset, length, name=f"{path}@{offset}")
        except BaseException:
            host.close()
            raise

    def close(self) -> None:
        self.source.close()


class Chain(FilledSource):
    """A stack of layers read as one disk (the size is the top layer's)."""

    def __init__(self, layers: list[Image]) -> None:
        if not layers:
            raise ValueError("a chain needs at least one layer")
        self.layers = list(layers)
        self.top = self.layers[-1]
        self.top_down = self.layers[::-1]
        self.size = self.top.size
        self.name = self.top.path

    def truncated(self, k: int) -> Chain:
        """The chain as seen from layer ``k`` (layers 0..k)."""
        return Chain(self.layers[: k + 1])

    def runs(self, start: int = 0, length: int | None = None) -> RunTable:
        """Resolved runs: each labelled with the layer (0 = base) that answers it."""
        if length is None:
            length = self.size - start
        self._check_range(start, length)
        end = start + length
        if len(self.layers) == 1:  # nothing to resolve: the image's own runs, labelled
            return self.top.runs(start, length).labelled(0)
        return self._resolve(start, end).clip_merge(start, end)

    def _resolve(self, start: int, end: int) -> RunTable:
        """The runs of ``[start, end)``, each from the topmost layer that answers it, in
        order. One pass per layer over what the layers above left ``unallocated`` (a
        loop, not a recursion per layer: a chain of MAX_DEPTH layers is fine), column by
        column: a layer with a million runs costs arrays, not objects."""
        parts: list[RunTable] = []
        pend_s = np.array([start], dtype=np.int64)  # ranges no layer above answers
        pend_e = np.array([end], dtype=np.int64)
        top = len(self.layers) - 1
        for k in range(top, -1, -1):
            layer = self.layers[k]
            past = np.maximum(pend_s, layer.size)  # past this layer's end: zeros
            beyond = pend_e > past
            if beyond.any():
                parts.append(RunTable(past[beyond], (pend_e - past)[beyond], UNALLOCATED_CODE))
            cut_e = np.minimum(pend_e, layer.size)
            inside = pend_s < cut_e
            a, b = pend_s[inside], cut_e[inside]
            if not len(a):
                break
            if len(a) <= FEW_RANGES:  # ask for each range: a sparse pending set stays cheap
                t = RunTable.concat([layer.runs(int(x), int(y - x))
                                     for x, y in zip(a.tolist(), b.tolist())])
            else:  # one query over the whole span, then the pieces inside the ranges
                t = layer.runs(int(a[0]), int(b[-1] - a[0])).within(a, b)
            hole = t.state == UNALLOCATED_CODE
            if k > 0:
                below = t.take(hole)
                t = t.take(~hole)
                join = np.flatnonzero(below.start[1:] != below.end[:-1]) + 1
                pend_s = below.start[np.concatenate(([0], join))] if len(below) else below.start
                pend_e = below.end[np.concatenate((join - 1, [len(below) - 1]))] if len(
                    below) else below.end
            t = t.labelled(k)
            if k != top:
                t.state = np.where(t.state == DATA_CODE, BACKING_CODE, t.state).astype(np.int8)
            parts.append(t)
            if k > 0 and not len(pend_s):
                break
        return RunTable.concat(parts).sorted()

    def locate(self, offset: int, length: int) -> readplan.Located:
        """Where the bytes of ``[offset, offset+length)`` are when each layer answers with
        one lookup (see ``Image.locate``): the first layer from the top that holds them, or
        zeros; None when a layer cannot say at once (the plan or the runs decide)."""
        end = offset + length
        for layer in self.top_down:
            if end > layer.size:
                return None
            hit = layer.locate(offset, length)
            if hit != readplan.HOLE:
                return hit
        return readplan.ZERO

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``: one lookup and one ``pread`` when the
        range lies in one unit of a layer (a small read), else the read plan."""
        self._check_range(offset, length)
        hit = self.locate(offset, length) if length else None
        if hit.__class__ is tuple:
            return hit[0].read(hit[1], length)
        if hit == readplan.ZERO:
            return bytes(length)
        return self._read(offset, length)

    def _read(self, offset: int, length: int) -> bytes:
        plan = self.plan(offset, offset + length) if length else None
        hit = readplan.single(plan)
        if hit.__class__ is tuple:
            return hit[0].read(hit[1], length)  # one host range: no copy
        if hit is not None:
            return bytes(length)
        if plan is not None:
            return filled_bytes(length, lambda view: readplan.fill(plan, offset, view, True))
        # the runs: damage reported, compressed units inflated ahead
        return filled_bytes(length, lambda view: self._fill(offset, view, True))

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        if not len(mv):
            return
        hit = self.locate(offset, len(mv))
        if hit.__class__ is tuple:
            hit[0].readinto(hit[1], mv)
            return
        if hit == readplan.ZERO:
            mv[:] = bytes(len(mv))
            return
        self._fill(offset, mv, False)

    def _fill(self, offset: int, mv: memoryview, zeroed: bool) -> None:
        if len(self.layers) == 1:
            self.top.readinto(offset, mv)
            return
        plan = self.plan(offset, offset + len(mv))
        if plan is not None:
            readplan.fill(plan, offset, mv, zeroed)
            return
        self.fill_table(self.runs(offset, len(mv)), offset, mv)

    def fill_table(self, table: RunTable, base: int, mv: memoryview,
                   workers: int | None = None) -> None:
        """Write the rows of ``table`` (this chain's runs inside ``[base, base +
        len(mv))``) into ``mv``: each layer its own rows (``Image.fill_runs``: compressed
        units inflated in tasks of many, ``workers`` threads), rows of no layer as zeros.
        What a read that needs the runs and a conversion's chunk both do."""
        lay = table.layer
        ks = np.unique(lay).tolist()
        for k in ks:
            rows = table if len(ks) == 1 else table.take(lay == k)
            if k >= 0:
                self.layers[k].fill_runs(rows, base, mv, workers)
                continue
            for a, n in zip((rows.start - base).tolist(), rows.length.tolist()):
                mv[a : a + n] = bytes(n)

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """The read plan's pieces as host ranges (see ``ByteSource.host_ranges``): data
        pieces through their source, zeros as zeros; None for a range needing the runs."""
        return self._host(offset, length, False)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """As :meth:`host_ranges`, compressed units as stretches not stored
        (``io.NOT_STORED``), and the whole range so where the plan needs the runs."""
        return self._host(offset, length, True)

    def _host(self, offset: int, length: int, pieces: bool) -> list | None:
        self._check_range(offset, length)
        plan = self.plan(offset, offset + length) if length else []
        whole = [(NOT_STORED, 0, length)] if pieces else None
        if plan is None:
            return whole
        out: list = []
        pos = offset
        for a, b, kind, host, source in sorted(plan, key=lambda p: p[0]):
            if a != pos:  # (a plan covers its range; anything else is not trusted here)
                return whole
            if kind == readplan.DATA:
                got = source.host_pieces(host, b - a) if pieces else source.host_ranges(host, b - a)
                if got is None:
                    return None
                join_host_ranges(out, got)
            elif kind == readplan.ZERO or kind == readplan.HOLE:
                join_host_ranges(out, [(None, 0, b - a)])
            elif pieces:
                join_host_ranges(out, [(NOT_STORED, 0, b - a)])
            else:
                return None
            pos = b
        return out if pos == offset + length else whole

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan of ``[start, end)`` (pieces in any order): each hole of a
        layer asked of the layer below; None when a layer needs its runs."""
        out: readplan.Plan = []
        pending = [(start, end)]
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            below: list[tuple[int, int]] = []
            for a, b in pending:
                lim = min(b, layer.size)
                if a < lim:
                    pieces = layer.plan(a, lim)
                    if pieces is None:
                        return None
                    for piece in pieces:
                        if piece[2] == readplan.HOLE and k > 0:
                            below.append((piece[0], piece[1]))
                        else:
                            out.append(piece)
                if b > max(a, layer.size):  # past this layer's end: zeros
                    out.append((max(a, layer.size), b, readplan.ZERO, 0, None))
            pending = below
            if not pending:
                break
        return out

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        if len(self.layers) == 1:
            return self.top._damage_pairs(start, end)
        return damage_from_runs(self, start, end)

    def close(self) -> None:
        for layer in self.layers:
            layer.close()


def caller_candidates(hint_path: str, parents: ParentsArg, depth: int) -> list[str]:
    """Where the caller (``parents=``) says to look for the parent named ``hint_path``, in
    order: a mapping's entry for the name or its base name; a folder's file of that base
    name; a file of that base name (or the ``depth``-th of a list, or the only one)."""
    base = split_name(hint_path)
    out: list[str] = []
    if isinstance(parents, Mapping):
        for key in (hint_path, base):
            if key in parents:
                out.append(os.fspath(parents[key]))
    elif parents is not None:
        entries = [parents] if isinstance(parents, str | os.PathLike) else list(parents)
        for i, entry in enumerate(entries):
            entry = os.fspath(entry)
            if os.path.isdir(entry):
                out.append(os.path.join(entry, base))
            elif split_name(entry) == base or i == depth or len(entries) == 1 and depth == 0:
                out.append(entry)
    return list(dict.fromkeys(out))


def _parent_format(img: Image, name: str | None, strict: bool) -> str | None:
    """The parent format ``img`` records, if vdinspect knows it. An unknown name (a format
    we do not read, or a damaged record) is the image's problem, not a bad call: strict
    mode refuses the image; salvage mode detects the parent's format instead."""
    if not name:
        return None
    try:
        fmt = get_format(name)  # qemu's names (vpc = vhd) are aliases
    except InvalidArgument:
        message = f"backing format {name!r} is not a format vdinspect reads"
        if strict:
            raise UnsupportedFeature(message, path=img.path, structure="backing format") from None
        img.finding("error", "backing format", None, f"{message}; detected instead")
        return None
    return fmt.name


def open_chain(
    path: str,
    *,
    format: str | None = None,
    strict: bool = True,
    parents: ParentsArg = None,
    policy: PathPolicy | None = None,
    referrer: str | None = None,
    disk: int | str | None = None,
    offset: int | None = None,
    length: int | None = None,
) -> Chain:
    """Open ``path`` and every parent it names, base first.

    ``offset`` (and ``length``, else to the file's end) opens the top image embedded at that
    byte offset of the file ``path`` (over an :class:`EmbeddedSource`); parents are files.

    Every name a layer records is resolved through ``policy`` (by default that of
    ``vdinspect.open(path, parents=parents)``: see :mod:`vdinspect.io.paths`); ``referrer``
    is the machine file that named ``path``, if any (``path`` is then checked too).
    Resolution is a loop, one layer at a time: a chain of :data:`MAX_DEPTH` layers opens,
    a deeper one is refused with :class:`CorruptImage`. ``disk`` chooses a disk of a
    package holding several (OVA/OVF, XVA).
    """
    if policy is None:
        policy = PathPolicy.for_open(path, parents=parents)
    with policy.active():
        source = None if offset is None and length is None else EmbeddedSource(
            path, offset or 0, length)
        return _open_chain(path, format, strict, parents, policy, referrer, source, disk)


def _open_chain(path, format, strict, parents, policy: PathPolicy, referrer,
                source: ByteSource | None = None, disk=None) -> Chain:
    if referrer is None:
        top = open_image(path, format=format, strict=strict, source=source, disk=disk)
    else:
        top = _open_layer(path, format, strict, policy, referrer)
    stack = [top]
    seen = {os.path.realpath(path)}
    try:
        img = top
        while True:
            hint = img.parent_hint
            if hint is None or not hint.path:
                break
            if len(stack) >= MAX_DEPTH:
                raise CorruptImage(
                    f"backing chain deeper than {MAX_DEPTH} layers (the limit): refused",
                    path=img.path,
                    structure="parent",
                )
            depth = len(stack) - 1
            # an image that names its parent by identity (VDI: a UUID) may search for it
            # itself, through the active policy: find_parent(parents) -> (path or None, tried)
            found, tried = (img.find_parent(parents) if img.find_parent is not None
                             else (None, []))
            why = ""
            if found is None:
                names = [hint.path, *hint.alternatives]
                first: list[str] = []
                for name in names:
                    first += [c for c in caller_candidates(name, parents, depth)
                              if c not in first]
                lookup = policy.find(names, img.path, first=first, exclude=seen)
                tried += [c for c in lookup.tried if c not in tried]
                found = lookup.path
                why = lookup.why()
                report_outside(img, "parent", lookup, "parent")
            if found is None:
                if strict:
                    raise MissingParent(
                        lookup.not_found(f"parent {hint.path!r}"),
                        tried=tried,
                        path=img.path,
                        structure="parent",
                    )
                stack.append(MissingLayer(img.size, hint.path, tried, why))
                break
            real = os.path.realpath(found)
            if real in seen:
                raise CorruptImage(
                    f"backing chain loop: {found} is already in the chain",
                    path=img.path,
                    structure="parent",
                )
            seen.add(real)
            fmt = _parent_format(img, hint.format, strict)
            try:
                parent = _open_layer(found, fmt, strict, policy, img.path)
            except NotFound as e:  # raced away
                raise MissingParent(str(e), tried=tried, path=img.path) from e
            stack.append(parent)
            if img.verify_parent is not None:
                img.verify_parent(parent)
            img = parent
    except BaseException:
        for layer in stack:
            layer.close()
        raise
    return Chain(list(reversed(stack)))


def _open_layer(path: str, fmt: str | None, strict: bool, policy: PathPolicy, referrer: str
                ) -> Image:
    """One layer named by ``referrer``, opened through the policy."""
    src = policy.open(path, referrer)
    try:
        return open_image(path, format=fmt, strict=strict, source=src)
    except BaseException:
        src.close()
        raise


def layer_index(chain: Chain, layer: int) -> int:
    """Layer ``layer`` of ``chain`` as an index from the base (0 = base; negative counts
    from the top), or InvalidArgument naming the range."""
    n = len(chain.layers)
    if isinstance(layer, bool) or not isinstance(layer, Integral) or not -n <= layer < n:
        raise InvalidArgument(
            f"layer {layer!r} out of range: the chain has {n} layers (0 = base .. {n - 1} = top)"
        )
    return int(layer) % n
