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
                        "-runs=60", "-seed=1", "-max_len=128", "-timeout=30",
                        str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 60 runs" in r.stderr
    assert not list(tmp_path.glob("crash-*"))


def test_replay_prints_the_edits(tmp_path):
    saved = tmp_path / "input"
    saved.write_bytes(bytes(range(64)))
    r = subprocess.run([sys.executable, str(HARNESS), "--seed", "vhd-dynamic.vhd",
                        "--replay", str(saved)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "edits: [(" in r.stdout and "walked cleanly" in r.stdout
