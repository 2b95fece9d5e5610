# Two commands for a fresh machine with only python3 and make:
#   make run   - create .venv if missing, install moesim, simulate the default scenario (DeepSeek-V3 on 2048 H800)
#   make test  - create .venv, install the test extras, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install clean bench readme

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,calibration,ray,sweep,hta]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/moesim simulate

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_engine.py

readme: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m tests.readme_golden --update

clean:
	rm -rf $(VENV) build *.egg-info
