"""Decompressing Btrfs extents: zlib, LZO (Btrfs framing) and zstd, by ``compression``.

A compressed extent is decoded whole (at most 128 KiB of file data for regular extents,
one page for inline ones); the result is cut to ``ram_bytes``.
"""

from __future__ import annotations

import zlib

from ...io.codecs import zstd_at_most
from .lzo import LZOError, decompress_btrfs

MAX_RAM_BYTES = 1 << 20  # Btrfs compresses at most 128 KiB per extent; far more is hostile


class DecompressError(ValueError):
    """Compressed data that does not decode."""


class MissingCodec(DecompressError):
    """The codec's Python package is not installed."""


def decompress(kind: int, data: bytes, ram_bytes: int, sectorsize: int) -> bytes:
    """The first ``ram_bytes`` decoded bytes of an extent compressed with ``kind``."""
    if ram_bytes > MAX_RAM_BYTES:
        raise DecompressError(f"compressed extent claims {ram_bytes} bytes decompressed")
    if kind == 1:
        try:
            d = zlib.decompressobj()
            out = d.decompress(data, ram_bytes)
        except zlib.error as e:
            raise DecompressError(f"zlib: {e}") from None
    elif kind == 2:
        try:
            out = decompress_btrfs(data, ram_bytes, sectorsize)
        except LZOError as e:
            raise DecompressError(f"lzo: {e}") from None
    elif kind == 3:
        try:  # output stops at ram_bytes whatever the frame says
            out = zstd_at_most(data, ram_bytes)
        except ImportError:  # pragma: no cover - depends on the environment
            raise MissingCodec("zstd-compressed extent: install the 'zstandard' package "
                               "(pip install vdinspect[zstd])") from None
        except ValueError as e:
            raise DecompressError(f"zstd: {e}") from None
    else:
        raise DecompressError(f"unknown compression type {kind}")
    if len(out) < ram_bytes:  # a short stream: the rest of the extent reads as zeros
        out = out + bytes(ram_bytes - len(out))
    return out
