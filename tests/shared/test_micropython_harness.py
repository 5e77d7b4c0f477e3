"""The MicroPython test harness runs code under the real unix port and reports failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.micropython import MicroPythonError, run_script, run_snippet


def test_snippet_sees_the_repository_and_returns_stdout(micropython_bin: str) -> None:
    out = run_snippet(
        micropython_bin,
        "import sys, shared.protocol as p\nprint(sys.implementation.name, p.topic('d1', 'ack'))",
    )
    assert out == "micropython tw/v1/d1/ack\n"


def test_frozen_asyncio_stays_importable(micropython_bin: str) -> None:
    assert run_snippet(micropython_bin, "import asyncio; print('ok')") == "ok\n"


def test_failure_raises_with_the_traceback(micropython_bin: str) -> None:
    with pytest.raises(MicroPythonError) as info:
        run_snippet(micropython_bin, "print('before')\nraise ValueError('probe on fire')")
    err = info.value
    assert err.returncode == 1
    assert err.stdout == "before\n"
    assert "ValueError: probe on fire" in err.stderr
    assert "ValueError: probe on fire" in str(err)


def test_heap_size_limits_memory_like_a_board(micropython_bin: str) -> None:
    code = "b = bytearray(40000)\nprint(len(b))"
    assert run_snippet(micropython_bin, code, heap_size="256k") == "40000\n"
    with pytest.raises(MicroPythonError) as info:
        run_snippet(micropython_bin, code, heap_size="32k")
    assert "MemoryError" in info.value.stderr


def test_script_gets_its_arguments_stdin_and_extra_path(
    micropython_bin: str, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "boardlib.py").write_text("NAME = 'from extra path'\n")
    script = tmp_path / "main.py"
    script.write_text(
        "import sys, boardlib\nprint(boardlib.NAME, sys.argv[1:], sys.stdin.read().strip())\n"
    )
    out = run_script(micropython_bin, script, args=["a", "b"], extra_path=[lib], stdin="hello\n")
    assert out == "from extra path ['a', 'b'] hello\n"


def test_a_hanging_program_is_stopped(micropython_bin: str) -> None:
    with pytest.raises(MicroPythonError) as info:
        run_snippet(micropython_bin, "print('started')\nwhile True:\n    pass", timeout_s=0.5)
    assert info.value.returncode is None
    assert "timed out" in str(info.value)
