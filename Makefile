# featstore — developer entry points. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench lint fmt clean

install: $(STAMP)

# Re-install only when the package's declared dependencies change (idempotent).
$(STAMP): pyproject.toml constraints-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m featstore demo --workdir demo-output
	$(PY) examples/train_minimal.py --source demo-output/store
	@echo "the demo store's report: $(CURDIR)/demo-output/report.html"

bench: install
	$(PY) bench/bench_extract.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_store_scale.py
	$(PY) bench/bench_ray.py
	$(PY) bench/bench_dataset.py
	$(PY) bench/bench_report.py

lint: install
	$(VENV)/bin/ruff check featstore cli tests bench examples
	$(VENV)/bin/ruff format --check featstore cli tests bench examples
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format featstore cli tests bench examples
	$(VENV)/bin/ruff check --fix featstore cli tests bench examples

clean:
	rm -rf $(VENV) demo-output .pytest_cache
