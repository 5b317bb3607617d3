"""APFS, as far as telling an encrypted (FileVault) volume apart: the container superblock,
the object map and its B-tree node, and the volume superblock's flags.

Names and places from Apple's "Apple File System Reference" (2020): every object starts
with an ``obj_phys_t``; the container superblock (``NXSB``, block 0) lists its volumes as
virtual object ids (``nx_fs_oid``) that the container's object map (``nx_omap_oid`` ->
``omap_phys_t`` -> a B-tree of ``omap_key_t`` -> ``omap_val_t``) turns into block
addresses; a volume superblock (``APSB``) whose ``apfs_fs_flags`` lacks
``APFS_FS_UNENCRYPTED`` is encrypted. Only a one-level object map (a root leaf node, what a
container with a few volumes has) is read: a bounded look, never a tree walk.
"""

from __future__ import annotations

from construct import Array, Bytes, Int16ul, Int32ul, Int64ul, Struct

from ..io import ByteSource
from ..layout import offset_of, struct_format
from ..units import is_pow2

ObjPhys = Struct(
    "o_cksum" / Int64ul * "Fletcher-64 checksum of the object",
    "o_oid" / Int64ul * "object id",
    "o_xid" / Int64ul * "transaction id",
    "o_type" / Int32ul * "object type and storage flags",
    "o_subtype" / Int32ul * "type of the object's contents",
)

NX_MAGIC = b"NXSB"  # nx_magic of the container superblock

NxSuperblock = Struct(
    "nx_o" / ObjPhys,
    "nx_magic" / Bytes(4) * "'NXSB'",
    "nx_block_size" / Int32ul * "block size, bytes",
    "nx_block_count" / Int64ul * "blocks in the container",
    "nx_features" / Int64ul,
    "nx_readonly_compatible_features" / Int64ul,
    "nx_incompatible_features" / Int64ul,
    "nx_uuid" / Bytes(16),
    "nx_next_oid" / Int64ul,
    "nx_next_xid" / Int64ul,
    "nx_xp_desc_blocks" / Int32ul,
    "nx_xp_data_blocks" / Int32ul,
    "nx_xp_desc_base" / Int64ul,
    "nx_xp_data_base" / Int64ul,
    "nx_xp_desc_next" / Int32ul,
    "nx_xp_data_next" / Int32ul,
    "nx_xp_desc_index" / Int32ul,
    "nx_xp_desc_len" / Int32ul,
    "nx_xp_data_index" / Int32ul,
    "nx_xp_data_len" / Int32ul,
    "nx_spaceman_oid" / Int64ul,
    "nx_omap_oid" / Int64ul * "physical block of the container's object map",
    "nx_reaper_oid" / Int64ul,
    "nx_test_type" / Int32ul,
    "nx_max_file_systems" / Int32ul * "volumes the container may hold (at most 100)",
    "nx_fs_oid" / Array(100, Int64ul) * "virtual object ids of the volume superblocks",
)

OmapPhys = Struct(
    "om_o" / ObjPhys,
    "om_flags" / Int32ul,
    "om_snap_count" / Int32ul,
    "om_tree_type" / Int32ul,
    "om_snapshot_tree_type" / Int32ul,
    "om_tree_oid" / Int64ul * "physical block of the object map's B-tree root",
)

BtreeNodePhys = Struct(
    "btn_o" / ObjPhys,
    "btn_flags" / Int16ul * "1 root, 2 leaf, 4 fixed-size keys and values",
    "btn_level" / Int16ul * "0 for a leaf",
    "btn_nkeys" / Int32ul * "entries in the node",
    "btn_table_space_off" / Int16ul * "table of contents: offset after btn_data",
    "btn_table_space_len" / Int16ul * "table of contents: length, bytes",
    "btn_free_space" / Bytes(4) * "nloc_t of the free space",
    "btn_key_free_list" / Bytes(4) * "nloc_t of the key free list",
    "btn_val_free_list" / Bytes(4) * "nloc_t of the value free list",
)  # btn_data (the table of contents, keys, free space, values) follows
BTREE_INFO_SIZE = 40  # btree_info_t at the end of a root node
BTNODE_ROOT, BTNODE_LEAF, BTNODE_FIXED_KV_SIZE = 1, 2, 4

KvOff = Struct("k" / Int16ul * "key offset in the key area", "v" / Int16ul * "value offset "
               "back from the end of the value area")
OmapKey = Struct("ok_oid" / Int64ul * "virtual object id", "ok_xid" / Int64ul)
OmapVal = Struct("ov_flags" / Int32ul, "ov_size" / Int32ul, "ov_paddr" / Int64ul *
                 "physical block of the object")

ApfsSuperblockHead = Struct(
    "apfs_o" / ObjPhys,
    "apfs_magic" / Bytes(4) * "'APSB'",
    "apfs_fs_index" / Int32ul * "index in nx_fs_oid",
    "apfs_pad" / Bytes(264 - 40),
    "apfs_fs_flags" / Int64ul * "bit 0 APFS_FS_UNENCRYPTED, bit 3 APFS_FS_ONEKEY",
)
APFS_FS_UNENCRYPTED = 0x1
MAX_VOLUMES = 100

_NX = struct_format(NxSuperblock, "nx_block_size", "nx_block_count", "nx_omap_oid",
                    "nx_max_file_systems")
_FS_OIDS = offset_of(NxSuperblock, "nx_fs_oid")
_OM_TREE = struct_format(OmapPhys, "om_tree_oid")
_NODE = struct_format(BtreeNodePhys, "btn_flags", "btn_level", "btn_nkeys",
                      "btn_table_space_off", "btn_table_space_len")
_NODE_DATA = BtreeNodePhys.sizeof()
_KVOFF = struct_format(KvOff)
_OKEY = struct_format(OmapKey)
_OVAL = struct_format(OmapVal)
_APSB = struct_format(ApfsSuperblockHead, "apfs_fs_flags")
_APSB_MAGIC = slice(offset_of(ApfsSuperblockHead, "apfs_magic"),
                    offset_of(ApfsSuperblockHead, "apfs_magic") + 4)


def encrypted_volumes(src: ByteSource, head: bytes) -> tuple[int, int] | None:
    """(encrypted volumes, volumes found) of the APFS container whose first bytes are
    ``head``, or None when its object map is not a single leaf this look can read."""
    bs, count, omap, maxfs = _NX.unpack_from(head)
    if not 4096 <= bs <= 65536 or not is_pow2(bs) or omap == 0 or omap >= count:
        return None

    def block(n: int) -> bytes | None:
        if n <= 0 or n >= count or (n + 1) * bs > src.size:
            return None
        return src.read(n * bs, bs)

    om = block(omap)
    tree = block(_OM_TREE.unpack_from(om)[0]) if om is not None else None
    if tree is None:
        return None
    flags, level, nkeys, toff, tlen = _NODE.unpack_from(tree)
    if level != 0 or not flags & BTNODE_FIXED_KV_SIZE or nkeys > bs // _KVOFF.size:
        return None
    keys = _NODE_DATA + toff + tlen
    vend = bs - (BTREE_INFO_SIZE if flags & BTNODE_ROOT else 0)
    where: dict[int, int] = {}
    for i in range(nkeys):
        k, v = _KVOFF.unpack_from(tree, _NODE_DATA + toff + i * _KVOFF.size)
        if keys + k + _OKEY.size > bs or not _OVAL.size <= v <= vend:
            return None
        oid, _xid = _OKEY.unpack_from(tree, keys + k)
        where[oid] = _OVAL.unpack_from(tree, vend - v)[2]  # the newest xid comes last
    oids = [o for o in _volume_oids(head, min(maxfs, MAX_VOLUMES)) if o]
    found = enc = 0
    for oid in oids:
        sb = block(where.get(oid, 0))
        if sb is None or sb[_APSB_MAGIC] != b"APSB":
            continue
        found += 1
        enc += not _APSB.unpack_from(sb)[0] & APFS_FS_UNENCRYPTED
    return (enc, found) if found else None


def _volume_oids(head: bytes, n: int) -> list[int]:
    """The first ``n`` entries of ``nx_fs_oid`` (0 = no volume)."""
    end = min(len(head), _FS_OIDS + 8 * n)
    return [int.from_bytes(head[o:o + 8], "little") for o in range(_FS_OIDS, end - 7, 8)]
