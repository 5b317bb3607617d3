"""XenServer / XCP-ng XVA exports: a tar of ``ova.xml`` and 1 MiB disk chunks, read in
place; each VDI of the VM opens as an image (``disk=``)."""

from __future__ import annotations

import io
import zlib

from ...io import ByteSource
from ...io.zstdsource import is_zstd
from ..tar import first_name, is_tar
from .image import XvaImage

FORMAT = "xva"
MULTI_DISK = True  # open_image takes disk=


def probe(head: bytes) -> bool:
    """A tar whose first member is ``ova.xml`` (xapi writes it first), or that tar
    gzip- or zstd-compressed (``xe vm-export compress=true`` / ``compress=zstd``)."""
    if is_zstd(head):
        return zstd_head_is_xva(head)
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
        except zlib.error:
            return False
    return is_tar(head) and first_name(head) == "ova.xml"


def zstd_head_is_xva(head: bytes) -> bool:
    """A zstd stream whose first output is an XVA tar (False without zstandard: the open
    then names the missing package only if nothing else claims the file)."""
    try:
        import zstandard
    except ImportError:
        return True  # claim it, so the open can say what is missing
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(head),
                                                            read_across_frames=True)
        out = reader.read(4096)
    except zstandard.ZstdError:
        return False
    return is_tar(out) and first_name(out) == "ova.xml"


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True,
               disk: int | str | None = None) -> XvaImage:
    """Open disk ``disk`` (index, VDI name, uuid or Ref:NN; the VM's first by default)."""
    return XvaImage(source, path=path, strict=strict, disk=disk)


__all__ = ["XvaImage", "probe", "open_image", "FORMAT"]
