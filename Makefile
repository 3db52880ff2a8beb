# Set-up and entry points. `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml runtime/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ./runtime -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/attn-export build

test: setup
	$(PY) -m pytest -q

bench: setup
	$(VENV)/bin/attn-export bench artifacts/default

clean:
	rm -rf $(VENV) artifacts .pytest_cache
