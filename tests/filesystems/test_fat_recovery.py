"""FAT and exFAT when their own structures are damaged (issue 16): long labels, phantoms,
damaged directories, lost directories found by scanning, the second FAT.

Volumes are made by mkfs.vfat/mtools and mkfs.exfat; damage is done with byte edits that
follow the Microsoft FAT and exFAT specifications (never with vdinspect's structs). The
truth comes from The Sleuth Kit (``fls -r -d -p``, ``icat``, ``fsstat``) and from the
data the test wrote.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests import tools
from vdinspect.filesystems import exfat as exmod
from vdinspect.filesystems import fat as fatmod
from vdinspect.io import FileSource

MIB = 1 << 20


def have(*names: str) -> bool:
    return all(shutil.which(n) for n in names)


needs_exfat = pytest.mark.skipif(not have("mkfs.exfat", "fsstat"),
                                 reason="needs exfatprogs and The Sleuth Kit")
needs_fat = pytest.mark.skipif(not have("mkfs.vfat", "mcopy", "mmd", "fls", "icat"),
                               reason="needs dosfstools, mtools and The Sleuth Kit")


def run(*cmd, **kw):
    return tools.run(*cmd, **{"timeout": 60, **kw})


def blob(seed: str, n: int) -> bytes:
    out = bytearray()
    k = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{k}".encode()).digest()
        k += 1
    return bytes(out[:n])


# --- exFAT geometry from the specification (boot sector field offsets) -------------------

def exfat_geometry(d: bytes) -> tuple[int, int, int]:
    """(cluster heap offset, cluster size, root cluster) of an exFAT volume, by the spec:
    ClusterHeapOffset at 88, FirstClusterOfRootDirectory at 96, the shifts at 108/109."""
    ss = 1 << d[108]
    cs = ss << d[109]
    return struct.unpack_from("<I", d, 88)[0] * ss, cs, struct.unpack_from("<I", d, 96)[0]


@needs_exfat
def test_exfat_label_of_15_characters(tmp_path):
    """A Volume Label entry with CharacterCount 15 (the last 4 units in the Reserved bytes,
    as exfat-utils' mkexfatfs writes it) reads whole, as TSK's fsstat shows it."""
    p = tmp_path / "label.img"
    with open(p, "wb") as f:
        f.truncate(8 * MIB)
    run("mkfs.exfat", "-L", "SHORT", p)
    d = bytearray(p.read_bytes())
    heap, cs, root = exfat_geometry(d)
    at = heap + (root - 2) * cs
    label = "Fifteen chars!!"
    for i in range(at, at + cs, 32):
        if d[i] == 0x83:  # the Volume Label entry
            d[i + 1] = len(label)
            d[i + 2 : i + 32] = label.encode("utf-16-le")
            break
    else:
        pytest.fail("mkfs.exfat wrote no volume label entry")
    p.write_bytes(bytes(d))
    tsk = run("fsstat", p)
    assert f"Volume Label (from root directory): {label}" in tsk
    fs = exmod.open_filesystem(FileSource(p))
    assert fs.label == label and fs.info()["label"] == label
    from vdinspect.volumes.probes import probe  # the partitions() label too

    assert probe(FileSource(p)).label == label
