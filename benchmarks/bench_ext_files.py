"""ext ``files()`` (open included) against ``fls -r -p`` in one process: CPU from
``getrusage`` (ours: RUSAGE_SELF; fls: RUSAGE_CHILDREN), one warm-up, then the best of
``reps`` rounds with the two in turns. Run it once per tree under test with
``PYTHONPATH`` set to the code to measure, interleaving trees (docs/benchmarks.md, "ext
files() against fls -r -p"). Images: ``bench_summary.ext_image(work, n)``.

    python benchmarks/bench_ext_files.py IMAGE [REPS] [--nodel]
"""

from __future__ import annotations

import resource
import subprocess
import sys

import vdinspect


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main() -> None:
    img = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 5
    deleted = "--nodel" not in sys.argv

    def ours() -> tuple[float, int]:
        c = cpu(resource.RUSAGE_SELF)
        with vdinspect.open(img) as disk:
            vol = disk.filesystem_volumes(readable=True)[0]
            n = len(disk.filesystem(vol.key).files(deleted=deleted))
        return cpu(resource.RUSAGE_SELF) - c, n

    def fls() -> float:
        c = cpu(resource.RUSAGE_CHILDREN)
        subprocess.run(["fls", "-r", "-p", img], stdout=subprocess.DEVNULL, check=True)
        return cpu(resource.RUSAGE_CHILDREN) - c

    ours()
    fls()
    o, f = [], []
    n = 0
    for r in range(reps):
        if r % 2:
            f.append(fls())
            t, n = ours()
            o.append(t)
        else:
            t, n = ours()
            o.append(t)
            f.append(fls())
    where = vdinspect.__file__.split("/vdinspect/")[0]
    print(f"{where}: rows {n} files() {min(o) * 1000:.1f} ms CPU, fls -r -p "
          f"{min(f) * 1000:.1f} ms CPU, ratio {min(o) / min(f):.2f}")


if __name__ == "__main__":
    main()
