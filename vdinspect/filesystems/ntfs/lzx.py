"""LZX as WIM archives and WOF (CompactOS) files use it: 32 KiB window, one chunk at a time.

Facts from Microsoft's LZX DELTA specification ([MS-PATCH] 2) and the WIM format notes of
wimlib, checked against chunks that wimlib's compressor writes. The bit stream is 16-bit
little-endian words read MSB first. A chunk is a series of blocks: a 3-bit type (1
verbatim, 2 aligned offset, 3 uncompressed), a size (1 bit set = 32768, else 16 bits),
then Huffman code lengths sent as deltas through a 20-symbol pre-code. After decoding, the
x86 CALL (0xE8) translation is undone with a file size of 12000000.
"""

from __future__ import annotations

import struct

from .huffman import HuffmanError, huffman_table
from .lznt1 import copy_match

WINDOW = 32768
NUM_CHARS = 256
MIN_MATCH = 2
NUM_PRIMARY_LENS = 7
NUM_LEN_HEADERS = 8
NUM_OFFSET_SLOTS = 30  # for a 32 KiB window
MAIN_SYMS = NUM_CHARS + NUM_OFFSET_SLOTS * NUM_LEN_HEADERS  # 496
LEN_SYMS = 249
PRE_SYMS = 20
ALIGNED_SYMS = 8
E8_FILE_SIZE = 12_000_000

_EXTRA = [0, 0, 0, 0] + [n // 2 for n in range(2, 2 * 18)][: NUM_OFFSET_SLOTS - 4]
_BASE = [0]
for _n in _EXTRA[:-1]:
    _BASE.append(_BASE[-1] + (1 << _n))


class LZXError(ValueError):
    """LZX data that cannot be decoded."""


class _Bits:
    """MSB-first reader over 16-bit little-endian words (zeros past the end)."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos  # next byte to load
        self.buf = 0
        self.count = 0  # valid bits in buf

    def _fill(self, n: int) -> None:
        data = self.data
        while self.count < n:
            p = self.pos
            word = (
                data[p] | (data[p + 1] << 8)
                if p + 1 < len(data)
                else (data[p] if p < len(data) else 0)
            )
            self.buf = ((self.buf << 16) | word) & 0xFFFFFFFFFFFF
            self.count += 16
            self.pos = p + 2

    def read(self, n: int) -> int:
        if n == 0:
            return 0
        if self.count < n:
            self._fill(n)
        self.count -= n
        return (self.buf >> self.count) & ((1 << n) - 1)

    def peek16(self) -> int:
        if self.count < 16:
            self._fill(16)
        return (self.buf >> (self.count - 16)) & 0xFFFF

    def skip(self, n: int) -> None:
        self.count -= n

    def align_for_raw(self) -> int:
        """Drop 1-16 bits to the next 16-bit boundary; return the byte position after it."""
        consumed = self.pos * 8 - self.count
        consumed += 16 - consumed % 16 if consumed % 16 else 16
        self.pos = consumed // 8
        self.buf = self.count = 0
        return self.pos

    def restart(self, pos: int) -> None:
        self.pos = pos
        self.buf = self.count = 0


def _table(lengths: list[int], nsyms: int) -> list[int]:
    """A 2**16-entry decode table: (symbol << 5) | length for each 16-bit prefix."""
    if not any(lengths[:nsyms]):
        raise LZXError("empty Huffman code")
    try:
        return huffman_table(lengths[:nsyms], 16, 5)
    except HuffmanError as e:
        raise LZXError(str(e)) from None


def _decode(bits: _Bits, table: list[int]) -> int:
    entry = table[bits.peek16()]
    length = entry & 31
    if length == 0:
        raise LZXError("invalid Huffman code")
    bits.skip(length)
    return entry >> 5


def _read_lens(bits: _Bits, lens: list[int], start: int, end: int) -> None:
    """Code lengths [start, end) as deltas from their previous values, via the pre-code."""
    pre = [bits.read(4) for _ in range(PRE_SYMS)]
    table = _table(pre, PRE_SYMS)
    i = start
    while i < end:
        sym = _decode(bits, table)
        if sym < 17:
            lens[i] = (lens[i] - sym) % 17
            i += 1
            continue
        if sym == 17:
            run, value = 4 + bits.read(4), 0
        elif sym == 18:
            run, value = 20 + bits.read(5), 0
        else:
            run = 4 + bits.read(1)
            value = (lens[i] - _decode(bits, table)) % 17
        if i + run > end:
            raise LZXError("code length run past the end of the code")
        lens[i : i + run] = [value] * run
        i += run


def decompress(data: bytes, size: int) -> bytes:
    """Decompress one LZX chunk (at most 32 KiB of output) to exactly ``size`` bytes."""
    if size > WINDOW:
        raise LZXError(f"chunk of {size} bytes is larger than the 32 KiB window")
    out = bytearray()
    bits = _Bits(data)
    main_lens = [0] * MAIN_SYMS
    len_lens = [0] * LEN_SYMS
    recent = [1, 1, 1]
    while len(out) < size:
        btype = bits.read(3)
        bsize = 32768 if bits.read(1) else bits.read(16)
        if bsize == 0:
            raise LZXError("empty block")
        end = min(size, len(out) + bsize)
        if btype == 3:
            p = bits.align_for_raw()
            if p + 12 + bsize > len(data):
                raise LZXError("uncompressed block runs past the data")
            recent = list(struct.unpack_from("<III", data, p))
            p += 12
            out += data[p : p + end - len(out)]
            p += bsize + (bsize & 1)
            bits.restart(p)
            continue
        if btype not in (1, 2):
            raise LZXError(f"invalid block type {btype}")
        aligned = None
        if btype == 2:
            aligned = _table([bits.read(3) for _ in range(ALIGNED_SYMS)], ALIGNED_SYMS)
        _read_lens(bits, main_lens, 0, NUM_CHARS)
        _read_lens(bits, main_lens, NUM_CHARS, MAIN_SYMS)
        _read_lens(bits, len_lens, 0, LEN_SYMS)
        main = _table(main_lens, MAIN_SYMS)
        lengths = _table(len_lens, LEN_SYMS) if any(len_lens) else None
        while len(out) < end:
            sym = _decode(bits, main)
            if sym < NUM_CHARS:
                out.append(sym)
                continue
            sym -= NUM_CHARS
            header, slot = sym & 7, sym >> 3
            length = MIN_MATCH + header
            if header == NUM_PRIMARY_LENS:
                if lengths is None:
                    raise LZXError("length symbol without a length code")
                length += _decode(bits, lengths)
            if slot < 3:
                offset = recent[slot]
                recent[slot] = recent[0]
                recent[0] = offset
            else:
                extra = _EXTRA[slot]
                if aligned is not None and extra >= 3:
                    v = (bits.read(extra - 3) << 3) + _decode(bits, aligned)
                else:
                    v = bits.read(extra)
                offset = _BASE[slot] + v - 2
                recent[2] = recent[1]
                recent[1] = recent[0]
                recent[0] = offset
            if offset > len(out) or offset <= 0:
                raise LZXError(f"match {offset} bytes back with {len(out)} bytes of output")
            if len(out) + length > end:
                raise LZXError("match runs past the end of the block")
            copy_match(out, offset, length)
    _undo_e8(out)
    return bytes(out[:size])


def _undo_e8(buf: bytearray) -> None:
    """Undo the x86 CALL translation (the last 10 bytes are left alone)."""
    limit = len(buf) - 10
    i = buf.find(0xE8, 0, max(0, limit))
    while 0 <= i < limit:
        value = struct.unpack_from("<i", buf, i + 1)[0]
        if value >= 0:
            if value < E8_FILE_SIZE:
                struct.pack_into("<i", buf, i + 1, value - i)
        elif value >= -i:
            struct.pack_into("<i", buf, i + 1, value + E8_FILE_SIZE)
        i = buf.find(0xE8, i + 5, limit)
