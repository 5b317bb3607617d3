"""How fast the ``vdinspect`` command answers, whole process, against ``qemu-img info``.

    python benchmarks/bench_cli.py [--repeat N] [--before DIR] [--entry PATH] [--json FILE]

Each command runs as a new process (``python3 -m vdinspect ...`` from the work tree),
best-of-N wall and CPU (user + system of the child) after one warm-up, the tools taking
turns; ``python3 -c pass`` is the interpreter's own start-up. ``--before DIR`` also runs
the commands with the ``vdinspect`` package found in DIR (e.g. an older commit unpacked
with ``git archive``), for a before/after table. ``--entry PATH`` also times the installed
``vdinspect`` script (e.g. ``$(pyenv which vdinspect)``: a pyenv shim is a shell script that
costs more than the command). The header says whether ``PYTHONDONTWRITEBYTECODE`` is set:
with it, every module of the work tree is compiled again in each process. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from clock import timed

ROOT = Path(__file__).resolve().parent.parent
S = ROOT / "sample_images"
CHAIN, GPT = str(S / "chain-top.qcow2"), str(S / "gpt-fat32-ext4-ntfs.qcow2")

#: (label, vdinspect arguments, the peer's command or None)
CASES = [
    ("info, 3-layer QCOW2 chain", ["info", CHAIN], ["qemu-img", "info", CHAIN]),
    ("info, partitioned QCOW2", ["info", GPT], ["qemu-img", "info", GPT]),
    ("info --json", ["info", "--json", CHAIN], ["qemu-img", "info", "--output=json", CHAIN]),
    ("map --json", ["map", "--json", CHAIN], ["qemu-img", "map", "--output=json", CHAIN]),
    ("parts --json", ["parts", "--json", GPT], None),
    ("ls --json (ext4)", ["ls", "--json", "--part", "2", GPT], None),
    ("ls -r (NTFS table)", ["ls", "-r", "--part", "3", GPT], None),
]


def run(argv: list[str], cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def pandas_imported(args: list[str], cwd: Path) -> bool:
    """Whether the command imported pandas (``-X importtime`` lists every import)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "vdinspect", *args],
                       cwd=cwd, capture_output=True, text=True, check=True)
    return any(line.split("|")[-1].strip() == "pandas" for line in r.stderr.splitlines())


def ms(s: float) -> str:
    return f"{s * 1000:.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--before", type=Path, help="a folder holding an older vdinspect package")
    ap.add_argument("--entry", help="the vdinspect entry-point script to time as well")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load_start = f.read().split()[0]
    results = []
    base = timed(lambda: run([sys.executable, "-c", "pass"], ROOT), child=True,
                 repeat=args.repeat)
    floors = {m: timed(lambda m=m: run([sys.executable, "-c", f"import {m}"], ROOT),
                       child=True, repeat=args.repeat) for m in ("numpy", "construct")}
    for label, ours, peer in CASES:
        row = dict(label=label, command="vdinspect " + " ".join(
            Path(a).name if a.startswith("/") else a for a in ours))
        argv = [sys.executable, "-m", "vdinspect", *ours]
        row["ours"] = timed(lambda a=argv: run(a, ROOT), child=True, repeat=args.repeat)
        row["pandas"] = pandas_imported(ours, ROOT)
        if args.entry:
            row["entry"] = timed(lambda a=[args.entry, *ours]: run(a, ROOT), child=True,
                                 repeat=args.repeat)
        if args.before:
            row["before"] = timed(lambda a=argv: run(a, args.before), child=True,
                                  repeat=args.repeat)
            row["before_pandas"] = pandas_imported(ours, args.before)
        if peer:
            row["peer"] = timed(lambda p=peer: run(p, ROOT), child=True, repeat=args.repeat)
            row["peer_command"] = " ".join(Path(a).name if a.startswith("/") else a
                                           for a in peer)
        results.append(row)
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[0]

    head = ["command", "vdinspect wall", "CPU", "pandas?"]
    if args.entry:
        head += ["entry point: wall", "CPU"]
    if args.before:
        head += ["before: wall", "CPU", "pandas?"]
    head += ["peer", "peer wall", "CPU"]
    bytecode = "set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "unset"
    print(f"best of {args.repeat}; load average {load_start} at the start, {load_end} at "
          f"the end; PYTHONDONTWRITEBYTECODE {bytecode}; `python3 -c pass`: {ms(base[0])} "
          f"wall, {ms(base[1])} CPU; " + ", ".join(
              f"`import {m}`: {ms(w)} wall, {ms(c)} CPU" for m, (w, c) in floors.items())
          + "\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        cells = [f"`{r['command']}`", ms(r["ours"][0]), ms(r["ours"][1]),
                 "yes" if r["pandas"] else "no"]
        if args.entry:
            cells += [ms(r["entry"][0]), ms(r["entry"][1])]
        if args.before:
            cells += [ms(r["before"][0]), ms(r["before"][1]),
                      "yes" if r["before_pandas"] else "no"]
        if "peer" in r:
            cells += [f"`{r['peer_command']}`", ms(r["peer"][0]), ms(r["peer"][1])]
        else:
            cells += ["-", "-", "-"]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(dict(load=[load_start, load_end], python=base,
                                             floors=floors, bytecode=bytecode,
                                             results=results), indent=1))


if __name__ == "__main__":
    main()
