"""cgproxy entry point (filled in by the namespaces work)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("cgproxy: not implemented yet", file=sys.stderr)
    return 1
