"""Tar archives read in place: where each member's bytes are, never unpacking them.

OVA packages and XenServer XVA exports are tar files; their members (disk images, chunks)
are read as :class:`~vdinspect.io.Slice` windows of the archive. Only the headers are read:
ustar, GNU long names ('L') and pax extended headers ('x': ``path`` and ``size``), each
bounded (:data:`MAX_EXTENDED` bytes, :data:`MAX_MEMBERS` members), so a hostile archive
costs a header read per member and no more.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import CorruptImage
from ...io import ByteSource, MemorySource
from ...layout import field_slice
from .structs import BLOCK, UstarHeader

MAX_MEMBERS = 1_000_000  # an XVA of a 1 TiB disk has ~2 million files (chunk + checksum)
MAX_EXTENDED = 1 << 20  # bytes of a pax header or GNU long name we read

_F = {n: field_slice(UstarHeader, n) for n in
      ("name", "size", "chksum", "typeflag", "magic", "prefix")}
_REGULAR = (b"0", b"\0", b"7")


@dataclass(frozen=True, slots=True)
class Member:
    """One regular file in the archive: its name, where its data starts, its length, and
    where its header (the first of its headers, pax or GNU ones included) starts."""

    name: str
    offset: int
    size: int
    header: int
    stored: str = ""  # the name as the archive stores it, when cleaning changed it


def is_tar(head: bytes) -> bool:
    """True when ``head`` starts with a ustar header (POSIX or GNU magic, sane checksum)."""
    if len(head) < BLOCK or head[_F["magic"]][:5] != b"ustar":
        return False
    return header_checksum_ok(head[:BLOCK])


def header_checksum_ok(block: bytes) -> bool:
    stored = _number(block[_F["chksum"]])
    s = _F["chksum"]
    total = sum(block[: s.start]) + 8 * 32 + sum(block[s.stop : BLOCK])
    return stored == total


def first_name(head: bytes) -> str | None:
    """The name of the archive's first member, from its first blocks (pax and GNU long
    names followed when they fit in ``head``), or None."""
    try:
        for m in iter_members(MemorySource(head, "<tar head>"), None, stop_short=True):
            return m.name
    except CorruptImage:
        return None
    return None


def _number(field: bytes) -> int | None:
    """An octal number field (or GNU base-256), None when it is neither."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def leads_outside(name: str) -> bool:
    """True for a stored name that extracting would place outside the destination
    (absolute, or climbing with '..'): worth a warning even though it is never extracted."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts


def clean_name(name: str) -> str:
    """A member name as a relative POSIX path without '.' parts (``./a`` -> ``a``); names
    are only compared, never opened on the host."""
    return posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")


def _pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header: ``"%d %s=%s\\n"``, length first."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            n = int(data[pos:sp])
        except ValueError:
            break
        if n <= 0 or pos + n > len(data):
            break
        rec = data[sp + 1 : pos + n].rstrip(b"\n")
        key, _, value = rec.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += n
    return out


def iter_members(source: ByteSource, owner, *, stop_short: bool = False) -> Iterator[Member]:
    """Yield the regular-file :class:`Member` s of the tar in ``source``, in order.

    ``owner`` (a Findings reader, or None to raise) hears of damage: a bad header checksum,
    a member past the end of the file, too many members; in salvage mode the walk stops
    there with what it found. ``stop_short`` ends quietly where ``source`` ends (probing a
    file's first bytes)."""

    def bad(offset: int, message: str) -> None:
        if owner is None:
            raise CorruptImage(message, path=source.name, structure="tar header", offset=offset)
        owner.problem("tar header", offset, message)

    pos, count = 0, 0
    pending: dict[str, str] = {}
    first = None
    while pos + BLOCK <= source.size:
        block = source.read(pos, BLOCK)
        if block == bytes(BLOCK):
            return  # the end-of-archive marker
        if not header_checksum_ok(block):
            return bad(pos, "header checksum does not match (not a tar header)")
        size = _number(block[_F["size"]])
        if size is None:
            return bad(pos, "size field is not a number")
        data = pos + BLOCK
        end = data + (size + BLOCK - 1) // BLOCK * BLOCK
        kind = block[_F["typeflag"]]
        first = pos if first is None else first
        if data + size > source.size and not (stop_short and kind in _REGULAR):
            if stop_short:
                return
            return bad(pos, f"member data [{data:#x}, +{size:#x}) runs past the end of the "
                            f"file ({source.size:#x}): the archive is truncated")
        if kind in (b"x", b"L"):
            if size > MAX_EXTENDED:
                return bad(pos, f"extended header of {size} bytes (limit {MAX_EXTENDED})")
            raw = source.read(data, size)
            if kind == b"x":
                pending.update(_pax(raw))
            else:
                pending["path"] = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif kind in _REGULAR:
            name = _text(block[_F["name"]])
            prefix = _text(block[_F["prefix"]]) if block[_F["magic"]] == b"ustar\0" else ""
            name = pending.get("path") or (f"{prefix}/{name}" if prefix else name)
            if "size" in pending:
                try:
                    size = int(pending["size"])
                except ValueError:
                    return bad(pos, "pax size record is not a number")
                end = data + (size + BLOCK - 1) // BLOCK * BLOCK
                if data + size > source.size and not stop_short:
                    return bad(pos, f"member data of {size} bytes runs past the end of the file")
            clean = clean_name(name)
            yield Member(clean, data, size, first, name if clean != name else "")
            if data + size > source.size:
                return  # probing the first bytes: the name is all that was wanted
            count += 1
            if count >= MAX_MEMBERS:
                return bad(pos, f"more than {MAX_MEMBERS} members (the limit)")
            pending, first = {}, None
        else:
            pending, first = {}, None  # folders, links, global headers: nothing to read
        pos = end
