"""OVA/OVF packages: qemu-img's images (streamOptimized VMDK, QCOW2) wrapped by the real
``tar`` with a hand-written DSP0243 descriptor and a manifest from ``sha256sum``/``sha1sum``;
every read is compared with ``qemu-img convert -O raw`` of the original file."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import tarfile

import pytest

import vdinspect
from tests.conftest import SHARED_SAMPLES, have, needs_qemu
from tests.containers.ovf_builder import VMDK_STREAM, ovf
from tests.qemu_tools import create, qemu_img, qemu_io, to_raw_bytes
from tests.tools import run
from vdinspect.cli import main

pytestmark = [needs_qemu, pytest.mark.skipif(not have("tar", "sha256sum", "sha1sum"),
                                             reason="tar/sha256sum missing")]
QCOW2_URI = "http://www.gnome.org/~markmc/qcow-image-format.html"


@pytest.fixture
def pkg(tmp_path):
    """A folder with app.ovf, a streamOptimized VMDK (8 MiB) and a QCOW2 (4 MiB)."""
    d = tmp_path / "pkg"
    d.mkdir()
    raw = tmp_path / "src.raw"
    create(raw, "8M", "raw")
    qemu_io(raw, "write -P 0xab 1M 1M", "write -P 0x11 5M 64k", "write -P 0x5a 8128k 64k",
            fmt="raw")
    qemu_img("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw),
             str(d / "disk1.vmdk"))
    create(d / "disk2.qcow2", "4M")
    qemu_io(d / "disk2.qcow2", "write -P 0x42 0 64k", "write -P 0x43 3M 4k")
    return d


def write_ovf(d, disks, name="app.ovf", **kw):
    (d / name).write_text(ovf(disks, **kw))


def standard(d, **extra1):
    write_ovf(d, [("disk1.vmdk", 8 << 20, VMDK_STREAM,
                   {"size": os.path.getsize(d / "disk1.vmdk"), **extra1}),
                  ("disk2.qcow2", 4 << 20, QCOW2_URI, {})])


def sha256_manifest(d, names):
    (d / "app.mf").write_text(run("sha256sum", "--tag", *names, cwd=d))


def tar(d, out, names, fmt="ustar"):
    run("tar", "-cf", out, f"--format={fmt}", *names, cwd=d)
    return out


def test_ova_reads_like_qemu(pkg, tmp_path):
    standard(pkg)
    sha256_manifest(pkg, ["app.ovf", "disk1.vmdk", "disk2.qcow2"])
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", "app.mf", "disk1.vmdk", "disk2.qcow2"])
    want1 = to_raw_bytes(pkg / "disk1.vmdk", tmp_path)
    want2 = to_raw_bytes(pkg / "disk2.qcow2", tmp_path)
    with vdinspect.open(ova) as d:
        info = d.info()
        assert (info["format"], info["subformat"]) == ("ova", "vmdk streamOptimized")
        assert d.read(0, d.size) == want1
        assert (info["vm_name"], info["cpus"], info["memory"]) == ("appliance", 2, 1 << 30)
        assert info["nics"] == ["E1000 VM Network"] and info["manifest"] == "app.mf"
        assert info["os"] == "Debian GNU/Linux 12 (64-bit)" and len(info["disks"]) == 2
        check = d.check()
        assert not (check.severity == "error").any()
        assert "3 of 3 manifest digests match" in set(check.message)
        # host offsets are offsets in the .ova: the sparse header's magic is there
        st = d.structures().set_index("name")
        head = st.loc["sparse header", "host_offset"]
        assert open(ova, "rb").read()[head:head + 4] == b"KDMV"
        for r in d.runs():
            if r.host_offset is not None:
                assert r.host_file == str(ova)
    with vdinspect.open(ova, disk=1) as d:
        assert d.info()["subformat"].startswith("qcow2") and d.read(0, d.size) == want2
    with vdinspect.open(ova, disk="vmdisk2") as d:
        assert d.read(0, d.size) == want2
    with vdinspect.open(ova, disk="disk2.qcow2") as d:
        assert d.size == 4 << 20
    with pytest.raises(vdinspect.InvalidArgument, match="no disk 5"):
        vdinspect.open(ova, disk=5)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["info", str(ova), "--disk", "1", "--json"]) == 0
    assert '"disk_id": "vmdisk2"' in out.getvalue() and err.getvalue() == ""


def test_pax_long_names_and_sha1_manifest(pkg, tmp_path):
    long = "a-very-long-disk-file-name-" + "x" * 90 + ".vmdk"
    shutil.copy(pkg / "disk1.vmdk", pkg / long)
    write_ovf(pkg, [(long, 8 << 20, VMDK_STREAM, {})])
    # OpenSSL's form, "SHA1(name)= hex", with the digests sha1sum computes
    lines = [f"SHA1({n})= {run('sha1sum', n, cwd=pkg).split()[0]}" for n in ("app.ovf", long)]
    (pkg / "app.mf").write_text("\n".join(lines) + "\n")
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", "app.mf", long], fmt="pax")
    with vdinspect.open(ova) as d:
        assert d.read(0, d.size) == to_raw_bytes(pkg / long, tmp_path)
        assert "2 of 2 manifest digests match" in set(d.check().message)


def test_manifest_mismatch_is_an_error(pkg, tmp_path):
    standard(pkg)
    sha256_manifest(pkg, ["app.ovf", "disk1.vmdk", "disk2.qcow2"])
    text = (pkg / "app.mf").read_text().splitlines()
    text[1] = text[1][:-4] + ("0000" if not text[1].endswith("0000") else "1111")
    (pkg / "app.mf").write_text("\n".join(text) + "\nSHA256(gone.vmdk)= " + "0" * 64 + "\n")
    (pkg / "app.cert").write_text("SHA256(app.mf)= 00\n-----BEGIN CERTIFICATE-----\n")
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", "app.mf", "app.cert", "disk1.vmdk",
                                          "disk2.qcow2"])
    with vdinspect.open(ova) as d:
        c = d.check()
        errors = c[c.severity == "error"].message.tolist()
        assert any(m.startswith("disk1.vmdk: SHA256 is") for m in errors)
        assert any(m.startswith("gone.vmdk: listed in the manifest") for m in errors)
        assert any("app.cert is present; its signature is not verified" in m for m in c.message)
        assert d.info()["certificate"] == "app.cert"


def test_gzip_member(pkg, tmp_path):
    with open(pkg / "disk1.vmdk", "rb") as f, gzip.open(pkg / "gz.vmdk", "wb") as g:
        shutil.copyfileobj(f, g)
    size = os.path.getsize(pkg / "gz.vmdk")
    write_ovf(pkg, [("gz.vmdk", 8 << 20, VMDK_STREAM, {"size": size, "compression": "gzip"})])
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", "gz.vmdk"])
    with vdinspect.open(ova) as d:
        assert d.info()["compression"] == "gzip"
        assert d.read(0, d.size) == to_raw_bytes(pkg / "disk1.vmdk", tmp_path)
        assert "no manifest" in d.check().message.iloc[0]


def test_gzip_bomb_is_refused(pkg, tmp_path):
    with gzip.open(pkg / "bomb.raw", "wb") as g:  # 70 MiB of zeros for a 1 MiB disk
        for _ in range(70):
            g.write(bytes(1 << 20))
    write_ovf(pkg, [("bomb.raw", 1 << 20, "raw", {"compression": "gzip"})])
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", "bomb.raw"])
    with pytest.raises(vdinspect.CorruptImage, match="decompresses to more than"):
        vdinspect.open(ova)


def test_loose_ovf_and_names_outside(pkg, tmp_path):
    standard(pkg)
    with vdinspect.open(pkg / "app.ovf", disk=1) as d:
        assert d.info()["format"] == "ovf"
        assert d.read(0, d.size) == to_raw_bytes(pkg / "disk2.qcow2", tmp_path)
    # a descriptor naming a file outside its folder: not followed (found by base name only)
    shutil.copy(pkg / "disk2.qcow2", tmp_path / "outside.qcow2")
    write_ovf(pkg, [("../outside.qcow2", 4 << 20, QCOW2_URI, {})], name="evil.ovf")
    with pytest.raises(vdinspect.MissingFile, match="outside the image.s folder, not followed"):
        vdinspect.open(pkg / "evil.ovf")
    write_ovf(pkg, [("/etc/hostname", 4 << 20, QCOW2_URI, {})], name="abs.ovf")
    with pytest.raises(vdinspect.MissingFile, match="not found beside the descriptor"):
        vdinspect.open(pkg / "abs.ovf")


def test_tar_member_names_never_lead_out(pkg, tmp_path):
    """A member stored as '../disk.qcow2' is matched inside the archive only; the file of
    that name beside the .ova is never read."""
    write_ovf(pkg, [("../disk.qcow2", 4 << 20, QCOW2_URI, {})])
    (tmp_path / "disk.qcow2").write_bytes(b"outside" * 100)
    ova = tmp_path / "sub" / "app.ova"
    ova.parent.mkdir()
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as t:
        t.add(pkg / "app.ovf", "app.ovf")
        t.add(pkg / "disk2.qcow2", "../disk.qcow2")
    with vdinspect.open(ova) as d:
        assert d.read(0, d.size) == to_raw_bytes(pkg / "disk2.qcow2", tmp_path)


def test_truncated_ova(pkg, tmp_path):
    standard(pkg)
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", "disk1.vmdk", "disk2.qcow2"])
    data = ova.read_bytes()
    cut = tmp_path / "cut.ova"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(vdinspect.CorruptImage, match="truncated|past the end"):
        vdinspect.open(cut, disk=1)
    with vdinspect.open(cut, strict=False) as d:  # the first disk is whole: it still reads
        assert d.read(0, d.size) == to_raw_bytes(pkg / "disk1.vmdk", tmp_path)
        assert (d.check().severity == "error").any()


# --- real OVAs: VirtualBox ValidationKit's (exported by VMware ovftool; MANIFEST.md) -------

VK = SHARED_SAMPLES / "cyberus-technology-virtualbox-kvm" / "ValidationKit-tests-api"
needs_vk = pytest.mark.skipif(not VK.is_dir(), reason="shared samples absent")


def sha256_of(d) -> str:
    import hashlib

    h = hashlib.sha256()
    for pos in range(0, d.size, 64 << 20):
        h.update(d.read(pos, min(64 << 20, d.size - pos)))
    return h.hexdigest()


@needs_vk
@pytest.mark.parametrize("name,digests", [
    ("tdAppliance1-t2.ova", 1), ("tdAppliance1-t2-ovftool-4.1.0.ova", 2),
    ("tdAppliance1-t7-bad-instance.ova", 3)])
def test_real_ovftool_ovas(name, digests):
    with vdinspect.open(VK / name) as d:
        info = d.info()
        assert (info["subformat"], d.size, info["os"]) == ("vmdk streamOptimized", 2 << 30,
                                                          "dosGuest")
        assert info["allocated"] == 0  # MANIFEST.md: no allocated grains (raw all zeros)
        assert f"{digests} of {digests} manifest digests match" in set(d.check().message)


@needs_vk
@pytest.mark.slow
def test_real_gzip_ova_raw_sha256():
    with vdinspect.open(VK / "tdAppliance1-t3.ova") as d:
        assert d.info()["compression"] == "gzip" and d.size == 1 << 30
        assert sha256_of(d) == "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"


@needs_vk
def test_real_two_disk_signed_ova():
    with vdinspect.open(VK / "tdAppliance1-t4.ova") as d:
        assert d.size == 64424509440
        c = d.check()
        assert "2 of 2 manifest digests match" in set(c.message)
        assert any("tdAppliance1-t4.cert is present" in m for m in c.message)
    with vdinspect.open(VK / "tdAppliance1-t4.ova", disk=1) as d:
        assert d.size == 21474836480 and d.info()["disk_file"] == "tdAppliance1-t4-disk2.vmdk.gz"


@needs_vk
def test_real_ova_with_a_gpt_disk():
    """t6: a gzipped 40 GiB disk whose GPT MANIFEST.md lists (from The Sleuth Kit)."""
    with vdinspect.open(VK / "tdAppliance1-t6.ova") as d:
        parts = d.partitions()
        parts = parts[parts["index"].notna()]
        assert parts["start"].tolist() == [40 * 512, 409640 * 512]
        assert parts["length"].tolist() == [409600 * 512, 83214256 * 512]
        assert parts["filesystem"].iloc[0] == "fat32" and parts["label"].iloc[0] == "EFI"


@needs_vk
def test_real_ova_without_disks():
    with pytest.raises(vdinspect.CorruptImage, match="lists no disk"):
        vdinspect.open(VK / "tdAppliance1-t1.ova")


@pytest.mark.skipif(not have("split"), reason="split missing")
def test_chunked_file(pkg, tmp_path):
    """``ovf:chunkSize``: the file stored as ``href.000000000``, ``.000000001``, ... (made
    by the real ``split``)."""
    size = os.path.getsize(pkg / "disk1.vmdk")
    run("split", "-d", "-a", "9", "-b", "32768", "disk1.vmdk", "disk1.vmdk.", cwd=pkg)
    parts = sorted(p.name for p in pkg.glob("disk1.vmdk.0*"))
    assert len(parts) > 2
    write_ovf(pkg, [("disk1.vmdk", 8 << 20, VMDK_STREAM, {"size": size, "chunkSize": 32768})])
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", *parts])
    with vdinspect.open(ova) as d:
        assert d.read(0, d.size) == to_raw_bytes(pkg / "disk1.vmdk", tmp_path)


def test_truncated_gzip_member(pkg, tmp_path):
    with open(pkg / "disk1.vmdk", "rb") as f, gzip.open(pkg / "gz.vmdk", "wb") as g:
        shutil.copyfileobj(f, g)
    data = (pkg / "gz.vmdk").read_bytes()
    (pkg / "gz.vmdk").write_bytes(data[: len(data) * 2 // 3])
    write_ovf(pkg, [("gz.vmdk", 8 << 20, VMDK_STREAM, {"compression": "gzip"})])
    ova = tar(pkg, tmp_path / "app.ova", ["app.ovf", "gz.vmdk"])
    with pytest.raises(vdinspect.CorruptImage, match="truncated"):
        vdinspect.open(ova)
    with vdinspect.open(ova, strict=False) as d:  # what decompressed is read, and said
        c = d.check()
        assert any("gzip stream is truncated" in m for m in c[c.severity == "error"].message)


def test_disk_choice_is_for_packages(pkg):
    with pytest.raises(vdinspect.InvalidArgument, match="disk= is for"):
        vdinspect.open(pkg / "disk2.qcow2", disk=1)
    with vdinspect.open(pkg / "disk2.qcow2", disk=0) as d:  # the only disk there is
        assert d.size == 4 << 20
