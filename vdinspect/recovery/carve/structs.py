"""The fixed headers the carving validators read, declared once as their specifications
name them (readers unpack them through :mod:`vdinspect.layout`, never by literal offsets).

Sources: PNG (ISO/IEC 15948), GIF89a, APPNOTE.TXT (ZIP), the SQLite file format page,
RFC 1952 (gzip), ISO/IEC 14496-12 (MP4 boxes), Microsoft RIFF, the Microsoft PE/COFF
specification, the System V ABI (ELF), and the virtual disk formats' own documents.
"""

from __future__ import annotations

from functools import cache

from construct import Bytes, Int8ul, Int16ub, Int16ul, Int32ub, Int32ul, Int64ub, Int64ul, Struct

# --- images ---------------------------------------------------------------------------
PNG_CHUNK = Struct(
    "length" / Int32ub * "bytes of chunk data (CRC and type not counted)",
    "type" / Bytes(4) * "chunk type, four ASCII letters (IHDR, IDAT, IEND...)",
)
PNG_IHDR = Struct(
    "width" / Int32ub * "pixels",
    "height" / Int32ub * "pixels",
    "bit_depth" / Int8ul * "bits per sample",
    "colour_type" / Int8ul * "0, 2, 3, 4 or 6",
    "compression" / Int8ul * "0: deflate",
    "filter" / Int8ul * "0",
    "interlace" / Int8ul * "0 none, 1 Adam7",
)
JPEG_SEGMENT = Struct(
    "marker" / Int16ub * "0xFFxx: the segment's marker",
    "length" / Int16ub * "bytes of the segment, these two included",
)
GIF_SCREEN = Struct(
    "signature" / Bytes(6) * "GIF87a or GIF89a",
    "width" / Int16ul * "logical screen width, pixels",
    "height" / Int16ul * "logical screen height, pixels",
    "packed" / Int8ul * "bit 7: global colour table; bits 0-2: its size, 2^(n+1) entries",
    "background" / Int8ul * "background colour index",
    "aspect" / Int8ul * "pixel aspect ratio",
)
GIF_IMAGE = Struct(
    "separator" / Int8ul * "0x2C",
    "left" / Int16ul * "pixels",
    "top" / Int16ul * "pixels",
    "width" / Int16ul * "pixels",
    "height" / Int16ul * "pixels",
    "packed" / Int8ul * "bit 7: local colour table; bits 0-2: its size, 2^(n+1) entries",
)

# --- archives and documents -------------------------------------------------------------
ZIP_LOCAL = Struct(
    "signature" / Int32ul * "0x04034b50, PK\\3\\4",
    "version_needed" / Int16ul * "version needed to extract",
    "flags" / Int16ul * "general purpose bit flag (bit 3: sizes in a data descriptor)",
    "method" / Int16ul * "compression method",
    "mtime" / Int16ul * "last modification time, DOS",
    "mdate" / Int16ul * "last modification date, DOS",
    "crc32" / Int32ul * "CRC-32 of the data",
    "compressed_size" / Int32ul * "bytes stored",
    "uncompressed_size" / Int32ul * "bytes after decompression",
    "name_length" / Int16ul * "bytes of file name",
    "extra_length" / Int16ul * "bytes of extra field",
)
ZIP_CENTRAL = Struct(
    "signature" / Int32ul * "0x02014b50, PK\\1\\2",
    "version_made_by" / Int16ul * "",
    "version_needed" / Int16ul * "",
    "flags" / Int16ul * "general purpose bit flag",
    "method" / Int16ul * "compression method",
    "mtime" / Int16ul * "DOS time",
    "mdate" / Int16ul * "DOS date",
    "crc32" / Int32ul * "CRC-32 of the data",
    "compressed_size" / Int32ul * "bytes stored",
    "uncompressed_size" / Int32ul * "bytes after decompression",
    "name_length" / Int16ul * "bytes of file name",
    "extra_length" / Int16ul * "bytes of extra field",
    "comment_length" / Int16ul * "bytes of file comment",
    "disk_start" / Int16ul * "disk number where the file starts",
    "internal_attributes" / Int16ul * "",
    "external_attributes" / Int32ul * "",
    "local_header_offset" / Int32ul * "offset of the local header from the archive's start",
)
ZIP_END = Struct(
    "signature" / Int32ul * "0x06054b50, PK\\5\\6: end of central directory record",
    "disk" / Int16ul * "number of this disk",
    "cd_disk" / Int16ul * "disk where the central directory starts",
    "disk_entries" / Int16ul * "central directory entries on this disk",
    "entries" / Int16ul * "central directory entries in all",
    "cd_size" / Int32ul * "bytes of central directory",
    "cd_offset" / Int32ul * "offset of the central directory from the archive's start",
    "comment_length" / Int16ul * "bytes of archive comment that follow",
)
ZIP64_END = Struct(
    "signature" / Int32ul * "0x06064b50, PK\\6\\6: zip64 end of central directory record",
    "record_size" / Int64ul * "bytes of the record after this field (44 without extensible data)",
    "version_made_by" / Int16ul * "",
    "version_needed" / Int16ul * "",
    "disk" / Int32ul * "number of this disk",
    "cd_disk" / Int32ul * "disk where the central directory starts",
    "disk_entries" / Int64ul * "central directory entries on this disk",
    "entries" / Int64ul * "central directory entries in all",
    "cd_size" / Int64ul * "bytes of central directory",
    "cd_offset" / Int64ul * "offset of the central directory from the archive's start",
)
ZIP64_LOCATOR = Struct(
    "signature" / Int32ul * "0x07064b50, PK\\6\\7: just before the end record",
    "end_disk" / Int32ul * "disk holding the zip64 end record",
    "end_offset" / Int64ul * "offset of the zip64 end record from the archive's start",
    "disks" / Int32ul * "total number of disks",
)
SQLITE_HEADER = Struct(
    "magic" / Bytes(16) * "SQLite format 3\\0",
    "page_size" / Int16ub * "bytes a page, a power of two 512..32768 (1 means 65536)",
    "write_version" / Int8ul * "1 legacy, 2 WAL",
    "read_version" / Int8ul * "1 legacy, 2 WAL",
    "reserved" / Int8ul * "bytes unused at the end of each page",
    "max_fraction" / Int8ul * "64",
    "min_fraction" / Int8ul * "32",
    "leaf_fraction" / Int8ul * "32",
    "change_counter" / Int32ub * "file change counter",
    "page_count" / Int32ub * "size of the database in pages (valid when version_valid_for "
                             "equals change_counter)",
    "freelist_trunk" / Int32ub * "first freelist trunk page",
    "freelist_count" / Int32ub * "freelist pages",
    "schema_cookie" / Int32ub * "",
    "schema_format" / Int32ub * "1..4",
    "cache_size" / Int32ub * "",
    "vacuum_root" / Int32ub * "",
    "text_encoding" / Int32ub * "1 UTF-8, 2 UTF-16le, 3 UTF-16be",
    "user_version" / Int32ub * "",
    "incremental_vacuum" / Int32ub * "",
    "application_id" / Int32ub * "",
    "reserved_expansion" / Bytes(20) * "zero",
    "version_valid_for" / Int32ub * "change counter when page_count was stored",
    "sqlite_version" / Int32ub * "SQLITE_VERSION_NUMBER that wrote it",
)

# --- compressed streams -------------------------------------------------------------------
GZIP_MEMBER = Struct(
    "ID1" / Int8ul * "0x1F",
    "ID2" / Int8ul * "0x8B",
    "CM" / Int8ul * "8: deflate",
    "FLG" / Int8ul * "FTEXT 1, FHCRC 2, FEXTRA 4, FNAME 8, FCOMMENT 16; 0xE0 reserved",
    "MTIME" / Int32ul * "seconds since 1970",
    "XFL" / Int8ul * "extra flags",
    "OS" / Int8ul * "operating system",
)

# --- media ---------------------------------------------------------------------------------
BOX = Struct(
    "size" / Int32ub * "bytes of the box, header included (1: a 64-bit size follows; 0: to "
                       "the end of the file)",
    "type" / Bytes(4) * "four-character code",
)
RIFF_CHUNK = Struct(
    "ckID" / Bytes(4) * "four-character code (RIFF, LIST, fmt , data...)",
    "ckSize" / Int32ul * "bytes of chunk data, not counting this header or the pad byte",
)

# --- programs --------------------------------------------------------------------------------
IMAGE_DOS_HEADER = Struct(
    "e_magic" / Bytes(2) * "MZ",
    "e_skip" / Bytes(58) * "DOS header fields carving does not need",
    "e_lfanew" / Int32ul * "file offset of the PE signature",
)
IMAGE_FILE_HEADER = Struct(
    "Signature" / Bytes(4) * "PE\\0\\0",
    "Machine" / Int16ul * "target CPU",
    "NumberOfSections" / Int16ul * "entries of the section table",
    "TimeDateStamp" / Int32ul * "seconds since 1970",
    "PointerToSymbolTable" / Int32ul * "file offset of the COFF symbol table (0: none)",
    "NumberOfSymbols" / Int32ul * "entries of the symbol table",
    "SizeOfOptionalHeader" / Int16ul * "bytes of the optional header",
    "Characteristics" / Int16ul * "0x2000: a DLL",
)
IMAGE_OPTIONAL_HEADER = Struct(
    "Magic" / Int16ul * "0x10B PE32, 0x20B PE32+",
    "skip1" / Bytes(58) * "linker version, code sizes, entry point, bases, alignments, "
                          "versions, SizeOfImage (the same 58 bytes in PE32 and PE32+)",
    "SizeOfHeaders" / Int32ul * "bytes of headers, rounded to FileAlignment",
    "CheckSum" / Int32ul * "image checksum (0: not set)",
)
#: the rest of the optional header up to the data directories, which differ in size
#: between PE32 (32-bit stack and heap sizes) and PE32+ (64-bit ones)
IMAGE_OPTIONAL_HEADER32 = Struct(
    "head" / IMAGE_OPTIONAL_HEADER,
    "Subsystem" / Int16ul * "",
    "DllCharacteristics" / Int16ul * "",
    "SizeOfStackReserve" / Int32ul * "bytes",
    "SizeOfStackCommit" / Int32ul * "bytes",
    "SizeOfHeapReserve" / Int32ul * "bytes",
    "SizeOfHeapCommit" / Int32ul * "bytes",
    "LoaderFlags" / Int32ul * "0",
    "NumberOfRvaAndSizes" / Int32ul * "data directories that follow",
)
IMAGE_OPTIONAL_HEADER64 = Struct(
    "head" / IMAGE_OPTIONAL_HEADER,
    "Subsystem" / Int16ul * "",
    "DllCharacteristics" / Int16ul * "",
    "SizeOfStackReserve" / Int64ul * "bytes",
    "SizeOfStackCommit" / Int64ul * "bytes",
    "SizeOfHeapReserve" / Int64ul * "bytes",
    "SizeOfHeapCommit" / Int64ul * "bytes",
    "LoaderFlags" / Int32ul * "0",
    "NumberOfRvaAndSizes" / Int32ul * "data directories that follow",
)
IMAGE_DATA_DIRECTORY = Struct(
    "VirtualAddress" / Int32ul * "RVA (for the certificate table: a file offset)",
    "Size" / Int32ul * "bytes",
)
IMAGE_SECTION_HEADER = Struct(
    "Name" / Bytes(8) * "section name",
    "VirtualSize" / Int32ul * "bytes in memory",
    "VirtualAddress" / Int32ul * "RVA",
    "SizeOfRawData" / Int32ul * "bytes in the file",
    "PointerToRawData" / Int32ul * "file offset of the data",
    "skip" / Bytes(16) * "relocations, line numbers, characteristics",
)


@cache
def elf_header(bits: int, little: bool) -> Struct:
    """Elf32_Ehdr / Elf64_Ehdr in the file's byte order (after e_ident's 16 bytes)."""
    h = Int16ul if little else Int16ub
    w = Int32ul if little else Int32ub
    a = (Int32ul if little else Int32ub) if bits == 32 else (Int64ul if little else Int64ub)
    return Struct(
        "e_ident" / Bytes(16) * "\\x7fELF, class, data, version, OS ABI, padding",
        "e_type" / h * "1 relocatable, 2 executable, 3 shared object, 4 core",
        "e_machine" / h * "architecture",
        "e_version" / w * "1",
        "e_entry" / a * "entry point address",
        "e_phoff" / a * "file offset of the program header table",
        "e_shoff" / a * "file offset of the section header table",
        "e_flags" / w * "processor flags",
        "e_ehsize" / h * "bytes of this header (52 or 64)",
        "e_phentsize" / h * "bytes of a program header (32 or 56)",
        "e_phnum" / h * "program headers",
        "e_shentsize" / h * "bytes of a section header (40 or 64)",
        "e_shnum" / h * "section headers",
        "e_shstrndx" / h * "index of the section name table",
    )


@cache
def elf_section(bits: int, little: bool) -> Struct:
    """Elf32_Shdr / Elf64_Shdr: where a section's bytes are in the file."""
    w = Int32ul if little else Int32ub
    a = (Int32ul if little else Int32ub) if bits == 32 else (Int64ul if little else Int64ub)
    return Struct(
        "sh_name" / w * "offset of the name in the section name table",
        "sh_type" / w * "8: SHT_NOBITS (no bytes in the file)",
        "sh_flags" / a * "",
        "sh_addr" / a * "",
        "sh_offset" / a * "file offset of the section",
        "sh_size" / a * "bytes of the section",
        "sh_link" / w * "",
        "sh_info" / w * "",
        "sh_addralign" / a * "",
        "sh_entsize" / a * "",
    )


@cache
def elf_program(bits: int, little: bool) -> Struct:
    """Elf32_Phdr / Elf64_Phdr (the field order differs between the two classes)."""
    w = Int32ul if little else Int32ub
    a = (Int32ul if little else Int32ub) if bits == 32 else (Int64ul if little else Int64ub)
    if bits == 32:
        return Struct("p_type" / w * "", "p_offset" / w * "file offset", "p_vaddr" / w * "",
                      "p_paddr" / w * "", "p_filesz" / w * "bytes in the file",
                      "p_memsz" / w * "", "p_flags" / w * "", "p_align" / w * "")
    return Struct("p_type" / w * "", "p_flags" / w * "", "p_offset" / a * "file offset",
                  "p_vaddr" / a * "", "p_paddr" / a * "", "p_filesz" / a * "bytes in the file",
                  "p_memsz" / a * "", "p_align" / a * "")
