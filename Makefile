# The README's commands.  Needs only python3 (with venv); everything else is
# installed into .venv.  A plain (not editable) install: twistd finds the
# nanomdm plugin in twisted/plugins/ only from an installed package.

VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip

.PHONY: run test bench install install-test

$(PYTHON):
	python3 -m venv $(VENV)

install: $(PYTHON)
	$(PIP) install --quiet .

install-test: $(PYTHON)
	$(PIP) install --quiet '.[test]'

run: install
	$(VENV)/bin/twistd -n nanomdm --dev

test: install-test
	scripts/ensure-databases
	scripts/ensure-browser
	$(PYTHON) -m pytest -q

bench: install
	$(VENV)/bin/nanomdm-bench $(BENCH_FLAGS)
	$(PYTHON) -m nanomdm_tw.tools.bench_push
