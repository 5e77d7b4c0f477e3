"""Run the firmware as a board would: the unix-port build in a folder playing the board's flash.

:class:`UnixBoard` copies a build (``thermowatch firmware build --board unix``) and a
``config.json`` into its folder and runs ``main.py`` under the real MicroPython binary with a
64 KB heap, as a subprocess the test can SIGKILL and start again (a simulated reboot).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

HEAP = "64k"


def board_env(root: Path) -> dict[str, str]:
    return dict(os.environ, MICROPYPATH=f"{root}:{root / 'lib'}:.frozen")


class UnixBoard:
    """One simulated board: its flash folder, config and process."""

    def __init__(self, micropython: str, build: Path, root: Path, config: dict[str, Any]) -> None:
        self.micropython = micropython
        self.root = root
        shutil.copytree(build, root, dirs_exist_ok=True)
        self.write_config(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root.parent / (root.name + ".log")
        self.starts = 0

    def write_config(self, config: dict[str, Any]) -> None:
        (self.root / "config.json").write_text(json.dumps(config))

    def start(self) -> UnixBoard:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(
                [self.micropython, "-X", f"heapsize={HEAP}", "main.py"],
                cwd=self.root,
                env=board_env(self.root),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Pull the plug: SIGKILL, nothing gets flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def wait_exit(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, count: int = 1, timeout_s: float = 30) -> None:
        """Wait until ``text`` appeared ``count`` times in the log; fail early if the board died."""
        deadline = time.monotonic() + timeout_s
        while self.log().count(text) < count:
            if not self.alive():
                raise RuntimeError(f"board exited waiting for {text!r}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} x{count} not seen:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def spooled_records(self) -> int:
        spool = self.root / "spool"
        return sum(p.stat().st_size // 20 for p in spool.glob("*.seg")) if spool.exists() else 0
