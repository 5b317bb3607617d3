"""A Btrfs tree log written into a volume ``mkfs.btrfs`` made, from the on-disk format.

No tool writes a log tree on demand (the kernel writes one on fsync), so this helper
adds one to an image: a log tree leaf (a directory's INODE_ITEM, its DIR_LOG_INDEX range
items and the DIR_INDEX entries the log holds), a log root tree leaf holding its
ROOT_ITEM (objectid TREE_LOG, offset the subvolume), both placed in free space of the
METADATA chunk (every copy), and the superblock's ``log_root`` pointing at it. Layouts
come from the Btrfs documentation ("On-disk format": header, item, inode item, root item,
dir item, ``btrfs_dir_log_item``), written with ``struct`` here, never with vdinspect's
declarations; where the volume's facts are (chunks, used blocks, uuids) is read from
``btrfs inspect-internal`` output. Log blocks carry generation ``generation + 1``, as
the kernel expects of a log written after the last commit.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from tests.tools import run, write_sparse

TREE_LOG = (1 << 64) - 6
INODE_ITEM, DIR_LOG_INDEX, DIR_INDEX, ROOT_ITEM = 1, 72, 96, 132
SB = 0x10000


def _crc32c(data: bytes) -> int:
    import crc32c

    return crc32c.crc32c(data)


def _leaf(items: list[tuple[tuple[int, int, int], bytes]], bytenr: int, owner: int,
          generation: int, fsid: bytes, chunk_uuid: bytes, nodesize: int) -> bytes:
    """A checksummed leaf: header, item headers, data packed from the block's end."""
    block = bytearray(nodesize)
    end = nodesize - 101
    heads = b""
    for (obj, typ, off), data in sorted(items):
        end -= len(data)
        block[101 + end:101 + end + len(data)] = data
        heads += struct.pack("<QBQII", obj, typ, off, end, len(data))
    block[101:101 + len(heads)] = heads
    flags = 1 | (1 << 56)  # WRITTEN, backref revision 1 (mixed backrefs)
    block[32:101] = struct.pack("<16sQQ16sQQIB", fsid, bytenr, flags, chunk_uuid,
                                generation, owner, len(items), 0)
    block[0:4] = struct.pack("<I", _crc32c(bytes(block[32:])))
    return bytes(block)


def inode_item(generation: int, mode: int, nlink: int, size: int = 0) -> bytes:
    """A 160-byte inode item (times left zero)."""
    return struct.pack("<5Q4I3Q32x48x", generation, generation, size, 0, 0, nlink, 0, 0,
                       mode, 0, 0, 0)


def dir_item(name: bytes, ino: int, ftype: int, transid: int) -> bytes:
    return struct.pack("<QBQQHHB", ino, INODE_ITEM, 0, transid, 0, len(name), ftype) + name


def _root_item(bytenr: int, generation: int) -> bytes:
    inode = struct.pack("<5Q4I3Q32x48x", 0, 0, 0, 0, 0, 1, 0, 0, 0o40755, 0, 0, 0)
    body = struct.pack("<7QIQBQBB", generation, 0, bytenr, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0)
    rest = struct.pack("<Q16s16s16s4Q", generation, b"", b"", b"", 0, 0, 0, 0)
    out = inode + body + rest + bytes(4 * 12 + 64)
    assert len(out) == 439
    return out


def facts(img: Path) -> dict:
    """What the builder needs to know of the volume, from btrfs-progs' dumps."""
    sup = run("btrfs", "inspect-internal", "dump-super", img)
    gen = int(re.search(r"^generation\s+(\d+)", sup, re.M).group(1))
    nodesize = int(re.search(r"^nodesize\s+(\d+)", sup, re.M).group(1))
    meta_uuid = re.search(r"^metadata_uuid\s+([0-9a-f-]+)", sup, re.M).group(1)
    chunks = run("btrfs", "inspect-internal", "dump-tree", "-t", "chunk", img)
    m = re.search(r"CHUNK_ITEM (\d+)\) itemoff \d+ itemsize \d+\n\s+length (\d+) owner \d+ "
                  r"stripe_len \d+ type METADATA[^\n]*\n(?:[^\n]*\n){2}((?:\s+stripe \d+ "
                  r"devid \d+ offset \d+\n(?:[^\n]*dev_uuid[^\n]*\n)?)+)", chunks)
    logical, length = int(m.group(1)), int(m.group(2))
    stripes = [int(x) for x in re.findall(r"offset (\d+)", m.group(3))]
    fs_tree = run("btrfs", "inspect-internal", "dump-tree", "-t", "5", img)
    chunk_uuid = re.search(r"^chunk uuid ([0-9a-f-]+)", fs_tree, re.M).group(1)
    extents = run("btrfs", "inspect-internal", "dump-tree", "-t", "extent", img)
    used = [int(x) for x in re.findall(r"key \((\d+) (?:METADATA_ITEM|EXTENT_ITEM)", extents)]
    used = [u for u in used if logical <= u < logical + length]
    return dict(generation=gen, nodesize=nodesize, fsid=_uuid(meta_uuid),
                chunk_uuid=_uuid(chunk_uuid), chunk=(logical, length, stripes),
                free=max(used) + 4 * nodesize, fs_tree=fs_tree)


def _uuid(text: str) -> bytes:
    return bytes.fromhex(text.replace("-", ""))


def add_dir_log(img: Path, out: Path, subvol: int, dir_ino: int,
                ranges: list[tuple[int, int]],
                logged: list[tuple[int, bytes, int, int]]) -> dict:
    """Copy ``img`` to ``out`` with a tree log for subvolume ``subvol`` that logs the
    directory ``dir_ino``: authoritative for the DIR_INDEX ``ranges`` (first, last) and
    holding the entries ``logged`` (index, name, inode, file type)."""
    f = facts(img)
    gen, ns = f["generation"] + 1, f["nodesize"]
    logical, length, stripes = f["chunk"]
    log_at, root_at = f["free"], f["free"] + ns
    assert root_at + ns <= logical + length
    items = [((dir_ino, INODE_ITEM, 0), inode_item(gen, 0o40755, 1))]
    items += [((dir_ino, DIR_LOG_INDEX, a), struct.pack("<Q", b)) for a, b in ranges]
    items += [((dir_ino, DIR_INDEX, k), dir_item(name, ino, ft, gen))
              for k, name, ino, ft in logged]
    leaf = _leaf(items, log_at, TREE_LOG, gen, f["fsid"], f["chunk_uuid"], ns)
    root = _leaf([((TREE_LOG, ROOT_ITEM, subvol), _root_item(log_at, gen))], root_at,
                 TREE_LOG, gen, f["fsid"], f["chunk_uuid"], ns)
    data = bytearray(img.read_bytes())
    for phys in stripes:  # every copy of the METADATA chunk
        for at, block in ((log_at, leaf), (root_at, root)):
            p = phys + at - logical
            data[p:p + ns] = block
    for sb in (SB, 64 << 20):
        if sb + 4096 > len(data) or data[sb + 0x40:sb + 0x48] != b"_BHRfS_M":
            continue
        data[sb + 0x60:sb + 0x68] = struct.pack("<Q", root_at)  # log_root
        data[sb + 0xC8] = 0  # log_root_level
        data[sb:sb + 4] = struct.pack("<I", _crc32c(bytes(data[sb + 0x20:sb + 0x1000])))
    write_sparse(out, data)
    return dict(f, log_at=log_at, root_at=root_at)
