"""VirtualBox Disk Image (VDI): ``structs`` (headers, block map), ``image`` (the reader:
normal, fixed, differencing and undo images, parents by UUID), ``check`` (reports)."""

from __future__ import annotations

from .image import VdiImage, open_image
from .structs import *  # noqa: F403 (the declarations are this package's public names)
from .structs import PREHEADER_SIZE, SIGNATURE, parse_headers, peek_uuid, vdi_uuid  # noqa: F401


def probe(head: bytes) -> bool:
    """VDI files carry the signature 0xbeda107f at offset 64, after the text banner."""
    return len(head) >= PREHEADER_SIZE and int.from_bytes(head[64:68], "little") == SIGNATURE


__all__ = ["VdiImage", "open_image", "probe", "parse_headers", "peek_uuid", "vdi_uuid"]
