# The two commands: `make run` (reproduce the pipeline) and `make test` (run the tests).
# Both create .venv and install the pinned requirements the first time; later calls skip that.
# The venv is byte-compiled once at install: with PYTHONDONTWRITEBYTECODE set (as on these machines) every
# stage process would otherwise recompile torch & co. from source (import torch 5.9 s -> 2.5 s measured).
# compileall exits 1 on a few deliberately invalid files inside packages' own test data: ignored.

VENV   ?= .venv
PYTHON ?= python3
# GPU hosts with vLLM: make run REQUIREMENTS=requirements-vllm.txt (README, GPU section)
REQUIREMENTS ?= requirements.txt
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-requirements.txt
export PATH := $(CURDIR)/$(BIN):$(PATH)
export TOKENIZERS_PARALLELISM := false

.PHONY: run test test-fast lint setup status clean-venv

setup:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if ! cmp -s $(REQUIREMENTS) $(STAMP); then \
		echo "installing pinned requirements ($(REQUIREMENTS)) into $(VENV) ..."; \
		$(BIN)/python -m pip install --no-compile -q -r $(REQUIREMENTS) && \
		{ $(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true; } && \
		cp $(REQUIREMENTS) $(STAMP); \
	fi

run: setup
	dvc repro

test: lint
	python -m pytest -q

test-fast: setup   # unit tests only: no DVC pipelines, remotes or memory measurements (-m "not pipeline")
	python -m pytest -q -m "not pipeline"

lint: setup
	ruff check .

status: setup
	dvc status

clean-venv:
	rm -rf $(VENV)
