# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both create the virtual environment in .venv and install everything the project needs;
# Both also install the Debian cross toolchains and emulators (arm-none-eabi-gcc, QEMU, avr-gcc,
# simavr) and clang with libFuzzer when they are missing (as root; otherwise the script names the packages to install):
# `make test` needs them, `make demo` skips its emulated-Uno run without them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=

.PHONY: demo test install install-dev lint clean toolchains

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	-bash scripts/install-toolchains.sh
	$(VENV)/bin/rnnedge demo $(DEMO_ARGS)

toolchains:
	bash scripts/install-toolchains.sh

test: $(VENV)/.installed-dev toolchains
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check keras_rnnedge converters micro_targets tests benchmarks

clean:
	rm -rf $(VENV) runs
