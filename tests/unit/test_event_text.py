"""T0: what event subscriptions read and which PSI triggers reach the kernel (daemon/event_text.py):
every rule that refuses a trigger, at its edges, for host root and for everyone else."""

from __future__ import annotations

import pytest

from cgmanager.daemon.event_text import parse_flat, parse_pressure, parse_trigger
from cgmanager.errors import InvalidArgument

pytestmark = pytest.mark.t0


@pytest.mark.parametrize(
    "text, privileged, expected",
    [
        ("some 150000 1000000", True, ("some", 150000, 1000000)),
        ("full 1 500000", True, ("full", 1, 500000)),  # the smallest window and stall
        ("some 10000000 10000000", True, ("some", 10000000, 10000000)),  # the largest
        ("  some 150000 1000000\n", True, ("some", 150000, 1000000)),  # surrounding space
        ("some 150000 2000000", False, ("some", 150000, 2000000)),  # unprivileged: 2 s steps
        ("full 1 10000000", False, ("full", 1, 10000000)),
    ],
)
def test_triggers_the_kernel_takes(text, privileged, expected):
    assert parse_trigger(text, privileged) == expected


@pytest.mark.parametrize(
    "text, privileged, message",
    [
        ("some 150000", True, "invalid trigger"),
        ("half 1 1000000", True, "invalid trigger"),
        ("some -1 1000000", True, "invalid trigger"),
        ("some 1 1000000 1", True, "invalid trigger"),
        ("some 1  1000000", True, "invalid trigger"),  # the daemon takes one space between fields
        ("some 1234567890 1000000", True, "invalid trigger"),  # more than 9 digits
        ("some 150000 499999", True, "window must be"),
        ("some 150000 10000001", True, "window must be"),
        ("some 0 1000000", True, "stall must be above 0"),
        ("some 1000001 1000000", True, "within the window"),
        ("some 150000 1000000", False, "multiples of 2000000"),
        ("some 150000 500000", False, "multiples of 2000000"),
    ],
)
def test_triggers_refused_before_the_kernel(text, privileged, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_trigger(text, privileged)


def test_flat_keyed_files_are_read_leniently():
    text = "populated 1\nfrozen 0\nnot-a-number x\nlow -3\n\nmax 12"
    assert parse_flat(text) == {"populated": 1, "frozen": 0, "low": -3, "max": 12}


def test_pressure_totals_and_averages_in_hundredths():
    text = (
        "some avg10=0.12 avg60=1.50 avg300=0.00 total=123\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"
    )
    assert parse_pressure(text) == {
        "some_avg10": 12,
        "some_avg60": 150,
        "some_avg300": 0,
        "some_total": 123,
        "full_avg10": 0,
        "full_avg60": 0,
        "full_avg300": 0,
        "full_total": 7,
    }
