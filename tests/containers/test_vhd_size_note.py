"""The virtual size of a VHD where qemu-img says otherwise: ``info()["size_note"]`` names
qemu-img's number and why. Images from qemu-img (fixed and dynamic, ``force_size`` on and
off, sizes off the CHS grid); creators patched into the footer by the specification's
checksum rule (``set_creator``, written here from the specification's offsets)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import vdinspect
from tests.conftest import needs_qemu
from tests.containers.test_vhd import qemu_create, qemu_info


def set_creator(path: Path, creator: bytes, current_size: int) -> None:
    """VHD spec footer: Creator Application at byte 28 (4 bytes), Current Size at 48 (u64
    big-endian), Checksum at 64 = one's complement of the sum of the other 511 bytes."""
    data = bytearray(path.read_bytes())
    for at in [len(data) - 512] + ([0] if data[:8] == b"conectix" else []):
        foot = data[at:at + 512]
        foot[28:32] = creator
        foot[48:56] = struct.pack(">Q", current_size)
        foot[64:68] = bytes(4)
        foot[64:68] = struct.pack(">I", ~sum(foot) & 0xFFFFFFFF)
        data[at:at + 512] = foot
    path.write_bytes(bytes(data))


@needs_qemu
@pytest.mark.parametrize("size", [8 << 20, 8389120, 10_000_000])
@pytest.mark.parametrize("sub", ["fixed", "dynamic"])
@pytest.mark.parametrize("force", [False, True])
def test_qemu_sizes_and_the_raw_probe(size, sub, force, tmp_path):
    img = qemu_create(tmp_path / "d.vhd", size, sub, force)
    probed = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(img)],
                                       capture_output=True, text=True, check=True).stdout)
    with vdinspect.open(img) as d:
        info = d.info()
        assert d.size == qemu_info(img)["virtual-size"]  # qemu-img -f vpc agrees
        if sub == "fixed":  # probing, qemu-img sees raw: the file size, footer included
            assert probed["format"] == "raw" and probed["virtual-size"] == img.stat().st_size
            assert probed["virtual-size"] == d.size + 512
            assert f"reports the file size, {probed['virtual-size']} bytes" in info["size_note"]
        else:
            assert probed["format"] == "vpc" and probed["virtual-size"] == d.size
            assert info["size_note"] is None or pd_na(info["size_note"])


def pd_na(v) -> bool:
    import pandas as pd

    return v is pd.NA


@needs_qemu
@pytest.mark.parametrize("creator", [b"vbox", b"wa\0\0", b"abcd"])
def test_unknown_creator_goes_by_current_size(creator, tmp_path):
    """The specification's size (current_size; Hyper-V and VirtualBox read it) for writers
    qemu does not list; qemu-img up to 9.x sizes them by geometry, and the note says so."""
    img = qemu_create(tmp_path / "d.vhd", 10_000_000, "dynamic", False)  # geometry-sized
    with vdinspect.open(img) as d:
        chs = d.size
    img = Path(shutil.copy(img, tmp_path / "patched.vhd"))  # the opened one stays as it was
    set_creator(img, creator, 10_000_384)
    theirs = qemu_info(img)["virtual-size"]
    with vdinspect.open(img) as d:
        info = d.info()
        assert d.size == 10_000_384 and info["size_rule"] == "current_size"
        assert chs != d.size
        assert theirs in (d.size, chs)  # qemu 10 agrees; before, it reports the geometry
        assert f"by its CHS geometry, {chs} bytes" in info["size_note"]
