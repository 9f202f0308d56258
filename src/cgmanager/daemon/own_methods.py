"""The contract methods the daemon's own components carry out rather than a cgroup operation:
the policy (Reload, ConfigDiff, PolicyStatus, Classify) and event signals (Subscribe,
WatchPressure, Unsubscribe).

Each takes (call, who asks, *arguments) and returns the reply's value; the facade
(:mod:`.api`) establishes who asks, applies the namespace gates and writes the audit line, as
for every operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..dbus.objects import MethodCall
from ..errors import Unsupported
from ..operations import Request
from ..requestor import Party
from .events import Events
from .policy import Policy, require_host_root


def own_methods(policy: Policy, events: Events | None) -> dict[str, Callable[..., Any]]:
    """The handlers by method name (*events* is None in a process without event signals)."""

    def signals() -> Events:
        if events is None:
            raise Unsupported("event signals are not available in this process")
        return events

    def status(call: MethodCall, r: Party) -> dict[str, int]:
        require_host_root(r, "read the policy counters")
        counters = policy.counters()
        if events is not None:
            counters.update(events.counters())
        return counters

    def subscribe(call: MethodCall, r: Party, controller: str, cgroup: str) -> int:
        return signals().subscribe(call.sender, call.state, Request(r, r), controller, cgroup)

    def pressure(
        call: MethodCall, r: Party, controller: str, cgroup: str, res: str, trigger: str
    ) -> int:
        req = Request(r, r)
        return signals().watch_pressure(
            call.sender, call.state, req, controller, cgroup, res, trigger
        )

    def unsubscribe(call: MethodCall, r: Party, subscription: int) -> None:
        signals().unsubscribe(call.state, subscription)

    return {
        "Reload": lambda call, r: policy.Reload(r)[0],
        "ConfigDiff": lambda call, r, text: policy.ConfigDiff(r, text)[0],
        "PolicyStatus": status,
        "Classify": lambda call, r, pids: policy.Classify(r, pids)[0],
        "Subscribe": subscribe,
        "WatchPressure": pressure,
        "Unsubscribe": unsubscribe,
    }
