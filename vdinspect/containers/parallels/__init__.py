"""Parallels / Virtuozzo expandable images (``.hds``): ``structs``, ``bitmap`` (dirty
bitmaps of the Format Extension), ``image`` (the reader), ``check`` (reports)."""

from __future__ import annotations

from .bitmap import DirtyBitmap
from .image import ParallelsImage, open_image, parse_header
from .structs import *  # noqa: F403 (the declarations are this package's public names)
from .structs import FORMAT, HEADER_VERSION, MAGIC_V1, MAGIC_V2


def probe(head: bytes) -> bool:
    """Expandable images start with one of the two magics and version 2 (as QEMU probes;
    20 bytes suffice, so a file cut inside its header is still ours and refused as such)."""
    return (
        len(head) >= 20
        and head[:16] in (MAGIC_V1, MAGIC_V2)
        and int.from_bytes(head[16:20], "little") == HEADER_VERSION
    )


__all__ = ["FORMAT", "DirtyBitmap", "ParallelsImage", "open_image", "parse_header", "probe"]
