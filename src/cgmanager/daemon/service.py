"""The running daemon (the D-Bus service is added by the daemon work)."""

from __future__ import annotations

import argparse
import logging
import signal

from ..hierarchy import Layout

log = logging.getLogger("cgmanager")


def run(args: argparse.Namespace, layout: Layout) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    log.info("ready; SIGTERM or SIGINT stops")
    sig = signal.sigwait({signal.SIGTERM, signal.SIGINT})
    log.info("stopping on %s", signal.Signals(sig).name)
    return 0
