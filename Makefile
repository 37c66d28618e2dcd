# `make train` and `make test` are the two commands of the README's quick start.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install train test lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) -m jaxpcam.main --config configs/mlp.py $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
