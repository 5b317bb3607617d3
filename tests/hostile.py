"""Hostile samples, built in a folder a test gives (never committed), and a recorder of the
files a process opens.

An image is untrusted input (docs/reliability.md, "An image is untrusted input"). Each
generator of :data:`GENERATORS` writes one hostile sample into an empty folder ``d`` and
returns the path to open: images and machine files whose recorded file names lead out of
``d`` (absolute paths, ``..``, links, ``/proc``, ``/dev``, a FIFO, a folder), and images whose
tables claim blocks at impossible places (a zeroed VHD BAT, cross-linked blocks) to make a
small file stand for millions of runs. Secrets lie beside ``d`` (``d/../secret.*``): a
sample that shows their bytes, or opens any file outside ``d``, fails
tests/test_untrusted_paths.py. The fuzz harnesses (tests/test_fuzz_all.py,
fuzzing/atheris_all.py) use the same generators as seeds.

:func:`opens` records, with an audit hook (``sys.addaudithook``: every ``open()`` and
``os.open()`` raises the ``open`` event), the files opened while it is active;
:func:`outside` keeps those outside a folder (Python's own module files aside).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tests import machine_builder as mb
from tests import parallels_builder as pb
from tests import qcow2_builder as qb
from tests import vdi_builder as vdb
from tests import vhd_builder as vb
from tests import vhdx_builder as xb
from tests import vmdk_builder as vmb

K, M = 1 << 10, 1 << 20
SECRET = b"SECRET!!"  # what the files outside the sample's folder hold
SECRET_SIZE = 64 * K
PASSWD = "/etc/passwd"


# --- the secrets beside the folder ------------------------------------------------------------


def secrets(d: Path) -> dict[str, Path]:
    """Files outside ``d`` (in its parent) that no sample may read: a raw image, a VDI, a
    text file; made once per parent folder."""
    up = d.parent
    raw = up / "secret.img"
    if not raw.exists():
        raw.write_bytes(SECRET * (SECRET_SIZE // len(SECRET)))
    vdi = up / "secret.vdi"
    if not vdi.exists():
        vdb.write(vdi, vdb.Vdi(size=M, blocks={0: SECRET * (M // len(SECRET))},
                               uuid_create=SECRET_VDI_UUID))
    text = up / "secret.txt"
    if not text.exists():
        text.write_text('snapshot.lastUID = "1"\n# ' + SECRET.decode() + "\n")
    return dict(raw=raw, vdi=vdi, text=text)


SECRET_VDI_UUID = uuidlib.UUID("5ec12e70-0000-4000-8000-00000000beef")


def _qcow2(d: Path, name: str = "hostile.qcow2", **kw) -> Path:
    kw.setdefault("size", SECRET_SIZE)
    kw.setdefault("clusters", {1: b"top data" * 64})
    return qb.write(d / name, qb.Qcow2(**kw))


# --- names that lead outside --------------------------------------------------------------------


def qcow2_backing_etc_passwd(d: Path) -> Path:
    return _qcow2(d, backing=PASSWD, backing_format="raw")


def qcow2_backing_dotdot(d: Path) -> Path:
    return _qcow2(d, backing="../" * 12 + "etc/passwd", backing_format="raw")


def qcow2_backing_secret(d: Path) -> Path:
    return _qcow2(d, backing=str(secrets(d)["raw"]), backing_format="raw")


def qcow2_backing_relative_secret(d: Path) -> Path:
    secrets(d)
    return _qcow2(d, backing="../secret.img", backing_format="raw")


def qcow2_backing_nul(d: Path) -> Path:
    """A name no file can have: a NUL byte in it."""
    return _qcow2(d, backing="base.img\0/../../etc/passwd", backing_format="raw")


def qcow2_backing_proc(d: Path) -> Path:
    return _qcow2(d, backing="/proc/self/environ", backing_format="raw")


def qcow2_backing_proc_mem(d: Path) -> Path:
    return _qcow2(d, backing="/proc/self/mem", backing_format="raw")


def qcow2_backing_dev(d: Path) -> Path:
    return _qcow2(d, backing="/dev/zero", backing_format="raw")


def qcow2_backing_fifo(d: Path) -> Path:
    """A FIFO inside the folder: opening it for reading would block for ever."""
    os.mkfifo(d / "pipe")
    return _qcow2(d, backing="pipe", backing_format="raw")


def qcow2_backing_symlink(d: Path) -> Path:
    """A name inside the folder that is a link to a file outside it."""
    os.symlink(secrets(d)["raw"], d / "base.img")
    return _qcow2(d, backing="base.img", backing_format="raw")


def qcow2_backing_dir_symlink(d: Path) -> Path:
    """A folder link inside the folder that leads outside it."""
    os.symlink(d.parent, d / "up")
    secrets(d)
    return _qcow2(d, backing="up/secret.img", backing_format="raw")


def qcow2_backing_folder(d: Path) -> Path:
    (d / "sub").mkdir()
    return _qcow2(d, backing="sub", backing_format="raw")


def qcow2_backing_found_by_name(d: Path) -> Path:
    """An absolute backing name from another machine whose file sits in the folder: found by
    its base name (what a moved VM needs), and reported."""
    (d / "base.img").write_bytes(b"base data" * (SECRET_SIZE // 9) + bytes(SECRET_SIZE % 9))
    return _qcow2(d, backing="/srv/vms/elsewhere/base.img", backing_format="raw")


def qcow2_data_file_etc_passwd(d: Path) -> Path:
    return _qcow2(d, data_file=PASSWD)


def qcow2_data_file_secret(d: Path) -> Path:
    secrets(d)
    return _qcow2(d, data_file="../secret.img")


def vmdk_flat_etc_passwd(d: Path) -> Path:
    p = d / "hostile.vmdk"
    p.write_text(vmb.descriptor([f'RW 8 FLAT "{PASSWD}" 0'], create_type="monolithicFlat"))
    return p


def vmdk_flat_secret(d: Path) -> Path:
    secrets(d)
    p = d / "hostile.vmdk"
    p.write_text(vmb.descriptor(['RW 128 FLAT "../secret.img" 0'], create_type="monolithicFlat"))
    return p


def vmdk_parent_hint(d: Path) -> Path:
    secrets(d)
    p = d / "hostile.vmdk"
    (d / "delta.bin").write_bytes(bytes(64 * K))
    p.write_text(vmb.descriptor(['RW 128 FLAT "delta.bin" 0'], create_type="monolithicFlat",
                                parent_cid=0x1234, parent_hint="../secret.img"))
    return p


def _vhd_diff(d: Path, locators, name: str = "") -> Path:
    vb.build_dynamic(d / "hostile.vhd", size=M, block_size=512 * K, blocks={},
                     parent=vb.Parent(uuidlib.uuid4().bytes, name=name, locators=locators))
    return d / "hostile.vhd"


def vhd_parent_locators(d: Path) -> Path:
    secrets(d)
    return _vhd_diff(d, [vb.w2ru("..\\secret.img"), vb.w2ku("C:\\vms\\passwd"),
                         vb.macx(PASSWD)], name="/proc/self/environ")


def vhdx_parent_locator(d: Path) -> Path:
    b = xb.VhdxBuilder(virtual_size=4 * M, has_parent=True, locator={
        "parent_linkage": "{00000000-0000-0000-0000-000000000000}",
        "relative_path": "..\\..\\..\\..\\etc\\passwd",
        "absolute_win32_path": "\\\\?\\C:\\vms\\secret.img"})
    p = d / "hostile.vhdx"
    p.write_bytes(b.build())
    secrets(d)
    return p


def vdi_parent_symlink(d: Path) -> Path:
    """A differencing VDI whose parent's UUID names a link, inside the folder, to a VDI
    outside it (the VDI finder looks for ``{uuid}.vdi`` and reads headers)."""
    s = secrets(d)
    os.symlink(s["vdi"], d / f"{{{SECRET_VDI_UUID}}}.vdi")
    return vdb.write(d / "hostile.vdi", vdb.Vdi(size=M, image_type=vdb.DIFF,
                                                 uuid_linkage=SECRET_VDI_UUID))


def vbox_medium_outside(d: Path) -> Path:
    secrets(d)
    disk = "7d5e6a1b-0c11-4a57-9b5d-6c8a4f2e9a01"
    return mb.write(d / "hostile.vbox", mb.vbox_xml(
        "hostile", "0b6c3a55-7e2d-4a3f-9e77-000000000001",
        [mb.Medium(disk, "../secret.vdi")], [("SATA", 0, 0, disk)]))


def vbox_medium_etc_passwd(d: Path) -> Path:
    disk = "7d5e6a1b-0c11-4a57-9b5d-6c8a4f2e9a02"
    return mb.write(d / "hostile.vbox", mb.vbox_xml(
        "hostile", "0b6c3a55-7e2d-4a3f-9e77-000000000002",
        [mb.Medium(disk, PASSWD, format="RAW")], [("SATA", 0, 0, disk)]))


def vmx_disk_outside(d: Path) -> Path:
    secrets(d)
    return mb.write(d / "hostile.vmx", mb.vmx_text([("scsi0:0", "../secret.img", True),
                                                     ("scsi0:1", PASSWD, True)]))


def vmx_vmsd_symlink(d: Path) -> Path:
    """The .vmsd beside the .vmx is a link to a file outside the folder."""
    os.symlink(secrets(d)["text"], d / "hostile.vmsd")
    (d / "disk.img").write_bytes(bytes(64 * K))
    return mb.write(d / "hostile.vmx", mb.vmx_text([("scsi0:0", "disk.img", True)]))


def parallels_bundle_entry(d: Path) -> Path:
    secrets(d)
    bundle = d / "hostile.hdd"
    g = "5fbaabe3-6958-40ff-92a7-860e329aab41"
    mb.write(bundle / "DiskDescriptor.xml", mb.hdd_descriptor(
        128, [(0, 128, 128, [(g, "Plain", "../../secret.img")])], [(g, None)], top=g))
    return bundle


def parallels_descriptor_symlink(d: Path) -> Path:
    """A bundle folder whose DiskDescriptor.xml is a link to a descriptor outside it."""
    s = secrets(d)
    g = "5fbaabe3-6958-40ff-92a7-860e329aab42"
    outside = mb.write(d.parent / "outside-descriptor.xml", mb.hdd_descriptor(
        128, [(0, 128, 128, [(g, "Plain", s["raw"].name)])], [(g, None)], top=g))
    bundle = d / "hostile.hdd"
    bundle.mkdir()
    os.symlink(outside, bundle / "DiskDescriptor.xml")
    return bundle


def ovf_file_outside(d: Path) -> Path:
    """A loose OVF descriptor whose disk file is the raw secret beside the folder."""
    from tests.containers.ovf_builder import ovf

    secrets(d)
    return mb.write(d / "hostile.ovf", ovf([("../secret.img", SECRET_SIZE, "raw", {}),
                                            (PASSWD, 4096, "raw", {})]))


def ova_member_dotdot(d: Path) -> Path:
    """An OVA whose descriptor names '../secret.img' and whose tar holds a member stored
    under that name: the member is read (inside the archive), the file beside never is."""
    import io
    import tarfile

    from tests.containers.ovf_builder import ovf

    secrets(d)
    text = ovf([("../secret.img", 64 * K, "raw", {})]).encode()
    p = d / "hostile.ova"
    with tarfile.open(p, "w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (("hostile.ovf", text), ("../secret.img", b"inside!!" * (8 * K))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return p


def xva_far_chunks(d: Path) -> Path:
    """An XVA whose chunk numbers claim places far past the disk's end and go backwards."""
    import io
    import tarfile

    from tests.containers.xva_builder import ova_xml

    p = d / "hostile.xva"
    with tarfile.open(p, "w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (("ova.xml", ova_xml("vm", [("Ref:1", "d", 4 * M)])),
                           ("Ref:1/00000000", b"a" * M), ("Ref:1/99999999", b"b" * M),
                           ("Ref:1/00000002", b"c" * M), ("Ref:1/00000003", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return p


# --- tables that claim blocks at impossible places ------------------------------------------------


def vhd_zeroed_bat(d: Path, size: int = 64 << 30) -> Path:
    """A dynamic VHD whose BAT entries are all zero: every block "at sector 0", its sector
    bitmap read from the footer copy (reported by an attack campaign: millions of runs)."""
    p = d / "hostile.vhd"
    lay = vb.build_dynamic(p, size=size, blocks={}, block_size=2 * M)
    b = bytearray(p.read_bytes())
    n = -(-size // (2 * M))
    b[lay.bat_offset : lay.bat_offset + 4 * n] = bytes(4 * n)
    p.write_bytes(bytes(b))
    return p


def vhd_crosslinked_bat(d: Path, n: int = 1 << 15) -> Path:
    """Every BAT entry names the one block, whose sector bitmap alternates."""
    p = d / "hostile.vhd"
    bits = np.arange(4096) % 2 == 0
    lay = vb.build_dynamic(p, size=n * 2 * M, block_size=2 * M,
                           blocks={0: vb.Block(bits, bytes(2 * M))})
    b = bytearray(p.read_bytes())
    b[lay.bat_offset : lay.bat_offset + 4 * n] = b[lay.bat_offset : lay.bat_offset + 4] * n
    p.write_bytes(bytes(b))
    return p


def vdi_crosslinked(d: Path, n: int = 1 << 16) -> Path:
    return vdb.write(d / "hostile.vdi", vdb.Vdi(size=n * M, blocks={0: b"x" * 100},
                                                 entries={i: 0 for i in range(n)}))


def parallels_crosslinked(d: Path, n: int = 1 << 16) -> Path:
    p = pb.write(d / "hostile.hds", pb.Prl(size=n * 64 * K, clusters={0: b"y" * 100}))
    b = bytearray(p.read_bytes())
    b[64 : 64 + 4 * n] = b[64:68] * n
    p.write_bytes(bytes(b))
    return p


def parallels_over_header(d: Path, n: int = 1 << 15) -> Path:
    """A BAT longer than a cluster whose entries all put their cluster on the BAT itself."""
    p = pb.write(d / "hostile.hds", pb.Prl(size=n * 64 * K, clusters={0: b"y" * 100}))
    b = bytearray(p.read_bytes())
    b[64 : 64 + 4 * n] = struct.pack("<I", 1) * n  # v2 entries count clusters: the BAT's
    p.write_bytes(bytes(b))
    return p


def vhdx_crosslinked_partial(d: Path, n: int = 32) -> Path:
    """Partially present payload blocks that all name one payload block, each with its own
    slice of an alternating sector bitmap."""
    b = xb.VhdxBuilder(virtual_size=n * M, has_parent=True, locator={
        "parent_linkage": "{00000000-0000-0000-0000-000000000000}", "relative_path": "p.vhdx"})
    b.partial(0, b"\xaa" * M, [i % 2 == 0 for i in range(2048)])
    lay = b.layout()
    at = lay["where"][("pb", 0)]
    for k in range(1, n):
        b.bat_overrides[b.payload_index(k)] = 7 | (at >> 20) << 20
    data = bytearray(b.build())
    sb = lay["where"][("sb", 0)]
    data[sb : sb + M] = b"\x55" * M
    p = d / "hostile.vhdx"
    p.write_bytes(bytes(data))
    (d / "p.vhdx").write_bytes(xb.VhdxBuilder(virtual_size=n * M).build())
    return p


#: name -> generator(folder) -> the path to open
GENERATORS: dict[str, Callable[[Path], Path]] = {
    f.__name__.replace("_", "-"): f
    for f in (
        qcow2_backing_etc_passwd,
        qcow2_backing_dotdot,
        qcow2_backing_secret,
        qcow2_backing_relative_secret,
        qcow2_backing_nul,
        qcow2_backing_proc,
        qcow2_backing_proc_mem,
        qcow2_backing_dev,
        qcow2_backing_fifo,
        qcow2_backing_symlink,
        qcow2_backing_dir_symlink,
        qcow2_backing_folder,
        qcow2_backing_found_by_name,
        qcow2_data_file_etc_passwd,
        qcow2_data_file_secret,
        vmdk_flat_etc_passwd,
        vmdk_flat_secret,
        vmdk_parent_hint,
        vhd_parent_locators,
        vhdx_parent_locator,
        vdi_parent_symlink,
        vbox_medium_outside,
        vbox_medium_etc_passwd,
        vmx_disk_outside,
        vmx_vmsd_symlink,
        parallels_bundle_entry,
        parallels_descriptor_symlink,
        ovf_file_outside,
        ova_member_dotdot,
        xva_far_chunks,
        vhd_zeroed_bat,
        vhd_crosslinked_bat,
        vdi_crosslinked,
        parallels_crosslinked,
        parallels_over_header,
        vhdx_crosslinked_partial,
    )
}
#: the samples whose names lead outside their folder (the rest claim impossible places)
NAMES_OUTSIDE = [n for n in GENERATORS if not any(
    w in n for w in ("zeroed", "crosslinked", "over-header", "found-by-name", "nul",
                     "far-chunks"))]


def make(name: str, d: Path) -> Path:
    """Build sample ``name`` in the (new, empty) folder ``d``; the path to open."""
    d.mkdir(parents=True, exist_ok=True)
    return GENERATORS[name](d)


# --- which files a process opens ---------------------------------------------------------------

_recorders: list[list] = []  # the lists of the recorders active now (nested ones too)
_hooked = False


def _hook(event: str, args) -> None:
    if event == "open" and _recorders:
        for r in _recorders:
            r.append(args[0])


@contextlib.contextmanager
def opens() -> Iterator[list]:
    """Record the paths opened (``open()``, ``os.open()``) while active, in any thread."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_hook)  # for the life of the process: it only looks at a global
        _hooked = True
    got: list = []
    _recorders.append(got)
    try:
        yield got
    finally:  # by identity: nested recorders see the same opens, so their lists are equal
        del _recorders[next(i for i, r in enumerate(_recorders) if r is got)]


#: system data Python and pandas read on first use (time zones)
_SYSTEM_DATA = ("/usr/share/zoneinfo/", "/usr/lib/python3/", "/etc/localtime")


def _python_file(real: str) -> bool:
    """A file Python itself opens (a lazy import, a bytecode cache, package metadata, zone
    data), not an image: anything under the interpreter's prefixes, a module file under an
    import root, or system zone data."""
    if real.startswith(_SYSTEM_DATA):
        return True
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    if any(real == p or real.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes):
        return True
    roots = {os.path.realpath(p) for p in sys.path if p}
    if real in roots:
        return True
    return real.endswith((".py", ".pyc", ".so", ".pth")) and any(
        real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def outside(opened: list, folder: str | os.PathLike) -> list[str]:
    """The paths in ``opened`` that resolve outside ``folder`` (Python's own files aside)."""
    root = os.path.realpath(folder)
    out = []
    for p in opened:
        if isinstance(p, int):  # an already open descriptor
            continue
        p = os.fsdecode(p)
        real = os.path.realpath(p)
        if real == root or real.startswith(root + os.sep) or _python_file(real):
            continue
        out.append(p)
    return out
