"""The daemon's policy: the configuration directory applied at start, on SIGHUP and on
``Reload``; ``ConfigDiff``; the rules engine's ``Classify`` and counters.

A configuration (or rules file) with any error changes nothing: the errors are logged (and
returned to ``Reload``'s caller, line-numbered), and the last good one stays in force.
Only host root may reload, diff or read the counters; ``Classify`` is also open to the owner of
the processes named (see :mod:`cgmanager.policy.engine`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import CgmError, InvalidArgument, NotPermitted
from ..operations import Manager
from ..policy import plan
from ..policy.apply import ManagerState, apply_group
from ..policy.cgconfig import Config, load_dir, parse
from ..policy.engine import Engine
from ..policy.lexer import ConfigError
from ..requestor import Party

log = logging.getLogger("cgmanager.policy")

DEFAULT_CONFIG_DIR = "/etc/cgmanager/cgconfig.d"
DEFAULT_RULES = "/etc/cgmanager/cgrules.conf"


def require_host_root(who: Party, what: str) -> None:
    ident = who.identity
    if not (ident.is_host_root and ident.same_userns):
        raise NotPermitted(f"not permitted: only host root may {what}")


@dataclass
class Loaded:
    """A configuration that passed every check."""

    config: Config = field(default_factory=Config)
    desired: list[plan.Desired] = field(default_factory=list)


class Policy:
    """Holds the configuration in force and applies it."""

    def __init__(
        self, manager: Manager, me: Party, config_dir: str | None, ids: plan.Ids | None = None
    ) -> None:
        self.m = manager
        self.me = me
        self.config_dir = config_dir or None
        self.ids = ids or plan.SystemIds()
        self.current = Loaded()
        #: what the kernel showed after each value written (normalised forms, e.g. cpu lists)
        self.echoes: dict[tuple[str, str, str, str], str] = {}
        self.applied = 0
        self.failed_groups = 0
        self.bad_loads = 0
        #: the rules engine, when one runs (set by the service)
        self.engine: Engine | None = None

    # -- loading ------------------------------------------------------------------------------

    def load(self, text: str | None = None, source: str = "<text>") -> Loaded:
        """Parse and check the configuration directory (or *text*); ConfigError if bad."""
        if text is not None:
            cfg = parse(text, source)
        elif self.config_dir is None:
            cfg = Config()
        else:
            cfg = load_dir(self.config_dir)
        return Loaded(cfg, plan.resolve(cfg, self.m.layout, self.ids))

    def _delegate_files(self, hierarchy: str) -> tuple[str, ...]:
        return self.m.trees[hierarchy].delegate_files

    def apply(self, loaded: Loaded) -> list[str]:
        """Apply a checked configuration; the report, one line per change or failure."""
        report: list[str] = list(loaded.config.notes)
        for d in loaded.desired:
            files = self._delegate_files(d.targets[0].hierarchy) if d.targets else ()
            out = apply_group(self.m, self.me, d, self.echoes, files)
            for line in out.lines():
                (log.error if out.error else log.info)("config: %s", line)
            report += out.lines()
            if out.error:
                self.failed_groups += 1
        self.current = loaded
        self.applied += 1
        return report

    def reload(self) -> list[str]:
        """Re-read and apply the configuration directory; on an error nothing changes and
        :class:`InvalidArgument` carries the line-numbered problem."""
        try:
            loaded = self.load()
        except ConfigError as e:
            self.bad_loads += 1
            log.error("configuration not applied (the last good one stays in force): %s", e)
            raise InvalidArgument(f"configuration not applied: {e}") from None
        for note in loaded.config.notes:
            log.info("config: %s", note)
        return self.apply(loaded)

    def reload_logged(self) -> None:
        """SIGHUP: reload; errors are logged only."""
        try:
            self.reload()
        except CgmError:
            pass
        if self.engine is not None:
            self.engine.reload_logged()

    def diff(self, text: str = "") -> list[str]:
        """What applying the configuration directory (or *text*) would change now."""
        try:
            loaded = self.load(text or None, "<given>")
        except ConfigError as e:
            raise InvalidArgument(str(e)) from None
        state = ManagerState(self.m, self.me)
        out: list[str] = list(loaded.config.notes)
        for d in loaded.desired:
            files = self._delegate_files(d.targets[0].hierarchy) if d.targets else ()
            try:
                changes = plan.plan_group(d, state, self.echoes, files)
            except CgmError as e:
                out.append(f"group {d.group} ({d.where}): cannot be read: {e.message}")
                continue
            out += [f"group {d.group} ({d.where}): {c}" for c in changes]
        return out

    # -- D-Bus handlers -----------------------------------------------------------------------

    def Reload(self, who: Party) -> tuple[list[str]]:
        require_host_root(who, "reload the configuration")
        report = self.reload()
        if self.engine is not None:
            report += self.engine.reload()
        return (report,)

    def ConfigDiff(self, who: Party, text: str) -> tuple[list[str]]:
        require_host_root(who, "compare configurations")
        if len(text) > (1 << 20):
            raise InvalidArgument("invalid configuration: larger than 1 MiB")
        return (self.diff(text),)

    def counters(self) -> dict[str, int]:
        out = {
            "config_loads": self.applied,
            "config_rejected": self.bad_loads,
            "config_group_failures": self.failed_groups,
            "config_groups": len(self.current.desired),
        }
        if self.engine is not None:
            out.update(self.engine.counters())
        return out

    def Classify(self, who: Party, pids: list[int]) -> tuple[list[tuple[int, str]]]:
        if self.engine is None:
            raise InvalidArgument("no rules engine in this process")
        return (self.engine.classify(who, pids),)
