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

# One pytest worker per core (pytest-xdist); a module's tests stay on one worker, so its
# module-scoped fixtures (extracted stores, a Ray cluster) are built once. Modules are handed
# out in collection order, which tests/conftest.py starts with the longest ones
# (--no-loadscope-reorder: by default xdist orders them by their number of tests).
test: install
	$(PY) -m pytest -q -n auto --dist loadscope --no-loadscope-reorder

demo: install
	$(PY) -m featstore demo --workdir demo-output
	$(PY) examples/train_minimal.py --source demo-output/store
	@echo "the demo store's report: $(CURDIR)/demo-output/report.html"

# `make bench`: the quick figures (a few minutes, well under 4 GB of memory): 10,000-frame
# stores, a small extraction. `make bench FULL=1`: the README's figures (100,000-frame
# stores; and bench_store_scale's 10^4 / 10^5 / 10^6 identities, which needs about 40 GB
# free under BENCH_WORKDIR, default the temporary folder, and an hour on 2 cores).
ifdef FULL
BENCH_EXTRACT :=
BENCH_STORES :=
BENCH_GROW :=
BENCH_SCALE := --full $(if $(BENCH_WORKDIR),--workdir $(BENCH_WORKDIR))
BENCH_NPY := --full
BENCH_NEIGHBORS :=
BENCH_POSE := --full
else
BENCH_EXTRACT := --identities 10 --frames 4 --repeat 1
BENCH_STORES := --identities 200 --frames 50
BENCH_GROW := --grow-identities 2000
BENCH_SCALE := --identities 1000,10000
BENCH_NPY := --identities 10 --frames 4
BENCH_NEIGHBORS := --identities 10000,100000 --images 100000
BENCH_POSE :=
endif

bench: install
	$(PY) bench/bench_extract.py $(BENCH_EXTRACT)
	$(PY) bench/bench_store.py $(BENCH_STORES) $(BENCH_GROW)
	$(PY) bench/bench_store_scale.py $(BENCH_SCALE)
	$(PY) bench/bench_ray.py $(BENCH_EXTRACT)
	$(PY) bench/bench_dataset.py $(BENCH_STORES)
	$(PY) bench/bench_report.py $(BENCH_STORES)
	$(PY) bench/bench_npy.py $(BENCH_NPY)
	$(PY) bench/bench_neighbors.py $(BENCH_NEIGHBORS)
	$(PY) bench/bench_pose.py $(BENCH_POSE)

lint: install
	$(VENV)/bin/ruff check featstore cli tests bench examples
	$(VENV)/bin/ruff format --check featstore cli tests bench examples
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format featstore cli tests bench examples
	$(VENV)/bin/ruff check --fix featstore cli tests bench examples

clean:
	rm -rf $(VENV) demo-output .pytest_cache
