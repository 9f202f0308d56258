"""``cgm top [controller] [cgroup]`` (systemd-cgtop): cgroups by CPU, memory, I/O, tasks and
pressure, refreshed every ``--delay`` seconds.

Everything is read through the daemon — one Snapshot per hierarchy per refresh, sent together
(:mod:`.top_sample`) — so a user sees exactly what it may read.  On a terminal the view is
live: keys sort (c m i t s p), change the delay (+ -), refresh (space) and quit (q).
Elsewhere, or with ``--batch``, ``--once``, ``--iterations N`` or ``--json``, frames are
printed one after the other (JSON: one object per line).  CPU and I/O are rates, so the first
frame comes one delay after the first sample.
"""

from __future__ import annotations

import os
import sys
import time

from ..human import format_size
from .output import Exit, to_json
from .readings import hierarchies, where
from .terminal import Keys, colour, cut, is_tty, size
from .top_sample import ORDERS, Row, Sample, Sampler, rows, sort_rows

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

DEFAULT_DEPTH = 3
KEYS = {"c": "cpu", "m": "memory", "i": "io", "t": "tasks", "s": "pressure", "p": "path"}
Frame = tuple[float, dict[str, Sample]]


class View:
    """How frames are shown: the order, the units, the width, colour."""

    def __init__(self, s: Session, order: str, raw: bool, delay: float) -> None:
        self.s = s
        self.order = order
        self.raw = raw
        self.delay = delay
        self.pressure = False

    def _size(self, n: int | None) -> str:
        if n is None:
            return "-"
        return str(n) if self.raw else format_size(n)

    def _rate(self, x: float | None) -> str:
        if x is None:
            return "-"
        return str(int(x)) if self.raw else format_size(int(x))

    def table(self, rs: list[Row], width: int | None, height: int | None, bold: bool) -> list[str]:
        """The column header and rows, the path column as wide as the rest leaves."""
        pressure = self.pressure
        tail_width = 6 + 7 + 9 + 9 + 9 + (15 if pressure else 0)
        paths = [r.path for r in rs]
        if width is None:
            pw = max([len("Control Group"), *map(len, paths)])
        else:
            pw = max(width - tail_width - 1, 13)
        head = f"{'Control Group':<{pw}} {'Tasks':>5} {'%CPU':>6} {'Memory':>8} {'Input/s':>8} {'Output/s':>8}"
        if pressure:
            head += f" {'Pressure c/m/i':>14}"
        out = [f"\x1b[7m{head}\x1b[0m" if bold else head]
        for r in rs[: None if height is None else max(height, 0)]:
            path = r.path if len(r.path) <= pw else "…" + r.path[len(r.path) - pw + 1 :]
            cpu = "-" if r.cpu is None else f"{r.cpu:.1f}"
            line = (
                f"{path:<{pw}} {'-' if r.tasks is None else r.tasks:>5} {cpu:>6}"
                f" {self._size(r.memory):>8} {self._rate(r.read):>8} {self._rate(r.write):>8}"
            )
            if pressure:
                psi = "/".join("-" if p is None else f"{p:.1f}" for p in r.pressure)
                line += f" {psi:>14}"
            out.append(line)
        return out

    def json(self, rs: list[Row], seconds: float, complete: bool) -> str:
        return to_json(
            {
                "time": round(time.time(), 3),
                "interval": round(seconds, 3),
                "complete": complete,
                "cgroups": [
                    {
                        "path": r.path,
                        "tasks": r.tasks,
                        "cpu_percent": None if r.cpu is None else round(r.cpu, 2),
                        "memory_bytes": r.memory,
                        "io_read_bytes_per_second": None if r.read is None else int(r.read),
                        "io_write_bytes_per_second": None if r.write is None else int(r.write),
                        "pressure_some_avg10": dict(zip(("cpu", "memory", "io"), r.pressure)),
                    }
                    for r in rs
                ],
            }
        )


def do_top(s: Session, args: list[str]) -> str:
    o = s.opts
    order = o.get("order") or "cpu"
    if order not in ORDERS:
        raise Exit(1, f"cgm: top: --order takes one of {', '.join(ORDERS)}, not {order!r}\n")
    depth = o.get("depth")
    delay = o.get("delay") or 1.0
    iterations = 1 if o.get("once") else o.get("iterations")
    controller, cgroup = where(args)
    sampler = Sampler(
        s, hierarchies(s, controller), cgroup, DEFAULT_DEPTH if depth is None else depth
    )
    if not sampler.keys:
        if sampler.errors:
            raise sampler.errors[0][1]
        raise Exit(
            1,
            "cgm: top: no hierarchy here has figures to show"
            " (cgroup v2, or v1 cpuacct, memory, blkio or pids)\n",
        )
    view = View(s, order, bool(o.get("raw")), delay)
    view.pressure = bool(sampler.pressure)
    live = not (o.get("batch") or iterations is not None or s.json) and is_tty(0) and is_tty(1)
    if live:
        return _live(sampler, view)
    _batch(sampler, view, iterations)
    return ""


def _batch(sampler: Sampler, view: View, iterations: int | None) -> None:
    prev = sampler.sample()
    done = 0
    width = size(1)[0] if is_tty(1) else None
    while iterations is None or done < iterations:
        time.sleep(view.delay)
        cur = sampler.sample()
        rs = sort_rows(rows(prev, cur), view.order)
        if view.s.json:
            text = view.json(rs, cur[0] - prev[0], sampler.complete) + "\n"
        else:
            lines = view.table(rs, width, None, False)
            if width is not None:
                lines = [cut(line, width) for line in lines]
            text = ("\n" if done else "") + "\n".join(lines) + "\n"
        sys.stdout.write(text)
        sys.stdout.flush()
        prev = cur
        done += 1


def _live(sampler: Sampler, view: View) -> str:
    import signal

    bold = colour(view.s.opts.get("color"))
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    resized = [True]

    def on_winch(signum: int, frame: object) -> None:
        resized[0] = True

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    old_winch = signal.signal(signal.SIGWINCH, on_winch)
    old_term = signal.signal(signal.SIGTERM, on_term)
    out = sys.stdout
    try:
        with Keys(0) as keys:
            out.write("\x1b[?1049h\x1b[?25l")
            prev: Frame | None = None
            cur = sampler.sample(_pressure_for_all(sampler, view))
            next_at = time.monotonic() + view.delay
            while True:
                _draw(sampler, view, cur, rows(prev, cur), bold)
                resized[0] = False
                while True:
                    typed = keys.read(next_at - time.monotonic(), wake_r)
                    if resized[0]:
                        break
                    if "q" in typed or "Q" in typed:
                        return ""
                    if _apply(typed, view):
                        break
                    if " " in typed:
                        next_at = time.monotonic()
                    if time.monotonic() >= next_at:
                        prev, cur = cur, sampler.sample(_pressure_for_all(sampler, view))
                        next_at = time.monotonic() + view.delay
                        break
    finally:
        out.write("\x1b[?25h\x1b[?1049l")
        out.flush()
        signal.signal(signal.SIGWINCH, old_winch)
        signal.signal(signal.SIGTERM, old_term)
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)


def _pressure_for_all(sampler: Sampler, view: View) -> bool:
    """Pressure for every cgroup (in the Snapshot), or for the rows shown only (GetValue of
    each, several times dearer per file): the latter only where far more cgroups than rows."""
    if view.order == "pressure":
        return True
    return sampler.size <= 8 * max(size(1)[1] - 2, 1)


def _apply(typed: str, view: View) -> bool:
    """Sort and delay keys; whether the screen needs drawing again."""
    changed = False
    for ch in typed:
        if ch in KEYS:
            view.order = KEYS[ch]
            changed = True
        elif ch == "+":
            view.delay = min(view.delay * 2, 60.0)
            changed = True
        elif ch == "-":
            view.delay = max(view.delay / 2, 0.25)
            changed = True
    return changed


def _draw(sampler: Sampler, view: View, cur: Frame, rs: list[Row], bold: bool) -> None:
    width, height = size(1)
    rs = sort_rows(rs, view.order)
    if view.pressure and not sampler.pressure_read:  # read for the rows shown only
        sampler.add_pressure(cur[1], [r.path for r in rs[: max(height - 2, 0)]])
    title = (
        f"cgm top: {len(rs)} cgroups, every {view.delay:g}s, by {view.order}"
        f"{'' if sampler.complete else ' (incomplete: a bound was hit)'}"
        "   q quit · c m i t s p sort · + - delay · space refresh"
    )
    lines = [title, *view.table(rs, width, height - 2, bold)]
    text = "\x1b[H" + "\x1b[K\n".join(cut(line, width) for line in lines[:height]) + "\x1b[K\x1b[J"
    sys.stdout.write(text)
    sys.stdout.flush()
