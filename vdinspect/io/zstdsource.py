"""A zstd stream read in place as the bytes it decompresses to, with random access.

zstd cannot resume inside a frame without the frame's window, so there are two ways in:

- **frames**: a stream of several frames that each declare their content size (``pzstd``,
  the seekable format) is indexed from the frame and block headers alone (RFC 8878 3.1),
  and a read decompresses only the frames it touches (a few are kept, each at most
  :data:`MAX_FRAME` bytes). Nothing is written anywhere.
- **spool**: any other stream (one frame, as ``zstd`` and ``xe vm-export compress=zstd``
  write) is decompressed once, in a streaming pass of bounded memory, into a temporary file
  in the folder the user chose (``vdinspect.open(..., spool_dir=)``, else the environment
  variable ``VDINSPECT_SPOOL_DIR``, else the system's temporary folder; never the evidence's
  own folder). The file is unlinked as soon as it is open, so it is gone on close or crash.

The frame walk (reads of a few bytes per 128 KiB block) also finds a stream cut short or
followed by something that is not a frame: that is the ``damage`` the caller reports. The
output is capped (``limit``; ``bound`` may lower it once the first bytes are known), so a
small stream that claims terabytes (a zstd bomb) is refused, not written.
Needs the optional ``zstandard`` package (BSD): ``pip install 'vdinspect[zstd]'``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from collections.abc import Callable, Iterator

from ..errors import CorruptImage, InvalidArgument, UnsupportedFeature
from ..lazy import np
from .cache import LRUCache
from .sources import ByteSource, FileSource, Slice

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # Magic_Number 0xFD2FB528, little-endian
SKIPPABLE_MAGIC = 0x184D2A50  # Skippable frames: 0x184D2A50..0x184D2A5F
SKIPPABLE_MASK = 0xFFFFFFF0
BLOCK_MAXIMUM_SIZE = 128 << 10  # Block_Size never exceeds this (RFC 8878 3.1.1.2.3)
RAW, RLE, COMPRESSED, RESERVED = 0, 1, 2, 3  # Block_Type
DICT_ID_BYTES = (0, 1, 2, 4)  # by Dictionary_ID_Flag
FCS_BYTES = (1, 2, 4, 8)  # by Frame_Content_Size_Flag (flag 0: 1 byte if Single_Segment)
MAX_FRAME = 32 << 20  # largest frame (content bytes) the frame mode decodes whole
MAX_FRAMES = 1 << 20  # frames indexed at most; more are spooled instead
MAX_BLOCKS = 1 << 24  # block headers walked at most (up to 2 TiB of output)
MAX_WINDOW = 1 << 27  # largest window accepted (libzstd's default limit, 128 MiB)
PIECE = 1 << 20  # bytes of output per streaming step
PREFIX = 16 << 20  # output kept for ``bound`` to look at, at most
ENV_SPOOL = "VDINSPECT_SPOOL_DIR"

_SPOOL_DIR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "vdinspect_spool_dir", default=None)


def is_zstd(head: bytes) -> bool:
    """A zstd frame's magic, or a skippable frame's (pzstd starts with one) at the start."""
    if len(head) < 4:
        return False
    return head[:4] == ZSTD_MAGIC or (
        int.from_bytes(head[:4], "little") & SKIPPABLE_MASK == SKIPPABLE_MAGIC)


@contextlib.contextmanager
def spool_folder(folder: str | os.PathLike | None) -> Iterator[None]:
    """Make ``folder`` where spooled streams go during an open (None: the default)."""
    if folder is not None and not os.path.isdir(folder):
        raise InvalidArgument(f"spool_dir {os.fspath(folder)!r} is not a folder")
    token = _SPOOL_DIR.set(None if folder is None else os.fspath(folder))
    try:
        yield
    finally:
        _SPOOL_DIR.reset(token)


def spool_dir_for(evidence: str | None) -> str:
    """The folder a spool file goes to: never the folder of ``evidence`` itself."""
    folder = _SPOOL_DIR.get() or os.environ.get(ENV_SPOOL) or tempfile.gettempdir()
    if evidence and os.path.realpath(folder) == os.path.realpath(
            os.path.dirname(os.path.abspath(evidence))):
        raise InvalidArgument(f"the spool folder {folder!r} is the folder of {evidence!r}: "
                              "nothing is written beside the evidence; choose spool_dir=")
    return folder


def _zstandard():
    try:
        import zstandard
    except ImportError:
        raise UnsupportedFeature("this file is zstd-compressed; reading it needs the optional "
                                 "zstandard package: pip install 'vdinspect[zstd]'") from None
    return zstandard


class Frame:
    """One frame of the stream: where it is, how long, what it declares."""

    __slots__ = ("offset", "length", "content_size", "skippable")

    def __init__(self, offset: int, length: int, content_size: int | None, skippable: bool):
        self.offset, self.length = offset, length
        self.content_size, self.skippable = content_size, skippable


def walk_frames(source: ByteSource, max_frames: int = MAX_FRAMES,
                max_blocks: int = MAX_BLOCKS) -> tuple[list[Frame], tuple | None, bool]:
    """The frames of the zstd stream in ``source``: (frames, damage or None, complete);
    damage is (offset, message) where the stream stops making sense, with a third item
    "inside" when a frame began there and broke; ``complete`` is False
    when the walk stopped at ``max_frames`` or ``max_blocks`` (tiny blocks cost time to
    walk, so a stream of too many is spooled without the index). Reads headers only."""
    frames: list[Frame] = []
    pos, n = 0, source.size
    budget = [max_blocks]
    while pos < n:
        if len(frames) >= max_frames:
            return frames, None, False
        head = source.read(pos, min(18, n - pos))
        if len(head) < 4:
            return frames, (pos, f"{n - pos} bytes after the last frame are not a frame"), True
        magic = int.from_bytes(head[:4], "little")
        if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC:
            if len(head) < 8:
                return frames, (pos, "a skippable frame is cut short"), True
            size = int.from_bytes(head[4:8], "little")
            if pos + 8 + size > n:
                return frames, (pos, f"a skippable frame at {pos:#x} runs past the end"), True
            frames.append(Frame(pos, 8 + size, 0, True))
            pos += 8 + size
            continue
        if head[:4] != ZSTD_MAGIC:
            if not any(source.read(pos, min(n - pos, 4096))) and n - pos <= 4096:
                break  # zero padding after the last frame
            return frames, (pos, f"no zstd frame at {pos:#x} (the stream is damaged or "
                            "followed by other data)"), True
        got = _frame(source, pos, head, budget)
        if got is None:
            return frames, None, False
        if isinstance(got, tuple):
            return frames, (*got, "inside"), True  # a frame begun and broken or cut
        frames.append(got)
        pos += got.length
    return frames, None, True


def _frame(source: ByteSource, pos: int, head: bytes, budget: list[int]
           ) -> Frame | tuple[int, str] | None:
    """The frame at ``pos``: its header fields and the walk over its blocks (None when the
    ``budget`` of blocks runs out)."""
    n = source.size
    if len(head) < 6:
        return pos, f"the zstd frame header at {pos:#x} is cut short"
    fhd = head[4]  # Frame_Header_Descriptor
    fcs_flag, single, reserved = fhd >> 6, (fhd >> 5) & 1, (fhd >> 3) & 1
    checksum, dict_flag = (fhd >> 2) & 1, fhd & 3
    if reserved:
        return pos, f"the zstd frame at {pos:#x} sets its reserved bit"
    at = 5
    if not single:
        wd = head[at]  # Window_Descriptor: Exponent (5 bits), Mantissa (3 bits)
        base = 1 << (10 + (wd >> 3))
        if base + (base // 8) * (wd & 7) > MAX_WINDOW:
            return pos, (f"the zstd frame at {pos:#x} needs a window over {MAX_WINDOW} "
                         "bytes: refused")
        at += 1
    at += DICT_ID_BYTES[dict_flag]
    fcs_len = FCS_BYTES[fcs_flag] if fcs_flag or single else 0
    if at + fcs_len > len(head):
        return pos, f"the zstd frame header at {pos:#x} is cut short"
    content = None
    if fcs_len:
        content = int.from_bytes(head[at:at + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    at += fcs_len
    p = pos + at
    win, win_at = b"", 0  # block headers are read from 1 MiB windows, not one read each
    while True:
        if p + 3 > n:
            return pos, f"the zstd frame at {pos:#x} is cut short at {p:#x} (truncated stream)"
        budget[0] -= 1
        if budget[0] < 0:
            return None  # too many blocks to walk: the caller spools without the index
        if not win_at <= p <= win_at + len(win) - 3:
            win_at, win = p, source.read(p, min(PIECE, n - p))
        bh = int.from_bytes(win[p - win_at:p - win_at + 3], "little")  # Block_Header
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        if btype == RESERVED or bsize > BLOCK_MAXIMUM_SIZE:
            return p, f"bad zstd block header at {p:#x} (type {btype}, size {bsize})"
        p += 3 + (1 if btype == RLE else bsize)
        if p > n:
            return pos, f"the zstd frame at {pos:#x} is cut short (truncated stream)"
        if last:
            break
    p += 4 * checksum  # Content_Checksum
    if p > n:
        return pos, f"the zstd frame at {pos:#x} is cut short (truncated stream)"
    return Frame(pos, p - pos, content, False)


class _Reader:
    """``read(n)`` over ``[0, end)`` of a ByteSource, for zstandard's stream reader."""

    def __init__(self, source: ByteSource, end: int) -> None:
        self.source, self.end, self.pos = source, end, 0

    def read(self, n: int = -1) -> bytes:
        n = self.end - self.pos if n is None or n < 0 else min(n, self.end - self.pos)
        out = self.source.read(self.pos, n)
        self.pos += n
        return out


class ZstdSource(ByteSource):
    """The decompressed bytes of the zstd stream in ``source`` (refused beyond ``limit``).

    ``mode`` says how it is read ("frames" or "spool"; ``spool_path`` names the folder).
    Damage (a stream cut short, data after it, a frame that does not decompress) raises
    CorruptImage unless ``salvage``: then the bytes before it are the source and
    ``damage`` says what happened, for the caller to report."""

    def __init__(self, source: ByteSource, *, limit: int, name: str | None = None,
                 salvage: bool = False, evidence: str | None = None,
                 bound: Callable[[bytes], int | None] | None = None) -> None:
        self.zstd = _zstandard()
        self.source = source
        self.name = name or f"{source.name} (zstd)"
        self.damage: tuple[int, str] | None = None
        self.spool: FileSource | None = None
        self.spool_path: str | None = None
        self._salvage = salvage
        self._blocks = LRUCache(3)
        self.bad_frames: set[int] = set()
        frames, damage, complete = walk_frames(source, MAX_FRAMES, MAX_BLOCKS)
        if damage is not None:
            self._broken(damage[0], damage[1])
        data = [f for f in frames if not f.skippable]
        if not data and damage is None and complete:
            raise CorruptImage("the zstd stream holds no frame", path=self.name,
                               structure="zstd frame", offset=0)
        end = frames[-1].offset + frames[-1].length if frames else 0
        if not complete or damage is not None and damage[2:] == ("inside",):
            end = source.size  # the decoder finds the end, or decodes what it can of a frame
        if complete and 1 < len(data) and damage is None and self._measure(data, limit):
            self.mode = "frames"
            self.frames = data
            self.out_starts = np.cumsum([0] + [f.content_size for f in data], dtype=np.int64)
            self.size = int(self.out_starts[-1])
            if self.size > limit:
                self._too_big(limit)
            if bound is not None:
                b = self._bound(bound, self.read(0, min(self.size, PREFIX)))
                if b is not None and self.size > b:
                    self._too_big(b)
        else:
            self.mode = "spool"
            self.frames = data
            self.size = self._spool(end, limit, evidence, bound)

    def _measure(self, frames: list[Frame], limit: int) -> bool:
        """Give every frame its content size (counted by a streaming decompression where
        the header does not declare it; pzstd's do not): False when one is over
        :data:`MAX_FRAME` (then the stream is spooled), or the total over ``limit``."""
        total = 0
        for f in frames:
            if f.content_size is None:
                reader = self.zstd.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(
                    _Reader(Slice(self.source, f.offset, f.length), f.length))
                n = 0
                try:
                    while n <= MAX_FRAME and (got := len(reader.read(PIECE))):
                        n += got
                except self.zstd.ZstdError:
                    return False  # the spool pass names the damage
                if n > MAX_FRAME:
                    return False
                f.content_size = n
            elif f.content_size > MAX_FRAME:
                return False
            total += f.content_size
            if total > limit:
                self._too_big(limit)
        return True

    def _bound(self, bound, head: bytes) -> int | None:
        """``bound(head)``, its complaints named after this stream."""
        try:
            return bound(head)
        except CorruptImage as e:
            raise CorruptImage(e.detail, path=self.name, structure=e.structure,
                               offset=e.offset) from None

    def _too_big(self, limit: int):
        raise CorruptImage(f"decompresses to more than {limit} bytes (the bound from what the "
                           "archive declares): refused", path=self.name, structure="zstd stream")

    def _broken(self, at: int, message: str) -> None:
        if not self._salvage:
            raise CorruptImage(message, path=self.name, structure="zstd stream", offset=at)
        if self.damage is None:
            self.damage = (at, message)

    # -- spool ----------------------------------------------------------------------------
    def _spool(self, end: int, limit: int, evidence: str | None, bound) -> int:
        folder = spool_dir_for(evidence)
        self.spool_path = folder
        fd, path = tempfile.mkstemp(prefix="vdinspect-", suffix=".zstd-spool", dir=folder)
        out, prefix, bounded = 0, bytearray(), bound is None
        try:
            d = self.zstd.ZstdDecompressor(max_window_size=MAX_WINDOW)
            feed = _Reader(self.source, end)
            reader = d.stream_reader(feed, read_across_frames=True)
            while True:
                try:
                    got = reader.read(PIECE)
                except self.zstd.ZstdError as e:
                    at = max((f.offset for f in self.frames if f.offset < feed.pos), default=0)
                    self._broken(at, f"broken zstd data after {out} decompressed bytes, "
                                 f"in the frame at {at:#x} or one before it: {e}")
                    break
                if not got:
                    break
                out += len(got)
                if out > limit:
                    self._too_big(limit)
                if not bounded:
                    prefix += got
                    b = self._bound(bound, bytes(prefix))
                    if b is not None or len(prefix) >= PREFIX:
                        bounded, prefix = True, bytearray()
                        limit = min(limit, b) if b is not None else limit
                        if out > limit:
                            self._too_big(limit)
                _write_all(fd, got)
            os.close(fd)
            fd = -1
            self.spool = FileSource(path)
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)  # the open FileSource keeps the bytes until close
        return out

    # -- reading --------------------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        if self.spool is not None:
            return self.spool.read(offset, length)
        parts, end = [], offset + length
        i = int(np.searchsorted(self.out_starts, offset, side="right")) - 1
        while offset < end:
            start = int(self.out_starts[i])
            block = self._blocks.get(i, lambda i=i: self._decode(i))
            take = block[offset - start:min(len(block), end - start)]
            parts.append(take)
            offset += len(take)
            i += 1
        return b"".join(parts)

    def readinto(self, offset: int, buffer) -> None:
        if self.spool is None:
            return super().readinto(offset, buffer)
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        self.spool.readinto(offset, mv)

    def _decode(self, i: int) -> bytes:
        f = self.frames[i]
        want = f.content_size
        try:
            got = self.zstd.ZstdDecompressor(max_window_size=MAX_WINDOW).decompress(
                self.source.read(f.offset, f.length), max_output_size=want)
        except self.zstd.ZstdError as e:
            got, why = b"", f"does not decompress ({e})"
        else:
            why = None if len(got) == want else f"gives {len(got)} bytes, not {want}"
        if why is not None:
            msg = f"the zstd frame at {f.offset:#x} {why}"
            if not self._salvage:
                raise CorruptImage(msg, path=self.name, structure="zstd frame", offset=f.offset)
            self.bad_frames.add(i)
            if self.damage is None:
                self.damage = (f.offset, msg)
            return bytes(want)
        return got

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        out = []
        for i in sorted(self.bad_frames):
            a, b = int(self.out_starts[i]), int(self.out_starts[i + 1])
            if a < end and b > start:
                out.append((max(a, start), min(b, end)))
        return out

    def describe(self) -> str:
        """How the stream is read, for info() and check()."""
        if self.mode == "frames":
            return (f"{len(self.frames)} zstd frames indexed; a read decompresses only the "
                    "frames it needs (nothing written)")
        return (f"one zstd stream ({len(self.frames)} frame(s)) decompressed once into a "
                f"temporary file in {self.spool_path} (deleted on close)")

    def close(self) -> None:
        self._blocks.clear()
        if self.spool is not None:
            self.spool.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
