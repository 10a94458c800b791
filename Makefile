# streamscore — every entry point. `make test` and `make demo` do all set-up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/streamscore
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: help install infra-up infra-down infra-status topics lint test test-unit clean history backfill \
	feast-apply train promote materialize pipeline bench bench-soak demo

help:
	@echo "make install     venv + dependencies (pinned by constraints.txt), Redis, Prometheus, Kafka jars"
	@echo "make test        install, lint, type-check, all tests on real Kafka/Redis/Feast"
	@echo "make infra-up    start Kafka (127.0.0.1:9092) and Redis (127.0.0.1:6379); infra-down stops them"
	@echo "make topics      create the contract's topics (idempotent)"
	@echo "make pipeline    history -> backfill -> feast apply -> train -> promote -> materialize (needs Redis)"
	@echo "make demo        everything from a fresh machine: services, pipeline, worker, a minute of live events, summary"
	@echo "make bench       benchmarks (never part of make test); results in bench/results/"
	@echo "make bench-soak  the soak alone: 20 min at half the worker's capacity, with labels (bench/results/soak.*)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)
	infra/redis.sh install
	infra/prometheus.sh install
	infra/kafka.sh fetch

infra-up: install
	infra/redis.sh start
	infra/kafka.sh start

infra-down:
	infra/kafka.sh stop
	infra/redis.sh stop

infra-status:
	-infra/redis.sh status
	-infra/kafka.sh status

topics: infra-up
	$(CLI) create-topics

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy stream_app feature_repo models tests bench
	$(VENV)/bin/lint-imports

test-unit: $(STAMP)
	$(VENV)/bin/pytest -m "not integration" -q

# When no address is given in the environment, the fixtures start Kafka and Redis on free ports under
# .run/test-<pid>/ and stop them at the end; the trailing stop covers a session that was killed.
# TEST_WORKERS pytest-xdist processes share the files out (each file runs whole in one of them, with its own
# services): most integration time is spent waiting on brokers and worker processes, not on a core.
TEST_WORKERS ?= 2
test: install lint
	@set -o pipefail; rc=0; $(VENV)/bin/pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile & pid=$$!; wait $$pid || rc=$$?; \
	  infra/stop-run-dir.sh .run/test-$$pid; exit $$rc

# The offline pipeline. History ends yesterday so that `feast materialize-incremental` (whose first run
# starts at wall-clock now - TTL) loads the latest daily profiles.
DAYS ?= 30
USERS ?= 20000
MERCHANTS ?= 2000
SEED ?= 7
HISTORY := data/history

history: $(STAMP)
	$(CLI) generate history --days $(DAYS) --users $(USERS) --merchants $(MERCHANTS) \
	  --seed $(SEED) --start $$(date -u -d "$(DAYS) days ago" +%F) --out $(HISTORY)

backfill: $(STAMP)
	$(CLI) backfill --history $(HISTORY) --seed-state

feast-apply: $(STAMP)
	$(CLI) feast apply

train: $(STAMP)
	$(CLI) train --history $(HISTORY)

promote: $(STAMP)
	$(CLI) promote latest

materialize: $(STAMP)
	$(CLI) feast materialize-incremental $$(date -u +%FT%T) --views user_profile --views merchant_profile

pipeline: history backfill feast-apply train promote materialize

# Both own their services (start and stop them); see bench/run.sh and stream_app/demo/.
bench: install
	bash bench/run.sh

bench-soak: install
	bash bench/run.sh soak

demo: install
	$(CLI) demo

clean: infra-down
	rm -rf .run build *.egg-info .mypy_cache .ruff_cache .pytest_cache
