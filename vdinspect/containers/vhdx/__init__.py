"""VHDX (Microsoft Hyper-V virtual hard disk, version 2).

Facts from Microsoft's open specification [MS-VHDX]; log replay cross-checked with QEMU's
block/vhdx-log.c. A 1 MiB header section (file identifier, two headers, two region tables)
places the log, the metadata region (block size, disk size, sector sizes, parent locator)
and the block allocation table (BAT), whose entries map each payload block of the virtual
disk to a 1 MiB-aligned host offset. A pending log is replayed in memory only
(:class:`~vdinspect.io.OverlaySource`): the file is never written.

Modules: ``structs`` (the declarations), ``headers``, ``log``, ``metadata``, ``bat``,
``check`` (structures and findings) and ``image`` (the reader). ``probe`` and
``open_image`` are what the registry calls.
"""

from __future__ import annotations

from ...io import OverlaySource, crc32c
from .bat import describe_bat_entry
from .image import FORMAT, VhdxImage, open_image, probe
from .log import LogEntry
from .metadata import parent_hint_from_locator
from .structs import (
    BAT_GUID,
    METADATA_GUID,
    METADATA_NAMES,
    REGION_NAMES,
    VHDX_PARENT_LOCATOR_TYPE,
    DataDescriptor,
    DataSector,
    FileIdentifier,
    FileParameters,
    FileParametersValues,
    LogEntryHeader,
    MetadataItemGuid,
    MetadataTableEntry,
    MetadataTableEntryValues,
    MetadataTableHeader,
    ParentLocatorEntry,
    ParentLocatorHeader,
    ParentLocatorType,
    PayloadBatEntry,
    PayloadBlockState,
    RegionGuid,
    RegionTableEntry,
    RegionTableEntryValues,
    RegionTableHeader,
    SectorBitmapBatEntry,
    SectorBitmapState,
    VhdxHeader,
    ZeroDescriptor,
    checksum_ok,
    guid_str,
    utf16_text,
)

__all__ = [
    "BAT_GUID",
    "FORMAT",
    "METADATA_GUID",
    "METADATA_NAMES",
    "REGION_NAMES",
    "VHDX_PARENT_LOCATOR_TYPE",
    "DataDescriptor",
    "DataSector",
    "FileIdentifier",
    "FileParameters",
    "FileParametersValues",
    "LogEntry",
    "LogEntryHeader",
    "MetadataItemGuid",
    "MetadataTableEntry",
    "MetadataTableEntryValues",
    "MetadataTableHeader",
    "OverlaySource",
    "ParentLocatorEntry",
    "ParentLocatorHeader",
    "ParentLocatorType",
    "PayloadBatEntry",
    "PayloadBlockState",
    "RegionGuid",
    "RegionTableEntry",
    "RegionTableEntryValues",
    "RegionTableHeader",
    "SectorBitmapBatEntry",
    "SectorBitmapState",
    "VhdxHeader",
    "VhdxImage",
    "ZeroDescriptor",
    "checksum_ok",
    "crc32c",
    "describe_bat_entry",
    "guid_str",
    "open_image",
    "parent_hint_from_locator",
    "probe",
    "utf16_text",
]
