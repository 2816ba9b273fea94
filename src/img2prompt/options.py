"""The command line and `--config` files, generated from the config dataclasses (`config.py`).

Why a small generator over typer rather than jsonargparse (litgpt's choice): jsonargparse
spells fields with underscores (`--min_words`) and bool fields take a value (`--words false`),
while every spelling README.md documents (`--min-words`, `--no-words`, `--compile/--no-compile`,
`-q`) must keep working; typer already gives the help pages and error handling. So this module
reads each field's type (`Literal` -> choices), default and attribute docstring, and writes typer
parameters.

Spellings: a field is `--field-name`; a list of numbers is comma-separated (`--k-grid 1,2,4`),
a list of anything else repeats the option (`--text A --text B`). A field of a nested config
(`TrainConfig.model.head`) is spelled flat (`--head`) and dotted (`--model.head`); where two
nested configs share a name, the one declared first keeps the flat spelling (describe:
`--batch-size` is prediction's, decoding's is `--decode.batch-size`). Field metadata may rename
the flat spelling (`"flat"`), keep a field off the command line (`"cli": False`; a config's
`CLI_HIDDEN` names nested ones), make it positional (`config.POSITIONAL`) or keep a former
name working for a release (`"aliases"`: hidden flags and YAML keys that print a deprecation
note; `"deprecated"`: a whole field kept hidden, its note saying what replaces it). A
`--config` YAML file gives values under any of these spellings (flat, dotted or nested, `-` or
`_`), and options typed on the command line win over it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from img2prompt.errors import ConfigError, InputError

NONE = type(None)


@dataclass(frozen=True)
class Spec:
    """One field as the command line sees it."""

    path: tuple[str, ...]  # ("model", "head")
    flags: tuple[str, ...]  # ("--head", "--model.head")
    kind: Any  # the field's type without `| None` (a Literal, list[...], bool, int, Path...)
    default: Any  # MISSING when required
    doc: str
    positional: bool
    aliases: tuple[str, ...] = ()  # deprecated flags (`--approx` for `--search`)
    deprecated: str = ""  # a deprecated field: what to write instead (hidden from `--help`)

    @property
    def name(self) -> str:  # the Python parameter name
        return "__".join(self.path)

    @property
    def key(self) -> str:
        return ".".join(self.path)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string right under each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body, docs = tree.body[0].body, {}
    for node, after in itertools.pairwise(body):
        is_field = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if is_field and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def _strip_none(kind: Any) -> Any:
    if get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in get_args(kind) if a is not NONE]
        return rest[0] if len(rest) == 1 else kind
    return kind


def specs(cls: type) -> tuple[Spec, ...]:
    """Every command-line field of `cls`, nested configs flattened, in declaration order
    (deprecated fields left out: they are `deprecated_specs`)."""
    return tuple(spec for spec in all_specs(cls) if not spec.deprecated)


def deprecated_specs(cls: type) -> tuple[Spec, ...]:
    """The deprecated fields of `cls`: still read from flags and files, hidden from `--help`."""
    return tuple(spec for spec in all_specs(cls) if spec.deprecated)


@functools.cache
def all_specs(cls: type) -> tuple[Spec, ...]:
    """Every command-line field of `cls`, deprecated ones included."""
    found: list[tuple[tuple[str, ...], str, Any, Any, str, bool, tuple[str, ...], str]] = []

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
            old = f.metadata.get("aliases", ())  # flat and, for a nested field, dotted
            paths = dict.fromkeys(p for name in old for p in ((name,), (*prefix, name)))
            aliases = tuple("--" + ".".join(p.replace("_", "-") for p in path) for path in paths)
            found.append(((*prefix, f.name), flat, kind, default, docs.get(f.name, ""),
                          bool(f.metadata.get("positional")), aliases,
                          f.metadata.get("deprecated", "")))  # fmt: skip

    hidden = getattr(cls, "CLI_HIDDEN", ())
    walk(cls, (), None)
    taken = {flat for path, flat, *_ in found if len(path) == 1}
    result = []
    for path, flat, kind, default, doc, positional, aliases, deprecation in found:
        flags = []
        if len(path) == 1 or flat not in taken:
            flags.append("--" + flat.replace("_", "-"))
            taken.add(flat)
        if len(path) > 1:
            flags.append("--" + ".".join(p.replace("_", "-") for p in path))
        result.append(
            Spec(path, tuple(flags), kind, default, doc, positional, aliases, deprecation)
        )
    return tuple(result)


def show_default(spec: Spec) -> str | None:
    """The default as `--help` shows it (None: nothing to show)."""
    value = spec.default
    if value is MISSING or value is None or value in ([], ""):
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _number_list(spec: Spec) -> type | None:
    """int or float for a `list[int]`/`list[float]` option, spelled comma-separated."""
    if spec.positional or get_origin(spec.kind) is not list:
        return None
    (element,) = get_args(spec.kind)
    return element if element in (int, float) else None


# --- values: files, spellings, building ---------------------------------------------------------


def spellings(cls: type) -> dict[str, Spec]:
    """Every key a value may be given under (dotted, flat, `_` for `-`) -> its field."""
    table: dict[str, Spec] = {}
    for spec in all_specs(cls):
        table[spec.key] = spec
        for flag in (*spec.flags, *spec.aliases):
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
                if "--" + key.replace("_", "-") in lookup[key].aliases:
                    deprecated("--" + key.replace("_", "-"), lookup[key].flags[0])
            else:
                unknown.append(key)

    walk(values, "")
    if unknown:
        message = f"unknown keys {sorted(unknown)}; known: {sorted(s.key for s in specs(cls))}"
        raise InputError(source, message) if source else ConfigError(message)
    return out


def load_config_file(path: Path, cls: type) -> dict[str, Any]:
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
    values = normalise(cls, values, path)
    for spec in deprecated_specs(cls):
        if spec.key in values:
            deprecated(f"{path}: {spec.key}", spec.deprecated)
    return values


def build_config(cls: type, values: dict) -> Any:
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


# --- typer commands -----------------------------------------------------------------------------


def command(cls: type, run, *, doc: str, quiet: bool = True, config_flags=("--config",)):
    """A typer command function whose parameters are `cls`'s fields; it builds the config (file
    values, then the options given) and calls `run(cfg, quiet=...)` (or `run(cfg)`)."""
    import typer

    parameters, annotations = [], {}
    for spec in all_specs(cls):  # deprecated fields too, as hidden flags
        kind = spec.kind  # typer makes a Literal into choices
        if _number_list(spec):
            kind = str  # `--k-grid 1,2,4`
        # `--help` lists the short spelling; a nested field's dotted one (`--model.head`) works
        # too but is a hidden twin parameter, so the help stays readable at 80 columns.
        visible = tuple(f for f in spec.flags if "." not in f) or spec.flags
        hidden = tuple(f for f in spec.flags if f not in visible)
        shown = show_default(spec)
        groups = ((spec.name, visible, False), (_twin(spec), hidden, True),
                  (_alias(spec), spec.aliases, True))  # fmt: skip
        for name, flags, hide in groups:
            if not flags:
                continue
            if kind is bool:
                flags = tuple(f"{f}/{_negated(f)}" for f in flags)
            if spec.positional:
                info = typer.Argument(help=spec.doc, show_default=False, metavar=name.upper())
            else:
                info = typer.Option(*flags, help=_with_default(spec.doc, shown), show_default=False,
                                    hidden=hide or bool(spec.deprecated))  # fmt: skip
            annotation = typing.Annotated[kind | None, info]
            annotations[name] = annotation
            parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                                default=None, annotation=annotation))  # fmt: skip
    config_help = "YAML file of option: value (flat, dotted or nested keys); options given win."
    config_option = typer.Option(*config_flags, help=config_help)
    extras = {"config": typing.Annotated[Path | None, config_option]}
    if quiet:
        extras["quiet"] = typing.Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")]
    for name, annotation in extras.items():
        annotations[name] = annotation
        default = False if name == "quiet" else None
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                            default=default, annotation=annotation))  # fmt: skip

    def function(**kwargs: Any) -> None:
        file, be_quiet = kwargs.pop("config", None), kwargs.pop("quiet", False)
        values = guarded(load_config_file, file, cls) if file else {}
        for spec in all_specs(cls):
            value = kwargs.get(spec.name)
            if value is None or value == () or value == []:
                value = kwargs.get(_twin(spec))
            if (value is None or value == () or value == []) and spec.aliases:
                value = kwargs.get(_alias(spec))
                if value is not None and value != () and value != []:
                    deprecated(spec.aliases[0], spec.flags[0])  # the flat one: the likeliest typed
            if value is None or value == () or value == []:
                continue
            if spec.deprecated:
                deprecated(spec.flags[0], spec.deprecated)
            if element := _number_list(spec):
                try:
                    value = [element(x) for x in value.split(",") if x.strip()]
                except ValueError:
                    message = f"{spec.flags[0]} takes comma-separated numbers, got {value!r}"
                    raise typer.BadParameter(message) from None
            values[spec.key] = list(value) if isinstance(value, tuple | list) else value
        try:
            cfg = build_config(cls, values)
        except (TypeError, ValueError) as e:
            raise typer.BadParameter(str(e)) from None
        guarded(run, cfg, quiet=be_quiet) if quiet else guarded(run, cfg)

    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__annotations__ = annotations
    function.__doc__ = doc
    function.__name__ = getattr(run, "__name__", cls.__name__)
    return function


def _twin(spec: Spec) -> str:
    """The parameter name of a field's hidden dotted spelling."""
    return spec.name + "__dotted"


def _alias(spec: Spec) -> str:
    """The parameter name of a field's deprecated spellings."""
    return spec.name + "__alias"


def deprecated(old: str, new: str) -> None:
    """Say once per use that a spelling is deprecated (stderr, so piped output stays clean)."""
    from img2prompt.progress import stderr

    stderr.print(f"note: {old} is deprecated; use {new}", highlight=False, soft_wrap=True)


def _negated(flag: str) -> str:
    """--words -> --no-words; --decode.cleanup -> --decode.no-cleanup."""
    *prefix, name = flag[2:].split(".")
    return "--" + ".".join([*prefix, "no-" + name])


def guarded(function, *args, **kwargs):
    """Run a step; a bad input or setting (InputError, ConfigError), or a path the system will
    not read or write (OSError: a folder where a file goes, no permission, a full disk), becomes
    one clear line and exit code 2, not a traceback (IMG2PROMPT_DEBUG=1 shows it). Any other
    exception is a bug and keeps its traceback."""
    import os

    import typer

    try:
        return function(*args, **kwargs)
    except (InputError, ConfigError, OSError) as e:
        if os.environ.get("IMG2PROMPT_DEBUG"):
            raise
        from rich.markup import escape

        from img2prompt.progress import stderr

        message = str(e)
        if isinstance(e, OSError):  # "PATH: Is a directory", not the errno tuple
            path = e.filename2 or e.filename  # a rename's destination, not our temporary file
            message = f"{path}: {e.strerror}" if path and e.strerror else message
        stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _with_default(doc: str, shown: str | None) -> str:
    """Help text ending in the default as typed on the command line (typer would print a string
    default in parentheses: `(auto)`)."""
    return doc if shown is None else f"{doc}  [default: {shown}]"
