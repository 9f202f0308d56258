"""Boot-time configuration under systemd (tier t4): cgmanager.service (shipped unit,
Delegate=yes) starts with a cgconfig.conf in /etc/cgmanager/cgconfig.d and has made the groups
it describes — below its delegation point, never on it — before it reports ready; a changed
file is applied on SIGHUP (`systemctl kill -s HUP`), a bad one changes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .helpers import Service, attributes, call, read, wait_for

pytestmark = pytest.mark.t4
CONF = "/etc/cgmanager/cgconfig.d/boot.conf"

BOOT = """\
group jobs {
    unified { cgroup.max.descendants = 5; }
}
group jobs/batch {
    unified { cgroup.max.depth = 2; }
}
"""


@pytest.fixture(scope="module")
def configured(container) -> Iterator[Service]:
    container.write_file(CONF, BOOT)
    svc = Service(container)
    svc.install()
    svc.start_watched()  # returns once the daemon answers: the configuration is applied
    try:
        yield svc
    finally:
        if container.alive():
            container.systemctl("stop", svc.unit, check=False)
            container.run(["rm", "-f", CONF], check=False)
        if svc.watch is not None:
            svc.watch.close()


def test_groups_exist_when_the_service_is_ready(configured):
    jobs = os.path.join(configured.dp, "jobs")
    assert read(os.path.join(jobs, "cgroup.max.descendants")) == "5"
    assert read(os.path.join(jobs, "batch", "cgroup.max.depth")) == "2"
    # systemd's delegation point keeps its attributes: the groups are below it
    assert attributes(configured.dp) == configured.attrs_at_start
    # a client sees them as any cgroup of the subtree
    res = configured.client([call("ListChildren", "ss", "unified", "jobs")], attach="")
    assert res.ok() == [["batch"]]


def test_sighup_applies_a_changed_file_and_ignores_a_bad_one(configured):
    c = configured.c
    jobs = os.path.join(configured.dp, "jobs")
    c.write_file(CONF, BOOT.replace("= 5;", "= 7;"))
    c.systemctl("kill", "-s", "HUP", configured.unit)
    wait_for(lambda: read(os.path.join(jobs, "cgroup.max.descendants")) == "7", 10, "the new value")
    c.write_file(CONF, BOOT.replace("= 7;", "= 9;") + "group broken {\n")
    c.systemctl("kill", "-s", "HUP", configured.unit)
    wait_for(lambda: "configuration not applied" in configured.journal(), 10, "the error")
    assert "boot.conf:7:" in configured.journal()
    assert read(os.path.join(jobs, "cgroup.max.descendants")) == "7"
    assert c.show(configured.unit, "ActiveState")["ActiveState"] == "active"
