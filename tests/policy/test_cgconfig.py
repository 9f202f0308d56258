"""T0: cgconfig.conf parsing, resolution against recorded layouts, and planning over a fake
state — every error names its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgmanager.hierarchy import discover
from cgmanager.policy import plan
from cgmanager.policy.cgconfig import parse
from cgmanager.policy.lexer import ConfigError, tokenize

pytestmark = pytest.mark.t0
SAMPLES = Path(__file__).parent.parent / "samples"


def layout_of(kind):
    d = SAMPLES / kind
    ctrl = d / "v2-controllers"
    return discover(
        (d / "mountinfo").read_text(),
        (d / "cgroups").read_text(),
        (lambda _mp: ctrl.read_text()) if ctrl.exists() else None,
    )


HYBRID = layout_of("hybrid")
UNIFIED = layout_of("unified")


class FakeIds:
    users = {"root": 0, "alice": 1000, "www": 33}
    groups = {"root": 0, "alice": 1000, "webmaster": 50}

    def uid(self, name):
        return self.users[name]

    def gid(self, name):
        return self.groups[name]


def check(text, layout=HYBRID):
    return plan.resolve(parse(text, "t.conf"), layout, FakeIds())


LIBCGROUP_EXAMPLE = """\
# the example of libcgroup's cgconfig.conf(5), unchanged
mount {
    cpu = /mnt/cgroups/cpu;
    cpuacct = /mnt/cgroups/cpuacct;
}

group daemons/www {
    perm {
        task {
            uid = root;
            gid = root;
        }
        admin {
            uid = root;
            gid = root;
        }
    }
    cpu {
        cpu.shares = "1000";
    }
}

group daemons/ftp {
    perm {
        task { uid = root; gid = root; }
        admin { uid = root; gid = root; }
    }
    cpu {
        cpu.shares = "500";
    }
}
"""


def test_libcgroup_example_parses_unchanged():
    cfg = parse(LIBCGROUP_EXAMPLE, "cgconfig.conf")
    assert [g.name for g in cfg.groups] == ["daemons/www", "daemons/ftp"]
    assert cfg.notes == [
        "cgconfig.conf:2: mount block ignored: cgmanager serves the hierarchies the host has"
        " mounted and never mounts one"
    ]
    (www, ftp) = plan.resolve(cfg, HYBRID, FakeIds())
    assert www.targets == (
        plan.Target("cpu", 1, "daemons/www", (plan.Setting("cpu.shares", "1000", 19),)),
    )
    assert (www.uid, www.gid) == (0, 0)


def test_tokens_and_lines():
    toks = tokenize('group a {\n  pids { pids.max = "10"; } # trailing\n}\n* old comment\n')
    assert [(t.kind, t.text, t.line) for t in toks] == [
        ("word", "group", 1),
        ("word", "a", 1),
        ("{", "{", 1),
        ("word", "pids", 2),
        ("{", "{", 2),
        ("word", "pids.max", 2),
        ("=", "=", 2),
        ("string", "10", 2),
        (";", ";", 2),
        ("}", "}", 2),
        ("}", "}", 3),
    ]


def test_a_multiline_string_counts_its_lines():
    toks = tokenize('"a\nb"\nx')
    assert toks[-1].line == 3


FULL = """\
namespace { cpu = batch; }
default { perm { admin { uid = alice; gid = alice; dperm = 755; fperm = 644; } } }
group web {
    perm {
        admin { uid = www; gid = webmaster; dperm = 775; fperm = 664; }
        task { uid = www; gid = webmaster; fperm = 660; }
    }
    pids { pids.max = 100; }
    cpu { cpu.shares = 512; }
    unified { cgroup.max.depth = 3; }
}
group plain { freezer { } }
template users/%u { pids { pids.max = 50; } }
"""


def test_full_resolution():
    cfg = parse(FULL, "t.conf")
    web, plain = plan.resolve(cfg, HYBRID, FakeIds())
    assert (web.uid, web.gid, web.dperm, web.admin_fperm, web.task_fperm) == (
        33,
        50,
        0o775,
        0o664,
        0o660,
    )
    by_h = {t.hierarchy: t for t in web.targets}
    assert by_h["cpu"].path == "batch/web"  # namespace applies to cpu only
    assert by_h["pids"].path == "web"
    assert by_h["unified"].values[0].key == "cgroup.max.depth"
    # the default perm applies to a group without one
    assert (plain.uid, plain.gid, plain.dperm) == (1000, 1000, 0o755)
    assert [t.name for t in cfg.templates] == ["users/%u"]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("group a { pids { pids.max = 1 } }", 1, "expected ';' after the value of pids.max"),
        ("group a {\n pids {\n pids.max = 1;\n", 3, "unexpected end of file"),
        ("group a { pids { pids.max 1; } }", 1, "expected '='"),
        ("\n\ngroop a { }", 3, "expected group, template, default, mount or namespace"),
        ("group a/../b { pids { } }", 1, "'..' is not allowed"),
        ("group / { pids { } }", 1, "names cgmanager's own cgroup"),
        ("group . { pids { } }", 1, "'.' is not allowed"),
        ("group cgroup.procs { pids { } }", 1, "reserved for kernel attribute files"),
        ("group a { pids { } }\ngroup a { pids { } }", 2, "described twice"),
        ("group a { pids { } pids { } }", 1, "controller pids given twice"),
        ("group a {\n pids { pids.max = 1;\n pids.max = 2; } }", 3, "pids.max given twice"),
        ("group a { perm { task { fperm = 999; } } pids { } }", 1, "not an octal mode"),
        ("group a { perm { owner { uid = 1; } } pids { } }", 1, "expected task or admin"),
        ("group a { perm { admin { euid = 1; } } pids { } }", 1, "unknown admin setting"),
        ("group a {\n pids {\n tasks = 1;\n } }", 3, "tasks is not a file of the pids hierarchy"),
        ("group a { pids { cgroup.procs = 1; } }", 1, "cgroup.procs is not a file of the pids"),
        ("group a { pids { cpu.shares = 1; } }", 1, "cpu.shares is not a file of the pids"),
        ("group a { unified { cgroup.procs = 1; } }", 1, "cgroup.procs cannot be set"),
        ("group a { unified { cgroup.kill = 1; } }", 1, "an action, not a state"),
        ("group a {\n nosuch { } }", 2, "controller nosuch: not mounted"),
        ("group a { }", 1, "names no controller"),
        ('group a { pids { pids.max = "1\n2"; } }', 1, "spans lines"),
        ("group a { pids { pids.max = 1\x01; } }", 1, "unexpected character U+0001"),
        ("group a%u { pids { } }", 1, "only templates have it"),
        ("group a { perm { admin { uid = nobody_here; } } pids { } }", 1, "no user named"),
        (
            "group a {\n perm { admin { uid = root; }\n task { uid = alice; } }\n pids { } }",
            3,
            "task uid alice differs from the admin uid",
        ),
        ("default { perm { } } default { perm { } }", 1, "a second default block"),
        ("template t/%u { nosuch { } }", 1, "controller nosuch"),
        ("group a { pids { } }\ngroup b { pids { } }\nnamespace { pids = a; }", 1, None),
    ],
)
def test_errors_name_their_line(text, line, message):
    if message is None:  # b in pids is a/b through the namespace: distinct from a, fine
        check(text)
        return
    with pytest.raises(ConfigError) as e:
        check(text)
    assert e.value.line == line, str(e.value)
    assert message in e.value.message, str(e.value)
    assert str(e.value).startswith(f"t.conf:{line}: ")


def test_same_cgroup_twice_through_a_namespace():
    text = "namespace { pids = x; }\ngroup x/a { cpu { } }\ngroup a { pids { } cpu { } }"
    cfg = parse(text, "t.conf")
    # pids:x/a (group a through the namespace) and cpu:x/a vs cpu:a are all distinct
    assert len(plan.resolve(cfg, HYBRID, FakeIds())) == 2
    clash = "group a { cpu { } }\ngroup a/ { cpu { } }"
    with pytest.raises(ConfigError, match="cpu:a is also group a "):
        plan.resolve(parse(clash, "t.conf"), HYBRID, FakeIds())


def test_v1_names_on_a_pure_v2_host():
    (d,) = check(
        "group a { memory { memory.limit_in_bytes = 1G; } cpu { cpu.weight = 50; } }", UNIFIED
    )
    (t,) = d.targets  # one v2 tree
    assert t.hierarchy == "unified"
    assert [s.key for s in t.values] == ["memory.limit_in_bytes", "cpu.weight"]


def test_parents_are_planned_first():
    ds = check("group a/b/c { pids { } }\ngroup a { pids { } }\ngroup a/b { pids { } }")
    assert [d.group for d in ds] == ["a", "a/b", "a/b/c"]


# -- planning ---------------------------------------------------------------------------------


class FakeState:
    def __init__(self, groups=None):
        # (h, path) -> {"owner": (u, g), "modes": {file: mode}, "values": {key: value}}
        self.groups = groups or {}

    def exists(self, h, path):
        return (h, path) in self.groups

    def owner(self, h, path):
        return self.groups[(h, path)]["owner"]

    def mode(self, h, path, file):
        return self.groups[(h, path)]["modes"].get(file)

    def value(self, h, path, key):
        return self.groups[(h, path)]["values"].get(key)


WEB = """group web {
    perm { admin { uid = alice; gid = alice; dperm = 775; } task { fperm = 664; } }
    pids { pids.max = 100; }
}"""


def test_plan_of_a_new_group_lists_everything():
    (d,) = check(WEB)
    changes = plan.plan_group(d, FakeState())
    assert [str(c) for c in changes] == [
        "create pids:web",
        "chown  pids:web 0:0 -> 1000:1000",
        "chmod  pids:web: (unset) -> 775",
        "chmod  pids:web tasks: (unset) -> 664",
        "chmod  pids:web cgroup.procs: (unset) -> 664",
        "set    pids:web pids.max: (unset) -> 100",
    ]


def test_plan_of_a_group_in_its_described_state_is_empty():
    (d,) = check(WEB)
    state = FakeState(
        {
            ("pids", "web"): {
                "owner": (1000, 1000),
                "modes": {"": 0o775, "tasks": 0o664, "cgroup.procs": 0o664},
                "values": {"pids.max": "100\n"},
            }
        }
    )
    assert plan.plan_group(d, state) == []


def test_plan_brings_an_existing_group_to_its_state():
    (d,) = check(WEB)
    state = FakeState(
        {
            ("pids", "web"): {
                "owner": (0, 0),
                "modes": {"": 0o755, "tasks": 0o664, "cgroup.procs": 0o644},
                "values": {"pids.max": "max"},
            }
        }
    )
    assert [str(c) for c in plan.plan_group(d, state)] == [
        "chown  pids:web 0:0 -> 1000:1000",
        "chmod  pids:web: 755 -> 775",
        "chmod  pids:web cgroup.procs: 644 -> 664",
        "set    pids:web pids.max: max -> 100",
    ]


def test_what_the_kernel_showed_after_a_write_counts_as_applied():
    (d,) = check("group g { cpuset { cpuset.cpus = 0,1; } }")
    state = FakeState({("cpuset", "g"): {"owner": (0, 0), "modes": {}, "values": {}}})
    state.groups[("cpuset", "g")]["values"]["cpuset.cpus"] = "0-1"
    assert [c.kind for c in plan.plan_group(d, state)] == ["set"]
    echoes = {("cpuset", "g", "cpuset.cpus", "0,1"): "0-1"}
    assert plan.plan_group(d, state, echoes) == []


def test_admin_fperm_covers_the_other_v2_delegation_files():
    (d,) = check("group g { perm { admin { fperm = 664; } } unified { } }")
    state = FakeState(
        {
            ("unified", "g"): {
                "owner": (0, 0),
                "modes": {"cgroup.procs": 0o644, "cgroup.subtree_control": 0o644},
                "values": {},
            }
        }
    )
    files = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "memory.oom.group")
    changes = plan.plan_group(d, state, delegate_files=files)
    # task files keep theirs (no task fperm); absent files are left alone
    assert [(c.file, c.new) for c in changes] == [("cgroup.subtree_control", "664")]


EXAMPLES = Path(__file__).parent.parent.parent / "examples"


class ExampleIds(FakeIds):
    users = {**FakeIds.users, "builder": 1500}
    groups = {**FakeIds.groups, "builder": 1500}


@pytest.mark.parametrize("layout", [HYBRID, UNIFIED], ids=["hybrid", "unified"])
def test_the_shipped_examples_check(layout):
    from cgmanager.policy import cgrules

    cfg = parse((EXAMPLES / "cgconfig.conf").read_text(), "cgconfig.conf")
    desired = plan.resolve(cfg, layout, ExampleIds())
    assert [d.group for d in desired] == ["build", "daemons/www"]
    rules = cgrules.parse((EXAMPLES / "cgrules.conf").read_text())
    assert [r.user for r in rules] == ["builder", "*", "@students", "root"]


def test_values_with_units_are_converted_as_cgm_setvalue_converts_them():
    cfg = parse(
        "group ct {\n"
        "    pids { pids.max = 1K; }\n"
        '    cpu { cpu.cfs_quota_us = "50ms"; cpu.shares = 512; }\n'
        "}\n",
        "units.conf",
    )
    (ct,) = plan.resolve(cfg, HYBRID, FakeIds())
    values = {s.key: s.value for t in ct.targets for s in t.values}
    assert values == {"pids.max": "1000", "cpu.cfs_quota_us": "50000", "cpu.shares": "512"}


def test_a_unit_that_makes_no_sense_for_the_key_names_its_line():
    cfg = parse("group ct {\n    pids { pids.max = 1.0005K; }\n}\n", "bad.conf")
    with pytest.raises(ConfigError, match=r"bad\.conf:2: .*pids\.max"):
        plan.resolve(cfg, HYBRID, FakeIds())
