"""The signatures carving looks for: where the magic is, what validates a candidate, and
the most bytes a file of that type may have (validators never read further)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from . import documents, images, media, programs, streams, vdisks
from .reader import Found, Reader

MiB, GiB = 1 << 20, 1 << 30
#: what ``types=`` takes: one type name, several, or None for all
Types = str | Iterable[str] | None


@dataclass(frozen=True)
class Signature:
    """A file type's magic (``magic`` at byte ``at`` of the file) and its validator."""

    name: str
    magic: bytes
    validate: Callable[[Reader, int, int], Found | None]
    max_size: int
    at: int = 0


SIGNATURES: tuple[Signature, ...] = (
    Signature("jpg", b"\xff\xd8\xff", images.jpeg, 256 * MiB),
    Signature("png", b"\x89PNG\r\n\x1a\n", images.png, 512 * MiB),
    Signature("gif", b"GIF8", images.gif, 256 * MiB),
    Signature("pdf", b"%PDF-", documents.pdf, 2 * GiB),
    Signature("zip", b"PK\x03\x04", documents.zipfile, 4 * GiB),
    Signature("sqlite", b"SQLite format 3\x00", documents.sqlite, 64 * GiB),
    Signature("gz", b"\x1f\x8b\x08", streams.gzip, 4 * GiB),
    Signature("bz2", b"BZh", streams.bzip2, 4 * GiB),
    Signature("xz", b"\xfd7zXZ\x00", streams.xz, 4 * GiB),
    Signature("mp4", b"ftyp", media.bmff, 64 * GiB, at=4),
    Signature("mov", b"moov", media.bmff, 64 * GiB, at=4),
    Signature("mov", b"mdat", media.bmff, 64 * GiB, at=4),
    Signature("mov", b"wide", media.bmff, 64 * GiB, at=4),
    Signature("mov", b"pnot", media.bmff, 64 * GiB, at=4),
    Signature("riff", b"RIFF", media.riff, 4 * GiB + 8),
    Signature("exe", b"MZ", programs.pe, 4 * GiB),
    Signature("elf", b"\x7fELF", programs.elf, 4 * GiB),
    Signature("qcow2", b"QFI\xfb", vdisks.qcow, 4096),
    Signature("vhd", b"conectix", vdisks.vhd, 4096),
    Signature("vmdk", b"KDMV", vdisks.vmdk, 4096),
    Signature("vdi", b"\x7f\x10\xda\xbe", vdisks.vdi, 4096, at=64),
)


#: file types a signature's validator names besides its own (what ``types=`` also takes)
FAMILIES = {
    "zip": ("docx", "xlsx", "pptx", "odt", "ods", "odp", "odg", "epub", "jar", "apk"),
    "mp4": ("m4a", "m4v", "heic", "avif", "cr3", "3gp", "3g2"),
    "riff": ("wav", "avi", "webp", "rmi", "ani"),
    "exe": ("dll",),
    "qcow2": ("qcow",),
}


def signatures(types: Types = None) -> tuple[Signature, ...]:
    """The signatures to look for: all, or those finding the types named (a signature's
    name, or a type its validator names: "docx" searches ZIP archives)."""
    if types is None:
        return SIGNATURES
    from ...errors import InvalidArgument

    wanted = {types} if isinstance(types, str) else set(types)
    names = {s.name for s in SIGNATURES}
    family = {t: sig for sig, ts in FAMILIES.items() for t in ts}
    unknown = wanted - names - set(family)
    if unknown:
        known = ", ".join(sorted(names | set(family)))
        raise InvalidArgument(f"unknown file types {sorted(unknown)}; known: {known}")
    sigs = {t if t in names else family[t] for t in wanted}
    return tuple(s for s in SIGNATURES if s.name in sigs)


def keeps(types: Types, sig: Signature, found_type: str) -> bool:
    """Whether a row of ``found_type`` found by ``sig`` is one of the ``types`` asked for
    (all of a signature's rows when it was named itself)."""
    if types is None:
        return True
    wanted = {types} if isinstance(types, str) else set(types)
    return sig.name in wanted or found_type in wanted


class Matcher:
    """Finds, with numpy, the aligned positions of a buffer whose first bytes match a
    signature's magic (its first four bytes at most; the validator checks the rest)."""

    def __init__(self, sigs: tuple[Signature, ...], align: int) -> None:
        self.align = align
        self.tests: list[tuple[int, int, int, list[Signature]]] = []
        by_key: dict[tuple[int, int, int], list[Signature]] = {}
        for s in sigs:
            if s.at % 4:
                raise ValueError(f"{s.name}: a magic's offset must be a multiple of 4")
            m = s.magic[:4]
            word = int.from_bytes(m.ljust(4, b"\0"), "big")
            mask = int.from_bytes(b"\xff" * len(m) + b"\0" * (4 - len(m)), "big")
            by_key.setdefault((s.at, mask, word), []).append(s)
        self.tests = [(at, mask, word, group) for (at, mask, word), group in by_key.items()]
        self.reach = max([at + 4 for at, *_ in self.tests] + [4])

    def hits(self, buf, base: int) -> list[tuple[int, Signature]]:
        """(position, signature) for every aligned position of ``buf`` (which starts at
        ``base``, a multiple of the alignment) holding a magic, in order."""
        a = self.align
        n = len(buf) // a
        if n == 0 or a < self.reach:
            return []
        # the buffer as big-endian words; every block's word at ``at`` is a strided view
        # (offsets are multiples of 4), so nothing is copied
        u = np.frombuffer(buf, dtype=">u4", count=n * a // 4)
        out: list[tuple[int, Signature]] = []
        for at, mask, word, group in self.tests:
            w = u[at // 4 :: a // 4][:n]
            for i in np.flatnonzero((w & np.uint32(mask)) == np.uint32(word)).tolist():
                for s in group:
                    out.append((base + i * a, s))
        out.sort(key=lambda x: x[0])
        return [(p, s) for p, s in out if _full_magic(buf, p - base, s)]


def _full_magic(buf, i: int, s: Signature) -> bool:
    return bytes(buf[i + s.at : i + s.at + len(s.magic)]) == s.magic
