"""Disk and DiskGroup: what ``vdinspect.open()`` returns (core.py, group.py), the
arguments their methods share (arguments.py) and the raw export (export.py)."""

from .arguments import volume_key
from .core import NO_SIGNATURE, Disk
from .group import DiskGroup

__all__ = ["Disk", "DiskGroup", "NO_SIGNATURE", "volume_key"]
