"""Checksums that several formats share.

CRC-32C (Castagnoli) guards VHDX headers, region tables, metadata and log entries, and ext4
``metadata_csum`` blocks. The C package ``crc32c`` (LGPL-2.1+, hardware instructions where
the CPU has them) does the work; when it cannot be imported, a table-driven loop (short
buffers) or a numpy lane-parallel version (long buffers) gives the same answers.
"""

from __future__ import annotations

import os
from functools import cache

CRC32C_POLY = 0x82F63B78  # the Castagnoli polynomial 0x1EDC6F41, bit-reflected
_LONG = 8 * 1024  # from this many bytes the numpy fallback beats the byte loop


def _crc_table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ CRC32C_POLY if c & 1 else c >> 1
        out.append(c)
    return out


_TABLE = _crc_table()
# columns of the "feed 2**k zero bytes" linear map on the CRC register, and byte tables of it
_SHIFT_COLUMNS: dict[int, list[int]] = {1: [_TABLE[(1 << b) & 0xFF] ^ ((1 << b) >> 8) for b in range(32)]}
_SHIFT_TABLES: dict[int, tuple] = {}


def _apply_columns(cols: list[int], x: int) -> int:
    r = 0
    b = 0
    while x:
        if x & 1:
            r ^= cols[b]
        x >>= 1
        b += 1
    return r


def _shift_columns(n: int) -> list[int]:
    cols = _SHIFT_COLUMNS.get(n)
    if cols is None:
        half = _shift_columns(n // 2)
        cols = _SHIFT_COLUMNS[n] = [_apply_columns(half, c) for c in half]
    return cols


@cache
def _numpy():
    import numpy as np  # only the fallback needs it: importing vdinspect.io stays light

    return np, np.array(_TABLE, dtype=np.uint32)


def _shift_tables(n: int) -> tuple:
    tabs = _SHIFT_TABLES.get(n)
    if tabs is None:
        np = _numpy()[0]
        cols = _shift_columns(n)
        v = np.arange(256, dtype=np.uint32)
        out = []
        for j in range(4):
            t = np.zeros(256, dtype=np.uint32)
            for i in range(8):
                t ^= np.where((v >> i) & 1 == 1, np.uint32(cols[8 * j + i]), np.uint32(0))
            out.append(t)
        tabs = _SHIFT_TABLES[n] = tuple(out)
    return tabs


def _crc_numpy(data, register: int) -> int:
    """Run the CRC register over a long buffer: many lanes at once, then joined pairwise."""
    np, table = _numpy()
    n = len(data)
    lane = 128 if n <= 128 * 1024 else 256
    k = -(-n // lane)
    buf = np.zeros(k * lane, dtype=np.uint8)
    pad = k * lane - n
    buf[pad:] = np.frombuffer(data, dtype=np.uint8)
    # the starting register, folded into the first 4 data bytes (leading zeros leave 0 as 0)
    buf[pad : pad + 4] ^= np.frombuffer(register.to_bytes(4, "little"), dtype=np.uint8)
    lanes = np.ascontiguousarray(buf.reshape(k, lane).T)
    r = np.zeros(k, dtype=np.uint32)
    for j in range(lane):
        r = table[(r ^ lanes[j]) & 0xFF] ^ (r >> 8)
    span = lane
    while len(r) > 1:
        if len(r) & 1:  # a leading all-zero lane changes nothing
            r = np.concatenate([np.zeros(1, dtype=np.uint32), r])
        a, b = r[0::2], r[1::2]
        t0, t1, t2, t3 = _shift_tables(span)
        r = t0[a & 0xFF] ^ t1[(a >> 8) & 0xFF] ^ t2[(a >> 16) & 0xFF] ^ t3[a >> 24] ^ b
        span *= 2
    return int(r[0])


def crc32c_pure(data, value: int = 0) -> int:
    """CRC-32C without the C package: the same contract as :func:`crc32c`."""
    register = (value ^ 0xFFFFFFFF) & 0xFFFFFFFF
    if len(data) >= _LONG:
        return _crc_numpy(data, register) ^ 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        register = t[(register ^ b) & 0xFF] ^ (register >> 8)
    return register ^ 0xFFFFFFFF


_c_crc32c = None  # the maintained C implementation, once looked up (hardware instructions)
_looked_up = False


def _c_implementation():
    """The C package's function, imported on first use: the package's ``__init__`` reads
    its own metadata (``importlib.metadata``, email, csv: about 20 ms), which a command
    that never checks a CRC-32C should not pay, so its compiled module is loaded alone
    when it can be found (else the package is imported the usual way)."""
    global _c_crc32c, _looked_up
    if not _looked_up:
        c_crc32c = _compiled_module_function()
        if c_crc32c is None:
            try:
                from crc32c import crc32c as c_crc32c
            except ImportError:  # pragma: no cover - depends on the environment
                c_crc32c = None
        _c_crc32c, _looked_up = c_crc32c, True
    return _c_crc32c


def _compiled_module_function():
    """``crc32c._crc32c.crc32c`` loaded without running the package's ``__init__`` (the
    module is the package's own C extension); None when it cannot be found that way."""
    import importlib.machinery
    import importlib.util
    import sys

    mod = sys.modules.get("crc32c._crc32c")
    if mod is None:
        try:
            spec = importlib.util.find_spec("crc32c")  # finds the package, runs nothing
            where = spec and spec.submodule_search_locations
            if not where:
                return None
            for folder in where:
                for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                    path = os.path.join(folder, "_crc32c" + suffix)
                    if os.path.exists(path):
                        sub = importlib.util.spec_from_file_location("crc32c._crc32c", path)
                        mod = importlib.util.module_from_spec(sub)
                        sub.loader.exec_module(mod)
                        break
                if mod is not None:
                    break
        except (ImportError, OSError, AttributeError):  # pragma: no cover - environment
            return None
    fn = getattr(mod, "crc32c", None)
    return fn if fn is not None and fn(b"123456789") == 0xE3069283 else None


def crc32c(data, value: int = 0) -> int:
    """CRC-32C (Castagnoli, reflected, initial value and final XOR 0xFFFFFFFF) of ``data``.

    ``crc32c(b"123456789") == 0xE3069283``. Chain pieces by passing the previous result as
    ``value``: ``crc32c(b, crc32c(a)) == crc32c(a + b)``. The kernel's raw ``crc32c(seed, x)``
    (no inversions, as ext4 uses it) is ``crc32c(x, seed ^ 0xFFFFFFFF) ^ 0xFFFFFFFF``.
    """
    c = _c_crc32c if _looked_up else _c_implementation()
    if c is not None:
        return c(data, value)
    return crc32c_pure(data, value)


def crc32c_records(data, size: int) -> list[int]:
    """The :func:`crc32c` of each consecutive ``size``-byte record of ``data`` (a bytes-like
    object whose length is a multiple of ``size``): one call per record, no copies."""
    mv = memoryview(data).cast("B")
    f = (_c_crc32c if _looked_up else _c_implementation()) or crc32c_pure
    return [f(mv[i:i + size]) for i in range(0, len(mv) - size + 1, size)]


__all__ = ["CRC32C_POLY", "crc32c", "crc32c_pure", "crc32c_records"]
