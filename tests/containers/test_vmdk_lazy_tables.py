"""COWD (vmfsSparse) and seSparse extents read their grain directory at open and decode it
on first use: opening one imports no numpy, reads still give the bytes the extent was built
from (tests/vmdk_builder.py, written from the layouts, not from the reader's structs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import vdinspect
from tests import vmdk_builder as B
from tests.conftest import ROOT

CAP = 3 * 4096 + 77  # sectors
BUILT = {
    "cowd": lambda: (B.cowd_extent(CAP, g := B.grain_data([0, 5, 4097, CAP - 1], 512)),
                     B.expected_disk(CAP * 512, g, 512)),
    "sesparse": lambda: (B.sesparse_extent(2 * 4096 * 8, g := B.grain_data([0, 3, 4097], 4096),
                                           zero={5}),
                         B.expected_disk(2 * 4096 * 8 * 512, g, 4096)),
}


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_open_without_numpy_then_read(kind, tmp_path):
    data, want = BUILT[kind]()
    img = tmp_path / f"{kind}.vmdk"
    img.write_bytes(data)
    code = ("import sys, vdinspect\n"
            f"d = vdinspect.open({str(img)!r})\n"
            "print(d.size, d.chain.top.subformat, 'numpy' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    size, sub, numpy = r.stdout.split()
    assert int(size) == len(want) and sub in ("vmfsSparse", "seSparse") and numpy == "False"
    with vdinspect.open(str(img)) as disk:
        assert disk.read(0, disk.size) == want
        assert not (disk.check()["severity"] == "error").any()
