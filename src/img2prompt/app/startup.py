"""The command line's start and end: Python's cyclic garbage collector waits while a command
loads what it needs, and the process ends without the interpreter's teardown.

Importing torch and loading a model and a bank make ~1M objects that live as long as the
process. With the collector on, `describe one.png` spends ~0.3 s of CPU in ~500 collections
while it starts (the full ones scan every object made so far). So `main` pauses the collector
(`pause_collector`); a command calls `started` once it has loaded what it needs (the wrapper of
every command but those in `cli.STARTS_ITSELF` calls it before the command runs), which freezes
what is alive then (later collections skip it) and turns collecting back on.

At the end, the interpreter would free those objects one by one and run every library's
destructors (~0.15 s of `describe one.png` on a 2-core CPU, even with the collector frozen):
work nobody sees, which the operating system does at once. So `main` ends with `exit_now`: it
does what a person or a script can see of the interpreter's exit (the `atexit` handlers, the
standard streams flushed, the exit status) and then ends the process. Where another thread is
still running, or the command raised, the interpreter's exit runs as usual (`finishing` freezes
what is alive, so its collections do not scan it). Only `main` does this: the Python API, the
web app in tests and `CliRunner` keep the collector and the exit as they were.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import os
import sys
import threading
from typing import NoReturn

_paused = False


def pause_collector() -> None:
    """Hold the cyclic garbage collector off until `started`."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def started() -> None:
    """The command has loaded what it needs: what is alive now (modules, the model, the bank)
    stays, so later collections need not scan it; collecting resumes. A no-op unless
    `pause_collector` paused it."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def finishing() -> None:
    """The command is done and the process ends: the exit's collections need not scan what is
    alive (it is all freed with the process)."""
    gc.freeze()


def exit_now(done: SystemExit) -> NoReturn:
    """End the process with `done`'s status, as the interpreter's exit would but without its
    teardown (module docstring): the `atexit` handlers run, Python's and C's standard streams
    are flushed, and output that could not be written makes the status 120, as Python's own
    exit does (a reader that stopped early, a closed pipe, is no error). Where another thread
    still runs, `done` goes on to the interpreter, which waits for it."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(t.is_alive() and not t.daemon for t in others):
        raise done
    code = done.code
    if code is not None and not isinstance(code, int):  # `sys.exit("message")`
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # what the interpreter runs first; private, but there since 2.x
    status = code or 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
        except (OSError, ValueError) as e:  # a full disk, a stream closed by someone
            with contextlib.suppress(Exception):
                print(f"img2prompt: output not fully written: {e}", file=sys.__stderr__)
            status = status or 120
    with contextlib.suppress(Exception):  # C's buffers: what native libraries printed
        ctypes.CDLL(None).fflush(None)
    os._exit(status)
