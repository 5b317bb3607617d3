"""Writing a Disk out as a sparse raw file: runs from metadata, data chunk by chunk, zero
blocks left as holes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..containers.base import BACKING, DATA
from ..errors import InvalidArgument
from ..io import all_zero
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
            written += write_table(disk.chain.layers, table, fd, mv, workers, report,
                                   disk.size)
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


def fill_chunk(layers, piece, base: int, mv: memoryview, workers: int | None) -> None:
    """Each layer writes its rows of ``piece`` into ``mv`` (which starts at ``base``)."""
    lay = piece.layer
    ks = np.unique(lay).tolist()
    for k in ks:
        rows = piece if len(ks) == 1 else piece.take(lay == k)
        layers[k].fill_runs(rows, base, mv, workers)


def write_table(layers, table, fd: int, mv: memoryview, workers: int | None, report,
                total: int) -> int:
    """Write the rows of ``table`` (the chain's runs holding data, in order) to ``fd`` at
    their virtual offsets, a chunk of ``len(mv)`` bytes at a time: the layers fill the
    chunk (compressed units inflated in tasks of many, ``workers`` threads), then the
    blocks that are not all zero are written. Returns the bytes written. (Filling the
    next chunk in a second thread while this one writes cost 12% more CPU and gained no
    time on the shared 2-core machine: not done.)"""
    written = 0
    for base, piece in chunks(table, len(mv)):
        fill_chunk(layers, piece, base, mv, workers)
        written += write_chunk(fd, mv, base, piece, report, total)
    return written


def write_chunk(fd: int, mv: memoryview, base: int, piece, report, total: int) -> int:
    """Write the filled chunk ``mv`` (starting at ``base``) where ``piece``'s rows lie,
    leaving all-zero blocks as holes; returns the bytes written."""
    written = 0
    a = piece.start - base
    b = a + piece.length
    cut = np.flatnonzero(a[1:] != b[:-1]) + 1  # where the rows stop touching
    for s, e in zip(a[np.r_[0, cut]].tolist(), b[np.r_[cut - 1, len(b) - 1]].tolist()):
        written += write_nonzero(fd, mv, s, e, base)
    if report:
        report(min(base + len(mv), total), total)
    return written


def write_nonzero(fd: int, mv: memoryview, a: int, b: int, base: int) -> int:
    """pwrite mv[a:b] at base+a, skipping the 64 KiB blocks (aligned in ``mv``) that are all
    zero; the blocks are checked together, a whole block only when its first word is 0."""
    step = 1 << 16
    lo, hi = -(-a // step) * step, b // step * step
    if lo >= hi:
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
    written = 0
    start = None
    for k, nz in enumerate(nonzero):
        if nz and start is None:
            start = bounds[k]
        elif not nz and start is not None:
            os.pwrite(fd, mv[start : bounds[k]], base + start)
            written += bounds[k] - start
            start = None
    if start is not None:
        os.pwrite(fd, mv[start:b], base + start)
        written += b - start
    return written
