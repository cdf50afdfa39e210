# The two commands of the README: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint screenshot screenshot-window clean dist install-desktop bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-build: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[build]'
	touch $@

# The release folder (PyInstaller, one folder): rebuilt when a file it is made from changed.
DIST_INPUTS := build.spec pyproject.toml bridge.py appwindow.py \
	$(shell find backend frontend packaging -type f ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null)

dist: dist/bulk-mailer/bulk-mailer

dist/bulk-mailer/bulk-mailer: $(DIST_INPUTS) | $(VENV)/.installed-build
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN build.spec
	touch $@

install-desktop: dist
	dist/bulk-mailer/bulk-mailer --install-desktop-entry

run: $(VENV)/.installed-run
	$(BIN)/bulk-mailer

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint rules only: the code keeps its own line layout (ruff format is not applied to it).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check backend tests bridge.py appwindow.py benchmarks tools

# Sending speed against smtp-source, smtplib and nodemailer (installs postfix and nodemailer if missing).
bench: $(VENV)/.installed-dev
	bash benchmarks/setup.sh
	$(BIN)/python benchmarks/bench_send.py $(BENCH_ARGS)

# docs/screenshots/: each step of a first campaign, light and dark (browser mode, Debian's chromium).
screenshot: $(VENV)/.installed-dev
	$(BIN)/python tools/screenshots.py

# docs/window.png: the real window under Xvfb (needs xvfb, imagemagick).
screenshot-window: $(VENV)/.installed-run
	$(BIN)/python tools/screenshot.py

clean:
	rm -rf $(VENV) build dist *.egg-info
