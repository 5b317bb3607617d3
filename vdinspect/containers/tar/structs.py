"""The POSIX ustar header (IEEE Std 1003.1, "pax" utility, ustar interchange format), as
OVA packages (DMTF DSP0243 section 5.3) and XenServer XVA exports store their members.

Numbers are ASCII octal, NUL- or space-terminated; GNU tar writes a size too big for 11
octal digits as base-256 (first byte's high bit set).
"""

from __future__ import annotations

from construct import Bytes, Struct

BLOCK = 512  # tar works in 512-byte blocks: a header, then the data rounded up

UstarHeader = Struct(
    "name" / Bytes(100) * "member name, NUL-terminated (prefix + '/' + name when prefix set)",
    "mode" / Bytes(8) * "permission bits, octal",
    "uid" / Bytes(8) * "owner user id, octal",
    "gid" / Bytes(8) * "owner group id, octal",
    "size" / Bytes(12) * "data length, bytes (octal, or base-256 when the top bit is set)",
    "mtime" / Bytes(12) * "modification time, seconds since 1970 (octal)",
    "chksum" / Bytes(8) * "sum of the header's bytes with this field as spaces, octal",
    "typeflag" / Bytes(1) * "'0'/NUL file, '5' folder, 'x' pax header, 'g' global pax "
                            "header, 'L' GNU long name, others links and devices",
    "linkname" / Bytes(100) * "link target",
    "magic" / Bytes(6) * "'ustar\\0' (POSIX) or 'ustar ' (GNU)",
    "version" / Bytes(2) * "'00' (POSIX) or ' \\0' (GNU)",
    "uname" / Bytes(32) * "owner user name",
    "gname" / Bytes(32) * "owner group name",
    "devmajor" / Bytes(8) * "device major number, octal",
    "devminor" / Bytes(8) * "device minor number, octal",
    "prefix" / Bytes(155) * "leading folders of a long name",
    "pad" / Bytes(12) * "to the 512-byte block",
)
