"""VMware VMDK: descriptors, flat/zero/hosted sparse/stream-optimized/COWD/seSparse extents.

``probe`` and ``open_image`` are what the registry calls; :class:`VmdkImage` is the reader.
"""

from __future__ import annotations

from .descriptor import Descriptor, ExtentLine, parse_descriptor
from .image import FORMAT, VmdkImage, open_image, probe

__all__ = [
    "FORMAT",
    "Descriptor",
    "ExtentLine",
    "VmdkImage",
    "open_image",
    "parse_descriptor",
    "probe",
]
