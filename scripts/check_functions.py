"""Fail when a function in the library is longer than 60 lines (`make lint` runs it).

ruff checks the rest of the size rules (PLR0917: at most 6 positional parameters; PLR0915:
statements), but it has no rule for a function's length in lines, so this counts them: from the
first decorator to the last line, docstring included.

    python scripts/check_functions.py src [--max-lines 60]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

MAX_LINES = 60


def long_functions(root: Path, max_lines: int = MAX_LINES) -> list[str]:
    """`path:line name (N lines)` for every function or method over `max_lines`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > max_lines:
                    found.append(f"{path}:{node.lineno} {node.name} ({length} lines)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    found = [line for root in args.roots for line in long_functions(root, args.max_lines)]
    for line in found:
        print(f"{line} > {args.max_lines}: split it into named steps")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
