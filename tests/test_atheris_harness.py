"""The coverage-guided harness (fuzzing/atheris_all.py) runs: a short libFuzzer session
and a replay. The deep runs themselves are documented in docs/reliability.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")
HARNESS = Path(__file__).resolve().parent.parent / "fuzzing" / "atheris_all.py"


def test_short_session(tmp_path):
    r = subprocess.run([sys.executable, str(HARNESS), "--seed", "v1.qcow", "--",
                        "-runs=40", "-seed=1", "-max_len=128", "-timeout=30",
                        str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 40 runs" in r.stderr
    assert not list(tmp_path.glob("crash-*"))


def test_replay_prints_the_edits(tmp_path):
    saved = tmp_path / "input"
    saved.write_bytes(bytes(range(64)))
    r = subprocess.run([sys.executable, str(HARNESS), "--seed", "vhd-dynamic.vhd",
                        "--replay", str(saved)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "edits: [(" in r.stdout and "walked cleanly" in r.stdout


def test_edits_in_place_are_undone_exactly(tmp_path):
    """The harness edits one working copy in place; after each input it must be the seed
    again, byte for byte (cuts included)."""
    import hashlib
    import importlib.util
    import shutil

    from tests.test_fuzz_all import SAMPLES, Seed

    spec = importlib.util.spec_from_file_location("atheris_all", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seed_path = tmp_path / "seed.vhd"
    shutil.copyfile(SAMPLES / "vhd-dynamic.vhd", seed_path)
    seed = Seed("vhd-dynamic.vhd", seed_path, [(0, 4096)])
    work = tmp_path / "work.vhd"
    shutil.copyfile(seed_path, work)
    want = hashlib.sha256(seed_path.read_bytes()).hexdigest()
    edits = [("byte", 3, 0xFF), ("bit", 10, 3), ("field", seed.size - 4, 8, "big", 2**64 - 1),
             ("field", 100, 4, "little", 7), ("cut", 5000)]
    undo = mod.edit_in_place(work, seed, edits)
    changed = work.read_bytes()
    assert len(changed) == 5000 and changed[3] == 0xFF and changed[100:104] == b"\x07\0\0\0"
    undo()
    assert hashlib.sha256(work.read_bytes()).hexdigest() == want
