"""Probes of optical, Apple and other volumes: ISO 9660 (with Joliet), UDF, HFS, HFS Plus,
APFS and ZFS."""

from __future__ import annotations

import hashlib

from ...io import ByteSource, read_inside
from ...layout import field_slice, size_of, struct_format
from ...units import uuid_text
from .. import hfs_layout as hfs
from .. import linux_layout as lx
from .. import optical_layout as opt
from ..apfs_layout import NX_MAGIC, NxSuperblock
from .base import FsInfo, label_text

# --- optical, Apple, others ---------------------------------------------------------------

_ISO_VD = struct_format(opt.VolumeDescriptor, "type", "id", "volume_id", "escape",
                        "creation_date.digits", "creation_date.gmt_offset",
                        "modification_date.digits", "modification_date.gmt_offset")
_ISO_LABEL_UNITS = size_of(opt.VolumeDescriptor, "volume_id") // 2  # UCS-2 units in Joliet


def _iso_date_uuid(digits: bytes, gmt_offset: int) -> str | None:
    """blkid's ISO 9660 UUID: a dec-datetime written with dashes (None when unset)."""
    if all(c == 0x30 for c in digits) and gmt_offset == 0:
        return None
    s = digits.decode("ascii", "replace")
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}-{s[8:10]}-{s[10:12]}-{s[12:14]}-{s[14:16]}"


def probe_iso9660(src: ByteSource) -> FsInfo | None:
    """An ISO 9660 primary volume descriptor at sector 16; a Joliet supplementary one
    gives the version and, when it differs, the label (UCS-2)."""
    pvd = read_inside(src, opt.DESCRIPTORS_AT, opt.DESCRIPTOR_SIZE)
    if pvd is None:
        return None
    _, ident, label, _, created, c_off, modified, m_off = _ISO_VD.unpack_from(pvd)
    if ident != opt.ISO_STANDARD_ID:
        return None
    uid = _iso_date_uuid(modified, m_off) or _iso_date_uuid(created, c_off)
    version = None
    text = label.decode("ascii", "replace")
    for i in range(1, 17):
        vd = read_inside(src, opt.DESCRIPTORS_AT + opt.DESCRIPTOR_SIZE * i, opt.DESCRIPTOR_SIZE)
        if vd is None:
            break
        vtype, ident, jol, escape = _ISO_VD.unpack_from(vd)[:4]
        if vtype == opt.ISO_VD_END or ident != opt.ISO_STANDARD_ID:
            break
        if vtype == opt.ISO_VD_SUPPLEMENTARY and escape[:3] in opt.JOLIET_ESCAPES:
            version = "Joliet Extension"
            same = all(jol[2 * k] == 0 and jol[2 * k + 1] == label[k]
                       for k in range(_ISO_LABEL_UNITS))
            if not same:
                text = jol.decode("utf-16-be", "replace")
            break
    return FsInfo("iso9660", label_text(text), uid, version)


def _dstring(b: bytes) -> str | None:
    """An OSTA compressed unicode dstring (last byte = used length)."""
    n = b[-1]
    if n == 0 or n > len(b) - 1:
        return None
    comp, body = b[0], b[1:n]
    if comp == 8:
        return body.decode("latin-1")
    if comp == 16:
        return body.decode("utf-16-be", "replace")
    return None


_VSD_ID = field_slice(opt.VolumeStructureDescriptor, "StandardIdentifier")
_VSD_SIZE = opt.VolumeStructureDescriptor.sizeof()
_AVDP_SIZE = opt.AnchorVolumeDescriptorPointer.sizeof()
_AVDP = struct_format(opt.AnchorVolumeDescriptorPointer, "DescriptorTag.TagIdentifier",
                      "DescriptorTag.TagLocation",
                      "MainVolumeDescriptorSequenceExtent.ExtentLength",
                      "MainVolumeDescriptorSequenceExtent.ExtentLocation")
_TAG_ID = struct_format(opt.DescriptorTag, "TagIdentifier")
_LVD_LABEL = field_slice(opt.LogicalVolumeDescriptorHead, "LogicalVolumeIdentifier")
_PVD_LABEL = field_slice(opt.PrimaryVolumeDescriptorHead, "VolumeIdentifier")
_UDF_DESCRIPTOR_READ = 512  # the smallest block: holds every field read


def probe_udf(src: ByteSource) -> FsInfo | None:
    """A UDF volume: NSR02/03 in the recognition sequence, then the anchor at sector 256
    (block sizes tried in turn) leading to the logical (else primary) volume identifier."""
    nsr = False
    for i in range(opt.VRS_MAX):
        vsd = read_inside(src, opt.DESCRIPTORS_AT + opt.DESCRIPTOR_SIZE * i, _VSD_SIZE)
        if vsd is None:
            break
        ident = vsd[_VSD_ID]
        if ident in opt.VRS_NSR_IDS:
            nsr = True
            break
        if ident not in opt.VRS_OTHER_IDS:
            break
    if not nsr:
        return None
    label = None
    for bs in opt.UDF_BLOCK_SIZES:
        avdp = read_inside(src, opt.ANCHOR_SECTOR * bs, _AVDP_SIZE)
        if avdp is None:
            continue
        tag, where, length, loc = _AVDP.unpack_from(avdp)
        if tag != opt.TAG_ANCHOR or where != opt.ANCHOR_SECTOR:
            continue
        pvd_label = None
        for k in range(min(length // bs, 64)):
            d = read_inside(src, (loc + k) * bs, _UDF_DESCRIPTOR_READ)
            if d is None:
                break
            (tag,) = _TAG_ID.unpack_from(d)
            if tag == opt.TAG_LOGICAL_VOLUME:
                label = _dstring(d[_LVD_LABEL])
            elif tag == opt.TAG_PRIMARY_VOLUME:
                pvd_label = _dstring(d[_PVD_LABEL])
            elif tag == opt.TAG_TERMINATING:
                break
        label = label or pvd_label
        break
    return FsInfo("udf", label_text(label))


_HFS_HASH_INIT = bytes.fromhex("b3e20f39f29211d697a400306543ecac")
_MDB_SIG = field_slice(hfs.MasterDirectoryBlock, "drSigWord")
_MDB_EMBED_SIG = field_slice(hfs.MasterDirectoryBlock, "drEmbedSigWord")
_MDB_NAME = field_slice(hfs.MasterDirectoryBlock, "drVN")
_MDB_FINDER = field_slice(hfs.MasterDirectoryBlock, "drFndrInfo")
_MDB_EMBED = struct_format(hfs.MasterDirectoryBlock, "drAlBlkSiz", "drAlBlSt",
                           "drEmbedExtent.startBlock")
_VH_SIG = field_slice(hfs.VolumeHeader, "signature")
_VH_FINDER = field_slice(hfs.VolumeHeader, "finderInfo")
_VH_CATALOG = struct_format(hfs.VolumeHeader, "blockSize", "catalogFile.extents")
_EXTENT = struct_format(hfs.PlusExtentDescriptor)
_BT_HEADER = struct_format(hfs.BTHeaderRec, "leafRecords", "firstLeafNode", "nodeSize")
_BT_NODE = struct_format(hfs.BTNodeDescriptor, "kind", "numRecords")
_NODE_DESCRIPTOR = hfs.BTNodeDescriptor.sizeof()  # records start after it
_CATALOG_KEY_SIZE = hfs.CatalogKeyHead.sizeof()  # the name follows
_CATALOG_KEY = struct_format(hfs.CatalogKeyHead, "parentID", "nodeName_length")
_HEADER_READ = 512  # bytes of the MDB / volume header sector read


def _hfs_uuid(fid: bytes) -> str | None:
    """blkid's HFS UUID: an MD5 name-based UUID of the 64-bit volume id in the Finder info."""
    if not any(fid):
        return None
    d = bytearray(hashlib.md5(_HFS_HASH_INIT + fid).digest())
    d[6] = 0x30 | (d[6] & 0x0F)
    d[8] = 0x80 | (d[8] & 0x3F)
    return uuid_text(d)


def probe_hfs(src: ByteSource) -> FsInfo | None:
    """An HFS volume (its Mac Roman name), or HFS Plus, bare or wrapped in HFS."""
    mdb = read_inside(src, hfs.VOLUME_HEADER_AT, _HEADER_READ)
    if mdb is None:
        return None
    off = 0
    if mdb[_MDB_SIG] == hfs.HFS_SIGNATURE:
        if mdb[_MDB_EMBED_SIG] not in hfs.HFSPLUS_SIGNATURES:
            name = mdb[_MDB_NAME]
            n = min(name[0], len(name) - 1)
            return FsInfo(
                "hfs",
                label_text(name[1 : 1 + n].decode("mac_roman", "replace")),
                _hfs_uuid(mdb[_MDB_FINDER][hfs.FINDER_VOLUME_ID]),
            )
        al_blk, al_st, embed = _MDB_EMBED.unpack_from(mdb)
        off = al_st * hfs.HFS_ALLOCATION_UNIT + embed * al_blk
        mdb = read_inside(src, off + hfs.VOLUME_HEADER_AT, _HEADER_READ)
        if mdb is None:
            return None
    if mdb[_VH_SIG] not in hfs.HFSPLUS_SIGNATURES:
        return None
    uid = _hfs_uuid(mdb[_VH_FINDER][hfs.FINDER_VOLUME_ID])
    return FsInfo("hfsplus", _hfspluslabel_text(src, mdb, off), uid)


def _hfspluslabel_text(src: ByteSource, vh: bytes, off: int) -> str | None:
    """The root folder's name: the first record of the catalog B-tree's first leaf."""
    blocksize, raw_extents = _VH_CATALOG.unpack_from(vh)
    if blocksize < 512:
        return None
    extents = list(_EXTENT.iter_unpack(raw_extents))
    node0 = read_inside(src, off + extents[0][0] * blocksize, _HEADER_READ)
    if node0 is None:
        return None
    leaf_count, leaf_head, node_size = _BT_HEADER.unpack_from(node0, _NODE_DESCRIPTOR)
    if node_size < _NODE_DESCRIPTOR + 8 or leaf_count == 0:
        return None
    leaf_block = leaf_head * node_size // blocksize
    first = None
    for start, count in extents:
        if count == 0:
            return None
        if leaf_block < count:
            first = start
            break
        leaf_block -= count
    if first is None:
        return None
    node = read_inside(src, off + (first + leaf_block) * blocksize, min(node_size, 65536))
    if node is None:
        return None
    kind, records = _BT_NODE.unpack_from(node)
    if kind != hfs.BT_LEAF_NODE or records == 0:
        return None
    parent, n = _CATALOG_KEY.unpack_from(node, _NODE_DESCRIPTOR)
    if parent != hfs.ROOT_PARENT_ID or n > hfs.MAX_NAME_UNITS:
        return None
    name_at = _NODE_DESCRIPTOR + _CATALOG_KEY_SIZE
    return label_text(node[name_at : name_at + 2 * n].decode("utf-16-be", "replace"))


_NX_MAGIC = field_slice(NxSuperblock, "nx_magic")
_NX_UUID = field_slice(NxSuperblock, "nx_uuid")


def probe_apfs(src: ByteSource, head: bytes) -> FsInfo | None:
    """An APFS container; ``apfs_encrypted`` (blkid says apfs) when a volume in it is
    encrypted (FileVault), VERSION then saying how many of how many."""
    if len(head) < 1024 or head[_NX_MAGIC] != NX_MAGIC:
        return None
    out = FsInfo("apfs", uuid=uuid_text(head[_NX_UUID]))
    from ..apfs_layout import encrypted_volumes

    got = encrypted_volumes(src, head)
    if got is not None and got[0]:
        out.type, out.version = "apfs_encrypted", f"{got[0]} of {got[1]} volumes encrypted"
    return out


_UB_MAGIC = size_of(lx.UberblockHead, "ub_magic")


def probe_zfs(src: ByteSource) -> FsInfo | None:
    """A ZFS vdev: the uberblock magic in one of the first slots of label 0's ring."""
    for k in range(4):
        ub = read_inside(src, lx.UBERBLOCK_ARRAY_AT + lx.UBERBLOCK_SLOT * k, _UB_MAGIC)
        if ub is None:
            return None
        # the uberblock is in the byte order of the machine that wrote it
        if lx.UBERBLOCK_MAGIC in (int.from_bytes(ub, "little"), int.from_bytes(ub, "big")):
            return FsInfo("zfs_member")
    return None


