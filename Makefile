# `make train` and `make test` are the two commands of the README's quick start.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# JAX >= 0.11 needs Python >= 3.12: the first interpreter found that is new enough builds the venv
# (on PATH, then pyenv's versions); PYTHON=/path/to/python3.12 picks one yourself.
PYTHON ?= $(shell for p in python3.12 python3.13 python3 $(wildcard $(HOME)/.pyenv/versions/3.1[23]*/bin/python3); do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo $$p; break; }; done)

.PHONY: install train test lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "error: jaxpcam needs Python >= 3.12 (JAX does); install one or pass PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,export]'
	@# jax2onnx apart, without its dependencies: its metadata pins orbax-checkpoint<0.11.37, which it
	@# never imports (README, "Exporting a model"); with it the suite checks model.onnx too
	$(PY) -m pip install --quiet -c constraints.txt --no-deps jax2onnx
	touch $@

install: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) -m jaxpcam.main --config configs/mlp.py $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# One pytest worker per CPU core (pytest-xdist; at most 4: each runs JAX and its own training
# subprocesses). `pytest -n0` runs in one process, for debugging.
test: lint
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist worksteal

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
