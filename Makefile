# Two commands on a fresh machine with Python 3.11:
#   make demo   install and run the demo
#   make test   install test dependencies, check the code (ruff, mypy,
#               import-linter) and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test check install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]"

# The browser tests drive Debian's chromium (Playwright's own download is never used):
# installed here when it is missing and we are root with apt-get; otherwise a no-op
# (the tests then skip, and fail under CI=true).
install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

demo: install
	$(BIN)/outreach demo

# Lint and import order, types, layering and import cycles.
check: install-test
	$(BIN)/ruff check outreach tests bench cli.py
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check
	$(BIN)/pytest -q

# The README's tables (the 1M rows: the commands in the README's Performance section).
bench: install-test
	$(BIN)/python bench/mjml_compilers.py
	$(BIN)/python bench/rules_bench.py --customers 100000 --db both
	$(BIN)/python bench/send_bench.py --customers 10000 100000 --mode both
	$(BIN)/python bench/webhook_bench.py --requests 10000    # needs wrk (apt-get install wrk)

clean:
	rm -rf $(VENV) demo outbox outreach.db* .pytest_cache .mypy_cache .ruff_cache .import_linter_cache dist
