# Set-up and main jobs. Every target is idempotent: a second run reuses .venv
# (reinstalled only when pyproject.toml or constraints.txt changes) and the verified
# MNIST cache. Installs take the exact versions in constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIN    := -c constraints.txt

.PHONY: lab test data bench browser clean lock

lab: $(VENV)/.installed data
	$(BIN)/vaelab lab --overwrite

test: $(VENV)/.installed-test data browser
	$(BIN)/python -m pytest -q

data: $(VENV)/.installed
	$(BIN)/vaelab data fetch

bench: $(VENV)/.installed-test data
	$(BIN)/python benchmarks/speed.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIN) pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet $(PIN) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet $(PIN) -e ".[test,torch,notebooks]"
	touch $@ $(VENV)/.installed

# Re-pin: the newest versions pyproject.toml allows, installed into a scratch venv and
# written to constraints.txt. Then run `make test` and commit constraints.txt.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet --upgrade pip setuptools
	build/lock-venv/bin/python -m pip install --quiet -e ".[test,torch,notebooks]"
	{ sed -n '1,2p' constraints.txt; build/lock-venv/bin/python -m pip freeze --all \
	  --exclude-editable | grep -v '^vaelab' | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf build/lock-venv

# The explorer's browser test: Debian's chromium and npm's playwright-core.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: build/node/node_modules/playwright-core
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

build/node/node_modules/playwright-core:
	mkdir -p build/node
	npm install --silent --no-audit --no-fund --prefix build/node playwright-core@1.65.1

clean:
	rm -rf $(VENV) runs
