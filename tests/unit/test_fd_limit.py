"""The daemon's RLIMIT_NOFILE at start-up: raised to what the configured limits need where the
kernel permits, else the hard limit, with one line saying what that allows (a warning only if
the configured connections cannot all be held).  The kernel's answers are scripted here; the
real daemon under a low hard limit is in tests/daemon/test_fd_limit.py."""

from __future__ import annotations

import logging

import pytest

from cgmanager.daemon import service
from cgmanager.dbus.limits import Limits

pytestmark = pytest.mark.t0
NOFILE = service.resource.RLIMIT_NOFILE


class Kernel:
    """getrlimit/setrlimit of one process whose hard limit may only be raised if *may_raise*."""

    def __init__(self, soft: int, hard: int, may_raise: bool) -> None:
        self.limit = (soft, hard)
        self.may_raise = may_raise
        self.calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == NOFILE
        return self.limit

    def setrlimit(self, which: int, new: tuple[int, int]) -> None:
        assert which == NOFILE
        self.calls.append(new)
        if new[1] > self.limit[1] and not self.may_raise:
            raise ValueError("not allowed to raise maximum limit")
        self.limit = new


@pytest.fixture
def kernel(monkeypatch):
    def make(soft: int, hard: int, may_raise: bool) -> Kernel:
        k = Kernel(soft, hard, may_raise)
        monkeypatch.setattr(service.resource, "getrlimit", k.getrlimit)
        monkeypatch.setattr(service.resource, "setrlimit", k.setrlimit)
        return k

    return make


def lines(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if "RLIMIT" in r.getMessage()]


WANT = 2048 * (4 + 16) + 1024  # the defaults: 2048 connections, 16 pending fds each


def test_enough_already_changes_nothing(kernel, caplog):
    k = kernel(50000, 50000, False)
    service.raise_fd_limit(Limits())
    assert k.calls == [] and lines(caplog) == []


def test_raised_silently_where_permitted(kernel, caplog):
    k = kernel(1024, 4096, True)
    service.raise_fd_limit(Limits())
    assert k.limit == (WANT, WANT) and lines(caplog) == []


def test_a_hard_limit_that_still_holds_every_connection_is_an_info(kernel, caplog):
    caplog.set_level(logging.INFO)
    k = kernel(1024, 20000, False)  # these machines: no CAP_SYS_RESOURCE, hard 20000
    service.raise_fd_limit(Limits())
    assert k.limit == (20000, 20000)
    ((level, text),) = lines(caplog)
    assert level == "INFO", text
    # (20000 - 1024) // 4 = 4744 connections can be held; // 20 = 948 with 16 pending fds
    assert "RLIMIT_NOFILE is 20000" in text and f"{WANT} would cover everything" in text
    assert "every one of the 2048 connections" in text and "948 of them with 16 pending" in text


def test_a_hard_limit_too_low_for_the_configured_connections_is_a_warning(kernel, caplog):
    k = kernel(1024, 4096, False)
    service.raise_fd_limit(Limits())
    assert k.limit == (4096, 4096)
    ((level, text),) = lines(caplog)
    assert level == "WARNING", text
    # (4096 - 1024) // 4 = 768
    assert "too low for --max-connections 2048: about 768 clients" in text, text
    assert f"raise the hard limit to {WANT}" in text


def test_fewer_connections_configured_need_fewer_fds(kernel, caplog):
    caplog.set_level(logging.INFO)
    k = kernel(1024, 4096, False)
    service.raise_fd_limit(Limits(max_connections=100))  # 100 * 20 + 1024 = 3024
    assert k.limit == (3024, 4096) and lines(caplog) == []
