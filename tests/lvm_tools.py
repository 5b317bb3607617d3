"""A disk image holding a striped LVM2 logical volume made by lvm2's own tools (PVs on
loop devices over two GPT partitions, activation off), with a payload image written into
the LV by the segment map ``lvs`` reports: the LV's bytes are placed by lvm2, never by
vdinspect's reader. Needs root, losetup, sfdisk and lvm2 (``striped_lvm_disk`` skips)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import have
from tests.tools import run

MiB = 1 << 20
LVM_CONF = """devices { use_devicesfile = 0 hints = "none" obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 }
backup { backup = 0 archive = 0 }
global { use_lvmpolld = 0 }
"""


def can_make_lvm() -> bool:
    return (hasattr(os, "geteuid") and os.geteuid() == 0
            and have("losetup", "pvcreate", "vgcreate", "lvcreate", "lvs", "pvs", "sfdisk"))


def lv_map(disk: Path, lv_bytes: int, work: Path, stripe_kib: int = 64
           ) -> tuple[list[tuple[int, int]], int]:
    """Make ``disk`` (two GPT partitions, one PV each, VG ``hrvg``, a 2-stripe LV ``str``
    of at least ``lv_bytes``) and return where the LV's bytes lie in the disk image, as
    lvs reports them: (disk offset, bytes) chunks in LV order, and the LV's size."""
    ext = 4 * MiB
    per_pv = -(-lv_bytes // (2 * ext)) * ext  # each PV's share, whole extents
    part_sectors = (per_pv + 4 * MiB) // 512  # + room for the label and metadata
    parts = [(2048, part_sectors), (2048 + part_sectors, part_sectors)]
    with open(disk, "wb") as f:
        f.truncate((parts[-1][0] + part_sectors + 2048) * 512)
    run("sfdisk", "-q", disk, input="label: gpt\n" + "".join(
        f"start={s}, size={n}, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n" for s, n in parts))
    etc = work / "lvmetc"
    etc.mkdir(exist_ok=True)
    (etc / "lvm.conf").write_text(LVM_CONF)
    env = dict(os.environ, LVM_SYSTEM_DIR=str(etc), LVM_SUPPRESS_FD_WARNINGS="1")
    loops: list[str] = []

    def lvm(*args) -> str:
        r = subprocess.run(list(args), capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(f"{args[0]}: {r.stderr}")
        return r.stdout

    try:
        for s, n in parts:
            r = subprocess.run(["losetup", "--show", "-f", "-o", str(s * 512), "--sizelimit",
                                str(n * 512), str(disk)], capture_output=True, text=True)
            if r.returncode:
                pytest.skip(f"losetup failed: {r.stderr.strip()}")
            loops.append(r.stdout.strip())
        dev = ["--devices", ",".join(loops)]
        off = ["--driverloaded", "n", *dev]
        try:
            lvm("pvcreate", "-q", "-y", *dev, *loops)
        except RuntimeError as e:
            pytest.skip(str(e))
        lvm("vgcreate", "-q", *dev, "-s", f"{ext // 1024}k", "hrvg", *loops)
        lvm("lvcreate", "-q", *off, "-an", "-Zn", "-Wn", "-i2", f"-I{stripe_kib}k", "-l",
            str(2 * per_pv // ext), "-n", "str", "hrvg")
        segs = json.loads(lvm("lvs", *off, "--reportformat", "json", "--segments", "--units",
                              "b", "-o", "lv_name,seg_size_pe,stripes,stripe_size,"
                              "seg_pe_ranges"))["report"][0]["seg"]
        pvs = json.loads(lvm("pvs", *off, "--reportformat", "json", "--units", "b", "-o",
                             "pv_name,pe_start"))["report"][0]["pv"]
    finally:
        for lo in loops:
            subprocess.run(["losetup", "-d", lo], capture_output=True)
    base = {p["pv_name"]: parts[loops.index(p["pv_name"])][0] * 512
            + int(p["pe_start"].rstrip("B")) for p in pvs}
    chunks: list[tuple[int, int]] = []
    for s in (s for s in segs if s["lv_name"] == "str"):
        ranges = [r.rsplit(":", 1) for r in s["seg_pe_ranges"].split()]
        areas = [base[name] + int(rng.split("-")[0]) * ext for name, rng in ranges]
        n, size = int(s["stripes"]), int(s["seg_size_pe"]) * ext
        chunk = int(s["stripe_size"].rstrip("B")) if n > 1 else size
        for c in range(size // chunk):
            chunks.append((areas[c % n] + (c // n) * chunk, chunk))
    return chunks, sum(n for _o, n in chunks)


def striped_lvm_disk(disk: Path, lv_bytes: int, payload, work: Path) -> Path:
    """``disk`` with a striped LV ``hrvg/str`` of at least ``lv_bytes`` whose bytes are
    ``payload(size)`` (a function from the LV's size to the path of an image of that size),
    written in at the places lvs names; skips where lvm2 cannot run."""
    if not can_make_lvm():
        pytest.skip("needs root, losetup, sfdisk and lvm2's tools")
    chunks, size = lv_map(disk, lv_bytes, work)
    img = payload(size)
    with open(img, "rb") as src, open(disk, "r+b") as out:
        pos = 0
        for at, n in chunks:
            data = os.pread(src.fileno(), n, pos)
            if data.strip(b"\0"):  # zeros stay holes in the sparse disk image
                os.pwrite(out.fileno(), data, at)
            pos += n
    return disk
