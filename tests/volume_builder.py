"""Build partitioned disks and LVM2 physical volumes from the on-disk formats, for tests.

Written from the specifications with ``struct.pack`` and a bit-by-bit CRC, independently
of vdinspect's construct structs, so a test compares vdinspect with bytes placed here and
not with itself. Used where no tool here can write the variant: LVM2 (lvm2's tools need
device-mapper), damaged tables (EBR loops, absurd GPT headers), odd metadata text.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

SECTOR = 512
LVM_INITIAL_CRC = 0xF597A6CF


def lvm_crc(data: bytes, crc: int = LVM_INITIAL_CRC) -> int:
    """lvm2's CRC-32 (reflected polynomial 0xEDB88320, seed 0xf597a6cf, no final xor)."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc


def lvm_uuid(seed: str) -> str:
    """A deterministic 32-character LVM uuid (letters and digits) from ``seed``."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    out, h = [], zlib.crc32(seed.encode())
    for i in range(32):
        h = (h * 1103515245 + 12345 + i) & 0xFFFFFFFF
        out.append(alphabet[h % len(alphabet)])
    return "".join(out)


def dashed(u: str) -> str:
    """lvm2's dashed form 6-4-4-4-4-4-6."""
    parts, pos = [], 0
    for n in (6, 4, 4, 4, 4, 4, 6):
        parts.append(u[pos : pos + n])
        pos += n
    return "-".join(parts)


# --- MBR ---------------------------------------------------------------------------------


def mbr_entry(ptype: int, start: int, size: int, boot: bool = False) -> bytes:
    """One 16-byte MBR entry (LBA fields; CHS set to the 'beyond 8 GB' marker)."""
    chs = b"\xfe\xff\xff"
    return struct.pack(
        "<B3sB3sII", 0x80 if boot else 0, chs, ptype, chs, start & 0xFFFFFFFF, size & 0xFFFFFFFF
    )


def write_mbr(buf: bytearray, entries: list[tuple[int, int, int]], signature: int = 0x1234ABCD):
    """Sector 0: disk signature, up to four (type, start, size) entries, 55 AA."""
    sector = bytearray(SECTOR)
    struct.pack_into("<I", sector, 440, signature)
    for i, (t, s, n) in enumerate(entries):
        sector[446 + 16 * i : 462 + 16 * i] = mbr_entry(t, s, n)
    sector[510:512] = b"\x55\xaa"
    buf[0:SECTOR] = sector


def write_ebr(buf: bytearray, at_sector: int, data: tuple | None, link: tuple | None) -> None:
    """An EBR at ``at_sector``: data (type, rel_start, size) and link (type, rel_start, size)."""
    sector = bytearray(SECTOR)
    if data:
        sector[446:462] = mbr_entry(*data)
    if link:
        sector[462:478] = mbr_entry(*link)
    sector[510:512] = b"\x55\xaa"
    buf[at_sector * SECTOR : (at_sector + 1) * SECTOR] = sector


# --- GPT ---------------------------------------------------------------------------------


def gpt_header(
    *,
    my_lba: int,
    alternate_lba: int,
    first_usable: int,
    last_usable: int,
    disk_guid: bytes,
    entry_lba: int,
    num_entries: int,
    entry_size: int,
    array_crc: int,
    sector: int = SECTOR,
) -> bytes:
    """A GPT header block with a correct header CRC32."""
    hdr = bytearray(
        struct.pack(
            "<8sIIIIQQQQ16sQIII",
            b"EFI PART",
            0x00010000,
            92,
            0,
            0,
            my_lba,
            alternate_lba,
            first_usable,
            last_usable,
            disk_guid,
            entry_lba,
            num_entries,
            entry_size,
            array_crc,
        )
    )
    struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr)))
    return bytes(hdr) + bytes(sector - len(hdr))


def patch_gpt_header(buf: bytearray, offset: int, **fields) -> None:
    """Change fields of the GPT header at ``offset`` and recompute its CRC32."""
    layout = {
        "my_lba": (24, "<Q"),
        "alternate_lba": (32, "<Q"),
        "partition_entry_lba": (72, "<Q"),
        "num_partition_entries": (80, "<I"),
        "size_of_partition_entry": (84, "<I"),
    }
    for name, value in fields.items():
        pos, fmt = layout[name]
        struct.pack_into(fmt, buf, offset + pos, value)
    struct.pack_into("<I", buf, offset + 16, 0)
    size = struct.unpack_from("<I", buf, offset + 12)[0]
    struct.pack_into("<I", buf, offset + 16, zlib.crc32(bytes(buf[offset : offset + size])))


def patch_gpt_header_file(path, offset: int, **fields) -> None:
    """:func:`patch_gpt_header` on a file, in place (only the header block is rewritten)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        block = bytearray(f.read(SECTOR))
        patch_gpt_header(block, 0, **fields)
        f.seek(offset)
        f.write(block)


# --- LVM2 ---------------------------------------------------------------------------------


def pv_label(
    pv_uuid: str,
    device_size: int,
    data_offset: int,
    mdas: list[tuple[int, int]],
    label_sector: int = 1,
) -> bytes:
    """The LABELONE sector: label header, PV header, data area and metadata area lists."""
    sector = bytearray(SECTOR)
    body = bytearray()
    body += pv_uuid.encode("ascii")
    body += struct.pack("<Q", device_size)
    body += struct.pack("<QQ", data_offset, 0) + struct.pack("<QQ", 0, 0)
    for off, size in mdas:
        body += struct.pack("<QQ", off, size)
    body += struct.pack("<QQ", 0, 0)
    body += struct.pack("<II", 2, 1) + struct.pack("<QQ", 0, 0)  # extension v2, no bootloader
    sector[32 : 32 + len(body)] = body
    sector[0:8] = b"LABELONE"
    struct.pack_into("<Q", sector, 8, label_sector)
    struct.pack_into("<I", sector, 20, 32)
    sector[24:32] = b"LVM2 001"
    struct.pack_into("<I", sector, 16, lvm_crc(bytes(sector[20:])))
    return bytes(sector)


def mda_header(start: int, size: int, locns: list[tuple[int, int, int, int]]) -> bytes:
    """A metadata area header with raw locations (offset, size, checksum, flags)."""
    hdr = bytearray(SECTOR)
    hdr[4:20] = b"\x20LVM2 x[5A%r0N*>"
    struct.pack_into("<IQQ", hdr, 20, 1, start, size)
    pos = 40
    for loc in locns:
        struct.pack_into("<QQII", hdr, pos, *loc)
        pos += 24
    struct.pack_into("<I", hdr, 0, lvm_crc(bytes(hdr[4:])))
    return bytes(hdr)


def write_pv(
    buf: bytearray,
    part_offset: int,
    part_size: int,
    pv_uuid: str,
    text: str | None,
    *,
    pe_start: int = 2048,
    mda_offset: int = 4096,
    mda_size: int | None = None,
    text_at: int | None = None,
    label_sector: int = 1,
) -> None:
    """Write a PV (label, metadata area header and text) into ``buf`` at ``part_offset``.

    ``text_at`` places the text at that offset inside the metadata area (it wraps to just
    after the 512-byte header when it runs past the area's end); default 512.
    """
    if mda_size is None:
        mda_size = pe_start * SECTOR - mda_offset
    mdas = [(mda_offset, mda_size)] if text is not None else []
    label = pv_label(pv_uuid, part_size, pe_start * SECTOR, mdas, label_sector)
    at = part_offset + label_sector * SECTOR
    buf[at : at + SECTOR] = label
    if text is None:
        return
    raw = text.encode() + b"\0"
    rel = SECTOR if text_at is None else text_at
    base = part_offset + mda_offset
    first = min(len(raw), mda_size - rel)
    buf[base + rel : base + rel + first] = raw[:first]
    if first < len(raw):
        rest = raw[first:]
        buf[base + SECTOR : base + SECTOR + len(rest)] = rest
    hdr = mda_header(mda_offset, mda_size, [(rel, len(raw), lvm_crc(raw), 0)])
    buf[base : base + SECTOR] = hdr


@dataclass
class LV:
    """An LV for :func:`vg_text`: segments are dicts of the text's segment keys."""

    name: str
    segments: list[dict]
    visible: bool = True
    id: str = ""
    extra: dict = field(default_factory=dict)


def _val(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    return str(v)


def vg_text(
    name: str,
    *,
    vg_id: str,
    seqno: int,
    extent_size: int,
    pvs: list[dict],
    lvs: list[LV],
) -> str:
    """Metadata text in lvm2's layout (sections, key = value, lists, comments)."""
    out = [f"{name} {{", f"id = {_val(dashed(vg_id))}", f"seqno = {seqno}"]
    out += ['format = "lvm2"', 'status = ["RESIZEABLE", "READ", "WRITE"]', "flags = []"]
    out += [f"extent_size = {extent_size}\t# in sectors", "max_lv = 0", "max_pv = 0", ""]
    out += ["physical_volumes {", ""]
    for i, pv in enumerate(pvs):
        out += [f"pv{i} {{", f"id = {_val(dashed(pv['uuid']))}"]
        out += [f'device = "/dev/fake{i}"\t# Hint only', "", 'status = ["ALLOCATABLE"]']
        out += ["flags = []", f"dev_size = {pv['dev_size']}", f"pe_start = {pv['pe_start']}"]
        out += [f"pe_count = {pv['pe_count']}", "}"]
    out += ["}", "", "logical_volumes {", ""]
    for lv in lvs:
        status = ["READ", "WRITE"] + (["VISIBLE"] if lv.visible else [])
        out += [f"{lv.name} {{", f"id = {_val(dashed(lv.id or lvm_uuid(lv.name)))}"]
        out += [f"status = {_val(status)}", "flags = []"]
        for k, v in lv.extra.items():
            out.append(f"{k} = {_val(v)}")
        out += [f"segment_count = {len(lv.segments)}", ""]
        for j, seg in enumerate(lv.segments, 1):
            out.append(f"segment{j} {{")
            for k, v in seg.items():
                out.append(f"{k} = {_val(v)}")
            out += ["}"]
        out += ["}"]
    out += [
        "}",
        "}",
        "# Generated by the vdinspect test builder",
        "",
        'contents = "Text Format Volume Group"',
        "version = 1",
        "",
        'description = ""',
        "",
    ]
    return "\n".join(out) + "\n"


def stamp_sectors(buf: bytearray, start: int, length: int, tag: bytes = b"vdi") -> None:
    """Write each 512-byte sector's own disk offset (and a tag) at its start."""
    for off in range(start, start + length, SECTOR):
        buf[off : off + 16] = struct.pack("<Q", off) + tag.ljust(8, b".")[:8]
