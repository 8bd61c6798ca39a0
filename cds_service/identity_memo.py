"""Values worked out from long-lived objects (an app's knowledge, its card text), kept per
identity of those objects.

Such objects are neither hashable nor cheap to compare, and each app has its own: the key is
their ids, and the objects themselves are kept with the value, so an id is never taken for a
later object's that reuses it. Bounded: past ``max_entries`` it starts again (tests build many apps).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from operator import is_not
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._kept: dict[tuple[Hashable, ...], tuple[tuple[Any, ...], V]] = {}

    def get(self, objects: tuple[Any, ...], build: Callable[[], V], *extra: Hashable) -> V:
        """The value for ``objects`` (by identity) and ``extra`` (by equality), built once."""
        key = (*map(id, objects), *extra)
        kept = self._kept.get(key)
        # any(map(is_not, ...)): the identity check in C (a generator was most of a hit's cost)
        if kept is None or len(kept[0]) != len(objects) or any(map(is_not, kept[0], objects)):
            if len(self._kept) >= self.max_entries:
                self._kept.clear()
            kept = self._kept[key] = (objects, build())
        return kept[1]

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        self._kept.clear()
