# The two commands of the README: `make smoke` (set up + run the smoke DAG -> HTML report)
# and `make test` (set up + run the test suite). Both create .venv from requirements/lock.txt.
PY      := .venv/bin/python
STAMP   := .venv/.installed
SMOKE_CONFIG := config/smoke.yaml

.PHONY: setup smoke miniature test test-fast lint clean-smoke lock

# Every package comes from the lock, hash-checked (pip itself included); then the project, without
# dependencies (they are all in the lock).
$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --require-hashes -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

smoke: $(STAMP)
	.venv/bin/snakemake all --profile profiles/smoke --configfile $(SMOKE_CONFIG)
	@echo "report: reports/smoke/report.html"

# The paper run in miniature: config/config.yaml with only sizes shrunk (mplug/miniature.py),
# written afresh each time so it cannot drift, then the same DAG on CPU (~15 min on 2 cores).
miniature: $(STAMP)
	.venv/bin/mplug miniature --config config/config.yaml --out config/miniature.yaml
	.venv/bin/snakemake all --profile profiles/smoke --configfile config/miniature.yaml
	@echo "report: reports/miniature/report.html"

# Two pytest workers: one runs the smoke DAG and the tests that read it, the other the rest
# (tests/conftest.py groups them). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest tests -n $(TEST_WORKERS) --no-loadscope-reorder --durations=25

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

# ruff, snakefmt --check and snakemake --lint (paper and smoke configs); CI runs it before the tests
lint: $(STAMP)
	.venv/bin/ruff check .
	.venv/bin/snakefmt --check Snakefile workflow/
	.venv/bin/snakemake --lint --configfile config/config.yaml -d .snakemake/lint/paper
	.venv/bin/snakemake --lint --configfile config/smoke.yaml -d .snakemake/lint/smoke

clean-smoke:
	rm -rf data/smoke results/smoke reports/smoke

# Recompile the lock from requirements/*.in (needs the package index). tests/workflow/test_lock.py
# then checks the env files and the venv against it.
lock: $(STAMP)
	.venv/bin/uv pip compile requirements/base.in requirements/dev.in --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --annotation-style line \
	  --custom-compile-command "make lock" -o requirements/lock.txt
