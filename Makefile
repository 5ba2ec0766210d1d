# Two entry points that do their own set-up on a fresh machine:
#   make run   - create .venv if needed, then prepare -> train -> evaluate -> traverse every default experiment
#   make test  - create .venv if needed, then the default (fast) test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXPERIMENTS ?= mnist fashion_mnist

.PHONY: setup run test test-all bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The venv's bundled pip mis-resolves this stack: upgrade it first.
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) -m infogan validate
	for e in $(EXPERIMENTS); do \
	  $(PY) -m infogan prepare -e $$e && \
	  $(PY) -m infogan train -e $$e --resume && \
	  $(PY) -m infogan evaluate -e $$e && \
	  $(PY) -m infogan traverse -e $$e || exit 1; \
	done

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) bench/train_throughput.py --data ../shared/datasets/mnist --out bench/results/throughput.json

clean:
	rm -rf runs data/prepared data/bench_prepared
