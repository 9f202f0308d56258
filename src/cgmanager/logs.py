"""Where the daemon's and cgproxy's log lines go: the journal, syslog, a file or stderr.

``--log-target auto`` (the default) picks what an administrator expects of a system daemon:

* **detached** (``--daemon``): syslog (``/dev/log``, facility ``daemon``), as 0.42 did — the
  standard streams go to /dev/null.  Until it serves (and the starting parent exits),
  warnings and errors also go to stderr, so a start that fails says why on the terminal (or
  in the init script's output);
* **under systemd** (stderr is the journal: systemd names the stream in ``$JOURNAL_STREAM``):
  stderr, each line prefixed with its syslog priority ``<N>`` (journald's
  ``SyslogLevelPrefix=``, on by default), so ``journalctl -p warning`` means something;
* otherwise (a terminal, ``make run``, a test harness): stderr, ``prog: LEVEL: message``.

``syslog``, ``stderr`` or an absolute file name force one target; a file is appended to,
created mode 0640, and reopened when logrotate moves it away.

Audit lines (the ``<prog>.audit`` loggers: one per request that changes something, naming the
requestor by its kernel-given pid/uid/gid) have priority ``notice``, everything else maps
DEBUG/INFO/WARNING/ERROR to ``debug``/``info``/``warning``/``err``.  A message spanning
several lines is written as several lines, each with the full prefix: no continuation line
can pass for a line (or priority) of its own.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import socket
import sys
import time

#: --log-target values besides an absolute file name
TARGETS = ("auto", "stderr", "syslog")
SYSLOG_ADDRESS = "/dev/log"
LOG_DAEMON = 3  # syslog facility
LOG_NOTICE = 5
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}

#: the stderr handler that only lives until the process detaches (see :func:`detached`)
_until_detached: logging.Handler | None = None


def target_arg(value: str) -> str:
    """argparse type of ``--log-target``."""
    if value in TARGETS or (value.startswith("/") and not value.endswith("/")):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r}: expected auto, stderr, syslog or an absolute file name"
    )


def priority(record: logging.LogRecord) -> int:
    """The record's syslog priority (0-7)."""
    if record.name.endswith(".audit") and record.levelno == logging.INFO:
        return LOG_NOTICE
    if record.levelno >= logging.CRITICAL:
        return 2
    for level in (logging.ERROR, logging.WARNING, logging.INFO):
        if record.levelno >= level:
            return _PRIORITY[level]
    return 7


def stderr_is_journal() -> bool:
    """Whether fd 2 is the journal stream systemd connected (``$JOURNAL_STREAM`` is
    ``<device>:<inode>`` of it; a child whose stderr was redirected keeps the variable but not
    the stream)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class LineFormatter(logging.Formatter):
    """Formats each line of a record (traceback included) with ``head(record)`` before it."""

    def __init__(self, head: str) -> None:
        super().__init__()
        self.head = head
        self._fixed = "{" not in head
        self._timed = "{time}" in head

    def header(self, record: logging.LogRecord) -> str:
        if self._fixed:
            return self.head
        stamp = ""
        if self._timed:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.created))
        return self.head.format(
            priority=priority(record), level=record.levelname, pid=os.getpid(), time=stamp
        )

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        head = self.header(record)
        return "\n".join(head + line for line in text.split("\n"))


class SyslogHandler(logging.Handler):
    """RFC 3164 lines to the local syslog socket (journald's or rsyslog's ``/dev/log``), one
    datagram per line.  Connects lazily and again after the syslog daemon restarted; while
    none listens, lines are dropped (as glibc's syslog(3) does)."""

    def __init__(self, ident: str, address: str = SYSLOG_ADDRESS) -> None:
        super().__init__()
        self.ident = ident
        self.address = address
        self.sock: socket.socket | None = None

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            s.connect(self.address)
        except OSError:
            s.close()
            raise
        self.sock = s
        return s

    def _send(self, data: bytes) -> None:
        for attempt in (1, 2):
            try:
                (self.sock or self.connect()).send(data)
                return
            except OSError:
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
                if attempt == 2:
                    return  # no syslog daemon: dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            head = f"<{LOG_DAEMON * 8 + priority(record)}>{self.ident}[{os.getpid()}]: "
            for line in self.format(record).split("\n"):
                self._send((head + line).encode("utf-8", "backslashreplace"))
        except Exception:  # noqa: BLE001 - logging must never take the daemon down
            self.handleError(record)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        super().close()


class FileHandler(logging.handlers.WatchedFileHandler):
    """Appends to a file created 0640 (audit lines name who did what), reopened when
    logrotate has moved it."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        os.close(fd)
        super().__init__(path, encoding="utf-8", errors="backslashreplace")


def resolve(target: str, detach: bool) -> str:
    """``auto`` made concrete: ``syslog``, ``journal`` or ``stderr`` (other values unchanged)."""
    if target != "auto":
        return "journal" if target == "stderr" and stderr_is_journal() else target
    if detach:
        return "syslog"
    return "journal" if stderr_is_journal() else "stderr"


def setup(prog: str, level: str, target: str = "auto", detach: bool = False) -> str:
    """Configure the root logger for *prog*; returns the concrete target.  Raises OSError
    when a log file cannot be opened."""
    global _until_detached
    concrete = resolve(target, detach)
    handler: logging.Handler
    if concrete == "syslog":
        handler = SyslogHandler(prog)
        handler.setFormatter(LineFormatter(""))
    elif concrete == "journal":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LineFormatter("<{priority}>"))
    elif concrete == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LineFormatter(f"{prog}: {{level}}: "))
    else:
        handler = FileHandler(concrete)
        handler.setFormatter(LineFormatter(f"{{time}} {prog}[{{pid}}]: {{level}}: "))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    _until_detached = None
    if detach and concrete not in ("stderr", "journal"):
        echo = logging.StreamHandler(sys.stderr)
        echo.setLevel(logging.WARNING)
        echo.setFormatter(LineFormatter(f"{prog}: {{level}}: "))
        root.addHandler(echo)
        _until_detached = echo
    if concrete == "syslog" and isinstance(handler, SyslogHandler):
        try:
            handler.connect()
        except OSError as e:
            logging.getLogger(prog).warning(
                "no syslog daemon at %s (%s): log lines are lost until one listens",
                SYSLOG_ADDRESS,
                e.strerror,
            )
    return concrete


def detached() -> None:
    """The detached process serves and its stderr is /dev/null now: stop echoing to it."""
    global _until_detached
    if _until_detached is not None:
        logging.getLogger().removeHandler(_until_detached)
        _until_detached = None
