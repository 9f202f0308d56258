"""Tier t4: cgmanager as a delegated systemd service, in a throw-away nspawn container."""
