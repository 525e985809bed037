# Set-up and main jobs. Every target is idempotent: a second run reuses .venv
# (reinstalled only when pyproject.toml changes) and the verified MNIST cache.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: lab test data bench clean

lab: $(VENV)/.installed data
	$(BIN)/vaelab lab

test: $(VENV)/.installed-test data
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

clean:
	rm -rf $(VENV) runs
