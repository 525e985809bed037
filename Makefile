# Set-up and main jobs. Every target is idempotent: a second run reuses .venv
# (reinstalled only when pyproject.toml changes) and the verified MNIST cache.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: lab test data bench browser clean

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
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e ".[test,torch]"
	touch $@ $(VENV)/.installed

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
