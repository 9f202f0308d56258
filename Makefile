# The two commands a newcomer needs: `make run` and `make test` (see README.md).
# Debian's interpreter: readable by every user (unprivileged clients run from this venv) and
# quicker to start than a pyenv build; any Python >= 3.11 works.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SOCKET ?= /sys/fs/cgroup/cgmanager/sock
# Demo default for these machines: the v1 memory hierarchy belongs to the machine's
# supervisor (single-writer rule), so the demo does not serve it.
RUN_ARGS ?= --skip memory --socket $(SOCKET)

PREFIX ?= /usr/local

.PHONY: run test venv bench bench-smoke lint clean install-docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dev]'
	# byte-compile now: cgm starts once per shell command and must not compile on each start
	$(PY) -m compileall -q src
	# replace pip's cgm script with one that starts `python -I -S` (see cli/launcher.py)
	$(PY) -m cgmanager.cli.launcher $(VENV)/bin/cgm
	touch $@

venv: $(VENV)/.installed

## Install into .venv and run the daemon in the foreground (Ctrl-C stops it).
run: venv
	$(VENV)/bin/cgmanager $(RUN_ARGS)

## Install what the tests need (Debian and Python packages) and run the whole suite.
test: venv
	scripts/install-test-deps
	$(PY) -m pytest

## Benchmarks (not tests): results go to bench/results/.
bench: venv
	scripts/install-test-deps
	$(PY) -m bench

bench-smoke: venv
	scripts/install-test-deps
	$(PY) -m bench --smoke

## Man pages and bash completion (the Python package itself installs with pip).
install-docs:
	install -Dm644 man/cgm.1 $(DESTDIR)$(PREFIX)/share/man/man1/cgm.1
	install -Dm644 man/cgmanager.8 $(DESTDIR)$(PREFIX)/share/man/man8/cgmanager.8
	install -Dm644 man/cgproxy.8 $(DESTDIR)$(PREFIX)/share/man/man8/cgproxy.8
	install -Dm644 completion/cgm.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/cgm

## ruff (lint and format) over everything, mypy --strict over src/.
lint: venv
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info
