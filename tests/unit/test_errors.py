"""errno → failure kind: the mapping every layer's errors go through."""

import errno

import pytest

from cgmanager.errors import (
    Busy,
    CgmError,
    InvalidArgument,
    KernelRejected,
    LimitExceeded,
    NotFound,
    NotPermitted,
    from_oserror,
)

pytestmark = pytest.mark.t0


@pytest.mark.parametrize(
    "code, kind",
    [
        (errno.ENOENT, NotFound),
        (errno.ENODEV, NotFound),  # a file of a cgroup removed while a request held it
        (errno.EACCES, NotPermitted),
        (errno.EBUSY, Busy),
        (errno.EAGAIN, LimitExceeded),
        (errno.EINVAL, KernelRejected),
        (errno.E2BIG, KernelRejected),
        (errno.ENAMETOOLONG, InvalidArgument),
    ],
)
def test_errno_kinds(code, kind):
    e = from_oserror(OSError(code, "x"), "pids:a pids.max")
    assert type(e) is kind and "pids:a pids.max" in e.message


def test_an_unknown_errno_is_the_generic_failure():
    e = from_oserror(OSError(errno.EXFULL, "x"), "thing")
    assert type(e) is CgmError and e.kind == "Failed"
