"""Named factories, the one way to extend img2prompt (timm style): a backbone, a head or a loss is
a function or class decorated with its registry's `register(name)`; configs name it by string.

A name is registered once (a second registration is an error, so two plugins cannot silently
replace each other), and an unknown name is a ConfigError that lists the known ones. This module
knows nothing about what it holds: `models/backbones.py`, `models/heads.py` and
`train/losses.py` each own their registry, so no registry imports the modules that fill it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from img2prompt.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        """What the entries are, for messages: `backbone`, `head`, `loss`."""
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register a factory under `name`, returning it unchanged."""

        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return decorate

    def get(self, name: str, where: str = "") -> T:
        """The entry named `name`; `where` (e.g. ` in 'spec'`) is added to the error."""
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}{where}; known: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
