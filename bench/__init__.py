"""Benchmarks of the cgmanager daemon (not tests): ``python -m bench [--smoke|--profile]``.

Modules: :mod:`bench.harness` (cgroups, daemon, children, cleanup), :mod:`bench.floor` (the
same work done directly on cgroupfs), :mod:`bench.daemon_runs` (the D-Bus workloads and the
interleaved rounds), :mod:`bench.oneshot` (one process per call), :mod:`bench.profile` (where
the daemon's time goes), :mod:`bench.report` (table, machine facts, JSON).
"""
