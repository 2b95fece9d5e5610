"""A registry of named entries (schedules, executors, routing models, topologies): register by name, look up by
name with one clear error naming the known ones. In the lowest layer so that every layer can use it.

A :class:`Registry` is a dict (``name in r``, ``list(r)``, ``r.items()`` work as for any dict) that refuses to
register a name twice, so two entries can never silently replace each other.
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


class Registry(dict):
    """Entries by name. ``unknown`` is the error message for a name not registered, formatted with ``name`` and
    ``known`` (the registered names, comma-separated; sorted unless ``sort`` is false); ``error`` its type."""

    def __init__(self, unknown: str, error: type[Exception] = KeyError, sort: bool = True):
        super().__init__()
        self.unknown, self.error, self.sort = unknown, error, sort

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name``; returns it (so this works as a decorator's body)."""
        if name in self:
            raise ValueError(f"{name!r} is registered twice")
        self[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@r.register("name")`` registers what it decorates."""
        return lambda entry: self.add(name, entry)

    def names(self) -> list[str]:
        return sorted(self) if self.sort else list(self)

    def lookup(self, name: str):
        """The entry registered as ``name``; raises ``error(unknown)`` naming the known ones."""
        if name not in self:
            raise self.error(self.unknown.format(name=name, known=", ".join(self.names())))
        return self[name]
