"""Run code under the real MicroPython unix port, with the repository importable.

The API is two functions and one error::

    out = run_snippet(micropython_bin, "import shared.protocol as p; print(p.topic('d1', 'ack'))")
    out = run_script(micropython_bin, Path("tests/shared/run_vectors.py"), args=["threshold.json"])

Both return the program's stdout as text and raise :class:`MicroPythonError` (holding stdout,
stderr and the exit status) when the program fails. ``heap_size`` (e.g. ``"48k"``) limits the heap
to a board-like size through ``-X heapsize=``, so code that allocates too much fails with
``MemoryError`` here as it would on a board. ``extra_path`` puts further folders (e.g. a firmware
tree) ahead of the repository on MicroPython's ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

# MICROPYPATH replaces the port's default search path; ".frozen" keeps the modules frozen into the
# binary (asyncio) importable.
_FROZEN = ".frozen"


class MicroPythonError(RuntimeError):
    """The MicroPython program exited with a non-zero status (or ran past its time limit)."""

    def __init__(self, returncode: int | None, stdout: str, stderr: str) -> None:
        status = "timed out" if returncode is None else f"exit status {returncode}"
        super().__init__(f"micropython {status}:\n{stderr.strip() or stdout.strip()[-2000:]}")
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _search_path(extra_path: Sequence[str | os.PathLike[str]]) -> str:
    return os.pathsep.join([*(str(p) for p in extra_path), str(REPO), _FROZEN])


def _run(
    binary: str,
    argv: list[str],
    *,
    heap_size: str | None,
    extra_path: Sequence[str | os.PathLike[str]],
    stdin: str | None,
    timeout_s: float,
    cwd: str | os.PathLike[str] | None,
) -> str:
    cmd = [binary]
    if heap_size:
        cmd += ["-X", "heapsize=" + heap_size]
    cmd += argv
    env = dict(os.environ, MICROPYPATH=_search_path(extra_path))
    try:
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd if cwd is not None else REPO,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise MicroPythonError(None, out, err) from None
    if proc.returncode != 0:
        raise MicroPythonError(proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def run_snippet(
    binary: str,
    code: str,
    *,
    heap_size: str | None = None,
    extra_path: Sequence[str | os.PathLike[str]] = (),
    stdin: str | None = None,
    timeout_s: float = 60.0,
    cwd: str | os.PathLike[str] | None = None,
) -> str:
    """Run ``code`` (Python source text) under MicroPython and return what it printed."""
    return _run(
        binary,
        ["-c", code],
        heap_size=heap_size,
        extra_path=extra_path,
        stdin=stdin,
        timeout_s=timeout_s,
        cwd=cwd,
    )


def run_script(
    binary: str,
    script: str | os.PathLike[str],
    *,
    args: Sequence[str] = (),
    heap_size: str | None = None,
    extra_path: Sequence[str | os.PathLike[str]] = (),
    stdin: str | None = None,
    timeout_s: float = 60.0,
    cwd: str | os.PathLike[str] | None = None,
) -> str:
    """Run a script file under MicroPython (``sys.argv[1:]`` is ``args``); return its stdout."""
    return _run(
        binary,
        [str(script), *args],
        heap_size=heap_size,
        extra_path=extra_path,
        stdin=stdin,
        timeout_s=timeout_s,
        cwd=cwd,
    )
