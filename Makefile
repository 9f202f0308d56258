# The two commands a newcomer needs: `make run` and `make test` (see README.md).
# Debian's interpreter: readable by every user (unprivileged clients run from this venv) and
# quicker to start than a pyenv build; any Python >= 3.11 works.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# The demo's fixed options: the v1 memory hierarchy belongs to these machines' supervisor
# (single-writer rule), so `make run` never serves it, whatever RUN_ARGS adds.  The socket
# follows the daemon's rule (0.42's /sys/fs/cgroup/cgmanager/sock here; /run/cgmanager/sock
# where /sys/fs/cgroup is cgroup2).
RUN_FIXED := --skip memory
# extra daemon options, e.g. make run RUN_ARGS="--log-level debug"
RUN_ARGS ?=

.PHONY: run test venv bench bench-smoke lint clean deb install uninstall

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
	$(VENV)/bin/cgmanager $(RUN_FIXED) $(RUN_ARGS)

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

## The Debian package (dh + pybuild): build/deb/cgmanager_<version>_all.deb.  As root it first
## installs the build dependencies from Debian's archive (never upgrading anything).
deb:
	scripts/build-deb $(if $(filter 0,$(shell id -u)),--install-deps) --out build/deb

# ------------------------------------------------------------------ make install (other distros)
# Everything under PREFIX: the Python package in its own venv ($(PREFIX)/lib/cgmanager, with
# setproctitle from PyPI), launchers $(PREFIX)/sbin/cgmanager, $(PREFIX)/sbin/cgproxy and
# $(PREFIX)/bin/cgm (python -I -S, see scripts/write-launcher), man pages, bash completion;
# and the init files of INIT (systemd, openrc, sysvinit; default: this machine's init) with
# these paths written in.  Nothing is enabled or started.  `make uninstall PREFIX=...` removes
# exactly what the manifest $(PREFIX)/lib/cgmanager/installed-files lists, then the venv.
PREFIX  ?= /usr/local
LIBDIR  := $(PREFIX)/lib/cgmanager
INIT    ?= $(shell if [ -d /run/systemd/system ]; then echo systemd; \
		elif [ -x /sbin/openrc-run ]; then echo openrc; else echo sysvinit; fi)
UNITDIR ?= /etc/systemd/system
INITDIR ?= /etc/init.d
PIP_ARGS ?=
PYVER    = $(shell $(PYTHON) -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
MANIFEST = $(DESTDIR)$(LIBDIR)/installed-files
SED_PATHS = sed -e 's|/usr/sbin/cgmanager|$(PREFIX)/sbin/cgmanager|g' \
		-e 's|/usr/sbin/cgproxy|$(PREFIX)/sbin/cgproxy|g'

install:
	@for init in $(INIT); do case $$init in systemd|openrc|sysvinit) ;; \
	  *) echo "make install: INIT names systemd, openrc or sysvinit (got '$$init')"; exit 2;; \
	esac; done
	rm -rf $(DESTDIR)$(LIBDIR)
	$(PYTHON) -m venv $(DESTDIR)$(LIBDIR)
	# build from a copy: pip would otherwise write build/ and *.egg-info into the checkout
	tmp=$$(mktemp -d) && cp -r pyproject.toml README.md src man completion "$$tmp"/ && \
	  $(DESTDIR)$(LIBDIR)/bin/python -m pip install -q --disable-pip-version-check \
	    --no-compile $(PIP_ARGS) "$$tmp"; rc=$$?; rm -rf "$$tmp"; exit $$rc
	# the venv's own scripts would run with `site` and the wrong prefix under DESTDIR
	rm -f $(DESTDIR)$(LIBDIR)/bin/cgm $(DESTDIR)$(LIBDIR)/bin/cgmanager $(DESTDIR)$(LIBDIR)/bin/cgproxy
	rm -rf $(DESTDIR)$(LIBDIR)/share
	$(DESTDIR)$(LIBDIR)/bin/python -m compileall -q $(if $(DESTDIR),-s $(DESTDIR) -p /) $(DESTDIR)$(LIBDIR)/lib
	: > $(MANIFEST)
	for p in sbin/cgmanager:cgmanager sbin/cgproxy:cgproxy bin/cgm:cgm; do \
	  $(PYTHON) scripts/write-launcher $(DESTDIR)$(PREFIX)/$${p%%:*} $${p#*:} \
	    $(LIBDIR)/bin/python $(LIBDIR)/lib/$(PYVER)/site-packages && \
	  echo $(PREFIX)/$${p%%:*} >> $(MANIFEST) || exit 1; \
	done
	for f in man1/cgm.1 man8/cgmanager.8 man8/cgproxy.8; do \
	  install -Dm644 man/$${f#*/} $(DESTDIR)$(PREFIX)/share/man/$$f && \
	  echo $(PREFIX)/share/man/$$f >> $(MANIFEST) || exit 1; \
	done
	install -Dm644 completion/cgm.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/cgm
	echo $(PREFIX)/share/bash-completion/completions/cgm >> $(MANIFEST)
	for init in $(INIT); do for name in cgmanager cgproxy; do \
	  case $$init in \
	    systemd) src=init/systemd/$$name.service; dest=$(UNITDIR)/$$name.service; mode=644;; \
	    openrc) src=init/openrc/$$name; dest=$(INITDIR)/$$name; mode=755;; \
	    sysvinit) src=init/sysvinit/$$name; dest=$(INITDIR)/$$name; mode=755;; \
	  esac; \
	  install -d $(DESTDIR)$$(dirname $$dest) && \
	  $(SED_PATHS) $$src > $(DESTDIR)$$dest && chmod $$mode $(DESTDIR)$$dest && \
	  echo $$dest >> $(MANIFEST) || exit 1; \
	done; done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed under $(PREFIX) (init files: $(INIT)); nothing is enabled. Start with:"
	@echo "  systemd:  systemctl enable --now cgmanager"
	@echo "  openrc:   rc-update add cgmanager default && rc-service cgmanager start"
	@echo "  sysvinit: update-rc.d cgmanager defaults && service cgmanager start"

uninstall:
	@test -f $(MANIFEST) || { echo "make uninstall: no $(MANIFEST): nothing installed under PREFIX=$(PREFIX)"; exit 1; }
	-@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  for u in cgmanager cgproxy; do \
	    if grep -qx "$(UNITDIR)/$$u.service" $(MANIFEST); then systemctl disable --now $$u.service; fi; \
	  done; fi
	-@if [ -z "$(DESTDIR)" ]; then for s in cgproxy cgmanager; do \
	  if grep -qx "$(INITDIR)/$$s" $(MANIFEST) && [ ! -d /run/systemd/system ]; then \
	    $(INITDIR)/$$s stop; command -v rc-update >/dev/null && rc-update del $$s 2>/dev/null; \
	    command -v update-rc.d >/dev/null && update-rc.d -f $$s remove >/dev/null; \
	  fi; done; fi
	while read -r f; do rm -f "$(DESTDIR)$$f"; done < $(MANIFEST)
	rm -rf $(DESTDIR)$(LIBDIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

## ruff (lint and format) over everything, mypy --strict over src/.
lint: venv
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info
