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

.PHONY: run test venv bench bench-smoke lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	# byte-compile now: cgm starts once per shell command and must not compile on each start
	$(PY) -m compileall -q src
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
	$(PY) -m bench

bench-smoke: venv
	$(PY) -m bench --smoke

lint: venv
	$(PY) -m ruff check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info
