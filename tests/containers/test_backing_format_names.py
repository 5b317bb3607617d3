"""A QCOW2 records its backing file's format by qemu's driver name (``-F``): qemu calls VHD
``vpc``. Every format qemu can put under a QCOW2 opens in strict mode; reads equal
``qemu-img convert`` of the top image."""

from __future__ import annotations

import subprocess

import pytest

import vdinspect
from tests.conftest import needs_qemu

MiB = 1 << 20


def run(*args, cwd):
    subprocess.run(args, check=True, capture_output=True, cwd=cwd)


@needs_qemu
@pytest.mark.parametrize("qemu_fmt,ours", [
    ("vpc", "vhd"), ("vmdk", "vmdk"), ("vdi", "vdi"), ("vhdx", "vhdx"),
    ("parallels", "parallels"), ("qcow", "qcow"), ("raw", "raw"), ("qcow2", "qcow2")])
def test_qemu_backing_format_names(qemu_fmt, ours, tmp_path):
    base = f"base.{qemu_fmt}"
    run("qemu-img", "create", "-q", "-f", qemu_fmt, base, "8M", cwd=tmp_path)
    run("qemu-io", "-f", qemu_fmt, "-c", "write -P 0x5a 1M 64k", base, cwd=tmp_path)
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", qemu_fmt, "top.qcow2",
        "8M", cwd=tmp_path)
    run("qemu-io", "-c", "write -P 0x33 3M 64k", "top.qcow2", cwd=tmp_path)
    run("qemu-img", "convert", "-O", "raw", "top.qcow2", "top.raw", cwd=tmp_path)
    with vdinspect.open(tmp_path / "top.qcow2") as d:  # strict: the default
        assert d.layers()["format"].tolist() == [ours, "qcow2"]
        assert d.read(0, d.size) == (tmp_path / "top.raw").read_bytes()
        assert not (d.check().severity == "error").any()


def test_alias_names_the_registered_format():
    from vdinspect.containers.registry import get_format

    assert get_format("vpc").name == "vhd" and get_format("VPC").name == "vhd"
