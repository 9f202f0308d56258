"""cgm entry point (filled in by the CLI work)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("cgm: not implemented yet", file=sys.stderr)
    return 1
