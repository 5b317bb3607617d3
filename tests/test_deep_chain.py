"""Backing chains as deep as the limit: resolved by a loop, the limit enforced at open.

A chain of ``MAX_DEPTH`` (1000) layers opens and reads; one layer more is refused with a
clear ``CorruptImage``. Resolution used to recurse once per layer, so about 990 layers
crashed ``info``, ``allocation``, ``read``, ``partitions`` and ``filesystem`` with
RecursionError. The chains are written from the specification by tests/qcow2_builder.py
(qemu-img would take minutes for a thousand files): layer k writes guest cluster k, and the
last cluster, written by no layer, falls through every layer to the base.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import tracemalloc

import pytest

import vdinspect
from tests import qcow2_builder as qb
from vdinspect.chain import MAX_DEPTH

M = 1 << 20


@contextlib.contextmanager
def descriptors(n: int):
    """At least ``n`` file descriptors for this process (one per layer), if the hard limit
    allows; skip otherwise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft >= want:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def shallow_stack(limit: int = 250):
    """A recursion limit far below the chain's depth: any per-layer recursion fails."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    d = tmp_path_factory.mktemp("deep")
    return qb.chain(d, MAX_DEPTH + 1)


def test_limit_is_a_thousand():
    assert MAX_DEPTH == 1000


@pytest.mark.slow
def test_thousand_layers_open_and_read(deep):
    files, _ = deep
    top = files[MAX_DEPTH - 1]  # layers 0..999: exactly the limit
    cs = 512
    size = (MAX_DEPTH + 2) * cs  # the disk size of every layer (built for 1001 layers)
    want = bytearray(size)
    for k in range(MAX_DEPTH):
        want[k * cs : (k + 1) * cs] = qb.pattern(k, cs)
    with descriptors(MAX_DEPTH):
        tracemalloc.start()
        try:
            with vdinspect.open(top) as disk:
                assert len(disk.layer_images) == MAX_DEPTH
                with shallow_stack():
                    assert disk.read(0, size) == bytes(want)
                    runs = disk.runs()
                assert [r.layer for r in runs[:3]] == [0, 1, 2]
                assert runs[-1].layer is None and runs[-1].state == "unallocated"
                assert disk.info()["layers"] == MAX_DEPTH
                assert len(disk.layers()) == MAX_DEPTH
                alloc = disk.allocation()
                assert set(alloc.state) == {"data", "backing", "unallocated"}
                assert disk.check().empty
                disk.partitions()
                with disk.layer(500) as view:
                    assert view.read(500 * cs, cs) == qb.pattern(500, cs)
                    assert view.read(501 * cs, cs) == bytes(cs)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak < 200 * M, f"{peak >> 20} MB"


def test_one_layer_more_is_refused(deep):
    files, _ = deep
    with descriptors(MAX_DEPTH + 1):
        for strict in (True, False):
            with pytest.raises(vdinspect.CorruptImage,
                               match=f"backing chain deeper than {MAX_DEPTH} layers") as e:
                vdinspect.open(files[-1], strict=strict)
            assert e.value.structure == "parent"


def test_cli_on_the_deep_chain(deep, capsys):
    from vdinspect.cli import main

    files, _ = deep
    with descriptors(MAX_DEPTH + 1):
        assert main(["info", str(files[MAX_DEPTH - 1])]) == 0
        assert main(["info", str(files[-1])]) == 1
    err = capsys.readouterr().err
    assert f"deeper than {MAX_DEPTH} layers" in err and "Traceback" not in err
