"""A real terminal for cgm: tmux on a private socket, started inside the test's place.

``Screen(place, argv, user=None, cols=100, rows=24)`` runs *argv* in a detached tmux session
whose server forks from a client placed like every other test process (so cgm resolves its
relative paths below the place); ``text()`` is what the terminal shows (capture-pane),
``keys()`` types, ``wait_for(predicate)`` polls the screen until it holds (or fails after a
generous bound, naming what was on screen).  When the command ends the pane shows
``EXIT=<status>``.  ``close()`` ends the server (its own socket: nothing else is touched).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

_count = 0


def need_tmux() -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/install-test-deps installs it)")


class Screen:
    def __init__(self, place, argv: list[str], user=None, cols: int = 100, rows: int = 24):
        global _count
        need_tmux()
        _count += 1
        self.place = place
        self.user = user
        self.socket = f"cgmtest-{os.getpid()}-{_count}"
        command = " ".join(shlex.quote(a) for a in argv)
        shell = f"{command}; echo EXIT=$?; sleep 600"
        cp = self._tmux(
            "new-session", "-d", "-x", str(cols), "-y", str(rows), "-s", "t", "sh", "-c", shell
        )
        assert cp.returncode == 0, cp.stderr

    def _tmux(self, *args: str) -> subprocess.CompletedProcess:
        env_term = ["env", "TERM=xterm-256color"]
        return self.place.run([*env_term, "tmux", "-L", self.socket, *args], user=self.user)

    def text(self, escapes: bool = False) -> str:
        cp = self._tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "t")
        assert cp.returncode == 0, cp.stderr
        return cp.stdout

    def lines(self) -> list[str]:
        return self.text().rstrip("\n").split("\n")

    def keys(self, *keys: str) -> None:
        cp = self._tmux("send-keys", "-t", "t", *keys)
        assert cp.returncode == 0, cp.stderr

    def wait_for(self, predicate: Callable[[str], bool], what: str, bound: float = 30.0) -> str:
        deadline = time.monotonic() + bound
        while True:
            screen = self.text()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminal never showed {what}:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        self._tmux("kill-server")
