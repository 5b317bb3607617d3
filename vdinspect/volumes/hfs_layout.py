"""HFS and HFS Plus, as far as the probe reads them: the HFS master directory block (and
the HFS Plus volume it may wrap), the HFS Plus volume header with its fork data, and the
B-tree node descriptor, header record and catalog key that lead to the volume's name.

Names from Apple's "Inside Macintosh: Files" (``MDB``) and Technote 1150 "HFS Plus Volume
Format" (``HFSPlusVolumeHeader``, ``HFSPlusForkData``, ``BTNodeDescriptor``,
``BTHeaderRec``, ``HFSPlusCatalogKey``). Big-endian. Both headers sit 1024 bytes into the
volume.
"""

from __future__ import annotations

from construct import Array, Bytes, Int8sb, Int8ub, Int16ub, Int32ub, Int64ub, Struct

VOLUME_HEADER_AT = 1024  # the MDB / volume header: 1024 bytes into the volume
HFS_SIGNATURE = b"BD"  # drSigWord of an HFS volume (or an HFS wrapper)
HFSPLUS_SIGNATURES = (b"H+", b"HX")  # HFS Plus, HFSX
HFS_ALLOCATION_UNIT = 512  # drAlBlSt counts 512-byte sectors
BT_LEAF_NODE = -1  # BTNodeDescriptor.kind of a leaf node
ROOT_PARENT_ID = 1  # kHFSRootParentID: the parent of the root folder, keyed by its name
MAX_NAME_UNITS = 255  # HFSUniStr255

ExtentDescriptor = Struct(
    "startBlock" / Int16ub * "first allocation block",
    "blockCount" / Int16ub * "allocation blocks",
)  # HFS

MasterDirectoryBlock = Struct(
    "drSigWord" / Bytes(2) * "'BD'",
    "drCrDate" / Int32ub * "created, seconds since 1904",
    "drLsMod" / Int32ub * "last modified",
    "drAtrb" / Int16ub * "volume attributes",
    "drNmFls" / Int16ub * "files in the root folder",
    "drVBMSt" / Int16ub * "first sector of the volume bitmap",
    "drAllocPtr" / Int16ub * "start of the next allocation search",
    "drNmAlBlks" / Int16ub * "allocation blocks",
    "drAlBlkSiz" / Int32ub * "allocation block size, bytes",
    "drClpSiz" / Int32ub * "default clump size",
    "drAlBlSt" / Int16ub * "first allocation block, 512-byte sectors",
    "drNxtCNID" / Int32ub * "next unused catalog node id",
    "drFreeBks" / Int16ub * "free allocation blocks",
    "drVN" / Bytes(28) * "volume name: a length byte and up to 27 Mac Roman characters",
    "drVolBkUp" / Int32ub * "last backup",
    "drVSeqNum" / Int16ub * "backup sequence number",
    "drWrCnt" / Int32ub * "write count",
    "drXTClpSiz" / Int32ub * "extents overflow file clump size",
    "drCTClpSiz" / Int32ub * "catalog file clump size",
    "drNmRtDirs" / Int16ub * "folders in the root folder",
    "drFilCnt" / Int32ub * "files on the volume",
    "drDirCnt" / Int32ub * "folders on the volume",
    "drFndrInfo" / Bytes(32) * "Finder information (words 6-7: the 64-bit volume id)",
    "drEmbedSigWord" / Bytes(2) * "'H+' when an HFS Plus volume is embedded",
    "drEmbedExtent" / ExtentDescriptor * "where the embedded volume is, allocation blocks",
    "drXTFlSize" / Int32ub * "extents overflow file size",
    "drXTExtRec" / Array(3, ExtentDescriptor),
    "drCTFlSize" / Int32ub * "catalog file size",
    "drCTExtRec" / Array(3, ExtentDescriptor),
)  # 162 bytes

PlusExtentDescriptor = Struct(
    "startBlock" / Int32ub * "first allocation block",
    "blockCount" / Int32ub * "allocation blocks (0: no more extents)",
)

ForkData = Struct(
    "logicalSize" / Int64ub * "bytes",
    "clumpSize" / Int32ub,
    "totalBlocks" / Int32ub * "allocation blocks",
    "extents" / Array(8, PlusExtentDescriptor) * "the first eight extents",
)  # 80 bytes

VolumeHeader = Struct(
    "signature" / Bytes(2) * "'H+' (HFS Plus) or 'HX' (HFSX)",
    "version" / Int16ub * "4 (HFS Plus) or 5 (HFSX)",
    "attributes" / Int32ub,
    "lastMountedVersion" / Bytes(4),
    "journalInfoBlock" / Int32ub,
    "createDate" / Int32ub,
    "modifyDate" / Int32ub,
    "backupDate" / Int32ub,
    "checkedDate" / Int32ub,
    "fileCount" / Int32ub,
    "folderCount" / Int32ub,
    "blockSize" / Int32ub * "allocation block size, bytes",
    "totalBlocks" / Int32ub,
    "freeBlocks" / Int32ub,
    "nextAllocation" / Int32ub,
    "rsrcClumpSize" / Int32ub,
    "dataClumpSize" / Int32ub,
    "nextCatalogID" / Int32ub,
    "writeCount" / Int32ub,
    "encodingsBitmap" / Int64ub,
    "finderInfo" / Bytes(32) * "Finder information (words 6-7: the 64-bit volume id)",
    "allocationFile" / ForkData,
    "extentsFile" / ForkData,
    "catalogFile" / ForkData * "the catalog B-tree: its node 0 holds the header record",
    "attributesFile" / ForkData,
    "startupFile" / ForkData,
)  # 512 bytes

FINDER_VOLUME_ID = slice(24, 32)  # finderInfo words 6 and 7: the volume id blkid hashes

BTNodeDescriptor = Struct(
    "fLink" / Int32ub * "next node of this kind",
    "bLink" / Int32ub * "previous node",
    "kind" / Int8sb * "-1 leaf, 0 index, 1 header, 2 map",
    "height" / Int8ub * "level (1 for leaves)",
    "numRecords" / Int16ub * "records in the node",
    "reserved" / Int16ub,
)  # 14 bytes

BTHeaderRec = Struct(
    "treeDepth" / Int16ub * "levels",
    "rootNode" / Int32ub,
    "leafRecords" / Int32ub * "records in the leaves",
    "firstLeafNode" / Int32ub * "node number of the first leaf",
    "lastLeafNode" / Int32ub,
    "nodeSize" / Int16ub * "bytes per node (512..32768)",
    "maxKeyLength" / Int16ub,
    "totalNodes" / Int32ub,
    "freeNodes" / Int32ub,
)  # the fields read; more follow to 106 bytes

CatalogKeyHead = Struct(
    "keyLength" / Int16ub * "bytes of key after this field",
    "parentID" / Int32ub * "the parent folder's catalog node id",
    "nodeName_length" / Int16ub * "UTF-16 units of nodeName that follow",
)  # HFSPlusCatalogKey; nodeName (UTF-16 big-endian) follows
