"""Snapshot chains: find and open parents, stack the layers, resolve reads and runs.

Layer 0 is the base; the last layer is the top (the image the user opened). A range the
top does not hold (``unallocated``) falls through to the layer below, and so on; ranges
past a parent's end read as zeros.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from numbers import Integral

from .containers.base import (
    BACKING,
    DAMAGED,
    DATA,
    UNALLOCATED,
    Image,
    Run,
    damage_from_runs,
    merge_runs,
)
from .containers.registry import get_format, open_image
from .errors import CorruptImage, InvalidArgument, MissingParent, NotFound, UnsupportedFeature
from .io import ByteSource

MAX_DEPTH = 1000

ParentsArg = str | os.PathLike | Iterable[str | os.PathLike] | Mapping[str, str] | None


class MissingLayer(Image):
    """Stands in for a parent that could not be opened (salvage mode): all ``damaged``."""

    format = "missing"

    def __init__(self, size: int, hint_path: str | None, tried: list[str]) -> None:
        from .io import Zero

        super().__init__(
            Zero(size, name=hint_path or "<missing parent>"),
            path=hint_path or "<missing parent>",
            strict=False,
        )
        self.size = size
        self.tried = tried
        self.finding(
            "error",
            "parent",
            None,
            f"parent {hint_path!r} is missing (tried: {', '.join(tried) or 'nothing'}); "
            "its ranges read as zeros and show as damaged",
        )

    def _runs(self, start: int, end: int):
        yield Run(start, end - start, DAMAGED)

    @property
    def file_size(self) -> int:
        return 0

    @property
    def host_files(self) -> list[str]:
        return []  # nothing on disk (the recorded name may not even be a valid path)


class Chain(ByteSource):
    """A stack of layers read as one disk (the size is the top layer's)."""

    def __init__(self, layers: list[Image]) -> None:
        if not layers:
            raise ValueError("a chain needs at least one layer")
        self.layers = list(layers)
        self.top = self.layers[-1]
        self.size = self.top.size
        self.name = self.top.path

    def truncated(self, k: int) -> Chain:
        """The chain as seen from layer ``k`` (layers 0..k)."""
        return Chain(self.layers[: k + 1])

    def runs(self, start: int = 0, length: int | None = None) -> list[Run]:
        """Resolved runs: each labelled with the layer (0 = base) that answers it."""
        if length is None:
            length = self.size - start
        self._check_range(start, length)
        end = start + length
        if len(self.layers) == 1:  # nothing to resolve: the image's own runs, labelled
            runs = self.top.runs(start, length)
            for r in runs:
                if r.state != UNALLOCATED:
                    r.layer = 0
            return runs
        return merge_runs(self._resolve(len(self.layers) - 1, start, end), start, end)

    def _resolve(self, k: int, start: int, end: int):
        layer = self.layers[k]
        top = k == len(self.layers) - 1
        lim = min(end, layer.size)
        if start < lim:
            for r in layer.runs(start, lim - start):
                if r.state == UNALLOCATED and k > 0:
                    yield from self._resolve(k - 1, r.start, r.end)
                    continue
                r.layer = k if r.state != UNALLOCATED else None
                if r.state == DATA and not top:
                    r.state = BACKING
                yield r
        if end > max(start, layer.size):
            s = max(start, layer.size)
            yield Run(s, end - s, UNALLOCATED)

    def _read(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.readinto(offset, buf)
        return bytes(buf)

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        if not len(mv):
            return
        if len(self.layers) == 1:
            self.top.readinto(offset, mv)
            return
        for run in self.runs(offset, len(mv)):
            out = mv[run.start - offset : run.end - offset]
            if run.layer is None:
                out[:] = bytes(len(out))
            else:
                self.layers[run.layer].fill_run(run, out)

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        if len(self.layers) == 1:
            return self.top._damage_pairs(start, end)
        return damage_from_runs(self, start, end)

    def close(self) -> None:
        for layer in self.layers:
            layer.close()


def _split_name(name: str) -> str:
    """The last component of a path written with / or \\ separators."""
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def parent_candidates(image: Image, hint_path: str, parents: ParentsArg, depth: int) -> list[str]:
    """Where to look for the parent named ``hint_path`` of ``image``, in order."""
    base = _split_name(hint_path)
    here = os.path.dirname(image.path)
    out: list[str] = []
    if isinstance(parents, Mapping):
        for key in (hint_path, base):
            if key in parents:
                out.append(os.fspath(parents[key]))
    elif parents is not None:
        entries = [parents] if isinstance(parents, str | os.PathLike) else list(parents)
        for i, entry in enumerate(entries):
            entry = os.fspath(entry)
            if os.path.isdir(entry):
                out.append(os.path.join(entry, base))
            elif _split_name(entry) == base or i == depth or len(entries) == 1 and depth == 0:
                out.append(entry)
    posix = (
        hint_path.replace("\\", "/") if "\\" in hint_path and "/" not in hint_path else hint_path
    )
    if os.path.isabs(posix):
        out.append(posix)
    else:
        out.append(os.path.join(here, posix))
    out.append(os.path.join(here, base))
    seen: list[str] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def _parent_format(img: Image, name: str | None, strict: bool) -> str | None:
    """The parent format ``img`` records, if vdinspect knows it. An unknown name (a format
    we do not read, or a damaged record) is the image's problem, not a bad call: strict
    mode refuses the image; salvage mode detects the parent's format instead."""
    if not name:
        return None
    try:
        get_format(name)
    except InvalidArgument:
        message = f"backing format {name!r} is not a format vdinspect reads"
        if strict:
            raise UnsupportedFeature(message, path=img.path, structure="backing format") from None
        img.finding("error", "backing format", None, f"{message}; detected instead")
        return None
    return name


def open_chain(
    path: str, *, format: str | None = None, strict: bool = True, parents: ParentsArg = None
) -> Chain:
    """Open ``path`` and every parent it names, base first."""
    top = open_image(path, format=format, strict=strict)
    stack = [top]
    seen = {os.path.realpath(path)}
    try:
        img = top
        while True:
            hint = img.parent_hint
            if hint is None or not hint.path:
                break
            if len(stack) > MAX_DEPTH:
                raise CorruptImage(
                    f"backing chain deeper than {MAX_DEPTH} layers",
                    path=img.path,
                    structure="parent",
                )
            # an image that names its parent by identity (VDI: a UUID) may search for it
            # itself: find_parent(parents) -> (path or None, places tried)
            finder = getattr(img, "find_parent", None)
            found, tried = finder(parents) if finder is not None else (None, [])
            if found is None:
                more = parent_candidates(img, hint.path, parents, len(stack) - 1)
                for alt in hint.alternatives:
                    more += [c for c in parent_candidates(img, alt, parents, len(stack) - 1)
                             if c not in more]
                tried += [c for c in more if c not in tried]
                found = next((p for p in more if os.path.isfile(p)), None)
            if found is None:
                if strict:
                    raise MissingParent(
                        f"parent {hint.path!r} not found",
                        tried=tried,
                        path=img.path,
                        structure="parent",
                    )
                stack.append(MissingLayer(img.size, hint.path, tried))
                break
            real = os.path.realpath(found)
            if real in seen:
                raise CorruptImage(
                    f"backing chain loop: {found} is already in the chain",
                    path=img.path,
                    structure="parent",
                )
            seen.add(real)
            fmt = _parent_format(img, hint.format, strict)
            try:
                parent = open_image(found, format=fmt, strict=strict)
            except NotFound as e:  # raced away
                raise MissingParent(str(e), tried=tried, path=img.path) from e
            stack.append(parent)
            verify = getattr(img, "verify_parent", None)
            if verify is not None:
                verify(parent)
            img = parent
    except BaseException:
        for layer in stack:
            layer.close()
        raise
    return Chain(list(reversed(stack)))


def layer_index(chain: Chain, layer: int) -> int:
    """Layer ``layer`` of ``chain`` as an index from the base (0 = base; negative counts
    from the top), or InvalidArgument naming the range."""
    n = len(chain.layers)
    if isinstance(layer, bool) or not isinstance(layer, Integral) or not -n <= layer < n:
        raise InvalidArgument(
            f"layer {layer!r} out of range: the chain has {n} layers (0 = base .. {n - 1} = top)"
        )
    return int(layer) % n
