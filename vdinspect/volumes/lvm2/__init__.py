"""LVM2 physical volumes, volume groups and logical volumes (lvm2's "text" format).

Facts from lvm2's lib/format_text (layout.h, format-text.c, import_vsn1.c), checked
against volumes made by lvm2 itself. Modules: ``structs`` (label, PV header, metadata area
header), ``text`` (the metadata text parser), ``pv`` (labels, metadata areas),
``vg`` (volume groups, segments and the bytes of an LV) and ``scan`` (:func:`scan_lvm`,
what the volume scan calls).
"""

from __future__ import annotations

from . import structs
from .pv import MetadataCopy, PhysicalVolume, find_label, read_pv
from .scan import READABLE, scan_lvm
from .structs import *  # noqa: F403 (the layouts, listed once in structs.__all__)
from .text import TextError, parse_text, tokenize
from .vg import LogicalVolume, Segment, StripedSource, VolumeGroup

__all__ = [
    *structs.__all__,
    "READABLE",
    "LogicalVolume",
    "MetadataCopy",
    "PhysicalVolume",
    "Segment",
    "StripedSource",
    "TextError",
    "VolumeGroup",
    "find_label",
    "parse_text",
    "read_pv",
    "scan_lvm",
    "tokenize",
]
