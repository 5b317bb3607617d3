"""A raw file with no signature says so (issue 20 item 6); a real raw disk does not.

The raw disks with signatures are made by the real tools (sfdisk, mkfs.ext4, mkfs.vfat);
the unsigned file is random bytes.
"""

from __future__ import annotations

import contextlib
import io
import os

import pytest

import vdinspect
from tests.conftest import have
from tests.tools import run
from vdinspect.cli import main

NOTE = "(no signature found)"


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_unknown_file_is_raw_with_a_note(tmp_path):
    p = tmp_path / "mystery.bin"
    p.write_bytes(os.urandom(1 << 16).replace(b"\x55\xaa", b"\0\0"))
    with vdinspect.open(p) as d:
        info = d.info()
    assert info["format"] == "raw"
    assert NOTE in info["subformat"]
    code, out, err = cli("info", p)
    assert code == 0
    assert len(err.strip().splitlines()) == 1 and "no known image format" in err
    assert NOTE in out


def test_forced_raw_has_no_note(tmp_path):
    p = tmp_path / "mystery.bin"
    p.write_bytes(bytes(1 << 16))
    with vdinspect.open(p, format="raw") as d:
        assert NOTE not in (d.info()["subformat"] or "")
    assert cli("info", "-f", "raw", p)[2] == ""


def _table(p, script):
    run("sfdisk", "-q", p, input=script)


@pytest.mark.parametrize("kind", ["mbr", "gpt", "ext4", "vfat"])
def test_signed_raw_disk_stays_plain(tmp_path, kind):
    need = {"mbr": "sfdisk", "gpt": "sfdisk", "ext4": "mkfs.ext4", "vfat": "mkfs.vfat"}[kind]
    if not have(need):
        pytest.skip(f"{need} missing")
    p = tmp_path / "disk.img"
    p.write_bytes(os.urandom(4 << 20))
    if kind == "mbr":
        _table(p, "label: dos\n2048,,83\n")
    elif kind == "gpt":
        with open(p, "r+b") as f:  # no protective MBR's 55AA: the GPT header alone counts
            f.write(bytes(1 << 20))
        _table(p, "label: gpt\n2048,,L\n")
        with open(p, "r+b") as f:
            f.seek(510)
            f.write(b"\0\0")
    elif kind == "ext4":
        run("mkfs.ext4", "-q", "-F", p)
    else:
        run("mkfs.vfat", p)
    with vdinspect.open(p) as d:
        info = d.info()
    assert info["format"] == "raw" and NOTE not in (info["subformat"] or "")
    code, _out, err = cli("info", p)
    assert code == 0 and err == ""
