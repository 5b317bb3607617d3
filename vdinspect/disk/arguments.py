"""The arguments every Disk method reads alike: a partition key, the deprecated spellings,
and the DataFrame builders loaded on first use."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument

if TYPE_CHECKING:
    from types import ModuleType


def volume_key(key: Any) -> Any:
    """A partition key as ``find_volume`` takes it: any integer type (a NumPy integer from
    ``partitions()``, anything with ``__index__``) becomes an ``int``; strings and other
    values pass unchanged (booleans too: ``find_volume`` refuses them)."""
    if key is None or isinstance(key, str | bool):
        return key
    import numpy as np

    if isinstance(key, np.bool_):
        return key
    try:
        return operator.index(key)
    except TypeError:
        return key


def frames() -> ModuleType:
    """The DataFrame builders, imported on first use so that opening stays fast."""
    from .. import frames

    return frames


def renamed_part(part: int | str | None, old: int | str | None, call: str,
                 stacklevel: int = 3) -> int | str | None:
    """``part``, or the value of a deprecated spelling of it (``call`` names it, e.g.
    "volume(key=...)"), with a DeprecationWarning when that spelling is used."""
    if old is not None:
        import warnings

        new = call.split("(")[0] + "(part=...)"
        warnings.warn(f"{call} is now {new}", DeprecationWarning, stacklevel=stacklevel)
        if part is None:
            return old
    return part


def part_argument(part: int | str | None, key: int | str | None) -> int | str | None:
    """``part``, or the deprecated ``key=`` spelling of it (with a DeprecationWarning)."""
    part = renamed_part(part, key, "volume(key=...)", stacklevel=4)
    if part is None:
        raise InvalidArgument("say which volume: volume(part) with a partition index or 'vg/lv'")
    return part
