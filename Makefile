# The two commands of the README: `make smoke` (set up + run the smoke DAG -> HTML report)
# and `make test` (set up + run the test suite). Both create .venv from requirements/lock.txt.
PY      := .venv/bin/python
STAMP   := .venv/.installed
SMOKE_CONFIG := config/smoke.yaml

.PHONY: setup smoke test test-fast clean-smoke

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

smoke: $(STAMP)
	.venv/bin/snakemake all --profile profiles/smoke --configfile $(SMOKE_CONFIG)
	@echo "report: reports/smoke/report.html"

# Two pytest workers: one runs the smoke DAG and the tests that read it, the other the rest
# (tests/conftest.py groups them). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest tests -n $(TEST_WORKERS) --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

clean-smoke:
	rm -rf data/smoke results/smoke reports/smoke
