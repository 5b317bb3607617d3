"""A small least-recently-used cache for decoded metadata tables (L2 tables, grain tables)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """Keeps the ``capacity`` most recently used values; ``get(key, load)`` fills misses."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = max(1, int(capacity))
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        items = self._items
        try:
            value = items[key]
        except KeyError:
            self.misses += 1
            value = load()
            items[key] = value
            if len(items) > self.capacity:
                items.popitem(last=False)
            return value
        self.hits += 1
        items.move_to_end(key)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
