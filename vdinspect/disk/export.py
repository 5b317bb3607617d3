"""Writing a Disk out as a sparse raw file: runs from metadata, data chunk by chunk, zero
blocks left as holes."""

from __future__ import annotations

import os

from ..containers.base import BACKING, DATA
from ..errors import InvalidArgument
from ..io import all_zero
from ..progress import Progress, reporter


def write_raw(disk, path, *, progress: Progress = None, chunk: int = 8 << 20,
              workers: int | None = None) -> int:
    """:meth:`Disk.to_raw`: ``disk`` written to ``path``; returns the bytes of data."""
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
    buf = bytearray(chunk)
    mv = memoryview(buf)
    try:
        # runs come from metadata in big windows, so a sparse 2 TiB disk costs only its
        # tables; the data runs are then read chunk by chunk into one buffer
        window = max(chunk, 1 << 36)
        pos = 0
        while pos < disk.size:
            wend = min(disk.size, pos + window)
            pending = list(disk.chain.runs(pos, wend - pos).of_states(DATA, BACKING))
            pending.reverse()
            while pending:
                base = pending[-1].start
                limit = base + chunk
                segments: list[list[int]] = []
                batch = []
                while pending and pending[-1].start < limit:
                    run = pending.pop()
                    if run.end > limit:  # the rest goes into the next chunk
                        pending.append(run.clip(limit, run.end))
                        run = run.clip(run.start, limit)
                    batch.append(run)
                inflating = {r.layer for r in batch if r.compressed}
                for k in inflating:
                    disk.chain.layers[k].inflate_ahead(
                        [r for r in batch if r.layer == k], workers)
                for run in batch:
                    a, b = run.start - base, run.end - base
                    disk.chain.layers[run.layer].fill_run(run, mv[a:b])
                    if segments and segments[-1][1] == a:
                        segments[-1][1] = b
                    else:
                        segments.append([a, b])
                for k in inflating:  # let the batch go
                    disk.chain.layers[k].inflate_ahead(())
                for a, b in segments:
                    written += write_nonzero(fd, mv, a, b, base)
                if report:
                    report(min(limit, wend), disk.size)
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


def write_nonzero(fd: int, mv: memoryview, a: int, b: int, base: int) -> int:
    """pwrite mv[a:b] at base+a, skipping 64 KiB blocks that are all zero."""
    step = 1 << 16
    written = 0
    start = None
    i = a
    while i < b:
        j = min(b, (i // step + 1) * step)
        is_zero = all_zero(mv[i:j])
        if not is_zero and start is None:
            start = i
        elif is_zero and start is not None:
            os.pwrite(fd, mv[start:i], base + start)
            written += i - start
            start = None
        i = j
    if start is not None:
        os.pwrite(fd, mv[start:b], base + start)
        written += b - start
    return written
