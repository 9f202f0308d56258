"""T0: the repository itself — no file carries merge-conflict markers (a merge that left one
in a man page once passed every other test)."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

pytestmark = pytest.mark.t0

ROOT = pathlib.Path(__file__).resolve().parents[2]
MARKERS = ("<<<<<<< ", ">>>>>>> ", "=======\n")


def tracked_files() -> list[pathlib.Path]:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
        return [ROOT / f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file
        return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]


def test_no_merge_conflict_markers():
    found = []
    for path in tracked_files():
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except (UnicodeDecodeError, OSError):
            continue
        found += [
            f"{path.relative_to(ROOT)}:{i}"
            for i, line in enumerate(lines, 1)
            if line.startswith(MARKERS) and not line.startswith("======= ")
        ]
    assert found == []
