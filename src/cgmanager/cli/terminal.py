"""The terminal, for ``top`` and ``tree``: its size, colour, a pager, keys without Enter.

Colour only on a terminal, never with ``NO_COLOR`` set or ``TERM=dumb`` (``--color=always``
and ``never`` decide otherwise).  The pager is ``$CGM_PAGER``, else ``$PAGER``, else ``less``
with ``LESS=FRSXMK`` (quit if one screen, raw colours, no init), as systemd's tools do; an
empty value or ``cat`` means none.
"""

from __future__ import annotations

import os
import sys

from .session import getenv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def size(fd: int = 1) -> tuple[int, int]:
    """(columns, lines) of the terminal on *fd* (80x24 when it will not say)."""
    try:
        cols, lines = os.get_terminal_size(fd)
    except OSError:
        return 80, 24
    return cols or 80, lines or 24


def colour(setting: str | None, fd: int = 1) -> bool:
    if setting == "always":
        return True
    if setting == "never":
        return False
    term = getenv("TERM") or ""
    return is_tty(fd) and getenv("NO_COLOR") is None and term != "dumb"


def cut(line: str, width: int) -> str:
    """*line* cut to *width* columns, an ellipsis marking the cut.  Escape sequences (SGR)
    take no columns; every other character takes one."""
    if width <= 0:
        return line
    if "\x1b" not in line:
        return line if len(line) <= width else line[: width - 1] + "…"
    out, shown, i = [], 0, 0
    while i < len(line):
        if line[i] == "\x1b":
            end = line.find("m", i)
            end = len(line) - 1 if end < 0 else end
            out.append(line[i : end + 1])
            i = end + 1
            continue
        if shown == width - 1 and len(_visible(line[i:])) > 1:
            out.append("…\x1b[0m")
            return "".join(out)
        out.append(line[i])
        shown += 1
        i += 1
    return "".join(out)


def _visible(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\x1b":
            end = text.find("m", i)
            i = len(text) if end < 0 else end + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def page(text: str) -> None:
    """Show *text* through the pager when stdout is a terminal and it is longer than the
    screen; else write it."""
    pager = getenv("CGM_PAGER")
    if pager is None:
        pager = getenv("PAGER")
    if pager is None:
        pager = "less"
    cols, lines = size(1)
    if not pager.strip() or pager.strip() == "cat" or text.count("\n") < lines - 1:
        sys.stdout.write(text)
        return
    import shlex
    import subprocess

    env = dict(os.environ)
    env.setdefault("LESS", "FRSXMK")
    try:
        p = subprocess.Popen(shlex.split(pager), stdin=subprocess.PIPE, env=env)
    except (OSError, ValueError):
        sys.stdout.write(text)
        return
    assert p.stdin is not None
    try:
        p.stdin.write(text.encode("utf-8", "replace"))
        p.stdin.close()
    except BrokenPipeError:
        pass  # the reader quit early
    while True:
        try:
            p.wait()
            break
        except KeyboardInterrupt:  # Ctrl-C belongs to the pager (less ignores it)
            continue


class Keys:
    """``with Keys(fd):`` — the terminal delivers each key at once, unechoed; the previous
    settings come back at the end, whatever ends it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[Any] | None = None

    def __enter__(self) -> Keys:
        import termios

        try:
            self.saved = termios.tcgetattr(self.fd)
        except termios.error:
            return self
        new = termios.tcgetattr(self.fd)
        new[3] &= ~(termios.ICANON | termios.ECHO)
        new[6][termios.VMIN] = 0
        new[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, new)
        return self

    def __exit__(
        self,
        t: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float, *wake: int) -> str:
        """The keys typed within *timeout* seconds ('' if none, or when one of the *wake*
        fds, such as a signal's wake-up pipe, became readable first; it is drained)."""
        import select

        ready, _, _ = select.select([self.fd, *wake], [], [], max(timeout, 0.0))
        for fd in wake:
            if fd in ready:
                try:
                    while os.read(fd, 512):
                        pass
                except OSError:
                    pass
        if self.fd not in ready:
            return ""
        try:
            return os.read(self.fd, 64).decode("utf-8", "replace")
        except OSError:
            return ""
