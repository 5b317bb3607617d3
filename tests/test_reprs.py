"""Short ``__repr__`` and compact, escaped ``_repr_html_`` of the public objects.

Facts are compared with the oracles in sample_images/oracles.json (qemu-img info, sfdisk,
blkid) and the Sleuth Kit listing beside the image, not with our own answers.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from html.parser import HTMLParser

import pytest

import vdinspect
from tests.conftest import SAMPLE_IMAGES
from vdinspect.filesystems.base import FILE, Entry, ExtractReport
from vdinspect.units import human

IMAGE = "gpt-fat32-ext4-ntfs.qcow2"
ORACLE = json.loads((SAMPLE_IMAGES / "oracles.json").read_text())[IMAGE]
VOID = {"br", "hr", "img", "meta", "link", "input", "col", "wbr"}


class _Checker(HTMLParser):
    """Collects tags and text; records unbalanced or unknown-closing tags as errors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack})")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse_html(markup: str) -> _Checker:
    """Parse ``markup``; fail on unbalanced tags. Returns the checker (tags, text)."""
    p = _Checker()
    p.feed(markup)
    p.close()
    assert not p.errors, p.errors
    assert not p.stack, f"unclosed tags: {p.stack}"
    return p


def shown_text(markup: str) -> str:
    return " ".join(parse_html(markup).text)


def check_short_repr(obj) -> str:
    r = repr(obj)
    assert "\n" not in r and len(r) <= 160, r
    assert r.startswith("<") and r.endswith(">"), r
    return r


@pytest.fixture(scope="module")
def disk():
    d = vdinspect.open(SAMPLE_IMAGES / IMAGE)
    yield d
    d.close()


def test_image_layer(disk):
    img = disk.top
    check_short_repr(img)
    text = shown_text(img._repr_html_())
    assert ORACLE["format"] in text
    assert str(ORACLE["virtual_size"]) in text
    assert IMAGE in text
    assert "4.0 KiB" in text  # made with cluster_size=4k (sample_images/README.md)
    for method in (".runs()", ".structures()", ".check()"):
        assert method in text


def test_volume_list(disk):
    vols = disk.volumes()
    r = check_short_repr(vols)
    assert "gpt" in r
    markup = vols._repr_html_()
    p = parse_html(markup)
    text = " ".join(p.text)
    assert p.tags.count("tr") == len(vols) + 1  # header row and one row per volume
    for part in ORACLE["partitions"]:
        assert part["label"] in text
        assert human(part["start"]) in text  # start and length in the same unit
    assert "disk.filesystem(1)" in text


@pytest.mark.parametrize("part", ORACLE["partitions"], ids=lambda p: str(p["index"]))
def test_volume(disk, part):
    vol = disk.volumes().find(part["index"])
    check_short_repr(vol)
    text = shown_text(vol._repr_html_())
    for key in ("label", "uuid", "start", "length"):
        assert str(part[key]) in text, key
    assert f"disk.filesystem({part['index']})" in text


@pytest.mark.parametrize("part", ORACLE["partitions"], ids=lambda p: str(p["index"]))
def test_filesystem(disk, part):
    fs = disk.filesystem(part["index"])
    check_short_repr(fs)
    text = shown_text(fs._repr_html_())
    assert part["label"] in text
    assert part["uuid"].lower() in text.lower()
    assert str(part["length"]) in text
    want = part["version"] if part["filesystem"] == "vfat" else part["filesystem"]
    assert want.lower() in text.lower()
    for method in (".files()", ".open(path)", ".extract(path, dest)"):
        assert method in text


def test_entries_against_fls(disk):
    fs = disk.filesystem(1)
    # TSK's listing of partition 1: the live and the deleted files
    fls = (SAMPLE_IMAGES / f"{IMAGE}.p1.fls.txt").read_text()
    assert "docs/sub/deep.txt" in fls and "* 8:\t_ELETED.TXT" in fls
    deep = fs.stat("/docs/sub/deep.txt")
    check_short_repr(deep)
    text = shown_text(deep._repr_html_())
    assert "/docs/sub/deep.txt" in text and "file" in text
    assert f"{deep.size} bytes" in text and deep.size == len(fs.read(deep))
    assert "fs.open('/docs/sub/deep.txt')" in text
    dead = [e for e in fs.iter_entries() if e.deleted and e.name.upper().endswith("ELETED.TXT")]
    assert dead
    text = shown_text(dead[0]._repr_html_())
    assert "deleted" in text
    assert ("not recoverable" in text) != dead[0].recoverable
    folder = fs.stat("/docs")
    assert "fs.files('/docs')" in shown_text(folder._repr_html_())


def test_hostile_name_is_escaped():
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    name = "<script>alert('x')</script>&.txt"
    e = Entry(name=name, kind=FILE, size=7, path="/" + name, modified=when, deleted=True,
              recoverable=True)
    check_short_repr(e)
    markup = e._repr_html_()
    assert "<script" not in markup
    p = parse_html(markup)
    assert "script" not in p.tags
    text = " ".join(p.text)
    assert name in text  # shown as text, intact
    assert "2024-01-02 03:04:05+00:00" in text and "recoverable" in text


def test_extract_report(disk, tmp_path):
    fs = disk.filesystem(1)
    report = fs.extract("/", tmp_path / "out")
    check_short_repr(report)
    text = shown_text(report._repr_html_())
    assert f"{len(report.written)} files" in text
    # a synthetic report with hostile skipped entries
    r = ExtractReport(dest="/tmp/x", skipped=[(f"/<em>{i}</em>", "a < b") for i in range(25)])
    markup = r._repr_html_()
    p = parse_html(markup)
    assert "em" not in p.tags
    text = " ".join(p.text)
    assert "/<em>0</em>" in text and "a < b" in text and "5 more" in text
    assert html.escape("<em>") in markup


def test_disk_html_parses(disk):
    check_short_repr(disk)
    text = shown_text(disk._repr_html_())
    assert IMAGE in text and ORACLE["format"] in text
