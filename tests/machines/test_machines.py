"""VM machine files (.vbox, .hdd bundles, .vmx/.vmsd) and the one snapshot view.

Disks are made by qemu-img / qemu-io (VDI, Parallels, VMDK) and tests/vdi_builder.py
(differencing VDIs, which qemu cannot write); the machine files by tests/machine_builder.py.
The bytes expected at each snapshot are ``qemu-img convert -O raw`` of the image (chain)
as it was when the snapshot froze it, or vdi_builder's read rule over that for VDI deltas.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import uuid as uuidlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

import vdinspect
from tests import machine_builder as mb
from tests import qemu_tools as q
from tests import vdi_builder as vb
from tests.conftest import SHARED_SAMPLES, needs_qemu, needs_shared
from vdinspect.errors import CorruptImage, MissingFile, MissingParent, NotFound
from vdinspect.machines import detect_machine, open_machine

K, M = 1 << 10, 1 << 20
SIZE = 4 * M

try:
    import vdinspect.containers.vmdk  # noqa: F401

    HAVE_VMDK = True
except Exception:  # pragma: no cover - the VMDK reader is being finished elsewhere
    HAVE_VMDK = False
needs_vmdk = pytest.mark.skipif(not HAVE_VMDK, reason="VMDK reader not importable yet")


def qemu_writes(spec: str, seed: int, fmt: str | None, n: int = 4) -> None:
    """qemu-io writes of random bytes at random places (payload files keep it independent)."""
    rng = random.Random(seed)
    args = ["qemu-io"] + (["-f", fmt] if fmt else [])
    tmp = Path(tempfile.mkdtemp(prefix="vdinspect-machines-"))
    try:
        for k in range(n):
            off = rng.randrange(0, SIZE // 512 - 256) * 512
            ln = rng.choice([512, 64 * K, 100 * K, 300 * K])
            p = tmp / f"p{k}"
            p.write_bytes(rng.randbytes(ln))
            args += ["-c", f"write -q -s {p} {off} {ln}"]
        q.run(*args, spec)
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def raw_of(spec: str, tmp: Path, fmt: str | None = None) -> bytes:
    out = tmp / "oracle.raw"
    q.qemu_img("convert", *(["-f", fmt] if fmt else []), "-O", "raw", spec, str(out))
    data = out.read_bytes()
    out.unlink()
    return data


def read_all(path, **kw) -> bytes:
    with vdinspect.open(path, **kw) as d:
        return d.read(0, d.size)


# --- VirtualBox -------------------------------------------------------------------------


T1, T2 = "2024-05-06T07:08:09Z", "2024-05-07T10:11:12Z"


@pytest.fixture(scope="module")
def vbox_vm(tmp_path_factory):
    """base.vdi (qemu) <- d1.vdi <- d2.vdi (current); s1 froze base, s2 froze d1.

    A second disk: base2.vmdk (qemu) <- e1.vdi (a VDI delta over a VMDK), current.
    The media live in folders VirtualBox would not search, so only the registry finds them.
    """
    if not q.run("sh", "-c", "command -v qemu-img || true").strip():
        pytest.skip("qemu-img missing")
    tmp = tmp_path_factory.mktemp("vbox")
    rng = random.Random(7)
    base = tmp / "media" / "base.vdi"
    base.parent.mkdir()
    q.qemu_img("create", "-q", "-f", "vdi", str(base), str(SIZE))
    qemu_writes(str(base), 1, "vdi")
    raw0 = raw_of(str(base), tmp, "vdi")
    u0, m0 = vb.header_uuids(base)
    v1 = vb.Vdi(
        SIZE,
        image_type=vb.DIFF,
        blocks=vb.random_blocks(rng, 4, M),
        uuid_linkage=u0,
        uuid_parent_modify=m0,
    )
    vb.write(tmp / "deltas" / "d1.vdi", v1)
    raw1 = vb.expected_bytes(v1, raw0)
    v2 = vb.Vdi(
        SIZE,
        image_type=vb.DIFF,
        blocks=vb.random_blocks(rng, 4, M),
        uuid_linkage=v1.uuid_create,
        uuid_parent_modify=v1.uuid_modify,
    )
    vb.write(tmp / "deltas" / "d2.vdi", v2)
    raw2 = vb.expected_bytes(v2, raw1)
    media = [
        mb.Medium(
            str(u0),
            "media/base.vdi",
            children=[
                mb.Medium(
                    str(v1.uuid_create),
                    "deltas/d1.vdi",
                    children=[mb.Medium(str(v2.uuid_create), "deltas/d2.vdi")],
                )
            ],
        )
    ]
    second = None
    if HAVE_VMDK:
        b2 = tmp / "media" / "base2.vmdk"
        q.qemu_img("create", "-q", "-f", "vmdk", str(b2), str(SIZE))
        qemu_writes(str(b2), 2, "vmdk")
        rawb2 = raw_of(str(b2), tmp, "vmdk")
        ub2 = uuidlib.uuid4()
        e1 = vb.Vdi(SIZE, image_type=vb.DIFF, blocks=vb.random_blocks(rng, 4, M), uuid_linkage=ub2)
        vb.write(tmp / "deltas" / "e1.vdi", e1)
        media.append(
            mb.Medium(
                str(ub2),
                "media/base2.vmdk",
                "VMDK",
                children=[mb.Medium(str(e1.uuid_create), "deltas/e1.vdi")],
            )
        )
        second = dict(
            base=rawb2, current=vb.expected_bytes(e1, rawb2), uuid=str(ub2), e1=str(e1.uuid_create)
        )
    s1, s2 = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    att0 = [("SATA", 0, 0, str(u0))] + ([("SATA", 1, 0, second["uuid"])] if second else [])
    att1 = [("SATA", 0, 0, str(v1.uuid_create))] + (
        [("SATA", 1, 0, second["uuid"])] if second else []
    )
    attn = [("SATA", 0, 0, str(v2.uuid_create))] + (
        [("SATA", 1, 0, second["e1"])] if second else []
    )
    tree = mb.Snap(
        s1,
        "installed",
        T1,
        att0,
        "fresh install",
        children=[mb.Snap(s2, "patched", T2, att1, "after patch")],
    )
    vm = mb.write(
        tmp / "vm.vbox", mb.vbox_xml("vm", str(uuidlib.uuid4()), media, attn, tree, current=s2)
    )
    return dict(
        vm=vm,
        tmp=tmp,
        raw=[raw0, raw1, raw2],
        snaps=[s1, s2],
        second=second,
        d2=tmp / "deltas" / "d2.vdi",
    )


@needs_qemu
def test_vbox_current_and_snapshots(vbox_vm):
    vm, (raw0, raw1, raw2) = vbox_vm["vm"], vbox_vm["raw"]
    assert detect_machine(vm) == "virtualbox"
    with vdinspect.open(vm) as d:
        assert d.read(0, SIZE) == raw2
        assert d.layers()["format"].tolist() == ["vdi"] * 3
        assert [Path(p).name for p in d.layers()["path"]] == ["base.vdi", "d1.vdi", "d2.vdi"]
        df = d.snapshots()
        assert df["name"].tolist() == ["installed", "patched"]
        assert df["id"].tolist() == vbox_vm["snaps"]
        assert df["parent"].tolist()[1] == vbox_vm["snaps"][0]
        assert df["description"].tolist() == ["fresh install", "after patch"]
        assert df["layer"].tolist() == [0, 1]
        assert [Path(p).name for p in df["path"]] == ["base.vdi", "d1.vdi"]
        assert df["created"].tolist()[0] == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        with d.at("installed") as d0:
            assert d0.read(0, SIZE) == raw0
            assert len(d0.layers()) == 1
    assert read_all(vm, snapshot="patched") == raw1
    assert read_all(vm, snapshot=f"{{{vbox_vm['snaps'][0].upper()}}}") == raw0


@needs_qemu
def test_vbox_registry_is_what_finds_the_parents(vbox_vm):
    """Opened alone, the current delta's parent is nowhere VirtualBox would look."""
    with pytest.raises(MissingParent) as e:
        vdinspect.open(vbox_vm["d2"])
    u0 = vb.header_uuids(vbox_vm["tmp"] / "media" / "base.vdi")[0]
    assert str(u0) in str(e.value) and "d1.vdi" in str(e.value)


@needs_qemu
@needs_vmdk
def test_vbox_second_disk_is_a_mixed_chain(vbox_vm):
    """disk=1: a VDI delta over a VMDK base (qemu-written), found through the registry."""
    second = vbox_vm["second"]
    with open_machine(vbox_vm["vm"]).open(disk=1) as d:
        assert d.layers()["format"].tolist() == ["vmdk", "vdi"]
        assert d.read(0, SIZE) == second["current"]
        with d.at("patched") as old:
            assert old.read(0, SIZE) == second["base"]
            assert old.options["disk"] == 1


@needs_qemu
def test_vbox_cli(vbox_vm, tmp_path):
    vm = vbox_vm["vm"]
    r = subprocess.run(
        [sys.executable, "-m", "vdinspect", "snapshots", "--json", str(vm)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "installed" in r.stdout and "patched" in r.stdout
    out = tmp_path / "s1.raw"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vdinspect",
            "convert",
            "--snapshot",
            "installed",
            str(vm),
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == vbox_vm["raw"][0]


@needs_qemu
def test_vbox_bad_input(vbox_vm, tmp_path):
    vm = vbox_vm["vm"]
    text = vm.read_text()
    with pytest.raises(NotFound) as e:
        vdinspect.open(vm, snapshot="nope")
    assert "installed" in str(e.value) and "patched" in str(e.value)
    broken = mb.write(vm.parent / "broken.vbox", text[: len(text) // 2])
    with pytest.raises(CorruptImage) as e:
        vdinspect.open(broken)
    assert "broken.vbox" in str(e.value)
    bomb = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaa">]>\n' + text.split("\n", 2)[2]
    with pytest.raises(CorruptImage, match="DOCTYPE"):
        vdinspect.open(mb.write(vm.parent / "bomb.vbox", bomb))
    # the base medium's location points nowhere: the chain names the parent's UUID
    u0 = vb.header_uuids(vm.parent / "media" / "base.vdi")[0]
    gone = mb.write(vm.parent / "gone.vbox", text.replace("media/base.vdi", "media/nothere.vdi"))
    with pytest.raises(MissingParent) as e:
        vdinspect.open(gone)
    assert str(u0) in str(e.value) and "nothere.vdi" in str(e.value)
    # the attached disk itself is missing
    top = mb.write(vm.parent / "top.vbox", text.replace("deltas/d2.vdi", "deltas/lost.vdi"))
    with pytest.raises(MissingFile) as e:
        vdinspect.open(top)
    assert "lost.vdi" in str(e.value)


# --- Parallels .hdd bundles -------------------------------------------------------------


def prl_spec(chain: list[tuple[Path, str]]) -> str:
    """A qemu json: spec for a Parallels delta over the rest of ``chain`` (top first)."""

    def node(i):
        path, fmt = chain[i]
        n = {"driver": fmt, "file": {"driver": "file", "filename": str(path)}}
        if i + 1 < len(chain):
            n["backing"] = node(i + 1)
        return n

    return "json:" + json.dumps(node(0))


G = [str(uuidlib.UUID(int=0x5FBAABE3_0000_0000_0000_000000000000 + k)) for k in range(4)]


@pytest.fixture(scope="module")
def hdd_bundle(tmp_path_factory):
    """One storage: base (expanding) <- delta1 <- delta2 (top), each written by qemu-io."""
    tmp = tmp_path_factory.mktemp("hdd")
    bundle = tmp / "vm.hdd"
    bundle.mkdir()
    files = [bundle / f"vm.hdd.0.{{{g}}}.hds" for g in G[:3]]
    raws, chain = [], []
    for k, f in enumerate(files):
        q.qemu_img("create", "-q", "-f", "parallels", "-o", "cluster_size=64K", str(f), str(SIZE))
        chain.insert(0, (f, "parallels"))
        spec = prl_spec(chain)
        qemu_writes(spec, 10 + k, None)
        raws.append(raw_of(spec, tmp))
    desc = mb.hdd_descriptor(
        SIZE // 512,
        [
            (
                0,
                SIZE // 512,
                128,
                [(g, "Compressed", f.name) for g, f in zip(G, files, strict=False)],
            )
        ],
        [(G[0], None), (G[1], G[0]), (G[2], G[1])],
        top=G[2],
    )
    mb.write(bundle / "DiskDescriptor.xml", desc)
    return dict(bundle=bundle, raws=raws, desc=desc)


@needs_qemu
def test_hdd_bundle_top_and_snapshots(hdd_bundle):
    b, raws = hdd_bundle["bundle"], hdd_bundle["raws"]
    assert detect_machine(b) == "parallels"
    for path in (b, b / "DiskDescriptor.xml"):
        with vdinspect.open(path) as d:
            assert d.read(0, SIZE) == raws[2]
            assert len(d.layers()) == 3 and set(d.layers()["format"]) == {"parallels"}
            df = d.snapshots()
            assert df["id"].tolist() == G[:3]
            assert df["parent"].tolist()[1:] == G[:2]
            assert df["layer"].tolist() == [0, 1, 2]
    for k in range(3):
        assert read_all(b, snapshot=G[k]) == raws[k]
    assert read_all(b, snapshot=f"{{{G[0].upper()}}}") == raws[0]


@needs_qemu
def test_hdd_split_storages_over_plain_base(tmp_path):
    """Two storages (consecutive sector ranges), a raw Plain base and expanding deltas."""
    bundle = tmp_path / "split.hdd"
    bundle.mkdir()
    half = SIZE // 2
    want_base, want_top = b"", b""
    images = []
    for i in range(2):
        base = bundle / f"split.hdd.{i}.base.hds"
        base.write_bytes(random.Random(40 + i).randbytes(half))
        top = bundle / f"split.hdd.{i}.top.hds"
        q.qemu_img("create", "-q", "-f", "parallels", str(top), str(half))
        spec = prl_spec([(top, "parallels"), (base, "raw")])
        qemu_writes_small(spec, 50 + i, half)
        want_base += base.read_bytes()
        want_top += raw_of(spec, tmp_path)
        images.append([(G[0], "Plain", base.name), (G[1], "Compressed", top.name)])
    storages = [(0, half // 512, 2048, images[0]), (half // 512, SIZE // 512, 2048, images[1])]
    mb.write(
        bundle / "DiskDescriptor.xml",
        mb.hdd_descriptor(SIZE // 512, storages, [(G[0], None), (G[1], G[0])]),
    )
    with vdinspect.open(bundle) as d:
        assert d.size == SIZE and d.read(0, SIZE) == want_top
        assert d.read(half - 1000, 2000) == want_top[half - 1000 : half + 1000]
        assert d.allocation()["layer"].dropna().astype(int).isin([0, 1]).all()
    assert read_all(bundle, snapshot=G[0]) == want_base


def qemu_writes_small(spec: str, seed: int, size: int) -> None:
    rng = random.Random(seed)
    cmds = []
    for _ in range(3):
        off = rng.randrange(0, size // 512 - 200) * 512
        cmds.append(f"write -q -P {rng.randrange(1, 255)} {off} {rng.choice([512, 70 * K])}")
    q.run("qemu-io", *[x for c in cmds for x in ("-c", c)], spec)


@needs_qemu
def test_hdd_bad_input(hdd_bundle, tmp_path):
    desc = hdd_bundle["desc"]

    def bundle(name: str, text: str) -> Path:
        return mb.write(tmp_path / f"{name}.hdd" / "DiskDescriptor.xml", text).parent

    loop = desc.replace(
        "<ParentGUID>{00000000-0000-0000-0000-000000000000}", f"<ParentGUID>{{{G[2]}}}"
    )
    with pytest.raises(CorruptImage, match="loop"):
        vdinspect.open(bundle("loop", loop))
    with pytest.raises(CorruptImage) as e:
        vdinspect.open(bundle("cut", desc[:-40]))
    assert "DiskDescriptor.xml" in str(e.value) and "broken XML" in str(e.value)
    bad = bundle("empty", desc)  # the .hds files are not in this folder
    with pytest.raises(MissingFile) as e:
        vdinspect.open(bad)
    assert G[0] in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(NotFound, match=G[1]):
        vdinspect.open(hdd_bundle["bundle"], snapshot="no-such-guid")
    entity = desc.replace("?>", '?>\n<!DOCTYPE p [<!ENTITY x "y">]>', 1)
    with pytest.raises(CorruptImage, match="DOCTYPE"):
        vdinspect.open(bundle("entity", entity))
    gap = desc.replace("<Start>0</Start>", "<Start>8</Start>")
    with pytest.raises(CorruptImage, match="Storage"):
        vdinspect.open(bundle("gap", gap))


@needs_shared
def test_real_hdd_descriptor_sample():
    b = SHARED_SAMPLES / "dfvfs" / "test_data" / "hfsplus.hdd"
    m = open_machine(b)
    assert m.sectors == 65536 and m.geometry == (128, 16, 32)
    assert m.storages[0].blocksize == 2048
    assert m.top_guid == "5fbaabe3-6958-40ff-92a7-860e329aab41"
    df = m.snapshots_frame()
    assert df["id"].tolist() == [m.top_guid] and df["parent"].isna().all()
    with pytest.raises(MissingFile, match=r"\.hds"):
        vdinspect.open(b)
    with pytest.raises(MissingFile):
        vdinspect.open(b / "DiskDescriptor.xml")


# --- VMware -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vmware_vm(tmp_path_factory):
    """vm.vmdk <- vm-000001.vmdk <- vm-000002.vmdk (current), from qemu-img create -b."""
    if not HAVE_VMDK:
        pytest.skip("VMDK reader not importable yet")
    tmp = tmp_path_factory.mktemp("vmware")
    names = ["vm.vmdk", "vm-000001.vmdk", "vm-000002.vmdk"]
    raws = []
    for k, n in enumerate(names):
        if k == 0:
            q.qemu_img("create", "-q", "-f", "vmdk", str(tmp / n), str(SIZE))
        else:
            q.qemu_img(
                "create",
                "-q",
                "-f",
                "vmdk",
                "-b",
                names[k - 1],
                "-F",
                "vmdk",
                str(tmp / n),
                cwd=tmp,
            )
        qemu_writes(str(tmp / n), 20 + k, "vmdk")
        raws.append(raw_of(str(tmp / n), tmp, "vmdk"))
    q.qemu_img("create", "-q", "-f", "vmdk", str(tmp / "data.vmdk"), str(M))
    times = [1_700_000_000_123_456, 1_700_000_999_999_999]  # the second has a negative low
    snaps = [
        dict(
            uid="1",
            name="clean",
            description="before setup",
            time_us=times[0],
            disks=[("vm.vmdk", "scsi0:0"), ("data.vmdk", "sata0:1")],
        ),
        dict(
            uid="2",
            name="set up",
            parent="1",
            time_us=times[1],
            disks=[("vm-000001.vmdk", "scsi0:0"), ("data.vmdk", "sata0:1")],
        ),
    ]
    vmx = mb.write(
        tmp / "vm.vmx",
        mb.vmx_text(
            [
                ("nvme0:0", "absent.vmdk", False),
                ("scsi0:0", names[2], True),
                ("sata0:1", "data.vmdk", True),
            ],
            extra=[
                ("ide1:0.present", "TRUE"),
                ("ide1:0.fileName", "/iso/x.iso"),
                ("ide1:0.deviceType", "cdrom-image"),
            ],
        ),
    )
    mb.write(tmp / "vm.vmsd", mb.vmsd_text(snaps, "2"))
    return dict(vmx=vmx, raws=raws, times=times, snaps=snaps, tmp=tmp)


@needs_qemu
def test_vmware_current_and_snapshots(vmware_vm):
    vmx, raws = vmware_vm["vmx"], vmware_vm["raws"]
    assert detect_machine(vmx) == "vmware"
    m = open_machine(vmx)
    assert [a.slot for a in m.disks] == ["scsi0:0", "sata0:1"]
    with vdinspect.open(vmx) as d:
        assert d.read(0, SIZE) == raws[2]
        assert len(d.layers()) == 3
        df = d.snapshots()
        assert df["name"].tolist() == ["clean", "set up"]
        assert df["id"].tolist() == ["1", "2"] and df["parent"].tolist()[1] == "1"
        assert df["layer"].tolist() == [0, 1]
        assert df["description"].tolist()[0] == "before setup"
        for got, us in zip(df["created"].tolist(), vmware_vm["times"], strict=True):
            assert int(got.timestamp() * 1_000_000) // 1000 == us // 1000
            assert got.to_pydatetime().microsecond == us % 1_000_000
        with d.at("clean") as d0:
            assert d0.read(0, SIZE) == raws[0]
    assert read_all(vmx, snapshot="set up") == raws[1]
    assert read_all(vmx, snapshot="2") == raws[1]
    with open_machine(vmx).open(disk=1) as d:
        assert d.size == M and Path(d.top.path).name == "data.vmdk"


@needs_qemu
def test_vmware_detected_by_content_and_bad_input(vmware_vm, tmp_path):
    tmp = vmware_vm["tmp"]
    text = (tmp / "vm.vmx").read_text()
    other = mb.write(tmp / "settings.cfg", text)  # no .vmx name; no .vmsd beside it
    with vdinspect.open(other) as d:
        assert d.read(0, SIZE) == vmware_vm["raws"][2]
        assert d.snapshots().empty
    with pytest.raises(NotFound) as e:
        vdinspect.open(tmp / "vm.vmx", snapshot="missing")
    assert "clean" in str(e.value) and "set up" in str(e.value)
    # a parent cycle in the .vmsd
    snaps = [dict(s) for s in vmware_vm["snaps"]]
    snaps[0]["parent"] = "2"
    mb.write(tmp / "loop.vmx", text)
    mb.write(tmp / "loop.vmsd", mb.vmsd_text(snaps, "2"))
    with pytest.raises(CorruptImage, match="loop"):
        vdinspect.open(tmp / "loop.vmx")
    # the disk file is missing
    mb.write(tmp / "lost.vmx", text.replace("vm-000002.vmdk", "gone.vmdk"))
    with pytest.raises(MissingFile, match="gone.vmdk"):
        vdinspect.open(tmp / "lost.vmx")


def test_detection_is_by_content(tmp_path):
    """Descriptors and data are not machine files, whatever their names."""
    desc = mb.write(
        tmp_path / "x.vmx",
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
        'createType="monolithicSparse"\nRW 2048 SPARSE "x-s.vmdk"\n',
    )
    assert detect_machine(desc) is None
    assert detect_machine(mb.write(tmp_path / "a.vbox", "<other/>")) is None
    binary = tmp_path / "b.vbox"
    binary.write_bytes(b"<VirtualBox\0" + bytes(100))
    assert detect_machine(binary) is None
    assert detect_machine(mb.write(tmp_path / "disk.img", "<VirtualBox xmlns='x'/>")) == (
        "virtualbox"
    )


@pytest.mark.parametrize("kind, name, root", [
    ("virtualbox", "vm.vbox", "VirtualBox"),
    ("parallels", "x.hdd/DiskDescriptor.xml", "Parallels_disk_image"),
    ("parallels_vm", "x.pvm/config.pvs", "ParallelsVirtualMachine"),
])
def test_machine_file_with_another_root_is_refused(kind, name, root, tmp_path):
    """Well-formed XML whose root element is not the machine file's (opened with the kind
    forced, as detection would not take it): CorruptImage naming the root expected."""
    from vdinspect.machines import open_machine

    f = mb.write(tmp_path / name, '<?xml version="1.0"?>\n<Other><Machine/></Other>\n')
    where = f if kind == "virtualbox" else f.parent
    with pytest.raises(CorruptImage, match=f"the root element is not {root}") as e:
        open_machine(where, kind)
    assert f.name in str(e.value)
