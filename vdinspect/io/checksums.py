"""CRC-32C (Castagnoli), the one implementation the formats share.

Temporary stand-in written for the ext driver; the shared module (VHDX work) replaces it
with the same signature. Uses the ``crc32c`` C package when it is installed, else a
table-driven loop.
"""

from __future__ import annotations

try:  # hardware-accelerated where the CPU has the instruction
    from crc32c import crc32c as _c_impl
except ImportError:  # pragma: no cover - depends on the environment
    _c_impl = None


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_TABLE = _table()


def crc32c(data: bytes, value: int = 0) -> int:
    """Standard CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``); chain pieces
    by passing the previous result as ``value``."""
    if _c_impl is not None:
        return _c_impl(data, value)
    reg = value ^ 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF


__all__ = ["crc32c"]
