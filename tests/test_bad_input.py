"""Bad input: every damaged, truncated or fuzzed image ends in success or a VDInspectError.

docs/design.md "Errors and bad input": whatever the bytes, the public path (``vdinspect.open``,
``info``, ``layers``, ``allocation``, ``snapshots``, ``check``, ``structures``, ``read``,
``to_raw``, the view at an internal snapshot; strict and salvage mode) either works or
raises a ``VDInspectError`` subclass that names the file, in bounded time and memory.
``check()`` never raises once an image is open: it reports. In salvage mode
(``strict=False``) nothing refuses once the image is open.

Two parts:

* targeted cases: real ``qemu-img`` images copied and edited in Python (truncations, table
  entries past the end of the file or misaligned, absurd header fields, garbage compressed
  clusters, a zstd bomb, unknown features and versions, tiny files, directories, missing
  paths), and the concrete inputs of every defect the fuzzer found (``test_regression_*``);
* hypothesis mutation tests over the first four clusters and the known metadata fields
  (header, extensions, L1/L2 entries, refcount table and blocks, snapshot entries) of
  qemu-img-made QCOW2 images (backing file, snapshots, zlib and zstd compression, extended
  L2, v2 with 512-byte clusters, bitmaps, 64 KiB clusters) and QCOW v1 images: byte and bit
  edits, big-endian field overwrites with extreme values (0, 1, 2**31, 2**32-1, 2**63,
  2**64-1 and file-relative ones) and cuts.

Bounds, per input and mode: 2 s of ``time.monotonic`` (measured without tracemalloc; CPU
time instead when the machine is so loaded that the run got under half a CPU) and 256 MB
of peak tracemalloc-traced allocations (a separate traced run). They are robustness
bounds, catching hangs and allocations driven by unchecked size fields, not benchmarks;
a 30 s alarm and an address-space cap turn a real hang or runaway allocation into a
failure instead of a stuck or killed run.

The default run is derandomized (the same examples every time) and takes under a minute.
For a deep, randomized run with many more examples (failures are kept in the hypothesis
database and replayed first next time)::

    HYPOTHESIS_PROFILE=deep python -m pytest tests/test_bad_input.py -q -x \\
        --hypothesis-show-statistics

``HYPOTHESIS_FUZZ_EXAMPLES=N`` overrides the number of examples of the QCOW2 mutation test.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import struct
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vdinspect
from tests import qemu_tools as q
from tests.conftest import have
from vdinspect import (
    CorruptImage,
    ImageError,
    InvalidArgument,
    MissingDependency,
    NotFound,
    NotRecognized,
    UnsupportedFeature,
    VDInspectError,
)

pytestmark = [
    pytest.mark.needs_qemu,
    pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="qemu-img/qemu-io missing"),
]

# --- bounds and profiles ------------------------------------------------------------------

TIME_LIMIT = 2.0  # seconds per open-and-use of one input in one mode
MEM_LIMIT = 256 << 20  # peak traced allocations per open-and-use
HANG_ALARM = 90  # seconds: a hang becomes a test failure instead of a stuck run (the
#                 tracemalloc pass of a 2**61-byte salvage map takes ~4 s alone, 30 s on a
#                 loaded 2-core CI machine)
TO_RAW_LIMIT = 64 << 20  # to_raw() only for virtual disks up to this size (a 2**61-byte
#                          sparse disk is a legitimate, if long, export)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
DEEP = PROFILE == "deep"
FUZZ_EXAMPLES = int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", 5000 if DEEP else 160))
FIELD_EXAMPLES = 2000 if DEEP else 100


def fuzz_settings(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=not DEEP,
        database=None if not DEEP else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


# --- the QCOW2 header, read independently of vdinspect --------------------------------------

#: (name, offset, width) of every header field (QEMU docs/interop/qcow2.txt)
HEADER_FIELDS = [
    ("magic", 0, 4),
    ("version", 4, 4),
    ("backing_file_offset", 8, 8),
    ("backing_file_size", 16, 4),
    ("cluster_bits", 20, 4),
    ("size", 24, 8),
    ("crypt_method", 32, 4),
    ("l1_size", 36, 4),
    ("l1_table_offset", 40, 8),
    ("refcount_table_offset", 48, 8),
    ("refcount_table_clusters", 56, 4),
    ("nb_snapshots", 60, 4),
    ("snapshots_offset", 64, 8),
    ("incompatible_features", 72, 8),
    ("compatible_features", 80, 8),
    ("autoclear_features", 88, 8),
    ("refcount_order", 96, 4),
    ("header_length", 100, 4),
    ("compression_type", 104, 1),
]
FIELD = {name: (off, width) for name, off, width in HEADER_FIELDS}
EXTREMES = [0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]
L2_OFFSET_MASK = 0x00FFFFFFFFFFFE00
OFLAG_COPIED, OFLAG_COMPRESSED = 1 << 63, 1 << 62


def be(data: bytes, off: int, width: int) -> int:
    return int.from_bytes(data[off : off + width], "big")


def put(buf: bytearray, off: int, width: int, value: int) -> None:
    """Overwrite a big-endian field (the value is cut to the field's width)."""
    if off + width > len(buf):
        buf.extend(bytes(off + width - len(buf)))
    buf[off : off + width] = (value % (1 << (8 * width))).to_bytes(width, "big")


def header(data: bytes) -> dict:
    h = {name: be(data, off, width) for name, off, width in HEADER_FIELDS}
    if h["version"] < 3:
        h.update(incompatible_features=0, refcount_order=4, header_length=72, compression_type=0)
    return h


def l1_entries(data: bytes) -> list[int]:
    h = header(data)
    return [be(data, h["l1_table_offset"] + 8 * i, 8) for i in range(h["l1_size"])]


def l2_entries(data: bytes, index: int = 0) -> tuple[int, list[int]]:
    """Host offset of L2 table ``index`` and its (first-word) entries."""
    h = header(data)
    cs = 1 << h["cluster_bits"]
    l2 = l1_entries(data)[index] & L2_OFFSET_MASK
    step = 16 if h["incompatible_features"] & 16 else 8
    return l2, [be(data, l2 + k, 8) for k in range(0, cs, step)]


def snapshot_entries(data: bytes) -> list[tuple[int, int]]:
    """(host offset, extra_data_size) of each snapshot table entry."""
    h = header(data)
    out, pos = [], h["snapshots_offset"]
    for _ in range(h["nb_snapshots"]):
        extra, id_len, name_len = (
            be(data, pos + 36, 4),
            be(data, pos + 12, 2),
            be(data, pos + 14, 2),
        )
        out.append((pos, extra))
        pos += (40 + extra + id_len + name_len + 7) & ~7
    return out


def known_fields(data: bytes) -> list[tuple[str, int, int]]:
    """The metadata fields worth aiming at: header, extensions, tables, snapshot entries."""
    h = header(data)
    cs = 1 << h["cluster_bits"]
    fields = [f for f in HEADER_FIELDS if h["version"] >= 3 or f[1] < 72]
    pos = h["header_length"]
    while pos + 8 <= min(cs, len(data)):  # header extensions: type, length
        fields += [("extension.type", pos, 4), ("extension.length", pos + 4, 4)]
        if be(data, pos, 4) == 0:
            break
        pos += 8 + ((be(data, pos + 4, 4) + 7) & ~7)
    for i in range(min(h["l1_size"], 4)):
        fields.append((f"L1[{i}]", h["l1_table_offset"] + 8 * i, 8))
    for i in range(min(4, h["refcount_table_clusters"] * cs // 8)):
        fields.append((f"reftable[{i}]", h["refcount_table_offset"] + 8 * i, 8))
    reft0 = be(data, h["refcount_table_offset"], 8) & ~0x1FF
    rwidth = max(1, (1 << h["refcount_order"]) // 8)
    for i in range(8):
        fields.append((f"refblock[{i}]", reft0 + i * rwidth, rwidth))
    step = 16 if h["incompatible_features"] & 16 else 8
    for i, l1e in enumerate(l1_entries(data)[:4]):
        l2 = l1e & L2_OFFSET_MASK
        if l2 and l2 + cs <= len(data):
            for k in range(16):
                fields.append((f"L2[{i}][{k}]", l2 + k * step, 8))
                if step == 16:
                    fields.append((f"L2[{i}][{k}].bitmap", l2 + k * step + 8, 8))
    for n, (pos, extra) in enumerate(snapshot_entries(data)):
        for name, off, width in [
            ("l1_table_offset", 0, 8),
            ("l1_size", 8, 4),
            ("id_str_size", 12, 2),
            ("name_size", 14, 2),
            ("date_sec", 16, 4),
            ("date_nsec", 20, 4),
            ("vm_clock_nsec", 24, 8),
            ("vm_state_size", 32, 4),
            ("extra_data_size", 36, 4),
            ("vm_state_size_large", 40, 8),
            ("disk_size", 48, 8),
            ("icount", 56, 8),
        ]:
            if off < 40 or off - 40 < extra:
                fields.append((f"snapshot[{n}].{name}", pos + off, width))
    return [f for f in fields if f[1] + f[2] <= len(data)]


# --- seed images: made by qemu-img / qemu-io ------------------------------------------------


class Seed:
    """A qemu-img-made image to mutate, with the metadata fields worth aiming at."""

    def __init__(self, name: str, path: Path, data: bytes, cluster_size: int, fields) -> None:
        self.name = name
        self.path = path
        self.data = data
        self.cluster_size = cluster_size
        self.fields: list[tuple[str, int, int]] = fields

    def __repr__(self) -> str:  # short: hypothesis prints the fixtures of a failing example
        return f"<Seed {self.name}>"


def _make_seeds(d: Path) -> dict[str, Path]:
    io = q.qemu_io
    out = {}
    p = out["plain"] = q.create(d / "plain.qcow2", "1M", "qcow2", "cluster_size=4096")
    io(p, "write -P 0x11 0 64k", "write -P 0x22 512k 8k", "write -z 256k 4k")
    shutil.copy(p, d / "base.qcow2")
    p = out["backing"] = q.create(
        d / "top.qcow2", "1M", "qcow2", "cluster_size=4096", backing="base.qcow2"
    )
    io(p, "write -P 0x33 32k 8k", "write -z 600k 4k")
    p = out["snapshots"] = q.create(d / "snap.qcow2", "1M", "qcow2", "cluster_size=4096")
    io(p, "write -P 0x44 0 16k")
    q.qemu_img("snapshot", "-c", "first", str(p))
    io(p, "write -P 0x55 8k 16k")
    q.qemu_img("snapshot", "-c", "second", str(p))
    p = out["compressed"] = q.create(d / "comp.qcow2", "1M", "qcow2", "cluster_size=4096")
    io(p, "write -c -P 0x66 0 4k", "write -c -P 0x67 4k 4k", "write -P 0x68 64k 4k")
    p = out["zstd"] = q.create(
        d / "zstd.qcow2", "1M", "qcow2", "cluster_size=4096", "compression_type=zstd"
    )
    io(p, "write -c -P 0x5a 0 8k", "write -P 0x5b 12k 4k")
    p = out["extended_l2"] = q.create(
        d / "extl2.qcow2", "1M", "qcow2", "cluster_size=16384", "extended_l2=on"
    )
    io(p, "write -P 0x77 0 1k", "write -P 0x78 20k 2k", "write -z 40k 1k")
    p = out["v2"] = q.create(d / "v2.qcow2", "256k", "qcow2", "compat=0.10", "cluster_size=512")
    io(p, "write -P 0x79 0 2k", "write -P 0x7a 100k 1k")
    p = out["bitmaps"] = q.create(d / "bitmaps.qcow2", "1M", "qcow2", "cluster_size=4096")
    q.qemu_img("bitmap", "--add", str(p), "b0")
    io(p, "write -P 0x7b 0 8k")
    p = out["cluster64k"] = q.create(d / "c64k.qcow2", "4M", "qcow2")
    io(p, "write -P 0x7c 0 64k", "write -c -P 0x7d 1M 64k")
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Seed]:
    d = tmp_path_factory.mktemp("seeds")
    out = {}
    for name, p in _make_seeds(d).items():
        data = p.read_bytes()
        cs = 1 << be(data, 20, 4)
        out[name] = Seed(name, p, data, cs, known_fields(data))
    # warm up (lazy imports: pandas, zstandard, ...) outside the timed bounds
    for s in out.values():
        use_disk(s.path, True, d)
    return out


# --- the public path, bounded ----------------------------------------------------------------


class Hang(Exception):
    """An open-and-use ran for HANG_ALARM seconds."""


@contextlib.contextmanager
def _alarm(what: str):
    """Turn a hang into a failure after HANG_ALARM seconds (where SIGALRM exists), and a
    runaway allocation into a MemoryError."""

    def alarm(signum, frame):
        raise Hang(f"{what}: still running after {HANG_ALARM} s (a hang)")

    main = threading.current_thread() is threading.main_thread()
    if not (hasattr(signal, "SIGALRM") and main):
        with _address_space_guard():
            yield
        return
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_ALARM)
    try:
        with _address_space_guard():
            yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _address_space_guard():
    """Cap the address space at its current size + 4 GiB while the body runs, so that an
    allocation driven by a garbage size field fails as MemoryError (and the test says so)
    instead of taking the machine down; best effort (Linux /proc and RLIMIT_AS)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            now = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = now + (4 << 30)
        if hard != resource.RLIM_INFINITY and cap > hard or soft != resource.RLIM_INFINITY:
            raise OSError("an address space limit is already set")
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def timed(what: str):
    """Fail if the body takes over TIME_LIMIT seconds of time.monotonic (measured without
    tracemalloc, which slows allocation-heavy Python several times over). On a machine so
    loaded that the body got under half a CPU, its CPU time is held to the bound instead,
    so that a busy CI box does not fail it (a real hang burns CPU, or meets the alarm)."""
    with _alarm(what):
        t0, c0 = time.monotonic(), time.process_time()
        yield
        elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    starved = cpu < elapsed / 2
    assert elapsed < TIME_LIMIT or (starved and cpu < TIME_LIMIT), (
        f"{what} took {elapsed:.2f} s ({cpu:.2f} s of CPU), over the {TIME_LIMIT} s "
        "robustness bound (a hang, or a loop driven by an unchecked count)"
    )


@contextlib.contextmanager
def traced(what: str):
    """Fail if the body's traced allocations peak over MEM_LIMIT."""
    with _alarm(what):
        tracemalloc.start()
        try:
            yield
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak < MEM_LIMIT, (
        f"{what} allocated {peak >> 20} MB at its peak, over the {MEM_LIMIT >> 20} MB bound "
        "(an allocation driven by an unchecked size field)"
    )


def _assert_names_file(exc: VDInspectError, files: list[str], step: str) -> None:
    if isinstance(exc, MissingDependency):
        return
    text = str(exc)
    assert any(f in text for f in files), f"{step}: error does not name the file: {text!r}"
    if isinstance(exc, ImageError) and exc.path is not None:
        assert exc.path in text


def make_attempt(files: list[str], strict: bool, outcome: dict[str, str]):
    """``attempt(step, fn)``: run one step of the public path; a VDInspectError naming one of
    ``files`` is recorded in ``outcome``, anything else escaping fails the test."""

    def attempt(step, fn):
        try:
            return fn()
        except VDInspectError as e:
            _assert_names_file(e, files, step)
            outcome[step] = type(e).__name__
        except (Hang, AssertionError):
            raise
        except Exception as e:
            raise AssertionError(
                f"{step} (strict={strict}) let {type(e).__name__} escape: {e}"
            ) from e
        return None

    return attempt


def use_disk(path: Path, strict: bool, out_dir: Path, *, other_files=()) -> dict[str, str]:
    """Open ``path`` and walk the whole public API; return {step: error class} for the steps
    that raised a VDInspectError (anything else escaping fails the test)."""
    outcome: dict[str, str] = {}
    attempt = make_attempt([str(path), *map(str, other_files)], strict, outcome)
    disk = attempt("open", lambda: vdinspect.open(path, strict=strict))
    if disk is None:
        return outcome
    try:
        _walk(disk, attempt, strict, out_dir, "")
        snaps = attempt("snapshots", disk.snapshots)
        if snaps is not None and len(snaps):
            view = attempt("at(snapshot)", lambda: disk.at(snaps["id"].iloc[0]))
            if view is not None:
                try:
                    _walk(view, attempt, strict, out_dir, "snapshot ")
                finally:
                    view.close()
    finally:
        disk.close()
    if not strict:  # salvage mode reads what it can: once open, nothing refuses
        refused = {k: v for k, v in outcome.items() if k not in ("open", "at(snapshot)")}
        assert not refused, f"salvage mode (strict=False) refused: {refused}"
    return outcome


def _walk(disk, attempt, strict: bool, out_dir: Path, prefix: str) -> None:
    attempt(prefix + "info", disk.info)
    attempt(prefix + "layers", disk.layers)
    attempt(prefix + "allocation", disk.allocation)
    attempt(prefix + "structures", disk.structures)
    size = disk.size
    for off, n in ((0, 4096), (size // 2 & ~511, 8192), (max(0, size - 512), 512)):
        n = min(n, size - off)
        if n > 0:
            attempt(f"{prefix}read({off:#x}, {n})", lambda off=off, n=n: disk.read(off, n))
    if size <= TO_RAW_LIMIT:
        out = out_dir / "out.raw"
        attempt(prefix + "to_raw", lambda: disk.to_raw(out))
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
    try:  # check() reports; it never raises for a damaged image
        frame = disk.check()
    except Exception as e:
        raise AssertionError(
            f"{prefix}check() (strict={strict}) raised {type(e).__name__}: {e}"
        ) from e
    assert list(frame.columns)[:5] == ["severity", "layer", "structure", "host_offset", "message"]


def use_both_modes(path: Path, out_dir: Path, *, trace=(True, False), **kw) -> tuple[dict, dict]:
    """The public path in strict and salvage mode, each timed; then again under tracemalloc
    for the modes in ``trace``, for the memory bound. Returns the two outcome dicts."""
    outcome = {}
    for strict in (True, False):
        mode = "strict" if strict else "strict=False"
        with timed(f"{path.name} ({mode})"):
            outcome[strict] = use_disk(path, strict, out_dir, **kw)
    for strict in trace:
        mode = "strict" if strict else "strict=False"
        with traced(f"{path.name} ({mode})"):
            use_disk(path, strict, out_dir, **kw)
    return outcome[True], outcome[False]


# --- targeted cases ---------------------------------------------------------------------------


def edited(seed: Seed, dest: Path, edits=(), *, cut: int | None = None, name=None) -> Path:
    """A copy of ``seed`` in ``dest`` with (offset, width, value) edits, optionally cut."""
    buf = bytearray(seed.data)
    for off, width, value in edits:
        put(buf, off, width, value)
    if cut is not None:
        del buf[cut:]
    p = dest / (name or seed.path.name)
    p.write_bytes(bytes(buf))
    return p


def hfield(name: str, value: int) -> tuple[int, int, int]:
    off, width = FIELD[name]
    return off, width, value


def damaged(disk):
    a = disk.allocation()
    return a[a.state == "damaged"]


def problems(disk):
    c = disk.check()
    assert len(c), "check() lists no problem"
    return c


@pytest.fixture
def work(tmp_path: Path, seeds) -> Path:
    """A folder with the backing seed's parent, so edited top images find it."""
    shutil.copy(seeds["plain"].path, tmp_path / "base.qcow2")
    return tmp_path


def test_seeds_are_clean(seeds, work):
    for s in seeds.values():
        strict, salvage = use_both_modes(edited(s, work), work)
        assert strict == {} and salvage == {}, (s.name, strict, salvage)
        with vdinspect.open(work / s.path.name) as d:
            assert d.check().empty, s.name


@pytest.mark.parametrize("cut", [0, 3, 8, 50, 71, 100])
def test_cut_in_header(seeds, work, cut):
    p = edited(seeds["plain"], work, cut=cut)
    if cut < 8:  # too short for any magic: a (tiny) raw disk
        with vdinspect.open(p) as d:
            assert d.info()["format"] == "raw" and d.size == cut
            assert d.read(0, cut) == seeds["plain"].data[:cut]
        with pytest.raises(NotRecognized, match=str(p)):
            vdinspect.open(p, format="qcow2")
        return
    for strict in (True, False):
        with pytest.raises(CorruptImage, match=str(p)):
            vdinspect.open(p, strict=strict)
    use_both_modes(p, work)


def test_cut_in_l1(seeds, work):
    s = seeds["v2"]  # 512-byte clusters: 8 L1 entries, two L2 tables
    h = header(s.data)
    p = edited(s, work, cut=h["l1_table_offset"] + 8 + 4)
    with pytest.raises(CorruptImage, match="L1 table") as e:
        vdinspect.open(p)
    assert str(p) in str(e.value) and f"{h['l1_table_offset']:#x}" in str(e.value)
    with vdinspect.open(p, strict=False) as d:
        assert len(damaged(d)) and damaged(d).length.sum() > 0
        c = problems(d)
        assert (c.structure == "L1 table").any()
        assert d.read(0, 4096) == bytes(4096)  # unreadable reads as zeros
    use_both_modes(p, work)


def test_cut_in_l2(seeds, work):
    s = seeds["plain"]
    l2, _ = l2_entries(s.data)
    p = edited(s, work, cut=l2 + 100)
    with vdinspect.open(p) as d:  # the L2 table is read when needed
        with pytest.raises(CorruptImage, match="L2 table") as e:
            d.read(0, 512)
        assert str(p) in str(e.value)
        with pytest.raises(CorruptImage):
            d.allocation()
        assert len(d.check())
    with vdinspect.open(p, strict=False) as d:
        bad = damaged(d)
        assert bad.start.min() == 0 and bad.length.sum() == d.size
        assert d.read(0, 4096) == bytes(4096)
        assert len(problems(d))
    use_both_modes(p, work)


def test_cut_in_data(seeds, work):
    s = seeds["plain"]
    l2, entries = l2_entries(s.data)
    host = [e & L2_OFFSET_MASK for e in entries]
    cut = host[8] + 100  # guest cluster 8 is cut short; 9..15 and 512k are past the end
    p = edited(s, work, cut=cut)
    with vdinspect.open(p) as d:
        assert d.read(0, 8 * 4096) == b"\x11" * 8 * 4096  # before the cut: intact
        with pytest.raises(CorruptImage, match=str(p)):
            d.read(10 * 4096, 4096)
        with pytest.raises(CorruptImage):
            d.read(512 << 10, 4096)
        rows = d.check()
        assert len(rows) and (rows.severity == "error").any()
    with vdinspect.open(p, strict=False) as d:
        bad = damaged(d)
        assert ((bad.start <= 10 * 4096) & (bad.end > 10 * 4096)).any()
        assert d.read(10 * 4096, 4096) == bytes(4096)
        assert d.read(0, 4096) == b"\x11" * 4096
        assert len(problems(d))
    use_both_modes(p, work)


def _l1_edit(s: Seed, value: int):
    return [(header(s.data)["l1_table_offset"], 8, value)]


@pytest.mark.parametrize("how", ["past_eof", "misaligned", "huge"])
def test_l1_entry_bad(seeds, work, how):
    s = seeds["plain"]
    l2 = l1_entries(s.data)[0] & L2_OFFSET_MASK
    value = {
        "past_eof": OFLAG_COPIED | (len(s.data) + 16 * 4096),
        "misaligned": OFLAG_COPIED | (l2 + 512),
        "huge": OFLAG_COPIED | L2_OFFSET_MASK,
    }[how]
    p = edited(s, work, _l1_edit(s, value))
    with vdinspect.open(p) as d:
        with pytest.raises(CorruptImage, match="L1") as e:
            d.read(0, 4096)
        assert str(p) in str(e.value)
        assert (d.check().severity == "error").any()
    with vdinspect.open(p, strict=False) as d:
        assert damaged(d).length.sum() == d.size
        assert d.read(0, 4096) == bytes(4096)
        assert len(problems(d))
    use_both_modes(p, work)


@pytest.mark.parametrize("how", ["past_eof", "misaligned", "huge"])
def test_l2_entry_bad(seeds, work, how):
    s = seeds["plain"]
    l2, entries = l2_entries(s.data)
    value = {
        "past_eof": OFLAG_COPIED | (len(s.data) + 16 * 4096),
        "misaligned": OFLAG_COPIED | ((entries[0] & L2_OFFSET_MASK) + 512),
        "huge": OFLAG_COPIED | L2_OFFSET_MASK,
    }[how]
    p = edited(s, work, [(l2, 8, value)])  # guest cluster 0
    with vdinspect.open(p) as d:
        with pytest.raises(CorruptImage, match="L2") as e:
            d.read(0, 4096)
        assert str(p) in str(e.value)
        assert d.read(4096, 4096) == b"\x11" * 4096  # the neighbours still read
        assert (d.check().severity == "error").any()
    with vdinspect.open(p, strict=False) as d:
        bad = damaged(d)
        assert list(zip(bad.start, bad.length)) == [(0, 4096)]
        assert d.read(0, 8192) == bytes(4096) + b"\x11" * 4096
        assert d.read(512 << 10, 4096) == b"\x22" * 4096
        assert len(problems(d))
    use_both_modes(p, work)


ABSURD = [
    ("l1_size", 2**32 - 1),
    ("l1_size", 2**31),
    ("refcount_table_clusters", 2**32 - 1),
    ("refcount_table_clusters", 2**31),
    ("nb_snapshots", 2**32 - 1),
    ("nb_snapshots", 65536),
    ("header_length", 2**32 - 1),
    ("header_length", 0),
    ("header_length", 105),
    ("cluster_bits", 0),
    ("cluster_bits", 8),
    ("cluster_bits", 22),
    ("cluster_bits", 2**32 - 1),
    ("backing_file_size", 2**32 - 1),
    ("backing_file_offset", 2**64 - 1),
    ("size", 2**63),
    ("size", 2**64 - 1),
    ("size", 2**61),
    ("l1_table_offset", 2**63),
    ("l1_table_offset", 2**64 - 1),
    ("refcount_table_offset", 2**63),
    ("refcount_table_offset", 2**64 - 1),
    ("refcount_order", 7),
    ("refcount_order", 2**32 - 1),
    ("crypt_method", 7),
]


@pytest.mark.parametrize("name,value", ABSURD, ids=[f"{n}={v}" for n, v in ABSURD])
def test_absurd_header_field(seeds, work, name, value):
    s = seeds["backing" if name.startswith("backing") else "plain"]
    p = edited(s, work, [hfield(name, value)])
    strict, salvage = use_both_modes(p, work)
    if "open" in strict:
        assert strict["open"] in ("CorruptImage", "UnsupportedFeature", "EncryptedImage")


def test_absurd_size_opens_in_salvage_mode_in_bounded_time(seeds, work):
    """2**61 bytes with 2 MiB clusters needs a 32 MiB L1: salvage mode fills it with
    'truncated' markers and must map the 4 Mi entries without one Python step each."""
    s = seeds["plain"]
    edits = [
        hfield("size", 2**61),
        hfield("cluster_bits", 21),
        hfield("l1_size", 1 << 22),
        hfield("l1_table_offset", 0),  # aligned to 2 MiB; the "L1" is the header itself
    ]
    p = edited(s, work, edits)
    with pytest.raises(CorruptImage, match="L1 table"):
        vdinspect.open(p)
    use_both_modes(p, work, trace=(False,))  # strict mode stops at open
    with vdinspect.open(p, strict=False) as d:
        assert d.size == 2**61
        assert damaged(d).length.sum() > 2**60
        assert len(problems(d))


def test_snapshot_table_past_eof(seeds, work):
    s = seeds["snapshots"]
    p = edited(s, work, [hfield("snapshots_offset", (len(s.data) + 8192) & ~4095)])
    with pytest.raises(CorruptImage, match="snapshot") as e:
        vdinspect.open(p)
    assert str(p) in str(e.value)
    with vdinspect.open(p, strict=False) as d:  # salvage: the disk itself is intact
        assert d.read(0, 4096) == b"\x44" * 4096
        assert d.read(8192, 4096) == b"\x55" * 4096
        c = problems(d)
        assert c.structure.str.contains("snapshot").any()
    use_both_modes(p, work)


@pytest.mark.parametrize(
    "name,value",
    [
        ("l1_table_offset", 2**63),
        ("l1_table_offset", 2**64 - 1),
        ("l1_size", 2**32 - 1),
        ("id_str_size", 0xFFFF),
        ("extra_data_size", 2**32 - 1),
        ("vm_clock_nsec", 2**64 - 1),
        ("vm_state_size_large", 2**64 - 1),
        ("vm_state_size_large", 2**63),
        ("disk_size", 2**64 - 1),
        ("disk_size", 2**63),
        ("disk_size", 0),
        ("date_sec", 2**32 - 1),
        ("date_nsec", 2**32 - 1),
    ],
)
def test_snapshot_entry_absurd(seeds, work, name, value):
    s = seeds["snapshots"]
    pos, _ = snapshot_entries(s.data)[0]
    off, width = {
        "l1_table_offset": (0, 8),
        "l1_size": (8, 4),
        "id_str_size": (12, 2),
        "date_sec": (16, 4),
        "date_nsec": (20, 4),
        "vm_clock_nsec": (24, 8),
        "extra_data_size": (36, 4),
        "vm_state_size_large": (40, 8),
        "disk_size": (48, 8),
    }[name]
    p = edited(s, work, [(pos + off, width, value)])
    use_both_modes(p, work)


@pytest.mark.parametrize(
    "what",
    ["l1_misaligned", "l1_too_short", "l1_too_large", "extension_overrun", "backing_name"],
)
def test_salvage_opens_what_strict_refuses(seeds, work, what):
    """Damage that makes strict mode refuse the image; salvage mode opens it, shows the
    unusable ranges as damaged and lists the problem in check()."""
    s = seeds["backing" if what == "backing_name" else "v2"]
    h = header(s.data)
    edits = {
        "l1_misaligned": [hfield("l1_table_offset", h["l1_table_offset"] + 8)],
        "l1_too_short": [hfield("l1_size", 1)],  # 8 needed: entries 1.. are missing
        "l1_too_large": [hfield("l1_size", 2**31)],
        "extension_overrun": [
            (h["header_length"], 4, 0x12345678),
            (h["header_length"] + 4, 4, 2**31),
        ],
        "backing_name": [hfield("backing_file_size", 2000)],
    }[what]
    if what == "extension_overrun":
        s = seeds["plain"]
        h = header(s.data)
        edits = [(h["header_length"], 4, 0x12345678), (h["header_length"] + 4, 4, 2**31)]
    p = edited(s, work, edits)
    with pytest.raises(CorruptImage, match=str(p)):
        vdinspect.open(p)
    with vdinspect.open(p, strict=False) as d:
        bad = damaged(d)
        rows = problems(d)
        if what == "extension_overrun":  # the disk itself is intact
            assert bad.empty and d.read(0, 4096) == b"\x11" * 4096
            assert rows.structure.str.contains("extension").any()
        elif what == "l1_too_short":  # L2 table 0 is still there
            assert d.read(0, 2048) == b"\x79" * 2048
            assert bad.start.min() == 512 * 64 and bad.end.max() == d.size
        elif what == "l1_too_large":  # the entries the disk needs are read
            assert bad.empty and d.read(0, 2048) == b"\x79" * 2048
        elif what == "backing_name":  # the parent is lost: its ranges are damaged
            assert d.read(32 << 10, 8192) == b"\x33" * 8192
            assert len(bad) and d.read(0, 4096) == bytes(4096)
        else:
            assert bad.length.sum() == d.size
    use_both_modes(p, work)


def test_compressed_cluster_garbage(seeds, work):
    s = seeds["compressed"]
    _, entries = l2_entries(s.data)
    e = entries[0]
    assert e & OFLAG_COMPRESSED
    cs_shift = 62 - (12 - 8)
    host = e & ((1 << cs_shift) - 1)
    nb = ((e >> cs_shift) & ((1 << 4) - 1)) + 1
    end = min(host + nb * 512 - (host & 511), entries[1] & ((1 << cs_shift) - 1))
    garbage = [(i, 1, 0xFF) for i in range(host, end)]  # cluster 1's stream follows
    p = edited(s, work, garbage)
    with vdinspect.open(p) as d:
        with pytest.raises(CorruptImage, match="compressed") as exc:
            d.read(0, 4096)
        assert str(p) in str(exc.value)
        assert d.read(4096, 4096) == b"\x67" * 4096
    with vdinspect.open(p, strict=False) as d:
        assert d.read(0, 8192) == bytes(4096) + b"\x67" * 4096
        assert problems(d).structure.str.contains("compressed").any()
    use_both_modes(p, work)


def _zstd_bomb_image(seeds, work) -> Path:
    """Cluster 0 of the zstd seed replaced by a frame that inflates to 128 MiB."""
    zstandard = pytest.importorskip("zstandard")
    s = seeds["zstd"]
    l2, entries = l2_entries(s.data)
    frame = zstandard.ZstdCompressor(level=3).compress(bytes(128 << 20))
    cs_shift = 62 - (12 - 8)
    host = len(s.data) + 4096 & ~511  # appended at a sector boundary
    nb = -(-len(frame) // 512)
    assert nb <= 16, len(frame)
    buf = bytearray(s.data) + bytes(host - len(s.data)) + frame
    put(buf, l2, 8, OFLAG_COMPRESSED | (nb - 1) << cs_shift | host)
    p = work / "zstd-bomb.qcow2"
    p.write_bytes(bytes(buf))
    return p


def test_regression_zstd_bomb_is_bounded(seeds, work):
    """A zstd frame that inflates to 128 MiB where a 4 KiB cluster belongs: the reader took
    the whole output (128 MB traced; up to 4 GiB with 64 KiB clusters) before cutting it to
    the cluster. Like QEMU, the first cluster's worth of output is the cluster."""
    p = _zstd_bomb_image(seeds, work)
    with vdinspect.open(p) as d:
        tracemalloc.start()
        try:
            data = d.read(0, 4096)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert data == bytes(4096)
    assert peak < 16 << 20, f"reading one compressed cluster allocated {peak >> 20} MB"
    use_both_modes(p, work)


def test_zlib_garbage_after_stream(seeds, work):
    """Compressed data that inflates to more than a cluster: only a cluster is taken."""
    s = seeds["compressed"]
    l2, entries = l2_entries(s.data)
    cs_shift = 62 - (12 - 8)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    blob = c.compress(bytes(64 << 20)) + c.flush()
    host = len(s.data)
    nb = -(-len(blob) // 512)
    nb = min(nb, 16)
    buf = bytearray(s.data) + blob
    put(buf, l2, 8, OFLAG_COMPRESSED | (nb - 1) << cs_shift | host)
    p = work / "zlib-big.qcow2"
    p.write_bytes(bytes(buf))
    use_both_modes(p, work)


@pytest.mark.parametrize("bit", [5, 6, 31, 32, 63])
def test_unknown_incompatible_feature(seeds, work, bit):
    p = edited(seeds["plain"], work, [hfield("incompatible_features", 1 << bit)])
    for strict in (True, False):
        with pytest.raises(UnsupportedFeature, match=str(p)) as e:
            vdinspect.open(p, strict=strict)
        assert f"bit {bit}" in str(e.value)


@pytest.mark.parametrize("version", [4, 5, 2**32 - 1])
def test_unknown_version(seeds, work, version):
    p = edited(seeds["plain"], work, [hfield("version", version)])
    for strict in (True, False):
        with pytest.raises(UnsupportedFeature, match=str(p)):
            vdinspect.open(p, strict=strict)
        with pytest.raises(UnsupportedFeature, match=str(p)):
            vdinspect.open(p, strict=strict, format="qcow2")


@pytest.mark.parametrize("content", [b"", b"QFI"])
def test_tiny_files_open_as_raw(tmp_path, content):
    p = tmp_path / "tiny.img"
    p.write_bytes(content)
    with vdinspect.open(p) as d:
        assert d.info()["format"] == "raw"
        assert d.size == len(content)
        assert d.read(0, len(content)) == content
        assert d.check().empty
        d.allocation()
        d.structures()
        d.layers()
        d.snapshots()
        d.to_raw(tmp_path / "out.raw")
    assert (tmp_path / "out.raw").read_bytes() == content
    with pytest.raises(NotRecognized, match=str(p)):
        vdinspect.open(p, format="qcow2")


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(InvalidArgument, match=str(tmp_path)):
        vdinspect.open(tmp_path)
    with pytest.raises(InvalidArgument):
        vdinspect.open(tmp_path, format="qcow2")
    missing = tmp_path / "nope.qcow2"
    with pytest.raises(NotFound, match=str(missing)):
        vdinspect.open(missing)
    with pytest.raises(FileNotFoundError):  # NotFound is also a FileNotFoundError
        vdinspect.open(missing, strict=False)


# --- regressions: concrete inputs the fuzzer found ---------------------------------------------


@pytest.mark.parametrize(
    "seed,edit",
    [
        ("plain", ("refcount_table_offset", 2**63)),  # structures(): host_offset >= 2**63
        ("plain", ("refcount_table_offset", 2**64 - 1)),
        ("plain", ("l1_table_offset", 2**63)),  # salvage: truncated-L1 row at 2**63
    ],
)
def test_regression_offsets_beyond_int64(seeds, work, seed, edit):
    """Offsets read from disk that do not fit int64 must not break the DataFrames."""
    p = edited(seeds[seed], work, [hfield(*edit)])
    use_both_modes(p, work)


def test_regression_refcount_table_entry_beyond_int64(seeds, work):
    s = seeds["plain"]
    h = header(s.data)
    for value in (2**63, 2**64 - 1):
        p = edited(s, work, [(h["refcount_table_offset"] + 8, 8, value)], name=f"{value}.qcow2")
        use_both_modes(p, work)
        with vdinspect.open(p) as d:
            d.structures()
            assert len(d.check())


def test_regression_backing_name_with_nul(seeds, work):
    """backing_file_offset = 1: the 'name' is header bytes with NULs; the parent is missing."""
    s = seeds["backing"]
    p = edited(s, work, [hfield("backing_file_offset", 1)])
    with pytest.raises(vdinspect.MissingParent, match=str(p)):
        vdinspect.open(p)
    with vdinspect.open(p, strict=False) as d:
        d.to_raw(work / "out.raw")  # the missing layer has no host file to compare
        assert len(problems(d))
    use_both_modes(p, work)


def test_regression_unknown_backing_format(seeds, work):
    """size=0 and a backing-format extension cut to 1 byte: the parent format 'q' reached
    the registry as a bad call (InvalidArgument naming no file)."""
    s = seeds["backing"]
    ext = header(s.data)["header_length"]  # the first extension: the backing format
    assert be(s.data, ext, 4) == 0xE2792ACA
    p = edited(s, work, [hfield("size", 0), (ext + 4, 4, 1)])
    with pytest.raises(UnsupportedFeature, match=str(p)) as e:
        vdinspect.open(p)
    assert "'q'" in str(e.value)
    with vdinspect.open(p, strict=False) as d:  # salvage: the parent's format is detected
        assert len(d.layers()) == 2
        assert problems(d).structure.str.contains("backing format").any()
    use_both_modes(p, work)


def test_regression_offsets_near_int64_limit_with_gaps(seeds, work):
    """refcount_table_clusters=4 and L2[0][0]=2**63-1 (deep fuzz run): the refcount table
    now covers L2 and data clusters, so 'refcount block' offsets near 2**63 sat in an
    Int64 column with NA and went through float64: TypeError from pandas."""
    s = seeds["backing"]
    l2, _ = l2_entries(s.data)
    p = edited(s, work, [hfield("refcount_table_clusters", 4), (l2, 8, 2**63 - 1)])
    use_both_modes(p, work)
    with vdinspect.open(p, strict=False) as d:
        rows = d.structures()
        assert rows.description.str.contains("out of range").any()


@pytest.mark.parametrize("clock", [2**63 - 1, 2**63 - 1001, 2**64 - 1])
def test_regression_snapshot_vm_clock_near_limit(seeds, work, clock):
    s = seeds["snapshots"]
    pos, _ = snapshot_entries(s.data)[0]
    p = edited(s, work, [(pos + 24, 8, clock)])
    with vdinspect.open(p) as d:
        assert d.snapshots().vm_clock.isna().iloc[0]


def _repeating_l1(seed: Seed, n: int) -> tuple[bytearray, int]:
    """The seed with a new n-entry L1 table at its end, every entry naming L2 table 0."""
    buf = bytearray(seed.data)
    cs = seed.cluster_size
    l1_off = -(-len(buf) // cs) * cs
    l2 = l1_entries(seed.data)[0] & L2_OFFSET_MASK
    buf += bytes(l1_off - len(buf)) + ((OFLAG_COPIED | l2).to_bytes(8, "big") * n)
    return buf, l1_off


def test_regression_l1_entries_repeating_one_l2_table(seeds, work):
    """8192 L1 entries naming one L2 table: check() walked the table 8192 times in Python
    (over 20 s); a table is now walked once per check and later references replay its
    counts, so the repeated references still show as refcount errors."""
    buf, l1_off = _repeating_l1(seeds["plain"], 8192)
    put(buf, *FIELD["l1_table_offset"], l1_off)
    put(buf, *FIELD["l1_size"], 8192)
    p = work / "repeat-l2.qcow2"
    p.write_bytes(bytes(buf))
    use_both_modes(p, work, trace=(False,))
    with vdinspect.open(p) as d:
        assert d.read(0, 4096) == b"\x11" * 4096
        rows = d.check()
        l2 = l1_entries(seeds["plain"].data)[0] & L2_OFFSET_MASK
        assert ((rows.structure == "refcount") & (rows.host_offset == l2)).any()


def test_regression_snapshots_sharing_a_huge_l1(seeds, work):
    """200 snapshot entries naming the same 4096-entry L1 table: walked once, replayed."""
    s = seeds["plain"]
    buf, l1_off = _repeating_l1(s, 4096)
    table = bytearray()
    for i in range(200):
        ident = str(i).encode()
        entry = struct.pack(">QIHHIIQII", l1_off, 4096, len(ident), 1, 0, 0, 0, 0, 0)
        entry += ident + b"s"
        table += entry + bytes(-len(entry) % 8)
    snap_off = -(-len(buf) // s.cluster_size) * s.cluster_size
    buf += bytes(snap_off - len(buf)) + table
    put(buf, *FIELD["nb_snapshots"], 200)
    put(buf, *FIELD["snapshots_offset"], snap_off)
    p = work / "shared-l1.qcow2"
    p.write_bytes(bytes(buf))
    use_both_modes(p, work, trace=(False,))
    with vdinspect.open(p) as d:
        assert len(d.snapshots()) == 200
        assert (d.check().severity == "error").any()


@pytest.mark.parametrize("l1_size", [1 << 22, (1 << 22) - 1])
def test_regression_snapshot_l1_of_max_size(seeds, work, l1_size):
    """A snapshot L1 of QEMU's maximum size (32 MiB), mostly past the end of the file."""
    s = seeds["snapshots"]
    pos, _ = snapshot_entries(s.data)[0]
    p = edited(s, work, [(pos + 8, 4, l1_size)])
    use_both_modes(p, work, trace=(l1_size % 2 == 0,))


# --- the mutation fuzzer -----------------------------------------------------------------------

_counter = itertools.count()


def _values(seed: Seed, width: int):
    cs, n = seed.cluster_size, len(seed.data)
    context = [n, n - 1, n + cs, n & ~(cs - 1), cs, cs - 1, cs + 512, 2 * cs, 3 * cs, 4 * cs]
    context += [v | OFLAG_COPIED for v in (n, n + cs, 3 * cs + 512)]
    context += [v | OFLAG_COMPRESSED for v in (n - 100, 2 * cs, 3 * cs + 17)]
    top = (1 << (8 * width)) - 1
    return st.one_of(
        st.sampled_from(EXTREMES + context).map(lambda v: v & top),
        st.integers(0, top),
        st.integers(0, 64).map(lambda k: min(top, (1 << k) - 1 if k else 0)),
    )


@st.composite
def mutation(draw, seed: Seed):
    """One edit: a byte, a known field, an aligned big-endian word, a bit, or a cut."""
    head = min(len(seed.data), 4 * seed.cluster_size)
    kind = draw(
        st.sampled_from(["field", "field", "field", "byte", "word", "bit", "cut"]), label="kind"
    )
    if kind == "field":
        name, off, width = draw(st.sampled_from(seed.fields))
        return ("field", name, off, width, draw(_values(seed, width)))
    if kind == "byte":
        return ("byte", draw(st.integers(0, head - 1)), 1, draw(st.integers(0, 255)))
    if kind == "word":
        width = draw(st.sampled_from([2, 4, 8]))
        off = draw(st.integers(0, head // width - 1)) * width
        return ("word", off, width, draw(_values(seed, width)))
    if kind == "bit":
        off = draw(st.integers(0, head - 1))
        return ("bit", off, draw(st.integers(0, 7)))
    return ("cut", draw(st.integers(0, len(seed.data))))


def apply_mutations(seed: Seed, ops) -> bytes:
    buf = bytearray(seed.data)
    cut = None
    for op in ops:
        if op[0] == "field":
            _, _, off, width, value = op
            put(buf, off, width, value)
        elif op[0] in ("byte", "word"):
            _, off, width, value = op
            put(buf, off, width, value)
        elif op[0] == "bit":
            buf[op[1]] ^= 1 << op[2]
        else:
            cut = op[1] if cut is None else min(cut, op[1])
    return bytes(buf[:cut] if cut is not None else buf)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory, seeds) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    shutil.copy(seeds["plain"].path, d / "base.qcow2")
    return d


def _fuzz_one(fuzz_dir: Path, seed: Seed, blob: bytes, trace_strict: bool) -> None:
    # a fresh name per example: the read-only fixture hashes each opened file once
    p = fuzz_dir / f"ex{next(_counter)}-{seed.path.name}"
    p.write_bytes(blob)
    try:  # both modes timed; one of them (hypothesis picks) traced for memory
        use_both_modes(p, fuzz_dir, trace=(trace_strict,), other_files=[fuzz_dir / "base.qcow2"])
    finally:
        p.unlink()


#: examples per run of each fuzz test, per format (deep runs: many more, randomized)
MUTATION_EXAMPLES = {"qcow2": FUZZ_EXAMPLES, "qcow": 40 if not DEEP else 2000}
EXTREME_EXAMPLES = {"qcow2": FIELD_EXAMPLES, "qcow": 30 if not DEEP else 1000}


def _seed_pool(fmt: str, request) -> dict[str, Seed]:
    return request.getfixturevalue("seeds" if fmt == "qcow2" else "qcow1_seeds")


@pytest.mark.parametrize("fmt", ["qcow2", "qcow"])
def test_fuzz_mutated_images(fmt, fuzz_dir, request):
    """Random edits of the first clusters and of the known metadata fields."""
    pool = _seed_pool(fmt, request)
    names = sorted(pool)

    @fuzz_settings(MUTATION_EXAMPLES[fmt])
    @given(data=st.data())
    def mutated(data):
        seed = pool[data.draw(st.sampled_from(names), label="seed")]
        ops = data.draw(st.lists(mutation(seed), min_size=1, max_size=6), label="mutations")
        trace_strict = data.draw(st.booleans(), label="trace strict mode")
        _fuzz_one(fuzz_dir, seed, apply_mutations(seed, ops), trace_strict)

    mutated()


@pytest.mark.parametrize("fmt", ["qcow2", "qcow"])
def test_fuzz_fields_extreme(fmt, fuzz_dir, request):
    """Only known fields, only extreme values: the unchecked-size-field hunt."""
    pool = _seed_pool(fmt, request)
    names = sorted(pool)

    @fuzz_settings(EXTREME_EXAMPLES[fmt])
    @given(data=st.data())
    def extreme(data):
        seed = pool[data.draw(st.sampled_from(names), label="seed")]
        fields = data.draw(
            st.lists(st.sampled_from(seed.fields), min_size=1, max_size=3, unique=True),
            label="fields",
        )
        ops = [
            ("field", name, off, width, data.draw(st.sampled_from(EXTREMES), label=name))
            for name, off, width in fields
        ]
        trace_strict = data.draw(st.booleans(), label="trace strict mode")
        _fuzz_one(fuzz_dir, seed, apply_mutations(seed, ops), trace_strict)

    extreme()


def _qcow1_available() -> bool:
    try:
        from vdinspect.containers import qcow  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def qcow1_seeds(tmp_path_factory, seeds) -> dict[str, Seed]:
    if not _qcow1_available():
        pytest.skip("vdinspect.containers.qcow is not there yet")
    d = tmp_path_factory.mktemp("qcow1")
    out = {}
    p = q.create(d / "plain1.qcow", "1M", "qcow")
    q.qemu_io(p, "write -P 0x11 0 64k", "write -P 0x22 512k 8k", fmt="qcow")
    out["plain"] = p
    p = q.create(d / "comp1.qcow", "1M", "qcow")
    q.qemu_io(
        p, "write -c -P 0x33 0 4k", "write -c -P 0x34 8k 4k", "write -P 0x35 64k 4k", fmt="qcow"
    )
    out["compressed"] = p
    shutil.copy(seeds["plain"].path, d / "base.qcow2")
    p = q.create(d / "top1.qcow", "1M", "qcow", backing="base.qcow2")
    q.qemu_io(p, "write -P 0x36 32k 8k", fmt="qcow")
    out["backing"] = p
    qseeds = {}
    for name, p in out.items():
        data = p.read_bytes()
        cs = 1 << data[32]  # QCOW v1: cluster_bits is one byte at offset 32
        fields = [
            ("version", 4, 4),
            ("backing_file_offset", 8, 8),
            ("backing_file_size", 16, 4),
            ("mtime", 20, 4),
            ("size", 24, 8),
            ("cluster_bits", 32, 1),
            ("l2_bits", 33, 1),
            ("crypt_method", 36, 4),
            ("l1_table_offset", 40, 8),
        ]
        l1 = be(data, 40, 8)
        fields += [(f"L1[{i}]", l1 + 8 * i, 8) for i in range(4)]
        l2 = be(data, l1, 8)
        if l2 and l2 + 64 <= len(data):
            fields += [(f"L2[{k}]", l2 + 8 * k, 8) for k in range(8)]
        qseeds[name] = Seed(name, p, data, cs, [f for f in fields if f[1] + f[2] <= len(data)])
    return qseeds


@pytest.mark.parametrize("name,off", [("backing_file_offset", 8), ("l1_table_offset", 40)])
@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_qcow1_offsets_beyond_int64(qcow1_seeds, fuzz_dir, name, off, value):
    """The fuzzer's QCOW v1 findings, as concrete inputs (salvage mode): offsets no int64
    holds reach the report frames as NA (frames.build_column), not as a pandas error."""
    seed = qcow1_seeds["backing"]
    _fuzz_one(fuzz_dir, seed, apply_mutations(seed, [("field", name, off, 8, value)]), False)
