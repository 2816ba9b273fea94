"""Named factories, the one way to extend img2prompt (timm style): a backbone, a head, a pooling
or a loss is a function or class decorated with its registry's `register(name)`; configs name it
by string.

A name is registered once (a second registration is an error, so two plugins cannot silently
replace each other), and an unknown name is a ConfigError that lists the known ones. This module
knows nothing about what it holds: `models/backbones.py`, `models/heads.py`, `models/pooling.py`,
`train/losses.py` and `text/strategies.py` each own their registry, so no registry imports the
modules that fill it.

An entry carries its own hyperparameters: every parameter with a default that can be passed by
keyword (`def mlp_head(in_dim, out_dim, *, hidden: int = 16 * 1024)`) is an option, typed by its
annotation (a number whose default is positive must stay positive). Options reach an entry as
text (`--head-options hidden=4096`), parsed by `parse_options` and converted by
`Registry.resolve`, so a new entry needs no new config field.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from img2prompt.errors import ConfigError

T = TypeVar("T")

TEXT_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}
"""The option types a value given as text converts to (by annotation, else by the default)."""
TRUE, FALSE = ("true", "1"), ("false", "0")


@dataclass(frozen=True)
class Option:
    """One declared hyperparameter of a registry entry."""

    name: str
    kind: type | None  # bool, int, float or str; None: only a Python object can set it
    default: Any

    def __str__(self) -> str:
        return f"{self.name}={self.default}"


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        """What the entries are, for messages: `backbone`, `head`, `pooling`, `loss`."""
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

    def options(self, name: str) -> dict[str, Option]:
        """The options `name` declares, in its signature's order, with their defaults."""
        return declared_options(self.get(name))

    def resolve(
        self, name: str, options: str | Mapping[str, Any] = "", flag: str = ""
    ) -> dict[str, Any]:
        """`options` (text `key=value,...` or a mapping) as keyword arguments of `name`, each
        converted to its declared type. A ConfigError (prefixed by `flag`, the option a user
        typed) names the entry and lists its options for an unknown name, and names the option
        for a value of the wrong type."""
        declared = self.options(name)
        given = parse_options(options, flag) if isinstance(options, str) else dict(options)
        prefix = f"{flag}: " if flag else ""
        resolved = {}
        for key, value in given.items():
            if key not in declared:
                known = ", ".join(map(str, declared.values())) or "none"
                hint = f" ({flag} '' drops options meant for another {self.kind})" if flag else ""
                raise ConfigError(
                    f"{prefix}{self.kind} {name!r} has no option {key!r}; its options: {known}"
                    + hint
                )
            resolved[key] = _convert(declared[key], value, f"{prefix}{self.kind} {name!r}")
            _check_sign(declared[key], resolved[key], f"{prefix}{self.kind} {name!r}")
        return resolved

    def build(
        self, name: str, *args: Any, options: str | Mapping[str, Any] = "", flag: str = ""
    ) -> Any:
        """Call entry `name` with `args` and its `options` (as `resolve` converts them)."""
        return self.get(name)(*args, **self.resolve(name, options, flag))  # type: ignore[operator]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def declared_options(entry: Callable[..., Any]) -> dict[str, Option]:
    """An entry's options: the parameters with defaults that can be passed by keyword."""
    try:  # resolve `from __future__ import annotations` strings to types where possible
        signature = inspect.signature(entry, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        signature = inspect.signature(entry)
    found = {}
    for parameter in signature.parameters.values():
        keyword = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        if not keyword or parameter.default is parameter.empty:
            continue
        kind = parameter.annotation
        kind = TEXT_TYPES.get(kind, kind) if isinstance(kind, str) else kind
        if kind not in TEXT_TYPES.values():  # no usable annotation: the default's type, if plain
            kind = type(parameter.default)
            kind = kind if kind in TEXT_TYPES.values() else None
        found[parameter.name] = Option(parameter.name, kind, parameter.default)
    return found


def _convert(option: Option, value: Any, entry: str) -> Any:
    """`value` (text, or a Python value) as `option`'s type; a ConfigError names the option."""
    kind = option.kind
    if not isinstance(value, str):  # from Python or a YAML mapping: its own type must fit
        if kind is None or type(value) is kind or (kind is float and type(value) is int):
            return float(value) if kind is float else value
        value = str(value)  # checked as text below (True is no int, 2.5 no whole number)
    if kind is str:
        return value
    text = value.strip().lower()
    if kind is bool and text in TRUE + FALSE:
        return text in TRUE
    try:
        if kind is int:
            return int(text)
        if kind is float and math.isfinite(number := float(text)):
            return number
    except ValueError:
        pass
    if kind is None:
        raise ConfigError(f"{entry}: option {option.name!r} cannot be given as text")
    wanted = {bool: "true/false/1/0", int: "a whole number", float: "a finite number"}[kind]
    raise ConfigError(f"{entry}: option {option.name!r} takes {wanted}, got {value!r}")


def _check_sign(option: Option, value: Any, entry: str) -> None:
    """A number whose default is positive (a width, an exponent, a scale) must stay positive,
    so `hidden=0` fails when the config is made, not when the model is built."""

    def number(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool)

    if number(option.default) and option.default > 0 and number(value) and value <= 0:
        raise ConfigError(
            f"{entry}: option {option.name!r} must be > 0 (default {option.default}), got {value}"
        )


def parse_options(text: str, flag: str = "") -> dict[str, str]:
    """`key=value,key=value` -> {key: value} (text values; keys may be dotted, `mnrl.scale`).
    Blanks around parts are ignored; a part without `=` or a key given twice is a ConfigError."""
    prefix = f"{flag}: " if flag else ""
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, equals, value = (s.strip() for s in part.partition("="))
        if not equals or not key:
            raise ConfigError(f"{prefix}write key=value pairs separated by commas, got {part!r}")
        if key in found:
            raise ConfigError(f"{prefix}{key!r} is given twice")
        found[key] = value
    return found


def format_options(values: Mapping[str, Any]) -> str:
    """{key: value} -> `key=value,key=value` (what `parse_options` reads back)."""
    return ",".join(
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in values.items()
    )
