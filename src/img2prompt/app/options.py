"""The command line and `--config` files, generated from the library's options dataclasses
(`img2prompt.fields` says how a field is spelled; each component's `options.py` holds its own).

Why a small generator over typer rather than jsonargparse (litgpt's choice) or tyro: both spell a
nested field only dotted (`--decode.mode`), and jsonargparse spells bools with a value
(`--words false`), while the commands here spell nested options flat (`--mode`, `--head`) and
bools as switches (`--no-words`, `--compile/--no-compile`); typer already gives the help pages and
error handling. So this module reads each field's type (`Literal` -> choices), default and
attribute docstring, and writes typer parameters: a list of numbers is comma-separated
(`--k-grid 1,2,4`), a list of anything else repeats the option (`--text A --text B`). A
`--config` YAML file gives values under any spelling (flat, dotted or nested, `-` or `_`), and
options typed on the command line win over it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING
from pathlib import Path
from typing import Any, get_args, get_origin

from img2prompt.app.startup import started
from img2prompt.errors import ConfigError, InputError
from img2prompt.fields import Spec, build_options, load_options_file, specs

CONFIG_HELP = "YAML file of option: value (flat, dotted or nested keys); options given win."


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


# --- typer commands ----------------------------------------------------------------------------


def command(
    cls: type,
    run: Callable[..., None],
    *,
    doc: str,
    quiet: bool = True,
    config_flags: tuple[str, ...] = ("--config",),
    starts_itself: bool = False,
) -> Callable[..., None]:
    """A typer command function whose parameters are `cls`'s fields; it builds the options (file
    values, then the options given) and calls `run(options, quiet=...)` (or `run(options)`).
    Unless `starts_itself` (`run` calls `startup.started` once loaded), the command's start ends
    before `run`."""
    parameters = [p for spec in specs(cls) for p in _parameters(spec)]
    parameters += _extra_parameters(quiet, config_flags)

    def function(**kwargs: Any) -> None:
        file, be_quiet = kwargs.pop("config", None), kwargs.pop("quiet", False)
        values = guarded(load_options_file, file, cls) if file else {}
        for spec in specs(cls):
            value = _given(kwargs.get(spec.name), kwargs.get(_twin(spec)))
            if value is not None:
                values[spec.key] = _typed(spec, value)
        try:
            options = build_options(cls, values)
        except (TypeError, ValueError) as e:
            raise typer_bad_parameter(str(e)) from None
        if not starts_itself:
            started()
        guarded(run, options, quiet=be_quiet) if quiet else guarded(run, options)

    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in parameters}
    function.__doc__ = doc
    function.__name__ = getattr(run, "__name__", cls.__name__)
    return function


def _parameters(spec: Spec) -> list[inspect.Parameter]:
    """A field's typer parameters: its visible spelling, and a hidden twin for the dotted one
    (`--model.head`) of a nested field, so `--help` stays readable at 80 columns."""
    import typer

    kind = str if _number_list(spec) else spec.kind  # `--k-grid 1,2,4`; typer: Literal -> choices
    visible = tuple(f for f in spec.flags if "." not in f) or spec.flags
    hidden = tuple(f for f in spec.flags if f not in visible)
    found = []
    for name, flags, hide in ((spec.name, visible, False), (_twin(spec), hidden, True)):
        if not flags:
            continue
        if kind is bool:
            flags = tuple(f"{f}/{_negated(f)}" for f in flags)
        if spec.positional:
            info = typer.Argument(help=spec.doc, show_default=False, metavar=name.upper())
        else:
            help_text = _with_default(spec.doc, show_default(spec))
            info = typer.Option(*flags, help=help_text, show_default=False, hidden=hide)
        annotation = typing.Annotated[kind | None, info]
        found.append(_keyword(name, None, annotation))
    return found


def _extra_parameters(quiet: bool, config_flags: tuple[str, ...]) -> list[inspect.Parameter]:
    import typer

    config = typing.Annotated[Path | None, typer.Option(*config_flags, help=CONFIG_HELP)]
    extras = [_keyword("config", None, config)]
    if quiet:
        switch = typing.Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")]
        extras.append(_keyword("quiet", False, switch))
    return extras


def _keyword(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _given(*values: Any) -> Any:
    """The first value typed (typer gives None, or an empty tuple for a repeatable option)."""
    return next((v for v in values if v is not None and v != () and v != []), None)


def _typed(spec: Spec, value: Any) -> Any:
    """A typed value as the options take it: comma-separated numbers split, tuples as lists."""
    if element := _number_list(spec):
        try:
            return [element(x) for x in value.split(",") if x.strip()]
        except ValueError:
            message = f"{spec.flags[0]} takes comma-separated numbers, got {value!r}"
            raise typer_bad_parameter(message) from None
    return list(value) if isinstance(value, tuple | list) else value


def typer_bad_parameter(message: str) -> Exception:
    import typer

    return typer.BadParameter(message)


def _twin(spec: Spec) -> str:
    """The parameter name of a field's hidden dotted spelling."""
    return spec.name + "__dotted"


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
    except BrokenPipeError:  # the reader of our output left (`| head`): click ends quietly
        raise
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
