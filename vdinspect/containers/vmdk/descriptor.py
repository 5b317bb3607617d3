"""The VMDK text descriptor: ``key = "value"`` lines, extent lines and ``ddb.*`` keys.

A descriptor is a separate small text file (``# Disk DescriptorFile`` ...) or text embedded
in a hosted sparse extent at ``descriptorOffset``. Keys are case-insensitive, ``#`` starts a
comment, values may be quoted. Text is UTF-8, or the ``encoding`` it declares; bytes that
are not valid UTF-8 are read as windows-1252 (older VMware products wrote the ANSI code page).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

#: access keywords that start an extent line
ACCESS = ("RW", "RDONLY", "NOACCESS")
#: extent types; the raw-device ones are read like FLAT extents
FLAT_TYPES = ("FLAT", "VMFS", "VMFSRDM", "VMFSRAW", "VMFSRAWDEVICEMAP", "VMFSPASSTHRU")
SPARSE_TYPES = ("SPARSE", "VMFSSPARSE")
KNOWN_TYPES = FLAT_TYPES + SPARSE_TYPES + ("ZERO", "SESPARSE")

#: descriptors larger than this are not descriptors (QEMU reads at most 1 MiB of one)
MAX_DESCRIPTOR = 1 << 20

NO_PARENT = 0xFFFFFFFF
_DESCRIPTOR_MAGIC = b"# disk descriptorfile"
_VERSION_LINE = re.compile(rb'version\s*=\s*"?\s*[1-3]\b', re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"


def looks_like_descriptor(head: bytes) -> bool:
    """True for text that starts like a descriptor: the magic comment, or ``version=N`` first."""
    text = head[len(_BOM) :] if head.startswith(_BOM) else head
    text = text.lstrip(b" \t\r\n")
    if text[: len(_DESCRIPTOR_MAGIC)].lower() == _DESCRIPTOR_MAGIC:
        return True
    for line in text.split(b"\n", 256)[:256]:
        s = line.strip(b" \t\r")
        if not s or s.startswith(b"#"):
            continue
        return _VERSION_LINE.match(s) is not None
    return False


@dataclass(slots=True)
class ExtentLine:
    """One extent line: ``ACCESS SECTORS TYPE ["FILE" [OFFSET [more fields...]]]``."""

    access: str
    sectors: int
    type: str
    filename: str | None
    offset: int  # sectors into the file (FLAT and the raw-device types)
    fields: list[str]  # anything after the offset
    line_no: int
    text: str

    @property
    def size(self) -> int:
        """Bytes of the virtual disk this extent covers."""
        return self.sectors * 512

    def __repr__(self) -> str:
        name = f' "{self.filename}"' if self.filename is not None else ""
        off = f" {self.offset}" if self.type in FLAT_TYPES else ""
        return f"<ExtentLine {self.access} {self.sectors} {self.type}{name}{off}>"


@dataclass
class Descriptor:
    """A parsed descriptor; ``.raw`` keeps the bytes, ``entries`` every ``key = value``."""

    raw: bytes
    text: str
    encoding: str
    entries: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower key -> (key, value)
    extents: list[ExtentLine] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` (case-insensitive), or ``default``."""
        hit = self.entries.get(key.lower())
        return default if hit is None else hit[1]

    @property
    def version(self) -> str | None:
        """The descriptor's ``version`` value."""
        return self.get("version")

    @property
    def create_type(self) -> str | None:
        """``createType``: the disk's sub-format."""
        return self.get("createType")

    @property
    def cid(self) -> int | None:
        """The content ID (hex in the text), None if absent or unreadable."""
        return self._hex("CID")

    @property
    def parent_cid(self) -> int | None:
        """The parent's content ID; 0xffffffff = no parent."""
        return self._hex("parentCID")

    @property
    def parent_file_name_hint(self) -> str | None:
        """``parentFileNameHint``: where the parent was."""
        return self.get("parentFileNameHint") or None

    @property
    def ddb(self) -> dict[str, str]:
        """The disk database: ``ddb.*`` keys without the prefix, as written."""
        return {k[4:]: v for k, v in self.entries.values() if k.lower().startswith("ddb.")}

    def _hex(self, key: str) -> int | None:
        v = self.get(key)
        if v is None:
            return None
        try:
            return int(v.strip(), 16)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return (
            f"<Descriptor createType={self.create_type!r} extents={len(self.extents)} "
            f"CID={self.get('CID')} parentCID={self.get('parentCID')}>"
        )


def decode_text(data: bytes) -> tuple[str, str, list[str]]:
    """Descriptor bytes as text: (text, encoding used, problems)."""
    problems: list[str] = []
    data = data.split(b"\0", 1)[0]
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    declared = _declared_encoding(data)
    if declared is not None:
        try:
            name = codecs.lookup(declared).name
        except LookupError:
            problems.append(f"unknown encoding {declared!r}; reading as UTF-8")
            name = "utf-8"
        if name not in ("utf-8", "ascii"):
            return data.decode(name, "replace"), name, problems
    try:
        return data.decode("utf-8"), "utf-8", problems
    except UnicodeDecodeError as e:
        if declared is not None:
            problems.append(
                f"descriptor declares {declared!r} but byte {e.start} is not UTF-8; "
                "read as windows-1252"
            )
        return data.decode("cp1252", "replace"), "cp1252", problems


def _declared_encoding(data: bytes) -> str | None:
    for line in data.split(b"\n"):
        s = line.strip()
        if s.lower().startswith((b"encoding", b"ddb.encoding")) and b"=" in s:
            value = s.split(b"=", 1)[1].strip().strip(b'"').strip()
            return value.decode("ascii", "replace") or None
    return None


def _tokens(line: str) -> list[str] | None:
    """Whitespace-separated fields, with double-quoted fields kept whole (None if unbalanced)."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        if line[i] == '"':
            j = line.find('"', i + 1)
            if j < 0:
                return None
            out.append(line[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < n and line[j] not in " \t":
                j += 1
            out.append(line[i:j])
            i = j
    return out


def _unquote(tok: str) -> str:
    return tok[1:-1] if len(tok) >= 2 and tok[0] == tok[-1] == '"' else tok


def parse_extent_line(line: str, line_no: int = 0) -> ExtentLine | None:
    """An extent line, or None when ``line`` is not one."""
    toks = _tokens(line.strip())
    if not toks or len(toks) < 3 or toks[0].upper() not in ACCESS:
        return None
    if not re.fullmatch(r"[0-9]+", toks[1]):
        return None
    etype = toks[2].upper()
    filename = _unquote(toks[3]) if len(toks) > 3 else None
    offset = 0
    rest = toks[5:] if len(toks) > 5 else []
    if len(toks) > 4:
        if re.fullmatch(r"[0-9]+", toks[4]):
            offset = int(toks[4])
        else:
            rest = toks[4:]
    return ExtentLine(
        access=toks[0].upper(),
        sectors=int(toks[1]),
        type=etype,
        filename=filename,
        offset=offset,
        fields=rest,
        line_no=line_no,
        text=line.strip(),
    )


def parse_descriptor(data: bytes) -> Descriptor:
    """Parse descriptor bytes (a descriptor file, or the text embedded in a sparse extent)."""
    text, encoding, problems = decode_text(data)
    d = Descriptor(raw=bytes(data), text=text, encoding=encoding)
    d.problems.extend((0, p) for p in problems)
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        ext = parse_extent_line(s, no)
        if ext is not None:
            if ext.type in SPARSE_TYPES + ("SESPARSE",) + FLAT_TYPES and ext.filename is None:
                d.problems.append((no, f"extent line without a file name: {s!r}"))
                continue
            d.extents.append(ext)
            continue
        if "=" not in s:
            d.problems.append((no, f"line not understood: {s!r}"))
            continue
        key, value = s.split("=", 1)
        key = key.strip()
        value = value.strip()
        if value.startswith('"'):
            end = value.find('"', 1)
            value = value[1:end] if end > 0 else value[1:]
        elif "#" in value:
            value = value.split("#", 1)[0].rstrip()
        if not key:
            d.problems.append((no, f"line not understood: {s!r}"))
            continue
        if key.lower() in d.entries:
            d.problems.append((no, f"key {key!r} repeated; the last value is used"))
        d.entries[key.lower()] = (key, value)
    return d
