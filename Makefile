# entrascim.cloudflare: the two commands a user needs are `make demo` and `make test`.
# Every gate of `make test` is a stage below; scripts/run-stage prints which stage failed.

SHELL := /bin/bash
PYENV_PY := $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python3.12
PY312 ?= $(if $(wildcard $(PYENV_PY)),$(PYENV_PY),python3.12)
VENV ?= $(CURDIR)/.venv
BUILD := $(CURDIR)/build
COLL := $(BUILD)/ansible_collections/entrascim/cloudflare
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)
export PYTHONPATH := $(BUILD)
export ANSIBLE_PYTHON_INTERPRETER := $(VENV)/bin/python
STAGE := bash scripts/run-stage

.PHONY: test venv stage units emulator-tests integration bench-small bench molecule leak-guard soak sanity lint changelog galaxy demo clean

test: venv stage
	@$(STAGE) units          $(MAKE) --no-print-directory units
	@$(STAGE) emulator-tests $(MAKE) --no-print-directory emulator-tests
	@$(STAGE) integration    $(MAKE) --no-print-directory integration
	@$(STAGE) bench-small $(MAKE) --no-print-directory bench-small
	@$(STAGE) molecule       $(MAKE) --no-print-directory molecule
	@$(STAGE) leak-guard     $(MAKE) --no-print-directory leak-guard
	@$(STAGE) sanity         $(MAKE) --no-print-directory sanity
	@$(STAGE) ansible-lint   $(MAKE) --no-print-directory lint
	@$(STAGE) changelog      $(MAKE) --no-print-directory changelog
	@$(STAGE) galaxy         $(MAKE) --no-print-directory galaxy
	@echo "make test: all stages passed"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt requirements.txt
	test -x $(VENV)/bin/python || $(PY312) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt -r requirements.txt
	touch $@

# Copy the repository into a real ansible_collections/<ns>/<name> tree (ansible-test refuses symlinks).
stage: venv
	bash scripts/stage-collection "$(COLL)"
	bash scripts/install-get-pip-shim

units: stage
	cd $(COLL) && python -m pytest -q -p no:cacheprovider tests/unit

emulator-tests: venv
	python -m pytest -q -p no:cacheprovider tests/emulator/tests

integration: stage
	cd $(COLL) && python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests/integration --ignore=tests/integration/test_leak_guard.py

# The whole flow at -vvv --diff; every output line, returned value and written file searched for every secret.
leak-guard: stage
	cd $(COLL) && python -m pytest -q -p no:cacheprovider tests/integration/test_leak_guard.py

# The fault suite's big variant (docs/resilience.md): 40 accounts under harsh faults, 12 kill points, 3 concurrent runs.
soak: stage
	cd $(COLL) && SOAK=1 python -m pytest -q -p no:cacheprovider tests/integration/test_faults.py

# The fleet benchmark (docs/performance.md): 25, 50 and 100 accounts under a realistic latency profile, fresh run,
# converged re-run, Ansible floor and the sequential seed-guide baseline (about an hour on 2 cores).
bench: venv
	python scripts/bench.py --json $(BUILD)/bench-results.json --report $(BUILD)/bench-report.md

# Its small version in `make test`: 10 accounts, fast profile; fails on token, converged-write or request-count regressions.
bench-small: venv
	python scripts/bench.py --small --check

# The role against the emulator: converge, idempotence, verify; and teardown.
molecule: stage
	cd $(COLL) && molecule test -s default && molecule test -s teardown

sanity: stage
	cd $(COLL) && ansible-test sanity --local --python 3.12 --color no

lint: stage
	cd $(COLL) && ansible-lint --profile production

changelog: venv
	antsibull-changelog lint

galaxy: stage
	bash scripts/galaxy-check "$(COLL)" "$(BUILD)"

# The whole flow against the emulator: provision 3 accounts, re-run (changed=0), audit.
demo: venv stage
	python scripts/demo.py

clean:
	rm -rf $(BUILD) tests/output
