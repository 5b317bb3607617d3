"""``xe vm-export compress=zstd``: the whole XVA tar through zstd. Exports are built by
tests/containers/xva_builder.py and compressed by the real ``zstd`` (one frame; from a pipe,
without a declared content size) and ``pzstd`` (several frames); reads are compared with
the raw disks they were built from and with the uncompressed export."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import pytest

import vdinspect
from tests.conftest import have
from tests.containers.xva_builder import CHUNK, build_xva, ova_xml

pytest.importorskip("zstandard")
needs_zstd = pytest.mark.skipif(not have("zstd"), reason="zstd missing")


@pytest.fixture
def export(tmp_path):
    rng = __import__("random").Random(5)
    a = bytearray(7 * CHUNK + 4096)
    a[:4096] = b"\x01" * 4096
    a[2 * CHUNK:5 * CHUNK] = rng.randbytes(3 * CHUNK)
    a[7 * CHUNK:] = b"\x03" * 4096
    b = rng.randbytes(2 * CHUNK)
    p = tmp_path / "vm.xva"
    build_xva(p, "web01", [("Ref:7", "system", bytes(a)), ("Ref:9", "data", b)])
    return p, bytes(a), b


def zstd(*args, src, out):
    with open(src, "rb") as fin, open(out, "wb") as fout:
        subprocess.run(args, stdin=fin, stdout=fout, check=True)
    return out


def spool(tmp_path):
    d = tmp_path / "spool"
    d.mkdir(exist_ok=True)
    return d


def assert_reads(path, a, b, plain, spool_dir):
    with vdinspect.open(path, spool_dir=spool_dir) as d, vdinspect.open(plain) as p:
        info = d.info()
        assert (info["format"], info["compression"]) == ("xva", "zstd")
        assert d.size == len(a) and d.read(0, d.size) == a == p.read(0, p.size)
        assert d.read(3 * CHUNK - 100, 5000) == a[3 * CHUNK - 100:3 * CHUNK + 4900]
        c = d.check()
        assert not (c.severity == "error").any()
        assert "5 chunk checksums match, 0 do not"  # chunks 0, 2-4, 7 in set(c.message)
        assert info["decompression"] in set(c.message)
        assert [r.state for r in d.runs()] == [r.state for r in p.runs()]
        assert os.listdir(spool_dir) == []  # the spool file is unlinked once open
        mode = info["decompression"]
    with vdinspect.open(path, disk=1, spool_dir=spool_dir) as d:
        assert d.read(0, d.size) == b
    return mode


@needs_zstd
def test_single_frame_is_spooled(tmp_path, export):
    p, a, b = export
    z = zstd("zstd", "-q", "-c", src=p, out=tmp_path / "vm.xva.zst")  # from a pipe: no size
    raw = subprocess.run(["zstd", "-d", "-c", str(z)], capture_output=True, check=True).stdout
    assert raw == p.read_bytes()  # the tool's own round trip
    mode = assert_reads(z, a, b, p, spool(tmp_path))
    assert "decompressed once into a temporary file in" in mode and str(tmp_path) in mode


@needs_zstd
def test_spool_folder_from_the_environment(tmp_path, export, monkeypatch):
    p, a, _b = export
    z = zstd("zstd", "-q", "-c", src=p, out=tmp_path / "vm.xva.zst")
    env = tmp_path / "envspool"
    env.mkdir()
    monkeypatch.setenv("VDINSPECT_SPOOL_DIR", str(env))
    with vdinspect.open(z) as d:
        assert str(env) in d.info()["decompression"] and d.read(0, d.size) == a
    with pytest.raises(vdinspect.InvalidArgument, match="beside the evidence"):
        vdinspect.open(z, spool_dir=tmp_path)  # the export's own folder


@pytest.mark.skipif(not have("pzstd"), reason="pzstd missing")
def test_several_frames_are_read_in_place(tmp_path, export):
    p, a, b = export
    z = tmp_path / "vm.xva.zst"
    subprocess.run(["pzstd", "-q", "-1", "-p", "2", str(p), "-o", str(z)], check=True)
    mode = assert_reads(z, a, b, p, spool(tmp_path))
    assert mode.endswith("(nothing written)")
    assert int(mode.split()[0]) > 1


@needs_zstd
def test_concatenated_frames_with_declared_sizes(tmp_path, export):
    """Independent frames one after another (what the zstd seekable format holds), each
    made by the zstd tool from a file: each declares its content size."""
    p, a, b = export
    data = p.read_bytes()
    z = tmp_path / "vm.xva.zst"
    with open(z, "wb") as out:
        for k in range(0, len(data), 3 << 20):
            piece = tmp_path / "piece"
            piece.write_bytes(data[k:k + (3 << 20)])
            out.write(subprocess.run(["zstd", "-q", "-c", str(piece)], capture_output=True,
                                     check=True).stdout)
    mode = assert_reads(z, a, b, p, spool(tmp_path))
    assert mode.startswith(f"{-(-len(data) // (3 << 20))} zstd frames")


@needs_zstd
def test_truncated_stream(tmp_path, export):
    p, a, _b = export
    z = zstd("zstd", "-q", "-c", src=p, out=tmp_path / "vm.xva.zst")
    cut = tmp_path / "cut.xva.zst"
    cut.write_bytes(z.read_bytes()[: z.stat().st_size * 3 // 4])
    with pytest.raises(vdinspect.CorruptImage, match="cut short"):
        vdinspect.open(cut, spool_dir=spool(tmp_path))
    with vdinspect.open(cut, strict=False, spool_dir=spool(tmp_path)) as d:
        assert d.read(0, 4096) == a[:4096]
        c = d.check()
        assert any("cut short" in m for m in c[c.severity == "error"].message)


def bomb_tar(tmp_path) -> bytes:
    """ova.xml declares one 1 MiB disk; then a member of 200 MiB of zeros."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        xml = ova_xml("bomb", [("Ref:7", "system", CHUNK)])
        info = tarfile.TarInfo("ova.xml")
        info.size = len(xml)
        t.addfile(info, io.BytesIO(xml))
        info = tarfile.TarInfo("Ref:7/00000000")
        info.size = 200 << 20
        t.addfile(info, io.BytesIO(bytes(200 << 20)))
    return buf.getvalue()


@needs_zstd
@pytest.mark.parametrize("tool", ["zstd", "pzstd"])
def test_zstd_bomb_is_capped_by_what_ova_xml_declares(tmp_path, tool):
    if not have(tool):
        pytest.skip(f"{tool} missing")
    src = tmp_path / "bomb.tar"
    src.write_bytes(bomb_tar(tmp_path))
    z = tmp_path / "bomb.xva"
    args = ["zstd", "-q", "-19"] if tool == "zstd" else ["pzstd", "-q", "-1", "-p", "2"]
    subprocess.run([*args, str(src), "-o", str(z)], check=True)
    src.unlink()
    assert z.stat().st_size < 64 << 10  # 200 MiB of zeros squeezed small
    sp = spool(tmp_path)
    for strict in (True, False):
        with pytest.raises(vdinspect.CorruptImage, match="decompresses to more than"):
            vdinspect.open(z, strict=strict, spool_dir=sp)
    assert os.listdir(sp) == []


@needs_zstd
def test_without_zstandard_the_error_names_the_package(tmp_path, export, monkeypatch):
    p, _a, _b = export
    z = zstd("zstd", "-q", "-c", src=p, out=tmp_path / "vm.xva.zst")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(vdinspect.UnsupportedFeature, match=r"vdinspect\[zstd\]"):
        vdinspect.open(z, spool_dir=spool(tmp_path))


@needs_zstd
def test_detected_when_the_first_block_is_large(tmp_path):
    """A first chunk of random bytes: zstd's first block then holds ~128 KiB of compressed
    data, and nothing decodes from the first 4 KiB the other probes look at."""
    rng = __import__("random").Random(9)
    a = rng.randbytes(2 * CHUNK)
    p = tmp_path / "vm.xva"
    build_xva(p, "rand", [("Ref:1", "system", a)])
    z = zstd("zstd", "-q", "-c", src=p, out=tmp_path / "vm.xva.zst")
    with vdinspect.open(z, spool_dir=spool(tmp_path)) as d:
        assert d.info()["format"] == "xva" and d.read(0, d.size) == a
