"""Numbers for people (byte counts in binary units, UUIDs as text), the one test of a
power of two and the logical sector sizes a disk may have: one definition for every view
and every reader."""

from __future__ import annotations

from .errors import InvalidArgument

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human(n: float | None, *, digits: int | None = None) -> str:
    """A byte count as '512 B', '1.5 KiB', '2.0 TiB' (one decimal), or with ``digits``
    significant digits ('2 TiB', '1.25 GiB') for axis labels; None shows as '?'."""
    if n is None:
        return "?"
    x = float(n)
    if abs(x) < 1024:
        return f"{int(x)} B"
    i, last = 1, len(UNITS) - 1
    x /= 1024
    while not abs(x) < 1024 and i < last:  # (NaN and infinity end in the last unit)
        x /= 1024
        i += 1
    if digits:  # at most ``digits`` significant digits, never an exponent
        if abs(x) < 10**digits:
            return f"{x:.{digits}g} {UNITS[i]}"
        return f"{x:.0f} {UNITS[i]}"
    return f"{x:.1f} {UNITS[i]}"


def uuid_text(raw: bytes) -> str:
    """A 16-byte UUID field (big-endian, as ext, XFS, Btrfs and swap store it) as text."""
    import uuid  # (kept out of ``import vdinspect``)

    return str(uuid.UUID(bytes=bytes(raw)))


def is_pow2(n: int) -> bool:
    """True when ``n`` is a power of two (1, 2, 4...): block, sector and cluster sizes."""
    return n > 0 and n & (n - 1) == 0


SECTOR_SIZES = (512, 1024, 2048, 4096)  # logical sector sizes, bytes (FAT's BPB_BytsPerSec)
#: the same sizes in the order a probe tries them: the common two (512, 4Kn) first
SECTOR_PROBE_ORDER = tuple(sorted(SECTOR_SIZES, key=lambda n: n not in (512, 4096)))


def check_sector_size(sector_size: int | None, *, optional: bool = True) -> None:
    """Raise InvalidArgument unless ``sector_size`` is one of SECTOR_SIZES (or None, when
    ``optional``): the ``sector_size=`` argument of ``open``, ``volumes.scan``, sfdisk."""
    if (sector_size is not None or not optional) and sector_size not in SECTOR_SIZES:
        raise InvalidArgument(f"sector_size {sector_size} is not 512, 1024, 2048 or 4096")
