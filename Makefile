# Two commands on a fresh machine with Python 3.11:
#   make demo   install and run the demo
#   make test   install test dependencies and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

demo: install
	$(BIN)/outreach demo

test: install-test
	$(BIN)/pytest -q

bench: install-test
	$(BIN)/python bench/mjml_compilers.py

clean:
	rm -rf $(VENV) demo outbox outreach.db* .pytest_cache
