"""Byte sources: exact reads, errors past the end, read-only opening."""

from __future__ import annotations

import os

import pytest

from vdinspect.errors import InvalidArgument, NotFound, VDInspectError
from vdinspect.io import Concat, FileSource, LRUCache, MemorySource, Slice, Zero, all_zero


def test_file_source_reads_exactly_and_refuses_past_end(tmp_path):
    p = tmp_path / "f.bin"
    data = os.urandom(10000)
    p.write_bytes(data)
    with FileSource(p) as src:
        assert src.size == 10000
        assert src.read(0, 10000) == data
        assert src.read(9000, 1000) == data[9000:]
        assert src.read(5, 0) == b""
        buf = bytearray(300)
        src.readinto(100, buf)
        assert bytes(buf) == data[100:400]
        with pytest.raises(InvalidArgument):
            src.read(9999, 2)
        with pytest.raises(InvalidArgument):
            src.read(-1, 1)


def test_file_source_opens_read_only(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 10)
    src = FileSource(p)
    with pytest.raises(OSError):
        os.write(src._fd, b"y")
    src.close()
    assert p.read_bytes() == b"x" * 10


def test_missing_and_directory(tmp_path):
    with pytest.raises(NotFound):
        FileSource(tmp_path / "nope")
    with pytest.raises(InvalidArgument):
        FileSource(tmp_path)
    assert issubclass(NotFound, FileNotFoundError) and issubclass(NotFound, VDInspectError)


def test_sparse_file_extents(tmp_path):
    p = tmp_path / "sparse.raw"
    with open(p, "wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(b"\1" * 65536)
    with FileSource(p) as src:
        ext = src.data_extents()
    if ext is None:
        pytest.skip("no SEEK_DATA here")
    assert any(s <= 4 << 20 < s + n for s, n in ext)
    assert sum(n for _, n in ext) < 8 << 20


def test_file_source_seek_data(tmp_path):
    """``seek_data``: the next offset that may hold data, the bytes before it zeros."""
    p = tmp_path / "sparse.img"
    with open(p, "wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(b"\1" * 65536)
    with FileSource(p) as src:
        at = src.seek_data(0)
        assert 0 <= at <= 4 << 20 and src.read(0, at) == bytes(at)
        assert src.seek_data(4 << 20) == 4 << 20
        assert src.seek_data(100) >= 100
        end = src.seek_data((4 << 20) + 65536)
        assert (4 << 20) + 65536 <= end <= 8 << 20
        assert src.read((4 << 20) + 65536, end - (4 << 20) - 65536).count(0) == (
            end - (4 << 20) - 65536)


def test_file_source_view(tmp_path):
    """The memory map holds the file's bytes (as os.pread reads them), a Slice's window of
    it is found through ``host_ranges`` (as Btrfs maps a partition), an empty file has
    none, a memory source no host range, and closing with a view still in use does not
    fail."""
    data = os.urandom(3 * 4096 + 123)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    src = FileSource(p)
    view = src.view()
    assert bytes(view) == data and view.readonly
    [(host, at, n)] = Slice(src, 513, 2000).host_ranges(0, 2000)
    assert host is src and (at, n) == (513, 2000)
    win = host.view()[at:at + n]
    assert bytes(win) == data[513:2513]
    kept = win[:10]
    src.close()  # a view still held: unmapped when it goes
    assert bytes(kept) == data[513:523]
    (tmp_path / "empty").write_bytes(b"")
    assert FileSource(tmp_path / "empty").view() is None
    assert Slice(MemorySource(data), 0, 10).host_ranges(0, 10) is None


def test_slice_concat_zero():
    a = MemorySource(bytes(range(256)) * 4)
    s = Slice(a, 100, 500)
    assert s.read(0, 10) == a.read(100, 10)
    assert s.read(490, 10) == a.read(590, 10)
    with pytest.raises(InvalidArgument):
        s.read(495, 10)
    with pytest.raises(InvalidArgument):
        Slice(a, 1000, 100)
    z = Zero(300)
    c = Concat([s, z, MemorySource(b"end")])
    assert c.size == 803
    assert c.read(495, 10) == a.read(595, 5) + bytes(5)
    assert c.read(795, 8) == bytes(5) + b"end"
    whole = c.read(0, c.size)
    assert whole == a.read(100, 500) + bytes(300) + b"end"


def test_lru_cache_evicts_oldest():
    c = LRUCache(2)
    loads = []
    for k in [1, 2, 1, 3, 2]:
        c.get(k, lambda k=k: loads.append(k) or k * 10)
    assert loads == [1, 2, 3, 2]
    assert len(c) == 2


def test_crc32c_package_imported_on_first_use():
    """The C package's import reads its package metadata (importlib.metadata, email, csv:
    about 20 ms): a command that checks no CRC-32C (info of a QCOW2) must not pay it, and
    the first CRC loads only the package's compiled module."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    chain = ROOT / "sample_images" / "chain-top.qcow2"
    code = (
        "import contextlib, io, sys\n"
        "from vdinspect.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['info', {str(chain)!r}]) == 0\n"
        "assert 'crc32c' not in sys.modules\n"
        "from vdinspect.io.checksums import crc32c\n"
        "had = 'importlib.metadata' in sys.modules\n"
        "assert crc32c(b'123456789') == 0xE3069283\n"
        "import importlib.util\n"
        "from vdinspect.io import checksums\n"
        "if importlib.util.find_spec('crc32c'):  # installed: the first CRC uses its C code,\n"
        "    assert checksums._c_crc32c is not None  # loaded without the package's metadata\n"
        "    assert had or 'importlib.metadata' not in sys.modules, 'the package init ran'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("n", [0, 1, 7, 8, 4095, 4096, 4097, 5003, 1 << 20])
def test_all_zero_sees_a_byte_anywhere(n):
    assert all_zero(bytes(n))
    assert all_zero(memoryview(bytearray(n)))
    for at in sorted({0, n // 2, n - 9, n - 8, n - 1, 4095, 4096} & set(range(n))):
        buf = bytearray(n)
        buf[at] = 1
        assert not all_zero(buf), at
