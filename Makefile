# One-command entry points (see README "Quick start").
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup report test bench clean

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

clean:
	rm -rf $(VENV) build *.egg-info
