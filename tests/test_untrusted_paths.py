"""An image is untrusted input: the file names it records open nothing outside its folder.

docs/reliability.md, "An image is untrusted input". The hostile samples of tests/hostile.py
(built here in a temporary folder, never committed) name ``/etc/passwd``, ``/proc/self/mem``,
``/dev/zero``, ``../secret.img``, a FIFO, a folder, links leading out, through every
reference a format or machine file has: QCOW2 backing and external data files, VMDK extents
and ``parentFileNameHint``, VHD and VHDX parent locators, a VDI parent's ``{uuid}.vdi``, a
``.vbox`` medium, ``.vmx`` disks and the ``.vmsd``, a Parallels bundle's entries and its
``DiskDescriptor.xml``. An audit hook (``sys.addaudithook``: every ``open()`` and
``os.open()``) proves that walking the whole public path over each of them, strict and in
salvage mode, opens no file outside the sample's folder; the secrets beside the folder never
show in what is read. ``search=``/``--search`` and ``parents=`` allow more folders;
``follow_outside=True``/``--follow-outside`` keeps the old behaviour for a trusted image.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import vdinspect
from tests import hostile
from tests import qcow2_builder as qb
from tests import vmdk_builder as vmb
from tests.conftest import needs_qemu
from tests.machine_builder import vmx_text
from tests.machine_builder import write as write_text
from tests.test_fuzz_all import walk
from vdinspect.errors import InvalidArgument, MissingFile, MissingParent, VDInspectError
from vdinspect.io.paths import OUTSIDE, PathPolicy

K, M = 1 << 10, 1 << 20


def _folder(sample: Path) -> Path:
    return sample if sample.is_dir() else sample.parent


@pytest.fixture(scope="module", autouse=True)
def warm_up(tmp_path_factory):
    """Walk a clean image once, so lazy imports (pandas, zone data) are not counted."""
    p = qb.write(tmp_path_factory.mktemp("warm") / "clean.qcow2",
                 qb.Qcow2(clusters={0: b"warm" * 128}))
    for strict in (True, False):
        walk(p, strict)


# --- every hostile sample ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(hostile.GENERATORS))
def test_hostile_sample_opens_nothing_outside_its_folder(name, tmp_path):
    sample = hostile.make(name, tmp_path / "sample")
    for strict in (True, False):
        with hostile.opens() as opened:
            walk(sample, strict)  # the whole public path; only VDInspectError may come out
            with contextlib.suppress(VDInspectError), vdinspect.open(sample, strict=strict) as d:
                data = d.read(0, min(d.size, 4 * M))
                assert hostile.SECRET not in data and b"root:" not in data
        assert hostile.outside(opened, _folder(sample)) == [], (strict, opened)


@pytest.mark.parametrize("name", hostile.NAMES_OUTSIDE)
def test_names_leading_outside_are_reported(name, tmp_path):
    """Strict mode refuses (naming the rule) or opens without the file; salvage mode says
    in check() why a parent or extent is missing."""
    sample = hostile.make(name, tmp_path / "sample")
    try:
        with vdinspect.open(sample) as disk:
            text = " ".join(disk.check()["message"])
    except VDInspectError as e:
        text = str(e)
    if name == "vmx-vmsd-symlink":  # the .vmsd is skipped: the disk itself is fine
        return
    assert OUTSIDE in text or "never opened" in text, text


def test_audit_hook_sees_opens(tmp_path):
    """The recorder is what the other tests rely on: it must see open() and os.open()."""
    p = tmp_path / "x"
    p.write_bytes(b"x")
    with hostile.opens() as got:
        open(p, "rb").close()
        os.close(os.open(p, os.O_RDONLY))
    assert [os.fsdecode(x) for x in got].count(str(p)) == 2
    assert hostile.outside(got, tmp_path / "elsewhere") == [str(p), str(p)]


def test_fifo_is_never_opened(tmp_path):
    """A FIFO would block an open() for ever: the walk must finish, and quickly."""
    sample = hostile.make("qcow2-backing-fifo", tmp_path / "sample")
    done = []
    t = threading.Thread(target=lambda: done.append(walk(sample, False)), daemon=True)
    t.start()
    t.join(60)
    assert done, "opening a sample whose backing file is a FIFO hung"


# --- what the policy allows -------------------------------------------------------------------


def test_found_by_base_name_and_reported(tmp_path):
    sample = hostile.make("qcow2-backing-found-by-name", tmp_path / "sample")
    with vdinspect.open(sample) as disk:
        assert len(disk.layer_images) == 2
        assert disk.layer_images[0].path == str(tmp_path / "sample" / "base.img")
        note = disk.layers()["note"].iloc[1]
        assert "'/srv/vms/elsewhere/base.img'" in note and OUTSIDE in note
        assert "found by name inside it" in note
        rows = disk.check()
        assert ((rows.severity == "warning") & rows.message.str.contains(OUTSIDE)).sum() == 1
        assert disk.read(0, 9) == b"base data"
        assert pd_isna(disk.layers()["note"].iloc[0])


def pd_isna(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def _sibling_chain(tmp_path: Path) -> tuple[Path, bytes]:
    """b/base.qcow2 <- a/top.qcow2 naming it ``../b/base.qcow2``."""
    qb.write(tmp_path / "b" / "base.qcow2", qb.Qcow2(clusters={0: b"B" * 512}))
    top = qb.write(tmp_path / "a" / "top.qcow2",
                   qb.Qcow2(clusters={1: b"T" * 512}, backing="../b/base.qcow2"))
    return top, b"B" * 512 + b"T" * 512


def test_search_and_parents_allow_folders(tmp_path):
    top, want = _sibling_chain(tmp_path)
    with pytest.raises(MissingParent, match="outside the image's folder") as e:
        vdinspect.open(top)
    assert "search" in str(e.value) and "follow-outside" in str(e.value)
    for kw in (dict(search=tmp_path), dict(search=[tmp_path / "b"]),
               dict(parents=tmp_path / "b"), dict(parents=[tmp_path / "b" / "base.qcow2"]),
               dict(parents={"../b/base.qcow2": tmp_path / "b" / "base.qcow2"}),
               dict(follow_outside=True)):
        with vdinspect.open(top, **kw) as disk:
            assert disk.read(0, 1024) == want, kw
            assert disk.layers()["note"].isna().all(), kw
    with pytest.raises(InvalidArgument, match="not a folder"):
        vdinspect.open(top, search=tmp_path / "nowhere")


def test_cli_search_and_follow_outside(tmp_path, capsys):
    from vdinspect.cli import main

    top, _ = _sibling_chain(tmp_path)
    assert main(["info", str(top)]) == 1
    assert "outside the image's folder" in capsys.readouterr().err
    assert main(["layers", "--json", str(top), "--search", str(tmp_path)]) == 0
    assert '"layer": 1' in capsys.readouterr().out
    assert main(["info", str(top), "--follow-outside"]) == 0
    capsys.readouterr()


def test_follow_outside_keeps_the_old_behaviour(tmp_path):
    """For an image the user trusts, names are followed wherever they lead; devices, FIFOs,
    folders and /proc are still never opened."""
    sample = hostile.make("qcow2-backing-secret", tmp_path / "sample")
    with pytest.raises(MissingParent):
        vdinspect.open(sample)
    with vdinspect.open(sample, follow_outside=True) as disk:
        assert disk.read(0, 8) == hostile.SECRET
    for name in ("qcow2-backing-proc", "qcow2-backing-proc-mem", "qcow2-backing-dev",
                 "qcow2-backing-fifo", "qcow2-backing-folder"):
        s = hostile.make(name, tmp_path / name)
        with pytest.raises(MissingParent, match="never opened"):
            vdinspect.open(s, follow_outside=True)
    data = hostile.make("qcow2-data-file-secret", tmp_path / "data")
    with vdinspect.open(data, follow_outside=True) as disk:
        assert disk.read(512, 8) == hostile.SECRET  # guest cluster 1 of the data file


def test_data_file_and_extent_found_by_name(tmp_path):
    (tmp_path / "data.raw").write_bytes(b"D" * (64 * K))
    q = qb.write(tmp_path / "ext.qcow2",
                 qb.Qcow2(data_file="/mnt/old/data.raw", clusters={1: b""}))
    with vdinspect.open(q) as disk:
        assert disk.read(512, 4) == b"DDDD"
        assert "external data file '/mnt/old/data.raw'" in disk.layers()["note"].iloc[0]
    (tmp_path / "flat.bin").write_bytes(b"F" * (64 * K))
    v = tmp_path / "d.vmdk"
    v.write_text(vmb.descriptor(['RW 128 FLAT "/vmfs/volumes/ds1/vm/flat.bin" 0'],
                                create_type="monolithicFlat"))
    with vdinspect.open(v) as disk:
        assert disk.read(0, 4) == b"FFFF"
        assert "extent 0 file" in disk.layers()["note"].iloc[0]
        assert (disk.check()["structure"] == "extent 0").any()


def test_machine_disk_found_by_name(tmp_path):
    (tmp_path / "disk.img").write_bytes(b"V" * (64 * K))
    vmx = write_text(tmp_path / "vm.vmx",
                     vmx_text([("scsi0:0", "/vmfs/volumes/datastore1/vm/disk.img", True)]))
    with vdinspect.open(vmx) as disk:
        assert disk.read(0, 2) == b"VV"
        assert "disk file of scsi0:0" in disk.layers()["note"].iloc[0]


def test_policy_rules(tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    (here / "ok.img").write_bytes(b"ok")
    (tmp_path / "out.img").write_bytes(b"out")
    os.symlink(tmp_path / "out.img", here / "link.img")
    os.symlink(here / "ok.img", here / "inner-link.img")
    os.mkfifo(here / "fifo")
    me = here / "image.qcow2"
    pol = PathPolicy()
    assert pol.refusal(here / "ok.img", me) is None
    assert pol.refusal(here / "inner-link.img", me) is None  # a link that stays inside
    assert pol.refusal(here / "link.img", me) == "outside"
    assert pol.refusal(tmp_path / "out.img", me) == "outside"
    assert pol.refusal(here / "fifo", me) == "a FIFO"
    assert pol.refusal(here, me) == "a folder"
    assert pol.refusal(here / "gone.img", me) == "missing"
    wide = PathPolicy(follow_outside=True)
    assert wide.refusal(tmp_path / "out.img", me) is None
    assert wide.refusal("/proc/self/environ", me) == "a /proc, /sys or /dev entry"
    assert wide.refusal("/dev/null", me) in ("a /proc, /sys or /dev entry", "a device file")
    trusted = PathPolicy(trusted=[tmp_path / "out.img"])
    assert trusted.refusal(tmp_path / "out.img", me) is None
    with trusted.open(tmp_path / "out.img", me) as src:
        assert src.read(0, 3) == b"out"
    with pol.open(here / "ok.img", me) as src:
        assert src.read(0, 2) == b"ok"
    for bad in ("link.img", "fifo"):
        with pytest.raises(MissingFile, match="not opened"):
            pol.open(here / bad, me)
    # base-name lookup: the recorded name leads outside; its base name is found inside
    found = pol.find(["/elsewhere/ok.img"], me)
    assert found.path == str(here / "ok.img") and found.outside == ["/elsewhere/ok.img"]
    assert OUTSIDE in found.note("parent")
    # a Snapshots folder: the machine folder above counts as the image's folder
    snaps = here / "Snapshots"
    snaps.mkdir()
    assert pol.refusal(here / "ok.img", snaps / "diff.vdi") is None


def test_policy_is_the_default_for_readers(tmp_path):
    """A reader used without vdinspect.open (no policy active) gets the safe default."""
    from vdinspect.containers import registry

    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"S" * (64 * K))
    (tmp_path / "in").mkdir()
    q = qb.write(tmp_path / "in" / "q.qcow2", qb.Qcow2(data_file=str(secret)))
    with pytest.raises(MissingFile, match="outside the image's folder"):
        registry.open_image(str(q))


# --- hostile tables: bounded output ----------------------------------------------------------


def _peak(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["vhd-zeroed-bat", "vhd-crosslinked-bat", "vdi-crosslinked",
                                  "parallels-crosslinked", "parallels-over-header",
                                  "vhdx-crosslinked-partial"])
def test_impossible_places_are_damaged_and_bounded(name, tmp_path):
    """Blocks at an impossible place (over the file's own metadata, or over another block)
    are damaged, never read: salvage output is bounded by what the file can hold, strict
    mode refuses."""
    sample = hostile.make(name, tmp_path / "s")
    if name != "vhdx-crosslinked-partial":  # VHDX refuses damaged blocks when they are read
        with pytest.raises(vdinspect.CorruptImage):
            vdinspect.open(sample)
    with vdinspect.open(sample, strict=False) as disk:
        got = {}
        peak = _peak(lambda: got.update(runs=disk.allocation(), rows=disk.check()))
        runs, rows = got["runs"], got["rows"]
        assert peak < 200 * M, f"{peak >> 20} MB"
        assert len(runs) <= 8 * 1024 and (runs.state == "damaged").any()
        assert len(rows) <= 10_001
        assert rows.message.str.contains("impossible place|cross-linked").any()


def test_zeroed_vhd_bat_of_a_terabyte(tmp_path):
    """The reported case at full size: a 1 TiB dynamic VHD (524288 BAT entries, all zero).
    It took 11 s and 650 MiB for info and a MemoryError for allocation(); now one damaged
    run, tens of MB at most."""
    import resource

    p = hostile.vhd_zeroed_bat(tmp_path, size=1 << 40)
    with pytest.raises(vdinspect.CorruptImage, match="524288 such entries"):
        vdinspect.open(p)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with vdinspect.open(p, strict=False) as disk:
        out = {}
        peak = _peak(lambda: out.update(info=disk.info(), runs=disk.allocation(),
                                        rows=disk.check(), s=disk.structures()))
        assert peak < 200 * M, f"{peak >> 20} MB"
        assert out["runs"].state.tolist() == ["damaged"]
        assert len(out["rows"]) < 1000
        assert disk.read(0, 4096) == bytes(4096)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    assert grown < 200 * 1024, f"max RSS grew by {grown >> 10} MB"


# --- partition keys, GPT on 4096-byte sectors ----------------------------------------------------


def test_partition_keys_of_any_integer_type():
    from tests.conftest import SAMPLE_IMAGES

    with vdinspect.open(SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2") as disk:
        parts = disk.partitions()
        k = parts["index"].dropna().iloc[0]
        assert isinstance(k, np.integer)
        assert type(disk.filesystem(k)) is type(disk.filesystem(int(k)))
        assert disk.volume(np.int32(2)).size == disk.volume(2).size
        for key in (np.uint8(3), np.int16(3)):
            assert disk.filesystem(key) is not None
        with pytest.raises(InvalidArgument):
            disk.filesystem(np.bool_(True))
        with pytest.raises(InvalidArgument):
            disk.filesystem(1.0)
    with vdinspect.open([SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2"]) as group:
        assert group.filesystem(np.int64(1)) is not None


def _gpt_4kn(path: Path, sectors: int = 512) -> None:
    """A raw 4Kn disk (4096-byte sectors) with a GPT and one partition."""
    import struct
    import uuid
    import zlib

    from tests import volume_builder as volb

    ss = 4096
    buf = bytearray(sectors * ss)
    volb.write_mbr(buf, [(0xEE, 1, sectors - 1)])
    entry = struct.pack("<16s16sQQQ72s", uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le,
                        uuid.uuid4().bytes_le, 256, 383, 0, "data".encode("utf-16-le"))
    array = entry + bytes(128 * 128 - len(entry))
    crc = zlib.crc32(array)
    last = sectors - 1
    common = dict(first_usable=6, last_usable=last - 5, disk_guid=uuid.uuid4().bytes_le,
                  num_entries=128, entry_size=128, array_crc=crc, sector=ss)
    buf[ss : 2 * ss] = volb.gpt_header(my_lba=1, alternate_lba=last, entry_lba=2, **common)
    buf[2 * ss : 2 * ss + len(array)] = array
    buf[(last - 4) * ss : (last - 4) * ss + len(array)] = array
    buf[last * ss : (last + 1) * ss] = volb.gpt_header(my_lba=last, alternate_lba=1,
                                                       entry_lba=last - 4, **common)
    path.write_bytes(bytes(buf))


def test_gpt_4kn_damaged_primary_reported_at_lba1(tmp_path):
    p = tmp_path / "4kn.img"
    _gpt_4kn(p)
    with vdinspect.open(p) as disk:
        vols = disk.volumes()
        assert vols.sector_size == 4096 and not vols.check_rows()
    data = bytearray(p.read_bytes())
    data[4096 : 4096 + 8] = bytes(8)  # the primary header's signature
    p = tmp_path / "4kn-damaged.img"
    p.write_bytes(bytes(data))
    with vdinspect.open(p) as disk:
        vols = disk.volumes()
        rows = [r for r in vols.check_rows() if r["structure"] == "GPT primary header"]
        assert len(rows) == 1 and "using the backup" in rows[0]["message"]
        assert rows[0]["host_offset"] == 4096  # LBA 1 of a 4096-byte-sector disk
        assert [v.start for v in vols if v.kind != "unallocated"] == [256 * 4096]


@needs_qemu
def test_builder_chain_matches_qemu(tmp_path):
    """The spec-built chains (tests/qcow2_builder.py) read the same through qemu-img."""
    from tests import qemu_tools as q

    files, want = qb.chain(tmp_path, 6)
    out = tmp_path / "out.raw"
    q.qemu_img("convert", "-O", "raw", str(files[-1]), str(out))
    assert out.read_bytes() == want
    assert q.qemu_check(files[-1]).get("corruptions", 0) == 0
