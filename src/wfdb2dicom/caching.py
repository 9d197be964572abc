"""Caches for values derived from objects shared across records.

The batch reads thousands of records of one layout; the header parser hands every one of them
the same channel tuple (:class:`~wfdb2dicom.header.SignalLayout`), so what follows from the
channels can be found by the tuple's identity instead of by hashing twelve channel
definitions for every record, as ``functools.lru_cache`` would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def identity_cache(maxsize: int = 256) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Cache ``func(shared, *args)`` by the identity of ``shared`` and the value of ``args``.

    Each entry keeps ``shared`` alive, so its id cannot be reused by another object while
    the entry exists; the cache is emptied when full (layouts are few). Put it over an
    ``lru_cache`` when equal objects must give the same (identical) result.
    """

    def decorate(func: Callable[..., T]) -> Callable[..., T]:
        entries: dict[tuple, tuple[Any, T]] = {}

        @functools.wraps(func)
        def cached(shared: Any, *args: Any) -> T:
            key = (id(shared), *args)
            entry = entries.get(key)
            if entry is None or entry[0] is not shared:
                if len(entries) >= maxsize:
                    entries.clear()
                entry = entries[key] = (shared, func(shared, *args))
            return entry[1]

        cached.cache_clear = entries.clear  # type: ignore[attr-defined]
        return cached

    return decorate
