"""Writing a Disk out as a sparse raw file: runs from metadata, data chunk by chunk, zero
blocks left as holes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..containers.base import BACKING, DATA
from ..errors import InvalidArgument
from ..io import HostCopier, HostRanges, all_zero
from ..lazy import np
from ..progress import Progress, reporter

if TYPE_CHECKING:
    from ..containers.runs import RunTable


def write_raw(disk, path, *, progress: Progress = None, chunk: int = 8 << 20,
              workers: int | None = None) -> int:
    """:meth:`Disk.to_raw`: ``disk`` written to ``path``; returns the bytes of data."""
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise InvalidArgument(f"workers={workers!r}: a number of threads, 1 or more")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InvalidArgument(f"chunk={chunk!r}: a number of bytes, 1 or more")
    path = os.fspath(path)
    real = os.path.realpath(path)
    for img in disk.chain.layers:
        for f in img.host_files:
            if os.path.realpath(f) == real:
                raise InvalidArgument(f"{path}: refusing to overwrite an input image file")
    report = reporter(progress, disk.size)
    tmp = f"{path}.vdinspect-part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    out = RawOutput(fd)
    written = 0
    buf = bytearray(int(chunk))
    mv = memoryview(buf)
    try:
        # runs come from metadata in big windows, so a sparse 2 TiB disk costs only its
        # tables; the data runs are then read chunk by chunk into one buffer
        window = max(chunk, 1 << 36)
        pos = 0
        while pos < disk.size:
            wend = min(disk.size, pos + window)
            table = disk.chain.runs(pos, wend - pos).of_states(DATA, BACKING)
            written += write_table(disk.chain, table, out, mv, workers, report, disk.size)
            pos = wend
            if report:
                report(pos, disk.size)
        os.ftruncate(fd, disk.size)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    return written


def chunks(table: RunTable, chunk: int) -> Iterator[tuple[int, RunTable]]:
    """``(base, rows)``: the rows of ``table`` (ordered, holding data) cut into pieces of
    at most ``chunk`` virtual bytes, each starting where data starts."""
    starts = table.start
    ends = table.end
    i, n = 0, len(table)
    while i < n:
        base = int(starts[i])
        limit = base + chunk
        yield base, table.within(np.array([base]), np.array([limit]))
        i = int(np.searchsorted(starts, limit, side="left"))
        if ends[i - 1] > limit:  # a row going on past the chunk: its rest comes next
            i -= 1
            if starts is table.start:
                starts = starts.copy()
            starts[i] = limit


class RawOutput:
    """The raw file being written: bytes from a buffer by ``pwrite``; bytes stored as
    themselves in a host file copied host file to output without passing through this
    process (``io.copy_range``: copy_file_range; where the kernel refuses, another
    filesystem, ``io.send_range``: sendfile; read and written where both refuse)."""

    #: bytes read and written at a time where the kernel copies nothing
    STEP = 8 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.copier = HostCopier(fd)  # remembers what the kernel refused per host file
        self.extent: dict = {}  # host source -> (asked at, data start, data end) last found

    def data_spans(self, src, a: int, b: int) -> list[tuple[int, int]]:
        """``src.data_spans(a, b - a)``, the host file's last data extent remembered: a
        host file that is one extent (or a few big ones) costs two ``lseek`` in all, not
        two a piece."""
        out = []
        pos = a
        while pos < b:
            q, lo, hi = self.extent.get(src, (0, 0, 0))
            if not q <= pos < hi:
                lo, hi = src.data_extent(pos)
                self.extent[src] = (pos, lo, hi)
                if hi <= lo:
                    break
            if lo >= b:
                break
            pos = max(pos, lo)
            out.append((pos, min(b, hi)))
            pos = min(b, hi)
        return out

    def put(self, mv: memoryview, a: int, b: int, at: int) -> None:
        """Write ``mv[a:b]`` at ``at``."""
        os.pwrite(self.fd, mv[a:b], at)

    def copy(self, src, a: int, b: int, at: int) -> None:
        """Copy host bytes ``[a, b)`` of ``src`` to ``at``: in the kernel where it can (the
        first refusal per host file is remembered), else read and written."""
        if self.copier.copy(src, a, b, at):
            return
        for k in range(a, b, self.STEP):  # (a short file raises CorruptImage here)
            os.pwrite(self.fd, src.read(k, min(b, k + self.STEP) - k), at + k - a)

    def stored(self, pieces: HostRanges, pos: int) -> int:
        """Write the host ``pieces`` of the virtual bytes from ``pos`` (see
        ``ByteSource.host_ranges``), leaving as holes the host file's holes and the 64 KiB
        blocks that are all zero; returns the bytes written."""
        written = 0
        for src, off, n in pieces:
            if src is not None:
                shift = pos - off  # output offset = host offset + shift
                for a, b in self.data_spans(src, off, off + n):
                    for s, e in stored_nonzero(src, a, b, shift):
                        self.copy(src, s, e, s + shift)
                        written += e - s
            pos += n
        return written


def stored_nonzero(src, a: int, b: int, shift: int) -> list[tuple[int, int]]:
    """:func:`nonzero_spans` of host bytes ``[a, b)`` of ``src`` without reading them all:
    the first word of each 64 KiB block (aligned where it is written, at ``+ shift``) by
    ``pread``, a block whose first word is zero read whole and checked. Nothing is mapped,
    so a host read error is an OSError, never a signal."""
    step = 1 << 16
    first = a + (-(a + shift)) % step
    bounds = [a, *range(first if first > a else a + step, b, step), b]
    spans: list[tuple[int, int]] = []
    fd = src.fd
    for s, e in zip(bounds, bounds[1:]):  # (a short first word: the full read says why)
        if any(os.pread(fd, min(8, e - s), s)) or not all_zero(src.read(s, e - s)):
            if spans and spans[-1][1] == s:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
    return spans


def stored_pieces(chain, groups: list[tuple[int, int]]) -> list | None:
    """The host ranges of each ``(start, end)`` virtual group when every byte is stored as
    itself in a host file (or is a hole); None otherwise."""
    out = []
    for s, e in groups:
        got = chain.host_ranges(s, e - s)
        if got is None:
            return None
        out.append(got)
    return out


def touching(piece, base: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` stretches (relative to ``base``) where ``piece``'s rows touch."""
    a = piece.start - base
    b = a + piece.length
    cut = np.flatnonzero(a[1:] != b[:-1]) + 1  # where the rows stop touching
    return list(zip(a[np.r_[0, cut]].tolist(), b[np.r_[cut - 1, len(b) - 1]].tolist()))


def write_table(chain, table, out: RawOutput, mv: memoryview, workers: int | None, report,
                total: int) -> int:
    """Write the rows of ``table`` (the chain's runs holding data, in order) to ``out`` at
    their virtual offsets, a chunk of ``len(mv)`` bytes at a time. A chunk whose bytes are
    all stored as themselves goes host file to output (:meth:`RawOutput.stored`); any
    other is filled by the layers (compressed units inflated in tasks of many,
    ``workers`` threads), then its blocks that are not all zero are written. Returns the
    bytes written. (Filling the next chunk in a second thread while this one writes cost
    12% more CPU and gained no time on the shared 2-core machine: not done.)"""
    written = 0
    for base, piece in chunks(table, len(mv)):
        groups = touching(piece, base)
        stored = None if piece.compressed.any() else stored_pieces(  # (no plan to build)
            chain, [(base + s, base + e) for s, e in groups])
        if stored is not None:
            for (s, _e), pieces in zip(groups, stored):
                written += out.stored(pieces, base + s)
        else:
            chain.fill_table(piece, base, mv, workers)
            for s, e in groups:
                for a, b in nonzero_spans(mv, s, e, base):
                    out.put(mv, a, b, base + a)
                    written += b - a
        if report:
            report(min(base + len(mv), total), total)
    return written


def nonzero_spans(mv: memoryview, a: int, b: int, shift: int = 0) -> list[tuple[int, int]]:
    """The ``(start, end)`` stretches of ``mv[a:b]`` left when the 64 KiB blocks that are all
    zero are taken out, blocks aligned where ``mv[i]`` is written (at ``i + shift``), so
    holes fall on the output's blocks; checked together, a whole block only when its
    first word is 0."""
    step = 1 << 16
    lo, hi = a + (-(a + shift)) % step, b - (b + shift) % step
    if a >= b:
        return []
    if b - a <= step:  # a unit's worth (a cluster of a scattered image): no numpy
        parts = [(a, lo), (lo, b)] if a < lo < b else [(a, b)]
        spans: list[tuple[int, int]] = []
        for s, e in parts:
            if any(mv[s : min(e, s + 8)]) or not all_zero(mv[s:e]):
                if spans and spans[-1][1] == s:
                    spans[-1] = (spans[-1][0], e)
                else:
                    spans.append((s, e))
        return spans
    if lo > hi:  # inside one block
        bounds = [a, b]
        nonzero = [not all_zero(mv[a:b])]
    else:
        words = np.frombuffer(mv[lo:hi], dtype=np.uint64).reshape(-1, step // 8)
        flags = words[:, 0] != 0
        maybe = np.flatnonzero(~flags)
        if len(maybe):  # whole blocks checked, in stretches of neighbours (views, no copy)
            cut = np.flatnonzero(np.diff(maybe) != 1) + 1
            for s, e in zip(maybe[np.r_[0, cut]].tolist(), maybe[np.r_[cut - 1, -1]].tolist()):
                flags[s : e + 1] = np.bitwise_or.reduce(words[s : e + 1], axis=1) != 0
        bounds = list(range(lo, hi + 1, step))
        nonzero = flags.tolist()
        if a < lo:
            bounds.insert(0, a)
            nonzero.insert(0, not all_zero(mv[a:lo]))
        if hi < b:
            bounds.append(b)
            nonzero.append(not all_zero(mv[hi:b]))
    spans = []
    start = None
    for k, nz in enumerate(nonzero):
        if nz and start is None:
            start = bounds[k]
        elif not nz and start is not None:
            spans.append((start, bounds[k]))
            start = None
    if start is not None:
        spans.append((start, b))
    return spans
