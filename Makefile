# The two commands of the README:
#   make demo   - set everything up, then run the demo (local control plane + Azure sandbox)
#   make test   - set everything up, then run the linters, the whole test suite and the dependency audit
# Everything else here is a step of those two.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: all setup venv tools test lint typecheck audit unit crds demo image clean

all: test

# Two distributions: the product (synapse-scim, operator/) and the development tools that never ship
# (synapse-scim-sandbox, sandbox/: the Azure emulators, the local control plane, the demo).
# The tests' shared helpers (tests/support) are installed too, for the scripts of bench/ (pytest finds
# them through pyproject.toml's pythonpath).
$(BIN)/.installed: pyproject.toml sandbox/pyproject.toml tests/support/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e ./sandbox -e ./tests/support
	touch $@

venv: $(BIN)/.installed

# Builds (or finds in the cache) kube-apiserver, kube-controller-manager, etcd, kubectl and helm, and prints their directory;
# then promtool (the chart's alert tests), and prints its path.
tools:
	@hack/build-tools.sh
	@hack/build-promtool.sh

setup: venv tools

# Lint: ruff (rules and formatting) and the import contracts of pyproject.toml (import-linter).
lint: venv
	$(BIN)/ruff check operator sandbox tests bench
	$(BIN)/ruff format --check operator sandbox tests bench
	$(BIN)/lint-imports

# Types of the product package (mypy; strict on the core): configuration in pyproject.toml.
typecheck: venv
	$(BIN)/mypy

# The CRDs the package ships are a copy of crds/ (the source of truth); tests/unit/test_crds_packaged.py
# fails when they differ.
crds:
	rm -f operator/synapse_scim/crds/*.yaml
	cp crds/*.yaml operator/synapse_scim/crds/

# Known vulnerabilities in the installed dependencies (pip-audit); fails, saying so, when no
# vulnerability service can be reached (hack/audit.sh): an audit that could not run is not a pass.
audit: venv
	hack/audit.sh

# The audit runs after the tests, so their results are shown whatever it says. Vulnerabilities found
# fail the build. An audit that could not reach its service (exit 2) prints NOT AUDITED and fails
# only with AUDIT_REQUIRED=1: this build machine reaches no vulnerability service, and a build that
# could never pass here would hide every other result.
test: setup lint typecheck
	SYNAPSE_SCIM_TOOLS="$$(hack/build-tools.sh)" SYNAPSE_SCIM_PROMTOOL="$$(hack/build-promtool.sh)" $(BIN)/pytest $(PYTEST_ARGS)
	@hack/audit.sh; rc=$$?; \
	if [ $$rc -eq 2 ] && [ "$${AUDIT_REQUIRED:-0}" != 1 ]; then echo "make test: dependency audit NOT AUDITED (see above); not a pass, not a failure"; \
	else exit $$rc; fi

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

demo: setup
	SYNAPSE_SCIM_TOOLS="$$(hack/build-tools.sh)" $(BIN)/synapse-scim demo

# The operator's image, built with buildah as root (no Docker engine, no registry): prints its id and size.
# `make test` builds it too (tests/image), so CI proves the Dockerfile on every run.
image:
	hack/build-image.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
