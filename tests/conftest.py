"""Shared fixtures: the read-only guarantee, tool lookups, sample folders."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from vdinspect.io import sources

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_IMAGES = ROOT / "sample_images"
# VDINSPECT_SAMPLES overrides the place (a git worktree elsewhere still finds the samples)
SHARED_SAMPLES = Path(os.environ.get("VDINSPECT_SAMPLES") or ROOT.parent / "shared" / "samples")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(autouse=True)
def evidence_unchanged(monkeypatch):
    """Every file vdinspect opens during a test has the same sha256 afterwards."""
    seen: dict[str, str] = {}
    original = sources.FileSource.__init__

    def recording_init(self, path, **kw):
        p = os.path.realpath(os.fspath(path))
        if p not in seen and os.path.isfile(p):
            seen[p] = sha256_file(p)
        original(self, path, **kw)

    monkeypatch.setattr(sources.FileSource, "__init__", recording_init)
    yield seen
    changed = [p for p, digest in seen.items() if os.path.exists(p) and sha256_file(p) != digest]
    assert not changed, f"input files modified: {changed}"


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


needs_qemu = pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="qemu-img/qemu-io missing")
needs_shared = pytest.mark.skipif(not SHARED_SAMPLES.is_dir(), reason="../shared/samples absent")
