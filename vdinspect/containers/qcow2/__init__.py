"""QCOW2 (QEMU copy-on-write, versions 2 and 3).

Facts from QEMU's "qcow2 image format" document (docs/interop/qcow2.txt). All numbers on
disk are big-endian. The virtual disk is cut into clusters; a two-level table (L1 -> L2)
maps each guest cluster to a host cluster, a compressed cluster, a zero cluster, or
nothing (read from the backing file). Refcounts count the references to each host cluster.

Modules: ``structs`` (the declarations), ``header`` (header, extensions, data file),
``clusters`` (L1/L2 mapping, compressed clusters), ``snapshots``, ``check`` (refcounts and
``qemu-img check``), ``report`` (info, flags, bitmaps, structures), ``image`` (the reader).
"""

from __future__ import annotations

from .image import Qcow2Image, open_image
from .snapshots import Snapshot
from .structs import *  # noqa: F403 (the declarations are this package's public names)
from .structs import FORMAT, MAGIC


def probe(head: bytes) -> bool:
    """QCOW2 files start with QFI\\xfb and a big-endian version of 2 or more.

    As in QEMU's probe, a later version is claimed here and then refused as unsupported
    (rather than read as a raw disk); version 1 is QCOW (v1).
    """
    return len(head) >= 8 and head[:4] == MAGIC and int.from_bytes(head[4:8], "big") >= 2


__all__ = ["FORMAT", "MAGIC", "Qcow2Image", "Snapshot", "open_image", "probe"]
