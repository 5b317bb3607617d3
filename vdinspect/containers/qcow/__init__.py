"""QEMU copy-on-write version 1 (QCOW) images: ``structs`` (the header), ``image`` (the
reader: header, L1/L2 tables, compressed clusters), ``check`` (reports and ``check()``)."""

from __future__ import annotations

from .image import QcowImage, open_image
from .structs import *  # noqa: F403 (the declarations are this package's public names)
from .structs import FORMAT, QCOW_MAGIC


def probe(head: bytes) -> bool:
    """QCOW magic and version 1 (8 bytes suffice, so a truncated header is still ours)."""
    return len(head) >= 8 and head[:4] == QCOW_MAGIC and int.from_bytes(head[4:8], "big") == 1


__all__ = ["FORMAT", "QcowImage", "open_image", "probe"]
