"""Run a snippet against the compiled firmware under the real MicroPython unix port."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.micropython import run_snippet


def run_on_board(micropython_bin: str, build: Path, code: str, **kwargs: Any) -> str:
    return run_snippet(micropython_bin, code, extra_path=[build, build / "lib"], **kwargs)


def json_lines(output: str) -> list[Any]:
    """Every line of the output that is JSON (the snippets print their results that way)."""
    found = []
    for line in output.splitlines():
        if line.startswith(("{", "[")):
            found.append(json.loads(line))
    return found
