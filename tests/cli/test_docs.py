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


def test_cgm_page_documents_every_option_of_every_subcommand():
    text = plain("cgm.1")
    for cmd in COMMANDS.values():
        for opt in cmd.options:
            assert re.search(rf"(^|[ (\"]){re.escape(opt)}\b", text, re.M), (cmd.name, opt)


def test_cgm_page_and_help_document_every_key_with_units():
    from cgmanager import units
    from cgmanager.cli.help import units_text

    text = plain("cgm.1")
    for _, keys, _ in units.table():
        for key in keys:
            name = key.replace("blkio.throttle.", "")
            assert name in text, key
            assert key in units_text(), key


def test_every_subcommand_has_help_naming_its_options():
    from cgmanager.cli import help as cli_help

    for cmd in COMMANDS.values():
        text = cli_help.text(cmd.name)
        assert text is not None and text.startswith(f"Usage: cgm {cmd.name}")
        for opt in cmd.options:
            assert opt in text, (cmd.name, opt)


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
