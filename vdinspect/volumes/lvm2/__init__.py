"""LVM2 physical volumes, volume groups and logical volumes (lvm2's "text" format).

Facts from lvm2's lib/format_text (layout.h, format-text.c, import_vsn1.c), checked
against volumes made by lvm2 itself. Modules: ``structs`` (label, PV header, metadata area
header), ``text`` (the metadata text parser), ``pv`` (labels, metadata areas),
``vg`` (volume groups, segments and the bytes of an LV) and ``scan`` (:func:`scan_lvm`,
what the volume scan calls).
"""

from __future__ import annotations

from .pv import MetadataCopy, PhysicalVolume, find_label, read_pv
from .scan import READABLE, scan_lvm
from .structs import (
    INITIAL_CRC,
    LABEL_ID,
    LABEL_TYPE,
    MDA_HEADER_SIZE,
    MDA_MAGIC,
    SECTOR,
    DiskLocn,
    LabelHeader,
    MdaHeader,
    PvHeader,
    PvHeaderExtension,
    RawLocn,
    format_uuid,
    is_label,
    label_crc,
    lvm_crc,
)
from .text import TextError, parse_text, tokenize
from .vg import LogicalVolume, Segment, StripedSource, VolumeGroup

__all__ = [
    "INITIAL_CRC",
    "LABEL_ID",
    "LABEL_TYPE",
    "MDA_HEADER_SIZE",
    "MDA_MAGIC",
    "READABLE",
    "SECTOR",
    "DiskLocn",
    "LabelHeader",
    "LogicalVolume",
    "MdaHeader",
    "MetadataCopy",
    "PhysicalVolume",
    "PvHeader",
    "PvHeaderExtension",
    "RawLocn",
    "Segment",
    "StripedSource",
    "TextError",
    "VolumeGroup",
    "find_label",
    "format_uuid",
    "is_label",
    "label_crc",
    "lvm_crc",
    "parse_text",
    "read_pv",
    "scan_lvm",
    "tokenize",
]
