"""Program validators: PE (Windows .exe/.dll: sections, the certificate table, and the
image checksum when one is set) and ELF (section and program headers, the section name
table)."""

from __future__ import annotations

import numpy as np

from ...layout import offset_of, struct_format
from .reader import STREAM, Found, Reader
from .structs import (
    IMAGE_DATA_DIRECTORY,
    IMAGE_DOS_HEADER,
    IMAGE_FILE_HEADER,
    IMAGE_OPTIONAL_HEADER,
    IMAGE_OPTIONAL_HEADER32,
    IMAGE_OPTIONAL_HEADER64,
    IMAGE_SECTION_HEADER,
    elf_header,
    elf_program,
    elf_section,
)

_DOS = struct_format(IMAGE_DOS_HEADER, "e_magic", "e_lfanew")
_FILE = struct_format(IMAGE_FILE_HEADER)
_OPT = struct_format(IMAGE_OPTIONAL_HEADER, "Magic", "SizeOfHeaders", "CheckSum")
_CHECKSUM_AT = offset_of(IMAGE_OPTIONAL_HEADER, "CheckSum")
_DIR = struct_format(IMAGE_DATA_DIRECTORY)
_SECTION = struct_format(IMAGE_SECTION_HEADER, "SizeOfRawData", "PointerToRawData")
#: the optional header up to its data directories, for PE32 and PE32+; the certificate
#: table's index among the directories (Microsoft PE/COFF specification)
_DIRS = {0x10B: IMAGE_OPTIONAL_HEADER32, 0x20B: IMAGE_OPTIONAL_HEADER64}
_CERTIFICATE = 4


def pe_checksum(r: Reader, off: int, length: int, field: int) -> int:
    """The PE image checksum: 16-bit words summed with end-around carry, the CheckSum
    field itself left out, plus the file's length."""
    total = 0
    pos = 0
    while pos < length:
        data = bytearray(r.read(off + pos, min(STREAM, length - pos)))
        if not data:
            break
        lo = field - pos
        if -4 < lo < len(data):
            for i in range(max(0, lo), min(len(data), lo + 4)):
                data[i] = 0
        if len(data) & 1:
            data.append(0)
        total += int(np.frombuffer(bytes(data), dtype="<u2").sum(dtype=np.uint64))
        pos += len(data)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + length) & 0xFFFFFFFF


def pe(r: Reader, off: int, max_size: int) -> Found | None:
    """PE/COFF: the end of the last section's raw data (or of the certificate table)."""
    dos = r.unpack(_DOS, off)
    if dos is None or dos[0] != b"MZ" or not 0x40 <= dos[1] <= 0x10000 or dos[1] & 3:
        return None
    fh = r.unpack(_FILE, off + dos[1])
    if fh is None or fh[0] != b"PE\0\0" or not 1 <= fh[2] <= 96 or fh[6] < 0x60:
        return None
    opt_at = off + dos[1] + _FILE.size
    opt = r.unpack(_OPT, opt_at)
    if opt is None or opt[0] not in _DIRS:
        return None
    magic, headers, checksum = opt
    kind = "dll" if fh[7] & 0x2000 else "exe"
    end = headers
    layout = _DIRS[magic]
    dirs_at = layout.sizeof()
    count = r.unpack(struct_format(layout, "NumberOfRvaAndSizes"), opt_at)
    if count and count[0] > _CERTIFICATE and dirs_at + 8 * (_CERTIFICATE + 1) <= fh[6]:
        cert = r.unpack(_DIR, opt_at + dirs_at + 8 * _CERTIFICATE)
        if cert and cert[1]:
            end = max(end, cert[0] + cert[1])
    table = opt_at + fh[6]
    for i in range(fh[2]):
        s = r.unpack(_SECTION, table + i * IMAGE_SECTION_HEADER.sizeof())
        if s is None:
            return Found(table - off, False, kind, "the section table is cut short")
        size, ptr = s
        if size and ptr < min(headers, table - off):
            return Found(table - off, False, kind, f"section {i} lies inside the headers")
        if size:
            end = max(end, ptr + size)
    if end > max_size or not r.read(off + end - 1, 1):
        return Found(min(end, max_size, r.size - off), False, kind,
                     "the sections end past the size limit or the searched space")
    if not checksum:
        return Found(end, True, kind, "no image checksum to verify")
    ok = pe_checksum(r, off, end, opt_at - off + _CHECKSUM_AT) == checksum
    return Found(end, ok, kind, "" if ok else "image checksum mismatch")


def elf(r: Reader, off: int, max_size: int) -> Found | None:
    """ELF: the furthest of the header tables and the sections and segments they place;
    validated by the section name table naming itself ``.shstrtab``."""
    ident = r.read(off, 16)
    if len(ident) < 16 or ident[4] not in (1, 2) or ident[5] not in (1, 2) or ident[6] != 1:
        return None
    bits, little = 32 << (ident[4] - 1), ident[5] == 1
    fmt = struct_format(elf_header(bits, little))
    h = r.unpack(fmt, off)
    if h is None:
        return None
    (_i, etype, _m, version, _e, phoff, shoff, _f, ehsize, phentsize, phnum, shentsize,
     shnum, shstrndx) = h
    sec, prog = struct_format(elf_section(bits, little)), struct_format(elf_program(bits, little))
    if (version != 1 or not 1 <= etype <= 4 or ehsize != fmt.size
            or (phnum and phentsize != prog.size) or (shnum and shentsize != sec.size)
            or (shnum and shstrndx >= shnum)):
        return None
    end = max(ehsize, phoff + phnum * phentsize, shoff + shnum * shentsize)
    if end > max_size:
        return Found(ehsize, False, "elf", "the header tables lie past the size limit")
    for i in range(phnum):
        p = r.unpack(prog, off + phoff + i * phentsize)
        if p is not None:
            filesz, at = (p[4], p[1]) if bits == 32 else (p[5], p[2])
            end = max(end, at + filesz)
    sections = [r.unpack(sec, off + shoff + i * shentsize) for i in range(shnum)]
    if any(s is None for s in sections):
        return Found(min(end, r.size - off), False, "elf", "the section table is cut short")
    for s in sections:
        if s[1] != 8:  # SHT_NOBITS holds no bytes in the file
            end = max(end, s[4] + s[5])
    if end > max_size or not r.read(off + end - 1, 1):
        return Found(min(end, max_size, r.size - off), False, "elf",
                     "the file ends past the size limit or the searched space")
    if not shnum:
        return Found(end, False, "elf", "no section table: the end comes from the program "
                     "headers only")
    names = sections[shstrndx]
    ok = r.read(off + names[4] + names[0], 10) == b".shstrtab\0"
    return Found(end, ok, "elf", "" if ok else "the section name table does not name itself")
