"""VMware VMDK: descriptors, flat/zero/hosted sparse/stream-optimized/COWD/seSparse extents.

``probe`` and ``open_image`` are what the registry calls; :class:`VmdkImage` is the reader.
"""

from __future__ import annotations

from .descriptor import Descriptor, ExtentLine, parse_descriptor
from .image import FORMAT, VmdkImage, open_image, probe
from .reassemble import open_descriptor_text, open_extents, synthesize_descriptor

__all__ = [
    "FORMAT",
    "Descriptor",
    "ExtentLine",
    "VmdkImage",
    "open_descriptor_text",
    "open_extents",
    "open_image",
    "parse_descriptor",
    "probe",
    "synthesize_descriptor",
]
