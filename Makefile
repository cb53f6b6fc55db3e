# Every target sets up what it needs: a fresh clone with python3 and git is enough.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8080
DATA   ?= $(CURDIR)/.data

.PHONY: run test bench lint venv browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: the daemon with the WebUI on an embedded SQLite database, with a demo session
run: $(STAMP)
	$(VENV)/bin/ah webui --port $(PORT) --data-dir $(DATA) --demo

## browser: Debian's chromium for the WebUI tests (idempotent; needs root or sudo)
browser:
	@tools/ensure-chromium.sh

## test: the whole suite (unit, integration, browser)
test: $(STAMP) browser
	$(PY) -m pytest

## bench: the benchmarks in tests/benchmarks, printing figures beside their baselines
bench: $(STAMP)
	$(PY) -m pytest tests/benchmarks -p no:randomly -s -q --timeout 900

lint: $(STAMP)
	$(VENV)/bin/ruff check harbor actors supervisors migrations tests

clean:
	rm -rf $(VENV) .data
