"""``cgm``: the command-line client of cgmanager (see :mod:`cgmanager.cli.main`).

Kept empty on purpose: ``cgm`` starts once per shell command, so nothing is imported here.
"""
