"""The daemon's workloads over one persistent connection, interleaved with their floors.

Each round runs, for every operation, a batch against the daemon (A) and a batch of its floor
workloads (B), in A B order on even rounds and B A on odd ones, so drift hits both alike.  Per
batch: the latency of every call, the daemon's CPU time (schedstat delta / calls, nothing
subtracted) and the client's own CPU time per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cgmanager.dbus.client import Connection

from .harness import IFACE, OBJ, Daemon, Fixture, cpu_ns, expect
from .stats import Op, median, summary_us, timed


@dataclass(frozen=True)
class Workload:
    name: str
    #: floor workloads measured alongside; the first is the one the ratio uses
    floors: tuple[str, ...]
    #: what one iteration does (for the report)
    what: str


WORKLOADS: tuple[Workload, ...] = (
    Workload("Ping", ("echo",), "Ping(0)"),
    Workload("GetValue", ("getvalue_by_hand", "read"), "GetValue pids /cgtest-…/gv pids.max"),
    Workload("Create+Remove", ("mkdir_rmdir",), "Create pids cr; Remove pids cr recursive=1"),
    Workload("MovePid", ("write_pid",), "MovePid pids m2|m1 <sleeping child>, alternating"),
    Workload("ListChildren", ("listdir",), "ListChildren pids /cgtest-…/kids (10 children)"),
    Workload("GetTasks", ("read_procs",), "GetTasks pids /cgtest-…/sleepers (4 sleeping children)"),
    Workload("ListKeys", ("scandir_stat",), "ListKeys pids /cgtest-…/gv"),
)
NAMES = tuple(w.name for w in WORKLOADS)


def daemon_ops(conn: Connection, fx: Fixture) -> dict[str, Op]:
    """One iteration of each workload as a call (or two) over *conn*."""
    call = conn.call
    gv, kids, tasks = fx.hpath("gv"), fx.hpath("kids"), fx.hpath("sleepers")
    mover = fx.mover.pid
    targets = ("m2", "m1")

    def ping(i: int) -> tuple:
        return call(OBJ, IFACE, "Ping", "i", (0,))

    def get_value(i: int) -> tuple:
        return call(OBJ, IFACE, "GetValue", "sss", ("pids", gv, "pids.max"))

    def create_remove(i: int) -> tuple:
        return (
            call(OBJ, IFACE, "Create", "ss", ("pids", "cr")),
            call(OBJ, IFACE, "Remove", "ssi", ("pids", "cr", 1)),
        )

    def move_pid(i: int) -> tuple:
        return call(OBJ, IFACE, "MovePid", "ssi", ("pids", targets[i & 1], mover))

    def list_children(i: int) -> tuple:
        return call(OBJ, IFACE, "ListChildren", "ss", ("pids", kids))

    def get_tasks(i: int) -> tuple:
        return call(OBJ, IFACE, "GetTasks", "ss", ("pids", tasks))

    def list_keys(i: int) -> tuple:
        return call(OBJ, IFACE, "ListKeys", "ss", ("pids", gv))

    return {
        "Ping": ping,
        "GetValue": get_value,
        "Create+Remove": create_remove,
        "MovePid": move_pid,
        "ListChildren": list_children,
        "GetTasks": get_tasks,
        "ListKeys": list_keys,
    }


def check(fx: Fixture, ops: dict[str, Op]) -> None:
    """One call of each workload, checking the daemon did the work (fails the run if not)."""
    expect(ops["Ping"](0) == (), "Ping")
    expect(ops["GetValue"](0) == ("max",), "GetValue pids.max")
    created, removed = ops["Create+Remove"](0)  # type: ignore[misc]
    expect(removed == (1,), f"Create+Remove: Remove said {removed!r}")
    with open(f"/proc/{fx.mover.pid}/cgroup") as f:
        before = f.read()
    ops["MovePid"](0)
    with open(f"/proc/{fx.mover.pid}/cgroup") as f:
        expect(f"pids:{fx.hpath('m2')}\n" in f.read(), f"MovePid (was {before!r})")
    ops["MovePid"](1)
    (children,) = ops["ListChildren"](0)  # type: ignore[misc]
    expect(sorted(children) == sorted(f"c{i}" for i in range(fx.KIDS)), "ListChildren")
    (pids,) = ops["GetTasks"](0)  # type: ignore[misc]
    expect(sorted(pids) == sorted(fx.task_pids), f"GetTasks {pids!r}")
    (keys,) = ops["ListKeys"](0)  # type: ignore[misc]
    expect(any(k[0] == "pids.max" for k in keys), f"ListKeys {keys!r}")


@dataclass
class Batches:
    """Per-round figures of one workload (daemon side) and its floors."""

    latencies: list[int] = field(default_factory=list)  # ns, every call of every round
    round_medians: list[float] = field(default_factory=list)  # µs
    daemon_cpu: list[float] = field(default_factory=list)  # µs per iteration, per round
    client_cpu: list[float] = field(default_factory=list)
    floor_medians: dict[str, list[float]] = field(default_factory=dict)  # µs per round

    def result(self, w: Workload, calls: int) -> dict[str, object]:
        floors = {k: median(v) for k, v in self.floor_medians.items()}
        lat = summary_us(self.latencies)
        floor = floors[w.floors[0]]
        return {
            "op": w.name,
            "what": w.what,
            "calls_per_round": calls,
            "rounds": len(self.round_medians),
            "daemon_cpu_us": median(self.daemon_cpu),
            "daemon_cpu_us_rounds": self.daemon_cpu,
            "client_cpu_us": median(self.client_cpu),
            "latency_us": lat,
            "latency_median_us_rounds": self.round_medians,
            "floor": w.floors[0],
            "floor_us": floor,
            "floors_us": floors,
            "floors_us_rounds": self.floor_medians,
            "latency_over_floor": lat["median"] / floor,
            "cpu_over_floor": median(self.daemon_cpu) / floor,
        }


def _batch(op: Op, n: int, daemon_pid: int | None) -> tuple[list[int], float, float]:
    """Warm up, then run *op* n times: (latencies ns, daemon CPU µs/call, client CPU µs/call)."""
    timed(op, min(20, n))
    d0 = cpu_ns(daemon_pid) if daemon_pid else 0
    c0 = cpu_ns("self")
    lat = timed(op, n)
    c1 = cpu_ns("self")
    d1 = cpu_ns(daemon_pid) if daemon_pid else 0
    return lat, (d1 - d0) / n / 1000, (c1 - c0) / n / 1000


def run_rounds(
    daemon: Daemon,
    ops: dict[str, Op],
    floor_ops: dict[str, Op],
    calls: int,
    rounds: int,
    names: tuple[str, ...] = NAMES,
    progress: Callable[[str], None] = lambda s: None,
) -> list[dict[str, object]]:
    """The interleaved A/B rounds; one result dict per workload."""
    workloads = [w for w in WORKLOADS if w.name in names]
    batches = {w.name: Batches() for w in workloads}
    for r in range(rounds):
        for w in workloads:
            b = batches[w.name]

            def daemon_side(w: Workload = w, b: Batches = b) -> None:
                lat, dcpu, ccpu = _batch(ops[w.name], calls, daemon.pid)
                daemon.check_alive()
                b.latencies += lat
                b.round_medians.append(median(lat) / 1000)
                b.daemon_cpu.append(dcpu)
                b.client_cpu.append(ccpu)

            def floor_side(w: Workload = w, b: Batches = b) -> None:
                for f in w.floors:
                    lat, _, _ = _batch(floor_ops[f], calls, None)
                    b.floor_medians.setdefault(f, []).append(median(lat) / 1000)

            for side in (daemon_side, floor_side) if r % 2 == 0 else (floor_side, daemon_side):
                side()
        progress(f"round {r + 1}/{rounds} done")
    return [batches[w.name].result(w, calls) for w in workloads]
