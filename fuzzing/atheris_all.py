"""Coverage-guided deep fuzzing of the whole stack with atheris (libFuzzer).

The hypothesis harness of ``tests/test_fuzz_all.py`` draws mutations at random; this one
lets libFuzzer steer them by the coverage of vdinspect's own code. A fuzz input is an
*edit script* for one seed image (so a 44 MiB partitioned raw seed costs no more than a
64 KiB header): up to eight byte, bit or 2/4/8-byte field edits aimed at the seed's
structures (the regions ``tests/test_fuzz_all.py`` aims at), then maybe a cut. Each edited
image is walked down the public path by ``tests.test_fuzz_all.walk`` in strict and salvage
mode; any exception other than a ``VDInspectError`` naming the file is a crash, and so is
opening any file outside the image's folder (``walk`` records the opens with an audit hook:
an image is untrusted input); libFuzzer's ``-timeout`` enforces the 2 s bound (memory: see
docs/reliability.md). The seeds include the hostile samples of ``tests/hostile.py``
(``--seed hostile/qcow2-backing-etc-passwd``, ``--seed hostile/vhd-zeroed-bat``, ...): file
names leading out of the folder, tables claiming blocks at impossible places.

Run from the project root (``pip install atheris`` first; see docs/reliability.md)::

    python fuzzing/atheris_all.py --seed vmdk-sparse.vmdk -- -max_total_time=600 \\
        -timeout=2 -rss_limit_mb=4096 fuzzing/corpus/vmdk-sparse

A crash leaves ``crash-<sha1>`` in the current folder; ``--replay FILE`` prints the edits
it stands for and walks the edited image again with the traceback shown.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["vdinspect"]):
    import importlib
    import pkgutil

    import vdinspect

    # vdinspect imports its readers lazily: import them all here, so that all are
    # instrumented for coverage (the notebook-only parts are left out)
    for _m in pkgutil.walk_packages(vdinspect.__path__, "vdinspect."):
        if not _m.name.startswith(("vdinspect.widgets", "vdinspect.viz", "vdinspect.__main__")):
            importlib.import_module(_m.name)

from tests.test_fuzz_all import (  # noqa: E402
    ALL_SEEDS,
    EXTREMES,
    REGION,
    Seed,
    _seed,
    apply,
    walk,
)

KINDS = ("byte", "bit", "field")


def edits_from(data: bytes, seed: Seed) -> list[tuple]:
    """The edit script a fuzz input stands for (the same decoding for fuzzing and replay)."""
    fdp = atheris.FuzzedDataProvider(data)
    edits: list[tuple] = []
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        region = seed.regions[fdp.ConsumeIntInRange(0, len(seed.regions) - 1)]
        reach = min(region[1], REGION) - 1
        pos = min(seed.size - 1, region[0] + fdp.ConsumeIntInRange(0, max(0, reach)))
        kind = KINDS[fdp.ConsumeIntInRange(0, 2)]
        if kind == "byte":
            edits.append(("byte", pos, fdp.ConsumeIntInRange(0, 255)))
        elif kind == "bit":
            edits.append(("bit", pos, fdp.ConsumeIntInRange(0, 7)))
        else:
            width = (2, 4, 8)[fdp.ConsumeIntInRange(0, 2)]
            order = ("little", "big")[fdp.ConsumeIntInRange(0, 1)]
            values = EXTREMES + [seed.size, seed.size - 1, seed.size // 512]
            pick = fdp.ConsumeIntInRange(0, len(values))
            value = values[pick] if pick < len(values) else fdp.ConsumeInt(8) % (1 << 64)
            edits.append(("field", pos, width, order, value))
    if fdp.remaining_bytes() and fdp.ConsumeIntInRange(0, 3) == 0:
        edits.append(("cut", fdp.ConsumeIntInRange(0, seed.size - 1)))
    return edits


def edit_in_place(path: Path, seed: Seed, edits: list[tuple]):
    """Make ``edits`` (as ``tests.test_fuzz_all.apply`` does) in a copy of the seed and
    return a function that puts the copy back, so that no input costs a whole-file copy."""
    saved: list[tuple[int, bytes]] = []
    cut = None
    with open(path, "r+b") as f:
        for e in edits:
            if e[0] == "cut":
                cut = e[1] if cut is None else min(cut, e[1])
                continue
            width = e[2] if e[0] == "field" else 1
            f.seek(e[1])
            old = f.read(width)
            saved.append((e[1], old))
            f.seek(e[1])
            if e[0] == "byte":
                f.write(bytes([e[2]]))
            elif e[0] == "bit":
                f.write(bytes([old[0] ^ (1 << e[2])]))
            else:
                f.write((e[4] % (1 << (8 * width))).to_bytes(width, e[3])[:len(old)])
        if cut is not None:
            f.truncate(cut)

    def undo() -> None:
        with open(path, "r+b") as f:
            if cut is not None:
                with open(seed.path, "rb") as src:
                    src.seek(cut)
                    f.seek(cut)
                    while chunk := src.read(1 << 20):
                        f.write(chunk)
            for pos, old in reversed(saved):
                f.seek(pos)
                f.write(old)

    return undo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", default="vmdk-sparse.vmdk", choices=ALL_SEEDS,
                    help="the seed image (sample_images/ or /work/shared/samples)")
    ap.add_argument("--replay", metavar="FILE", help="decode and walk one saved input")
    ap.add_argument("libfuzzer", nargs="*", help="arguments for libFuzzer (after --)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vdinspect-atheris-"))
    seeds, scratch = work / "seeds", work / "scratch"
    seeds.mkdir()
    scratch.mkdir()
    seed = _seed(args.seed, seeds)

    work_copy = apply(seed, [], scratch)  # edited in place and put back after each input

    def one(data: bytes) -> None:
        undo = edit_in_place(work_copy, seed, edits_from(data, seed))
        try:
            for strict in (True, False):
                walk(work_copy, strict)
        finally:
            undo()

    if args.replay:
        data = Path(args.replay).read_bytes()
        print("edits:", edits_from(data, seed))
        t0 = time.process_time()
        one(data)
        print(f"walk: {time.process_time() - t0:.2f} s of CPU (strict and salvage)")
        print("walked cleanly")
        return
    atheris.Setup([sys.argv[0], *args.libfuzzer], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
