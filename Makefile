# The two commands of the README: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint screenshot clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/bulk-mailer

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check backend tests
	$(BIN)/ruff format --check backend tests

# Sending speed against smtp-source, smtplib and nodemailer (installs postfix and nodemailer if missing).
bench: $(VENV)/.installed-dev
	bash benchmarks/setup.sh
	$(BIN)/python benchmarks/bench_send.py $(BENCH_ARGS)

screenshot: $(VENV)/.installed-run
	$(BIN)/python tools/screenshot.py

clean:
	rm -rf $(VENV) build dist *.egg-info
