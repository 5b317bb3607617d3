"""XenServer / XCP-ng XVA exports: a tar of ``ova.xml`` and 1 MiB disk chunks, read in
place; each VDI of the VM opens as an image (``disk=``)."""

from __future__ import annotations

import zlib

from ...io import ByteSource
from ..tar import first_name, is_tar
from .image import XvaImage

FORMAT = "xva"
MULTI_DISK = True  # open_image takes disk=


def probe(head: bytes) -> bool:
    """A tar whose first member is ``ova.xml`` (xapi writes it first), or that tar
    gzip-compressed (``xe vm-export compress=true``)."""
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
        except zlib.error:
            return False
    return is_tar(head) and first_name(head) == "ova.xml"


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True,
               disk: int | str | None = None) -> XvaImage:
    """Open disk ``disk`` (index, VDI name, uuid or Ref:NN; the VM's first by default)."""
    return XvaImage(source, path=path, strict=strict, disk=disk)


__all__ = ["XvaImage", "probe", "open_image", "FORMAT"]
