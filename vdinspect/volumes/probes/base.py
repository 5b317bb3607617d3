"""What a probe answers (:class:`FsInfo`) and the two ways labels are cleaned, as blkid
does: shared by every family of probes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FsInfo:
    """What a probe found: blkid's TYPE (fat12/16/32 for vfat), LABEL, UUID, VERSION."""

    type: str
    label: str | None = None
    uuid: str | None = None
    version: str | None = None


def cstr(b: bytes, encoding: str = "utf-8") -> str:
    """A NUL-padded text field up to its first NUL, decoded (bad bytes replaced)."""
    return b.split(b"\0", 1)[0].decode(encoding, "replace")


def label_text(s: str | None) -> str | None:
    """blkid drops trailing blanks; an empty label is no label."""
    if s is None:
        return None
    s = s.rstrip(" \0")
    return s or None

