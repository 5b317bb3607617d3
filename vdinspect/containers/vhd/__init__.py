"""Microsoft Virtual Hard Disk (VHD): ``structs`` (footer, dynamic header, locators),
``image`` (the reader: fixed, dynamic and differencing disks), ``check`` (reports)."""

from __future__ import annotations

from .image import VhdImage, open_image, open_vhd
from .structs import *  # noqa: F403 (the declarations are this package's public names)
from .structs import COOKIE, FOOTER_SIZE, OLD_FOOTER_SIZE


def probe(head: bytes) -> bool:
    """Dynamic and differencing disks start with a copy of the footer ("conectix")."""
    return len(head) >= 8 and head[:8] == COOKIE


def probe_tail(tail: bytes) -> bool:
    """A fixed disk is recognised by the footer in its last 512 (or 511) bytes."""
    n = len(tail)
    return (n >= FOOTER_SIZE and tail[n - FOOTER_SIZE : n - FOOTER_SIZE + 8] == COOKIE) or (
        n >= OLD_FOOTER_SIZE and tail[n - OLD_FOOTER_SIZE : n - OLD_FOOTER_SIZE + 8] == COOKIE
    )


__all__ = ["VhdImage", "open_image", "open_vhd", "probe", "probe_tail"]
