"""The man pages render without warnings and stay true to the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from cgmanager.cli.commands import COMMANDS
from cgmanager.daemon.main import build_parser

pytestmark = pytest.mark.t0

MAN = os.path.join(os.path.dirname(__file__), "..", "..", "man")


def page(name):
    with open(os.path.join(MAN, name)) as f:
        return f.read()


def plain(name):
    """The page as text (troff escapes for '-' undone)."""
    return page(name).replace("\\-", "-")


@pytest.mark.parametrize("name", ["cgm.1", "cgmanager.8", "cgproxy.8"])
def test_renders_without_warnings(name):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    cp = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(MAN, name)],
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
    )
    assert (cp.returncode, cp.stderr) == (0, "")


def test_cgm_page_documents_every_subcommand():
    text = plain("cgm.1")
    for sub in COMMANDS:
        assert re.search(rf"^\.BI? {sub}( |$)", text, re.M), sub


def test_cgmanager_page_documents_every_daemon_option():
    text = plain("cgmanager.8")
    for action in build_parser()._actions:
        for opt in action.option_strings:
            assert re.search(rf"(^|[ \"]){re.escape(opt)}\b", text, re.M), opt


def test_cgproxy_page_documents_every_proxy_option():
    from cgmanager.proxy.main import build_parser as proxy_parser

    text = plain("cgproxy.8")
    assert "not implemented" not in text
    for action in proxy_parser()._actions:
        for opt in action.option_strings:
            assert re.search(rf"(^|[ \"]){re.escape(opt)}\b", text, re.M), opt
