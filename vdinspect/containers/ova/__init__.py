"""OVF packages (DMTF DSP0243): an ``.ova`` tar read in place, or a loose ``.ovf`` with its
files beside it; each of the package's disks opens as an image (``disk=``)."""

from __future__ import annotations

from ...io import ByteSource
from ..tar import first_name, is_tar
from .image import OvfImage

FORMAT = "ova"
MULTI_DISK = True  # open_image takes disk=
OVF_NAMESPACE = b"schemas.dmtf.org/ovf/envelope/"


def probe(head: bytes) -> bool:
    """A tar whose first member is an ``.ovf`` (DSP0243: the descriptor comes first), or
    XML whose root is an OVF Envelope."""
    if is_tar(head):
        name = first_name(head)
        return bool(name) and name.lower().endswith(".ovf")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text[:1] == b"<" and b"Envelope" in text and OVF_NAMESPACE in text


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True,
               disk: int | str | None = None) -> OvfImage:
    """Open disk ``disk`` (index, ovf:diskId or file name; the first by default)."""
    return OvfImage(source, path=path, strict=strict, disk=disk)


__all__ = ["OvfImage", "probe", "open_image", "FORMAT"]
