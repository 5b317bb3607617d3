"""check() on damaged copies, against ``qemu-img check`` and against the damage itself.

Clean images are made by qemu-img / qemu-io (VMDK hosted sparse and streamOptimized, VDI,
Parallels, VHD dynamic, QCOW v1) or, for a VHD differencing disk, by tests/vhd_builder.py
over a qemu-made parent. Each case patches named table entries of a copy (located here with
``struct`` from the specifications, not with vdinspect) and then asserts:

- every problem ``qemu-img check`` prints is an ``error`` (or ``leak``) row of ours naming
  the same structure and host offset, and our counts equal qemu's where the two definitions
  match (``same``); where they differ the case says why (``why``). The counts QEMU 7.2
  gives are written in each case and checked when that version is installed;
- the rows the damage itself implies (the entry we broke, at its host offset) are listed,
  for VHD and QCOW v1 too, which qemu-img cannot check; that includes the ``leak`` rows for
  the space the damage orphaned (a VHD block, a QCOW v1 cluster or L2 table), counted
  exactly, while clean qemu-made images and the real VHD samples give none;
- a salvage read equals ``qemu-img convert -O raw`` of the ORIGINAL image outside the ranges
  the damage touched, and ``allocation()`` shows ``damaged`` runs exactly where entries broke;
- ``check()`` gives the same rows before and after reading, and ``vdinspect check --json
  --salvage`` prints them.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import io
import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import vdinspect
from tests import qemu_tools as q
from tests import vhd_builder as vb
from tests.conftest import SHARED_SAMPLES, needs_qemu, needs_shared
from tests.tools import write_sparse
from vdinspect.containers.vhd import open_vhd
from vdinspect.errors import VDInspectError

pytestmark = needs_qemu

K, M = 1 << 10, 1 << 20
SECTOR = 512


# --- qemu-img check, as printed ------------------------------------------------------------------


@dataclass
class QemuCheck:
    """What ``qemu-img check`` said: its counts and its ERROR lines."""

    returncode: int
    report: dict
    errors: list[str]

    @property
    def counts(self) -> tuple[int, int]:
        """(corruptions, leaks). QEMU's VMDK check stops at the first bad grain and prints no
        JSON, only "Check failed": that is one corruption."""
        c = self.report.get("corruptions", 0)
        if not self.report and any("points after EOF" in e for e in self.errors):
            c = 1
        return c, self.report.get("leaks", 0)


def qemu_check(path: Path) -> QemuCheck:
    r = subprocess.run(
        ["qemu-img", "check", "--output=json", str(path)], capture_output=True, text=True
    )
    report = json.loads(r.stdout) if r.stdout.strip() else {}
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR")]
    return QemuCheck(r.returncode, report, errors)


@functools.cache
def qemu_version() -> str:
    out = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+\.\d+)", out)
    return m.group(1) if m else "?"


# --- layouts, read with struct from the specifications ----------------------------------------


def u32le(b, off: int) -> int:
    return struct.unpack_from("<I", b, off)[0]


def put32le(b: bytearray, off: int, v: int) -> None:
    struct.pack_into("<I", b, off, v)


def put32be(b: bytearray, off: int, v: int) -> None:
    struct.pack_into(">I", b, off, v)


def put64be(b: bytearray, off: int, v: int) -> None:
    struct.pack_into(">Q", b, off, v)


def vhd_checksum(buf: bytes, at: int) -> int:
    """One's complement of the byte sum, the 4-byte checksum field at ``at`` left out."""
    return ~(sum(buf[:at]) + sum(buf[at + 4 :])) & 0xFFFFFFFF


class VmdkLayout:
    """Hosted sparse extent ("KDMV"): header, grain directory and its redundant copy."""

    def __init__(self, b: bytes) -> None:
        assert b[:4] == b"KDMV"
        (
            _,
            self.flags,
            self.capacity,
            self.grain,
            _,
            _,
            self.ngte,
            self.rgd,
            self.gd,
            self.overhead,
        ) = struct.unpack_from("<IIQQQQIQQQ", b, 4)
        self.gb = self.grain * SECTOR  # grain bytes
        self.n_gd = -(-self.capacity // (self.grain * self.ngte))
        self.gts = struct.unpack_from(f"<{self.n_gd}I", b, self.gd * SECTOR)
        self.rgts = struct.unpack_from(f"<{self.n_gd}I", b, self.rgd * SECTOR)
        self.b = b

    def gde(self, i: int, redundant: bool = False) -> int:
        """Host offset of grain directory entry ``i``."""
        return (self.rgd if redundant else self.gd) * SECTOR + 4 * i

    def gte(self, g: int, redundant: bool = False) -> int:
        """Host offset of the grain table entry of grain ``g``."""
        i, k = divmod(g, self.ngte)
        return (self.rgts if redundant else self.gts)[i] * SECTOR + 4 * k

    def grains(self) -> list[tuple[int, int]]:
        """(grain index, host offset) of the allocated grains, in guest order."""
        out = []
        for i, t in enumerate(self.gts):
            if t:
                ents = struct.unpack_from(f"<{self.ngte}I", self.b, t * SECTOR)
                out += [(i * self.ngte + k, e * SECTOR) for k, e in enumerate(ents) if e]
        return out

    def span(self, g: int) -> tuple[int, int]:
        return g * self.gb, (g + 1) * self.gb


class VdiLayout:
    """VDI 1.1 header fields (little-endian, offsets from the start of the file)."""

    AT_ALLOCATED = 388  # cBlocksAllocated

    def __init__(self, b: bytes) -> None:
        self.off_blocks, self.off_data = u32le(b, 340), u32le(b, 344)
        self.block, self.n_blocks = u32le(b, 376), u32le(b, 384)
        self.entries = struct.unpack_from(f"<{self.n_blocks}I", b, self.off_blocks)

    def entry_at(self, i: int) -> int:
        return self.off_blocks + 4 * i

    def span(self, i: int) -> tuple[int, int]:
        return i * self.block, (i + 1) * self.block


class PrlLayout:
    """Parallels "WithouFreSpacExt" header and BAT (entries in clusters)."""

    def __init__(self, b: bytes) -> None:
        assert b[:16] == b"WithouFreSpacExt"
        self.cluster = u32le(b, 28) * SECTOR
        self.n_bat = u32le(b, 32)
        self.bat = struct.unpack_from(f"<{self.n_bat}I", b, 64)

    def entry_at(self, i: int) -> int:
        return 64 + 4 * i

    def span(self, i: int) -> tuple[int, int]:
        return i * self.cluster, (i + 1) * self.cluster


class VhdLayout:
    """VHD footer (at the end), dynamic disk header and BAT (big-endian)."""

    LOCATORS_AT = 576  # parent locator entries inside the dynamic disk header

    def __init__(self, b: bytes) -> None:
        self.footer = len(b) - SECTOR
        assert b[self.footer : self.footer + 8] == b"conectix"
        self.header = struct.unpack_from(">Q", b, self.footer + 16)[0]
        (self.bat_off,) = struct.unpack_from(">Q", b, self.header + 16)
        self.n_bat, self.block = struct.unpack_from(">II", b, self.header + 28)
        self.bat = struct.unpack_from(f">{self.n_bat}I", b, self.bat_off)
        self.bitmap = -(-(self.block // SECTOR) // 8 // SECTOR) * SECTOR

    def entry_at(self, i: int) -> int:
        return self.bat_off + 4 * i

    def span(self, i: int) -> tuple[int, int]:
        return i * self.block, (i + 1) * self.block


class QcowLayout:
    """QCOW version 1 header, L1 and L2 tables (big-endian)."""

    def __init__(self, b: bytes) -> None:
        assert b[:4] == b"QFI\xfb"
        (self.size,) = struct.unpack_from(">Q", b, 24)
        self.cb, self.l2b = b[32], b[33]
        (self.l1_off,) = struct.unpack_from(">Q", b, 40)
        self.cs = 1 << self.cb
        self.n_l1 = -(-self.size // (self.cs << self.l2b))
        self.l1 = struct.unpack_from(f">{self.n_l1}Q", b, self.l1_off)
        self.b = b

    def l2e(self, v: int) -> int:
        """Host offset of the L2 entry of the cluster at virtual offset ``v``."""
        i, j = divmod(v // self.cs, 1 << self.l2b)
        return self.l1[i] + 8 * j

    def entry(self, v: int) -> int:
        return struct.unpack_from(">Q", self.b, self.l2e(v))[0]

    def host(self, v: int) -> int:
        e = self.entry(v)
        return e & ((1 << (63 - self.cb)) - 1) if e >> 63 else e


# --- clean images ----------------------------------------------------------------------------------


@dataclass
class Base:
    path: Path
    raw: bytes  # the virtual disk of the clean image (qemu-img convert, or the builder's data)
    extra: dict = field(default_factory=dict)


def _qemu_base(d: Path, name: str, fmt: str, size: str, *opts: str, writes=()) -> Path:
    img = q.create(d / name, size, fmt, *opts)
    q.qemu_io(img, *writes, fmt=fmt)
    return img


WRITES = {
    # grains 0, 16, 17 (grain table 0), 528 (table 1), 1120 (table 2)
    "vmdk": (
        "72M",
        [],
        [
            "write -P 0x11 0 64k",
            "write -P 0x22 1M 128k",
            "write -P 0x33 33M 64k",
            "write -P 0x44 70M 64k",
        ],
    ),
    "vmdk-stream": (
        "72M",
        ["subformat=streamOptimized"],
        [
            "write -P 0x11 0 64k",
            "write -P 0x22 1M 128k",
            "write -P 0x33 33M 64k",
            "write -P 0x44 70M 64k",
        ],
    ),
    # blocks 0, 1, 5, 9 get indexes 0..3
    "vdi": (
        "12M",
        [],
        [
            "write -P 0x11 0 64k",
            "write -P 0x22 1M 1M",
            "write -P 0x33 5M 64k",
            "write -P 0x44 9M 64k",
        ],
    ),
    # clusters 0, 16, 17, 48, 96 at host clusters 1..5
    "parallels": (
        "8M",
        ["cluster_size=64k"],
        [
            "write -P 0x11 0 64k",
            "write -P 0x22 1M 128k",
            "write -P 0x33 3M 64k",
            "write -P 0x44 6M 64k",
        ],
    ),
    # blocks 0, 1, 3 (2 MiB)
    "vpc": ("8M", [], ["write -P 0x11 0 64k", "write -P 0x22 3M 64k", "write -P 0x33 6M 64k"]),
    # 4 KiB clusters, 2 MiB per L2 table: 16 plain, 2 compressed (qemu-io compresses one
    # cluster per write), 2 plain in table 2
    "qcow": (
        "8M",
        [],
        [
            "write -P 0x11 0 64k",
            "write -c -P 0x22 1M 4k",
            "write -c -P 0x23 1028k 4k",
            "write -P 0x33 5M 8k",
        ],
    ),
}


def _build_vhd_diff(d: Path, parent: Base) -> Base:
    """A differencing VHD (vhd_builder) over the qemu-made dynamic VHD ``parent``."""
    pb = parent.path.read_bytes()
    size = len(parent.raw)
    rng = np.random.default_rng(7)
    blocks = {0: vb.random_block(rng, 2 * M, "runs"), 2: vb.random_block(rng, 2 * M, "full")}
    path = d / "child.vhd"
    vb.build_dynamic(
        path,
        size=size,
        blocks=blocks,
        parent=vb.Parent(
            pb[-SECTOR + 68 : -SECTOR + 84],
            name="base.vhd",
            locators=[vb.w2ku(str(parent.path)), vb.macx(str(parent.path))],
        ),
    )
    return Base(path, vb.expected_bytes(size, blocks, 2 * M, parent=parent.raw))


@pytest.fixture(scope="session")
def bases(tmp_path_factory):
    """Clean images by kind, made on first use."""
    made: dict[str, Base] = {}

    def get(kind: str) -> Base:
        if kind in made:
            return made[kind]
        d = tmp_path_factory.mktemp(kind)
        if kind == "vhd-diff":
            made[kind] = _build_vhd_diff(d, get("vpc"))
        else:
            fmt = "vmdk" if kind.startswith("vmdk") else kind
            size, opts, writes = WRITES[kind]
            img = _qemu_base(d, f"clean.{kind}", fmt, size, *opts, writes=writes)
            made[kind] = Base(img, q.to_raw_bytes(img, d, fmt=fmt))
        return made[kind]

    return get


# --- the cases -----------------------------------------------------------------------------------


@dataclass
class Expect:
    """What a damage must give."""

    rows: list[tuple]  # (severity, structure, host_offset, text or None) check() must list
    ours: tuple[int, int]  # our (errors, leaks)
    qemu: tuple[int, int] | None = None  # QEMU 7.2's (corruptions, leaks); None: it cannot check
    same: bool = False  # the definitions match: our counts must equal qemu's
    why: str = ""  # where they differ: why
    damaged: list[tuple[int, int]] = field(default_factory=list)  # allocation() says damaged
    changed: list[tuple[int, int]] = field(default_factory=list)  # reads may differ here


CASES: dict[tuple[str, str], object] = {}


def case(kind: str):
    def register(fn):
        CASES[(kind, fn.__name__)] = fn
        return fn

    return register


def far(b: bytearray, unit: int) -> int:
    """An offset, in ``unit``s, well past the end of the file."""
    return len(b) // unit + 4096


# VMDK hosted sparse (qemu writes a redundant grain directory and tables) -------------------------


@case("vmdk")
def gte_past_eof(b, L: VmdkLayout):
    g = 16
    for red in (False, True):
        put32le(b, L.gte(g, red), far(b, SECTOR))
    return Expect(
        [
            ("error", "grain table", L.gte(g), "past the end of the file"),
            ("leak", "grain", dict(L.grains())[g], None),
        ],
        ours=(1, 1),
        qemu=(1, 0),
        why="QEMU's VMDK check finds no leaks (the orphaned grain)",
        damaged=[L.span(g)],
        changed=[L.span(g)],
    )


@case("vmdk")
def gte_past_eof_primary(b, L: VmdkLayout):
    g = 16
    put32le(b, L.gte(g), far(b, SECTOR))  # the redundant table still has the grain
    return Expect(
        [
            ("error", "grain table", L.gte(g), "reads use the redundant copy's entry"),
            ("error", "grain table", L.gte(g), "differ from the redundant copy"),
        ],
        ours=(2, 0),
        qemu=(1, 0),
        why="we also report that the copies disagree; reads use the redundant entry",
    )


@case("vmdk")
def gte_two_past_eof(b, L: VmdkLayout):
    for g in (17, 1120):
        for red in (False, True):
            put32le(b, L.gte(g, red), far(b, SECTOR))
    return Expect(
        [("error", "grain table", L.gte(17), None), ("error", "grain table", L.gte(1120), None)],
        ours=(2, 2),
        qemu=(1, 0),
        why="QEMU's VMDK check stops at the first bad grain and finds no leaks",
        damaged=[L.span(17), L.span(1120)],
        changed=[L.span(17), L.span(1120)],
    )


@case("vmdk")
def gte_into_gd(b, L: VmdkLayout):
    g = 16
    for red in (False, True):
        put32le(b, L.gte(g, red), L.gd)
    return Expect(
        [("error", "grain", L.gd * SECTOR, L.gte(g)), ("leak", "grain", dict(L.grains())[g], None)],
        ours=(1, 1),
        qemu=(0, 0),
        why="QEMU only tests grains against the end of the file",
        changed=[L.span(g)],
    )


@case("vmdk")
def gte_duplicate(b, L: VmdkLayout):
    hosts = dict(L.grains())
    for red in (False, True):
        put32le(b, L.gte(17, red), hosts[16] // SECTOR)
    return Expect(
        [("error", "grain", hosts[16], f"{L.gte(17):#x}"), ("leak", "grain", hosts[17], None)],
        ours=(1, 1),
        qemu=(0, 0),
        why="QEMU's VMDK check does not look for grains used twice or leaked",
        changed=[L.span(17)],
    )


@case("vmdk")
def gde_past_eof(b, L: VmdkLayout):
    for red in (False, True):
        put32le(b, L.gde(1, red), far(b, SECTOR))
    span = (L.ngte * L.gb, 2 * L.ngte * L.gb)
    return Expect(
        [
            ("error", "grain directory", L.gde(1), "no grain table"),
            ("leak", "grain", dict(L.grains())[528], None),
        ],
        ours=(1, 1),
        qemu=(0, 0),
        why="QEMU reads a grain table past the end of the file as zeros: unallocated",
        damaged=[span],
        changed=[span],
    )


@case("vmdk")
def gde_past_eof_primary(b, L: VmdkLayout):
    put32le(b, L.gde(1), far(b, SECTOR))  # the redundant directory still has the table
    return Expect(
        [("error", "grain directory", L.gd * SECTOR, "redundant")],
        ours=(1, 0),
        qemu=(0, 0),
        why="QEMU reads the lost table as zeros; we take the copy",
    )


@case("vmdk")
def truncated_grain(b, L: VmdkLayout):
    g, host = max(L.grains(), key=lambda x: x[1])
    del b[host:]
    return Expect(
        [("error", "grain table", L.gte(g), None)],
        ours=(1, 0),
        qemu=(1, 0),
        same=True,
        damaged=[L.span(g)],
        changed=[L.span(g)],
    )


@case("vmdk")
def truncated_mid_grain(b, L: VmdkLayout):
    g, host = max(L.grains(), key=lambda x: x[1])
    del b[host + 1024 :]
    s, e = L.span(g)
    return Expect(
        [("error", "grain table", L.gte(g), "cut short")],
        ours=(1, 0),
        qemu=(0, 0),
        why="QEMU reads the missing tail of the grain as zeros",
        damaged=[(s + 1024, e)],
        changed=[(s + 1024, e)],
    )


@case("vmdk")
def leaked_grains(b, L: VmdkLayout):
    end = len(b)
    b.extend(b"\xaa" * (2 * L.gb))
    return Expect(
        [("leak", "grain", end, None), ("leak", "grain", end + L.gb, None)],
        ours=(0, 2),
        qemu=(0, 0),
        why="QEMU's VMDK check finds no leaks",
    )


@case("vmdk")
def unclean_shutdown(b, L: VmdkLayout):
    b[72] = 1
    return Expect(
        [("warning", "sparse header.uncleanShutdown", 72, None)],
        ours=(0, 0),
        qemu=(0, 0),
        same=True,
    )


@case("vmdk")
def newline_test(b, L: VmdkLayout):
    assert L.flags & 1  # qemu sets the newline-test flag
    b[73] = ord("x")  # singleEndLineChar, "\n" in a file never copied in text mode
    return Expect(
        [("error", "sparse header", 73, "newline")],
        ours=(1, 0),
        qemu=(0, 0),
        why="QEMU does not test the newline characters",
    )


# VMDK streamOptimized (compressed grains behind markers) ------------------------------------------


@case("vmdk-stream")
def stream_gte_past_eof(b, L: VmdkLayout):
    g = 17
    for red in (False, True):
        put32le(b, L.gte(g, red), far(b, SECTOR))
    return Expect(
        [
            ("error", "grain table", L.gte(g), "past the end of the file"),
            ("leak", "grain", dict(L.grains())[g], "leaked"),
        ],
        ours=(1, 1),
        qemu=(1, 0),
        why="QEMU does not notice the stream's grain that no table uses",
        damaged=[L.span(g)],
        changed=[L.span(g)],
    )


@case("vmdk-stream")
def stream_gte_duplicate(b, L: VmdkLayout):
    hosts = dict(L.grains())
    for red in (False, True):
        put32le(b, L.gte(528, red), hosts[16] // SECTOR)
    return Expect(
        [
            ("error", "grain", hosts[16], f"{L.gte(528):#x}"),
            (
                "error",
                "grain marker",
                hosts[16],
                "LBA 2048, a grain table entry maps it at LBA 67584",
            ),
            ("leak", "grain", hosts[528], "leaked"),
        ],
        ours=(2, 1),
        qemu=(0, 0),
        why="QEMU's VMDK check does not look for grains used twice or leaked",
        changed=[L.span(528)],
    )


# VDI ------------------------------------------------------------------------------------------------


@case("vdi")
def index_too_large(b, L: VdiLayout):
    put32le(b, L.entry_at(2), 100)  # block 2 was unallocated
    return Expect(
        [("error", "block map", L.entry_at(2), "too large")],
        ours=(1, 0),
        qemu=(1, 0),
        same=True,
        damaged=[L.span(2)],
        changed=[L.span(2)],
    )


@case("vdi")
def duplicate_index(b, L: VdiLayout):
    put32le(b, L.entry_at(5), L.entries[0])  # block 5 had index 2
    return Expect(
        [
            ("error", "block map", L.entry_at(5), "also used by block 0"),
            ("leak", "block", L.off_data + 2 * L.block, None),
        ],
        ours=(1, 1),
        qemu=(1, 0),
        why="QEMU's VDI check counts no leaks (data slot 2 is used by nobody now)",
        changed=[L.span(5)],
    )


@case("vdi")
def duplicate_into_free_block(b, L: VdiLayout):
    put32le(b, L.entry_at(3), L.entries[0])
    return Expect(
        [
            ("error", "block map", L.entry_at(3), "also used by block 0"),
            ("error", "header.cBlocksAllocated", L.AT_ALLOCATED, "mismatch"),
        ],
        ours=(2, 0),
        qemu=(2, 0),
        same=True,
        changed=[L.span(3)],
    )


@case("vdi")
def index_past_eof(b, L: VdiLayout):
    put32le(b, L.entry_at(3), 7)  # below cBlocks (12), past the 4 stored blocks
    return Expect(
        [
            ("error", "block map", L.entry_at(3), "past the end of the file"),
            ("error", "header.cBlocksAllocated", L.AT_ALLOCATED, "mismatch"),
        ],
        ours=(2, 0),
        qemu=(1, 0),
        why="QEMU compares indexes with cBlocks, never with the file size",
        damaged=[L.span(3)],
        changed=[L.span(3)],
    )


@case("vdi")
def allocated_count(b, L: VdiLayout):
    put32le(b, L.AT_ALLOCATED, 5)
    return Expect(
        [("error", "header.cBlocksAllocated", L.AT_ALLOCATED, "says 5")],
        ours=(1, 0),
        qemu=(1, 0),
        same=True,
    )


@case("vdi")
def discarded_block(b, L: VdiLayout):
    put32le(b, L.entry_at(5), 0xFFFFFFFE)
    return Expect(
        [
            ("error", "header.cBlocksAllocated", L.AT_ALLOCATED, "mismatch"),
            ("leak", "block", L.off_data + 2 * L.block, None),
        ],
        ours=(1, 1),
        qemu=(1, 0),
        why="QEMU's VDI check counts no leaks",
        changed=[L.span(5)],
    )


@case("vdi")
def truncated_block(b, L: VdiLayout):
    del b[L.off_data + 3 * L.block + 1024 :]  # block 9 (index 3) keeps 1 KiB
    s, e = L.span(9)
    return Expect(
        [("error", "block map", L.entry_at(9), "past the end of the file")],
        ours=(1, 0),
        qemu=(0, 0),
        why="QEMU does not compare blocks with the file size",
        damaged=[(s + 1024, e)],
        changed=[(s + 1024, e)],
    )


@case("vdi")
def leaked_blocks(b, L: VdiLayout):
    b.extend(b"\xaa" * (2 * L.block))
    return Expect(
        [
            ("leak", "block", L.off_data + 4 * L.block, None),
            ("leak", "block", L.off_data + 5 * L.block, None),
        ],
        ours=(0, 2),
        qemu=(0, 0),
        why="QEMU's VDI check counts no leaks",
    )


# Parallels ------------------------------------------------------------------------------------------


@case("parallels")
def bat_past_eof(b, L: PrlLayout):
    put32le(b, L.entry_at(16), 100)
    return Expect(
        [("error", "BAT", L.entry_at(16), "outside image")],
        ours=(1, 0),
        qemu=(1, 0),
        same=True,
        damaged=[L.span(16)],
        changed=[L.span(16)],
    )


@case("parallels")
def bat_duplicate(b, L: PrlLayout):
    put32le(b, L.entry_at(17), L.bat[16])
    return Expect(
        [("error", "BAT", L.entry_at(17), "duplicate offset")],
        ours=(1, 0),
        qemu=(0, 0),
        why="QEMU 7.2 has no duplicate test (8.1 and later report it so)",
        changed=[L.span(17)],
    )


@case("parallels")
def in_use(b, L: PrlLayout):
    put32le(b, 44, 0x746F6E59)
    return Expect(
        [("error", "header.inuse", 44, "not closed correctly")], ours=(1, 0), qemu=(1, 0), same=True
    )


@case("parallels")
def data_off(b, L: PrlLayout):
    put32le(b, 48, 1)
    return Expect(
        [("error", "header.data_off", 48, "incorrect value")],
        ours=(1, 0),
        qemu=(0, 0),
        why="QEMU 7.2 does not test data_off (8.1 and later do, as we do)",
    )


@case("parallels")
def truncated_cluster(b, L: PrlLayout):
    del b[-L.cluster :]  # cluster 96 now starts at the end of the file
    return Expect(
        [("error", "BAT", L.entry_at(96), "outside image")],
        ours=(1, 0),
        qemu=(0, 0),
        why="QEMU 7.2 flags a cluster starting past the end only (8.1 and later: one "
        "ending past it, as we do)",
        damaged=[L.span(96)],
        changed=[L.span(96)],
    )


@case("parallels")
def truncated_mid_cluster(b, L: PrlLayout):
    del b[-L.cluster + 1024 :]
    s, e = L.span(96)
    return Expect(
        [("error", "BAT", L.entry_at(96), "outside image")],
        ours=(1, 0),
        qemu=(0, 0),
        why="as truncated_cluster; QEMU 8.1 and later also count the cluster's first "
        "bytes as a leak, which we read",
        damaged=[(s + 1024, e)],
        changed=[(s + 1024, e)],
    )


@case("parallels")
def leaked_clusters(b, L: PrlLayout):
    end = len(b)
    b.extend(b"\xaa" * (2 * L.cluster + 100))
    return Expect(
        [("leak", "file", end + k * L.cluster, "leaked") for k in range(3)],
        ours=(0, 3),
        qemu=(0, 3),
        same=True,
    )


# VHD dynamic (qemu-img cannot check VHD: the truth is the damage) ---------------------------------


@case("vpc")
def vhd_bat_past_eof(b, L: VhdLayout):
    put32be(b, L.entry_at(1), far(b, SECTOR))
    return Expect(
        [
            ("error", "BAT", L.entry_at(1), "past the end of the file"),
            ("leak", "block", L.bat[1] * SECTOR, "used by no BAT entry"),
        ],
        ours=(1, 1),
        damaged=[L.span(1)],
        changed=[L.span(1)],
    )


@case("vpc")
def vhd_bat_into_bat(b, L: VhdLayout):
    put32be(b, L.entry_at(1), L.bat_off // SECTOR)
    return Expect(
        [
            ("error", "BAT", L.entry_at(1), "overlaps the BAT"),
            ("error", "BAT", L.entry_at(0), f"entry 1 at {L.bat_off:#x}"),
            ("leak", "block", L.bat[1] * SECTOR, None),  # block 1's own place, now orphaned
        ],
        ours=(2, 1),
        changed=[L.span(1)],
    )


@case("vpc")
def vhd_bat_duplicate(b, L: VhdLayout):
    put32be(b, L.entry_at(3), L.bat[1])
    return Expect(
        [
            ("error", "BAT", L.entry_at(3), "entry 1"),
            ("leak", "block", L.bat[3] * SECTOR, f"{L.bitmap + L.block} bytes"),  # orphaned
        ],
        ours=(1, 1),
        changed=[L.span(3)],
    )


@case("vpc")
def vhd_bat_overlap(b, L: VhdLayout):
    put32be(b, L.entry_at(3), L.bat[1] + 8)  # 4 KiB into block 1
    # block 3's old place keeps a block less 4 KiB unused: shorter than a block, no leak
    return Expect(
        [("error", "BAT", L.entry_at(3), "entry 1")], ours=(1, 0), changed=[L.span(3), L.span(1)]
    )


@case("vpc")
def vhd_bat_unset(b, L: VhdLayout):
    put32be(b, L.entry_at(1), 0xFFFFFFFF)  # block 1 forgotten: its bitmap and data leak
    return Expect(
        [("leak", "block", L.bat[1] * SECTOR, "used by no BAT entry")],
        ours=(0, 1),
        changed=[L.span(1)],
    )


@case("vpc")
def vhd_blocks_appended(b, L: VhdLayout):
    stride = L.bitmap + L.block
    b[L.footer : L.footer] = b"\xaa" * (2 * stride)  # two blocks nothing points to
    return Expect(
        [("leak", "block", L.footer, None), ("leak", "block", L.footer + stride, None)],
        ours=(0, 2),
    )


@case("vpc")
def vhd_block_and_tail_appended(b, L: VhdLayout):
    stride = L.bitmap + L.block
    b[L.footer : L.footer] = bytes(stride + 1000)  # the last row takes the remainder
    return Expect([("leak", "block", L.footer, f"{stride + 1000} bytes")], ours=(0, 1))


@case("vpc")
def vhd_padding_appended(b, L: VhdLayout):
    b[L.footer : L.footer] = bytes(4096)  # shorter than a block: padding, as writers leave
    return Expect([], ours=(0, 0))


@case("vpc")
def vhd_footer_checksum(b, L: VhdLayout):
    b[L.footer + 64] ^= 0xFF
    return Expect([("error", "footer", L.footer, "checksum")], ours=(1, 0))


@case("vpc")
def vhd_header_checksum(b, L: VhdLayout):
    b[L.header + 36] ^= 0xFF
    return Expect([("error", "dynamic disk header", L.header, "checksum")], ours=(1, 0))


@case("vpc")
def vhd_footer_copy_checksum(b, L: VhdLayout):
    b[64] ^= 0xFF
    return Expect([("error", "footer copy", 0, "checksum")], ours=(1, 0))


@case("vpc")
def vhd_truncated_block(b, L: VhdLayout):
    data = L.bat[3] * SECTOR + L.bitmap
    del b[data + 1024 :]  # block 3 keeps 1 KiB; the footer is gone (its copy is at 0)
    s, e = L.span(3)
    return Expect(
        [
            ("error", "BAT", L.entry_at(3), "past the end of the file"),
            ("error", "footer", len(b) - SECTOR, "missing"),
        ],
        ours=(2, 0),
        damaged=[(s + 1024, e)],
        changed=[(s + 1024, e)],
    )


# VHD differencing over the qemu-made dynamic disk ---------------------------------------------------


@case("vhd-diff")
def diff_bat_past_eof(b, L: VhdLayout):
    put32be(b, L.entry_at(2), far(b, SECTOR))
    return Expect(
        [
            ("error", "BAT", L.entry_at(2), "past the end of the file"),
            ("leak", "block", L.bat[2] * SECTOR, None),
        ],
        ours=(1, 1),
        damaged=[L.span(2)],
        changed=[L.span(2)],
    )


@case("vhd-diff")
def diff_bat_duplicate(b, L: VhdLayout):
    put32be(b, L.entry_at(2), L.bat[0])
    return Expect(
        [("error", "BAT", L.entry_at(2), "entry 0"), ("leak", "block", L.bat[2] * SECTOR, None)],
        ours=(1, 1),
        changed=[L.span(2)],
    )


@case("vhd-diff")
def diff_blocks_appended(b, L: VhdLayout):
    stride = L.bitmap + L.block
    b[L.footer : L.footer] = bytes(stride)
    return Expect([("leak", "block", L.footer, "leaked")], ours=(0, 1))


@case("vhd-diff")
def diff_footer_checksum(b, L: VhdLayout):
    b[L.footer + 64] ^= 0xFF
    return Expect([("error", "footer", L.footer, "checksum")], ours=(1, 0))


@case("vhd-diff")
def diff_locator_past_eof(b, L: VhdLayout):
    entry = L.header + L.LOCATORS_AT  # the W2ku locator; the MacX one still finds the parent
    put64be(b, entry + 16, len(b) + 1 * M)
    hdr = L.header
    put32be(b, hdr + 36, 0)
    put32be(b, hdr + 36, vhd_checksum(bytes(b[hdr : hdr + 1024]), 36))
    return Expect([("error", "parent locator", entry, "outside the file")], ours=(1, 0))


# QCOW v1 (qemu-img cannot check it: the truth is the damage) ---------------------------------------


@case("qcow")
def l2_past_eof(b, L: QcowLayout):
    bad = far(b, L.cs) * L.cs
    put64be(b, L.l2e(4096), bad)
    return Expect(
        [
            ("error", "data cluster", bad, f"L2 table at {L.l1[0]:#x}"),
            ("leak", "cluster", L.host(4096), "used by no L1 or L2 entry"),
        ],
        ours=(1, 1),
        damaged=[(4096, 8192)],
        changed=[(4096, 8192)],
    )


@case("qcow")
def l2_duplicate(b, L: QcowLayout):
    put64be(b, L.l2e(8192), L.entry(4096))
    return Expect(
        [
            ("error", "data cluster", L.host(4096), "referenced twice"),
            ("leak", "cluster", L.host(8192), None),
        ],
        ours=(1, 1),
        changed=[(8192, 12288)],
    )


@case("qcow")
def l2_into_l1(b, L: QcowLayout):
    put64be(b, L.l2e(4096), L.l1_off)  # a 4 KiB cluster over the L1 table and L2 table 0
    return Expect(
        [
            ("error", "data cluster", L.l1_off, "overlaps L1 table"),
            ("error", "data cluster", L.l1_off, "not aligned to 512 bytes"),
            ("error", "L2 table", L.l1[0], f"data cluster at {L.l1_off:#x}"),
            ("leak", "cluster", L.host(4096), None),
        ],
        ours=(3, 1),
        changed=[(4096, 8192)],
    )


@case("qcow")
def compressed_past_eof(b, L: QcowLayout):
    e = L.entry(1 * M)
    assert e >> 63
    mask = (1 << (63 - L.cb)) - 1
    bad = len(b) + 64 * K
    put64be(b, L.l2e(1 * M), (e & ~mask) | bad)
    # its old bytes share a cluster with the next compressed cluster: nothing leaks
    assert L.host(1 * M) // L.cs == L.host(1028 * K) // L.cs
    return Expect(
        [("error", "compressed cluster", bad, "past the end")],
        ours=(1, 0),
        damaged=[(1 * M, 1 * M + L.cs)],
        changed=[(1 * M, 1 * M + L.cs)],
    )


@case("qcow")
def l1_past_eof(b, L: QcowLayout):
    bad = far(b, L.cs) * L.cs
    put64be(b, L.l1_off + 8 * 2, bad)
    span = (4 * M, 6 * M)
    return Expect(
        [("error", "L2 table", bad, "past the end"), *table_2_leaks(L)],
        ours=(1, 3),
        damaged=[span],
        changed=[span],
    )


def table_2_leaks(L: QcowLayout) -> list[tuple]:
    """The leak rows when L2 table 2 (two clusters at 5 MiB) is named by no L1 entry."""
    return [
        ("leak", "L2 table", L.l1[2], "named by no L1 entry"),
        ("leak", "cluster", L.host(5 * M), f"L2 table at {L.l1[2]:#x} points here"),
        ("leak", "cluster", L.host(5 * M + L.cs), f"L2 table at {L.l1[2]:#x} points here"),
    ]


@case("qcow")
def l1_duplicate(b, L: QcowLayout):
    put64be(b, L.l1_off + 8 * 2, L.l1[0])
    return Expect(
        [("error", "L2 table", L.l1[0], "L1 entries 0 and 2"), *table_2_leaks(L)],
        ours=(1, 3),
        changed=[(4 * M, 6 * M)],
    )


@case("qcow")
def truncated_cluster_qcow(b, L: QcowLayout):
    v = 5 * M + L.cs  # the last cluster written
    host = L.host(v)
    assert host + L.cs == len(b)
    del b[host:]
    return Expect(
        [("error", "data cluster", host, "past the end")],
        ours=(1, 0),
        damaged=[(v, v + L.cs)],
        changed=[(v, v + L.cs)],
    )


@case("qcow")
def l2_zeroed(b, L: QcowLayout):
    put64be(b, L.l2e(4096), 0)
    return Expect(
        [("leak", "cluster", L.host(4096), "leaked")], ours=(0, 1), changed=[(4096, 8192)]
    )


@case("qcow")
def l1_zeroed(b, L: QcowLayout):
    put64be(b, L.l1_off + 8 * 2, 0)
    return Expect(table_2_leaks(L), ours=(0, 3), changed=[(4 * M, 6 * M)])


@case("qcow")
def compressed_zeroed(b, L: QcowLayout):
    put64be(b, L.l2e(1 * M), 0)  # one of the two compressed clusters sharing a cluster:
    return Expect([], ours=(0, 0), changed=[(1 * M, 1 * M + L.cs)])  # its bytes do not leak


@case("qcow")
def compressed_both_zeroed(b, L: QcowLayout):
    for v in (1 * M, 1028 * K):
        put64be(b, L.l2e(v), 0)
    return Expect(
        [("leak", "cluster", L.host(1 * M) // L.cs * L.cs, None)],
        ours=(0, 1),
        changed=[(1 * M, 1028 * K + L.cs)],
    )


@case("qcow")
def leaked_clusters_qcow(b, L: QcowLayout):
    end = len(b)
    assert end % L.cs == 0
    b.extend(b"\xaa" * (2 * L.cs + 100))  # the last partial cluster counts too
    return Expect([("leak", "cluster", end + k * L.cs, None) for k in range(3)], ours=(0, 3))


@case("qcow")
def many_leaked_clusters(b, L: QcowLayout):
    end = len(b)
    b.extend(bytes(1005 * L.cs))  # rows stop at 1000; one more row counts the rest
    return Expect(
        [
            ("leak", "cluster", end, None),
            ("leak", "cluster", end + 999 * L.cs, None),
            ("warning", "cluster", None, "5 more leaked clusters"),
        ],
        ours=(0, 1000),
    )


LAYOUTS = {
    "vmdk": VmdkLayout,
    "vmdk-stream": VmdkLayout,
    "vdi": VdiLayout,
    "parallels": PrlLayout,
    "vpc": VhdLayout,
    "vhd-diff": VhdLayout,
    "qcow": QcowLayout,
}
QEMU_CHECKS = {"vmdk", "vmdk-stream", "vdi", "parallels"}


# --- what qemu-img check printed, as rows we must have -------------------------------------------


def qemu_rows(kind: str, qc: QemuCheck, L) -> list[tuple]:
    """(severity, structure, host_offset or None, text or None) for each problem qemu names."""
    out = []
    for line in qc.errors:
        if m := re.search(r"cluster offset for sector (\d+) points after EOF", line):
            out.append(("error", "grain table", L.gte(int(m[1]) * SECTOR // L.gb), None))
        elif m := re.search(r"block index (\d+) too large, is (\d+)", line):
            out.append(("error", "block map", L.entry_at(int(m[1])), f"index {m[2]}"))
        elif m := re.search(r"block index \d+ also used by (\d+)", line):
            out.append(("error", "block map", None, f"uses index {m[1]}"))  # qemu names no block
        elif "allocated blocks mismatch" in line:
            out.append(("error", "header.cBlocksAllocated", L.AT_ALLOCATED, "mismatch"))
        elif m := re.search(r"cluster (\d+) is outside image", line):
            out.append(("error", "BAT", L.entry_at(int(m[1])), "outside image"))
        elif m := re.search(r"duplicate offset in BAT entry (\d+)", line):
            out.append(("error", "BAT", L.entry_at(int(m[1])), "duplicate"))
        elif "not closed correctly" in line:
            out.append(("error", "header.inuse", 44, None))
        elif "data_off field" in line:
            out.append(("error", "header.data_off", 48, None))
        elif "space leaked at the end" in line:
            out.append(("leak", "file", qc.report["image-end-offset"], None))
        else:
            raise AssertionError(f"qemu-img check line not mapped: {line}")
    return out


def has_row(rows: list[dict], want: tuple) -> bool:
    sev, structure, off, text = want
    return any(
        r["severity"] == sev
        and r["structure"] == structure
        and (off is None or r["host_offset"] == off)
        and (text is None or (f"{text:#x}" if isinstance(text, int) else text) in r["message"])
        for r in rows
    )


def counts(rows: list[dict]) -> tuple[int, int]:
    return (sum(r["severity"] == "error" for r in rows), sum(r["severity"] == "leak" for r in rows))


def cli_check(path: Path) -> list[dict]:
    """``vdinspect check --json --salvage``, run in this process."""
    from vdinspect.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", "--json", "--salvage", str(path), "--search", str(trusted(path))])
    rows = json.loads(out.getvalue())
    # exit 1 exactly when an error row is reported (as fsck and qemu-img check do)
    assert code == int(any(r["severity"] == "error" for r in rows)), err.getvalue()
    return rows


def trusted(path: Path) -> Path:
    """The folder parents may be in: the copies are made in a test's own folder, the parent
    of the VHD differencing base (named by an absolute locator) in another folder of the
    session's temporary tree, so that tree is passed as ``search=``."""
    return path.parent.parent


def covered(spans: list[tuple[int, int]], a: int, b: int) -> bool:
    """Whether ``[a, b)`` lies inside the union of ``spans``."""
    for s, e in sorted(spans):
        if s <= a < e:
            a = e
        if a >= b:
            return True
    return a >= b


# --- the test --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, name", sorted(CASES), ids=[f"{k}-{n}" for k, n in sorted(CASES)])
def test_damaged_copy(kind, name, bases, tmp_path):
    base = bases(kind)
    b = bytearray(base.path.read_bytes())
    L = LAYOUTS[kind](bytes(b))
    exp: Expect = CASES[(kind, name)](b, L)
    bad = tmp_path / base.path.name
    bad.write_bytes(bytes(b))

    with vdinspect.open(bad, strict=False, search=trusted(bad)) as disk:
        top = len(disk.layers()) - 1
        rows = [r for r in disk.check().to_dict("records") if r["layer"] == top]
        got = disk.read(0, disk.size)
        alloc = disk.allocation()
        after = [r for r in disk.check().to_dict("records") if r["layer"] == top]
    table = "\n".join(
        f"{r['severity']} {r['structure']} {r['host_offset']} {r['message']}" for r in rows
    )

    # the damage itself, named at its host offset
    for want in exp.rows:
        assert has_row(rows, want), (want, table)
    assert counts(rows) == exp.ours, table
    assert after == rows, "check() changed after reading"

    # qemu-img check: each problem it names is one of our rows; equal counts where the
    # definitions match
    if kind in QEMU_CHECKS:
        qc = qemu_check(bad)
        assert qc.returncode in (0, 1, 2, 3), qc
        for want in qemu_rows(kind, qc, L):
            assert has_row(rows, want), (want, qc.errors, table)
        if exp.same:
            assert counts(rows) == qc.counts, (qc, table)
        # whatever the version: what qemu counts, we count too
        assert all(a <= b for a, b in zip(qc.counts, counts(rows))), (qc, table)
        if qemu_version() == "7.2":  # the table of counts written in the cases
            assert qc.counts == exp.qemu, (qc, exp.why)

    # reads: the original's bytes outside what the damage touched; damaged runs where it broke
    want = bytearray(base.raw)
    have = bytearray(got)
    assert len(have) == len(want)
    for s, e in exp.changed:
        want[s:e] = bytes(e - s)
        have[s:e] = bytes(e - s)
    assert have == want, "bytes outside the damaged ranges differ from the original"
    dmg = [(int(r.start), int(r.end)) for r in alloc.itertuples() if r.state == "damaged"]
    for s, e in exp.damaged:
        assert covered(dmg, s, e), (s, e, dmg)
    for s, e in dmg:
        assert covered(exp.changed, s, e), ("damaged outside the damage", s, e)

    # strict mode: a clean refusal or a check that does not raise
    try:
        with vdinspect.open(bad, search=trusted(bad)) as disk:
            disk.check()
    except VDInspectError:
        pass

    # the CLI prints the same rows
    cli_rows = [r for r in cli_check(bad) if r["layer"] == top]
    assert [(r["severity"], r["structure"], r["host_offset"], r["message"]) for r in cli_rows] == [
        (r["severity"], r["structure"], r["host_offset"], r["message"]) for r in rows
    ]


@pytest.mark.parametrize("kind", sorted(LAYOUTS))
def test_clean_bases(kind, bases, tmp_path):
    """The undamaged images: no rows from us, none from qemu-img check."""
    base = bases(kind)
    copy = tmp_path / base.path.name
    shutil.copyfile(base.path, copy)
    with vdinspect.open(copy, search=trusted(copy)) as disk:
        df = disk.check()
        assert df.empty, df.to_dict("records")
        assert disk.read(0, disk.size) == base.raw
    if kind in QEMU_CHECKS:
        qc = qemu_check(copy)
        assert qc.returncode == 0 and qc.counts == (0, 0) and not qc.errors, qc


# --- leaks: clean images and real samples give none -------------------------------------------------


def _vpc_1g(d: Path) -> Path:  # a BAT of 513 entries: padded to 2560 bytes, first block at 4 KiB
    img = q.create(d / "big.vhd", "1G", "vpc")
    q.qemu_io(img, "write -P 1 0 64k", "write -P 2 300M 3M", "write -P 3 1000M 4k", fmt="vpc")
    return img


def _vpc_force_size(d: Path) -> Path:  # creator "qem2", sized by current_size
    img = q.create(d / "fs.vhd", "10M", "vpc", "force_size=on")
    q.qemu_io(img, "write -P 1 1M 1M", "write -P 2 9M 512", fmt="vpc")
    return img


def _vpc_convert(d: Path) -> Path:
    raw = d / "src.raw"
    with raw.open("wb") as f:
        f.truncate(9 * M)
        for at in (0, 4 * M + 3, 9 * M - 100):
            f.seek(at)
            f.write(b"\x5a" * 100)
    img = d / "conv.vhd"
    q.qemu_img("convert", "-f", "raw", "-O", "vpc", str(raw), str(img))
    return img


def _qcow_backed(d: Path) -> Path:  # 512-byte clusters, 32 KiB L2 tables (qemu's backing layout)
    base = q.create(d / "base.qcow", "8M", "qcow")
    q.qemu_io(base, "write -P 1 0 64k", fmt="qcow")
    img = q.create(d / "top.qcow", "8M", "qcow", backing=base, backing_fmt="qcow")
    q.qemu_io(img, "write -P 2 3M 5k", "write -P 3 7M 1k", "write -c -P 4 6M 512", fmt="qcow")
    return img


def _qcow_compressed(d: Path) -> Path:  # compressed pieces packed 512-byte aligned, then plain
    img = q.create(d / "comp.qcow", "8M", "qcow")
    writes = [f"write -c -P {k + 1} {k * 4}k 4k" for k in range(10)]
    writes += ["write -P 0x77 2M 4k", "write -c -P 0x78 2052k 4k", "write -P 0x79 6M 4k"]
    q.qemu_io(img, *writes, fmt="qcow")
    return img


def _qcow_3g(d: Path) -> Path:  # a 12 KiB L1 table (1536 entries)
    img = q.create(d / "big.qcow", "3G", "qcow")
    q.qemu_io(img, "write -P 1 0 4k", "write -P 2 1G 8k", "write -P 3 3071M 4k", fmt="qcow")
    return img


QEMU_CLEAN = {
    "vpc-1G": _vpc_1g,
    "vpc-force-size": _vpc_force_size,
    "vpc-convert": _vpc_convert,
    "qcow-backed": _qcow_backed,
    "qcow-compressed": _qcow_compressed,
    "qcow-3G": _qcow_3g,
}


@pytest.mark.parametrize("name", sorted(QEMU_CLEAN))
def test_clean_qemu_images_no_leaks(name, tmp_path):
    """qemu-img / qemu-io images of other layouts than the bases: no rows at all."""
    img = QEMU_CLEAN[name](tmp_path)
    with vdinspect.open(img) as disk:
        df = disk.check()
    assert df.empty, df.to_dict("records")


VHD_SAMPLES = [
    "qemu-iotests-v7.2.0/sample_images/hyperv2012r2-dynamic.vhd.bz2",  # Hyper-V: 4 KiB padding
    "qemu-iotests-v7.2.0/sample_images/virtualpc-dynamic.vhd.bz2",  # Virtual PC: 512 bytes
    "qemu-iotests-v7.2.0/sample_images/d2v-zerofilled.vhd.bz2",  # Disk2VHD: 126 blocks
    "dfvfs/test_data/fat-differential.vhd",  # Windows: locator space, block aligned to 4 KiB
    "dfvfs/test_data/ext2.vhd",
    "dfvfs/test_data/image.vhd",  # bad checksums: read with strict=False
    "dfvfs/test_data/image-differential.vhd",
]


@needs_shared
@pytest.mark.parametrize("name", VHD_SAMPLES, ids=[Path(n).name for n in VHD_SAMPLES])
def test_real_vhd_samples_no_leaks(name, tmp_path):
    """Real VHDs (MANIFEST.md) leave short padding between structures; none of it is a leak."""
    src = SHARED_SAMPLES / name
    if src.suffix == ".bz2":
        path = tmp_path / src.stem
        with bz2.open(src) as f:
            write_sparse(path, f)
    else:
        path = src
    with open_vhd(path, strict=False) as im:
        rows = im.check_rows()
        assert im.disk_type in (3, 4)
    assert not [r for r in rows if r["severity"] == "leak" or "leaked" in r["message"]], rows
