"""Options dataclasses: how their fields are spelled, built from values, and checked.

Each library component keeps its options beside its code (`data/options.py`, `train/options.py`,
...), typed dataclasses whose field docstrings are the help text. This module is what they share:
- the spellings of a field (`specs`): `--field-name`; a field of a nested config
  (`TrainConfig.model.head`) flat (`--head`) and dotted (`--model.head`), the first declared
  keeping the flat one where two share a name; field metadata may rename the flat spelling
  (`"flat"`), keep a field off the command line (`"cli": False`; a class's `CLI_HIDDEN` names
  nested ones) or make it positional (`POSITIONAL`);
- building an instance from flat, dotted or nested values, or a YAML recipe (`build_options`,
  `load_options_file`), as the command line and `TrainConfig.of` do;
- the generic checks: a `Literal` field's choices are checked from its type (`check_choices`),
  never restated by hand.
`app/options.py` turns the specs into the command line. Imports nothing heavy: `img2prompt
--help` reads every options module.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import sys
import textwrap
import types
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from img2prompt.errors import ConfigError, InputError

NONE = type(None)

POSITIONAL = {"positional": True}
"""Field metadata: the option is a positional argument (`predict MODEL IMAGES...`)."""


def flag(name: str) -> str:
    """The command-line spelling of a field name (`min_words` -> `--min-words`)."""
    return "--" + name.replace("_", "-")


def literal_choices(kind: Any) -> tuple[Any, ...] | None:
    """The values a `Literal` (or `Literal | None`, or a union of Literals) allows; None for any
    other type."""
    if get_origin(kind) is Literal:
        return tuple(value for arg in get_args(kind) for value in literal_choices(arg) or (arg,))
    if get_origin(kind) in (typing.Union, types.UnionType):
        parts = [literal_choices(arg) for arg in get_args(kind) if arg is not type(None)]
        if parts and all(part is not None for part in parts):
            return tuple(value for part in parts for value in part)  # type: ignore[union-attr]
    return None


@functools.cache
def _choice_fields(cls: type) -> tuple[tuple[str, tuple[Any, ...], bool], ...]:
    hints = typing.get_type_hints(cls)
    found = []
    for f in fields(cls):
        choices = literal_choices(hints[f.name])
        if choices is not None:
            optional = type(None) in get_args(hints[f.name])
            found.append((f.name, choices, optional))
    return tuple(found)


def check_choices(options: Any) -> None:
    """Refuse a value a `Literal` field does not allow, naming the option and its choices (the
    type is the one statement of the choices; Python does not check it at run time)."""
    for name, choices, optional in _choice_fields(type(options)):
        value = getattr(options, name)
        if value not in choices and not (optional and value is None):
            allowed = ", ".join(map(str, choices))
            raise ConfigError(f"{flag(name)} must be one of {allowed}, got {value!r}")


def at_least(minimum: int, **values: float | None) -> None:
    """Refuse any given value below `minimum`, naming its option."""
    for name, value in values.items():
        if value is not None and not value >= minimum:
            raise ConfigError(f"{flag(name)} must be >= {minimum}, got {value}")


def unit_interval(**values: float) -> None:
    """Refuse a cosine threshold outside (0, 1], naming its option."""
    for name, value in values.items():
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"{flag(name)} must be a cosine in (0, 1], got {value}")


# --- spellings and building -------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One field as the command line sees it."""

    path: tuple[str, ...]  # ("model", "head")
    flags: tuple[str, ...]  # ("--head", "--model.head")
    kind: Any  # the field's type without `| None` (a Literal, list[...], bool, int, Path...)
    default: Any  # MISSING when required
    doc: str
    positional: bool

    @property
    def name(self) -> str:  # the Python parameter name
        return "__".join(self.path)

    @property
    def key(self) -> str:
        return ".".join(self.path)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string right under each field)."""
    found = _top_level_classes(cls.__module__).get(cls.__qualname__)
    if found is None:  # a class defined elsewhere than at a module's top level
        found = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(found.body):  # type: ignore[attr-defined]
        is_field = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if is_field and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


@functools.cache
def _top_level_classes(module: str) -> dict[str, ast.stmt]:
    """A module's top-level classes, its source parsed once for all of them: the command line
    reads ~26 options classes from ~10 modules at every start, and `inspect.getsource` parses
    the whole module again for each class."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[module]))
    except (KeyError, OSError, TypeError):  # no module object or no source: class by class
        return {}
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _strip_none(kind: Any) -> Any:
    if get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in get_args(kind) if a is not NONE]
        return rest[0] if len(rest) == 1 else kind
    return kind


@functools.cache
def specs(cls: type) -> tuple[Spec, ...]:
    """Every command-line field of `cls`, nested configs flattened, in declaration order."""
    found: list[tuple[tuple[str, ...], str, Any, Any, str, bool]] = []

    def walk(cls: type, prefix: tuple[str, ...], defaults: Any) -> None:
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli") is False or ".".join((*prefix, f.name)) in hidden:
                continue
            kind = _strip_none(hints[f.name])
            default = f.default
            if f.default_factory is not MISSING:
                default = f.default_factory()
            if defaults is not None:
                default = getattr(defaults, f.name)
            if dataclasses.is_dataclass(kind):
                walk(kind, (*prefix, f.name), default if default is not MISSING else None)
                continue
            flat = f.metadata.get("flat", f.name)
            positional = bool(f.metadata.get("positional"))
            found.append(((*prefix, f.name), flat, kind, default, docs.get(f.name, ""), positional))

    hidden = getattr(cls, "CLI_HIDDEN", ())
    walk(cls, (), None)
    taken = {flat for path, flat, *_ in found if len(path) == 1}
    result = []
    for path, flat, kind, default, doc, positional in found:
        flags = []
        if len(path) == 1 or flat not in taken:
            flags.append("--" + flat.replace("_", "-"))
            taken.add(flat)
        if len(path) > 1:
            flags.append("--" + ".".join(p.replace("_", "-") for p in path))
        result.append(Spec(path, tuple(flags), kind, default, doc, positional))
    return tuple(result)


def spellings(cls: type) -> dict[str, Spec]:
    """Every key a value may be given under (dotted, flat, `_` for `-`) -> its field."""
    table: dict[str, Spec] = {}
    for spec in specs(cls):
        table[spec.key] = spec
        for flag in spec.flags:
            table.setdefault(flag[2:].replace("-", "_"), spec)
    return table


def normalise(cls: type, values: dict, source: str | Path | None = None) -> dict[str, Any]:
    """Flat, dotted or nested values -> {dotted key: value}; an unknown key is an error."""
    lookup, out, unknown = spellings(cls), {}, []

    def walk(mapping: dict, prefix: str) -> None:
        for raw, value in mapping.items():
            key = prefix + str(raw).replace("-", "_")
            if isinstance(value, dict) and key not in lookup:
                walk(value, key + ".")
            elif key in lookup:
                out[lookup[key].key] = value
            else:
                unknown.append(key)

    walk(values, "")
    if unknown:
        message = f"unknown keys {sorted(unknown)}; known: {sorted(s.key for s in specs(cls))}"
        raise InputError(source, message) if source else ConfigError(message)
    return out


def load_options_file(path: Path, cls: type) -> dict[str, Any]:
    """A YAML config (a recipe) as {dotted key: value} for `cls`; errors name the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such config file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise InputError(path, f"not valid YAML: {e}", None if line is None else line + 1) from None
    if not isinstance(values, dict):
        raise InputError(path, "a config file is a mapping of option: value")
    return normalise(cls, values, path)


def build_options(cls: type, values: dict) -> Any:
    """An instance of `cls` from flat, dotted or nested values; required fields that are missing
    are named as options (`missing --data, --out`)."""
    values = normalise(cls, values)
    missing = [s for s in specs(cls) if s.default is MISSING and s.key not in values]
    if missing:
        names = [s.name.upper() if s.positional else s.flags[0] for s in missing]
        raise ConfigError(f"missing {', '.join(names)} (give them or a --config file)")

    def make(cls: type, prefix: str, base: Any = None) -> Any:
        hints, kwargs = typing.get_type_hints(cls), {}
        for f in dataclasses.fields(cls):
            key, kind = prefix + f.name, _strip_none(hints[f.name])
            if dataclasses.is_dataclass(kind) and any(k.startswith(key + ".") for k in values):
                # A nested default (describe's DecodeOptions(neighbors=3)) keeps its own values.
                nested = f.default_factory() if f.default_factory is not MISSING else None
                kwargs[f.name] = make(kind, key + ".", nested)
            elif key in values:
                kwargs[f.name] = values[key]
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)

    return make(cls, "")
