# One-command entry points (see README "Quick start").
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup report test bench fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: the bits-per-value report for the built-in default model.
report: $(STAMP)
	$(BIN)/huffquant report --sweep

# The whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/huffquant bench --quant

# Coverage-guided fuzzing of the .hqt readers (atheris, in the [test] extra) for FUZZ_SECONDS seconds. Per-input
# time limit, memory limit and decoded-size cap: see fuzz/fuzz_reader.py. Inputs that crash, hang or blow up
# memory land in $(FUZZ_WORK)/findings/; the corpus grows in $(FUZZ_WORK)/corpus/ from run to run.
FUZZ_SECONDS ?= 60
FUZZ_WORK    ?= build/fuzz

fuzz: $(STAMP)
	$(BIN)/python fuzz/fuzz_reader.py --seconds $(FUZZ_SECONDS) --work $(FUZZ_WORK)

clean:
	rm -rf $(VENV) build *.egg-info
