"""The command line's start and end: Python's cyclic garbage collector waits while a command
loads what it needs, and the objects alive at the end are not scanned on the way out.

Importing torch and loading a model and a bank make ~1M objects that live as long as the
process. With the collector on, `describe one.png` spends ~0.3 s of CPU in ~500 collections
while it starts (the full ones scan every object made so far), and the interpreter's exit scans
them all again in its own full collections (~0.5 s; both on a 2-core CPU). So `main` pauses
the collector (`pause_collector`); a command calls `started` once it has loaded what it needs
(the wrapper of every command but those in `cli.STARTS_ITSELF` calls it before the command
runs), which freezes what is alive then (later collections skip it) and turns collecting back
on; and `main` freezes what is alive when the command ends (`finishing`), so the exit does not
scan it. Only `main` pauses: the Python API, the web app in tests and `CliRunner` keep the
collector as it was.
"""

from __future__ import annotations

import gc

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
