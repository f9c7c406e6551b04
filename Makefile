# ML Levels — every target sets itself up: a fresh clone needs only `make all` or `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LOCK   := requirements/all.lock
TORCH  := torch==2.13.0
# The stamp is keyed on the lock and pyproject: a second `make test` reinstalls nothing.
STAMP  := $(VENV)/.installed-$(shell cat $(LOCK) requirements/nodeps.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)

# Runtime defaults (offline, quiet, one BLAS thread, a private Prefect home) are set in one place,
# shared/runtime.py: every level's `__main__`, the root conftest and the scripts call it.
export PIP_DISABLE_PIP_VERSION_CHECK := 1

PYTEST := $(PY) -m pytest
XDIST  ?= -n 2 --dist loadfile
LEVELS := 1 2 3 4 5

## install: create .venv and install the pinned lock (torch first, with pip); idempotent
install: $(STAMP)

$(STAMP): $(LOCK) requirements/nodeps.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -r requirements/nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "installed $(LOCK) into $(VENV)"

## lock: regenerate requirements/all.lock from requirements/all.in in a throwaway venv
lock:
	rm -rf .cache/lockvenv && $(PYTHON) -m venv .cache/lockvenv
	.cache/lockvenv/bin/pip install -q --upgrade pip
	.cache/lockvenv/bin/pip install -q $(TORCH)
	.cache/lockvenv/bin/pip install -q -r requirements/all.in
	.cache/lockvenv/bin/pip freeze --exclude-editable | grep -v -E '^(ml-levels|pip|setuptools|torch)==' > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	@echo "wrote $(LOCK) ($$(wc -l < $(LOCK)) pins)"

## all: install, run every level end to end (quick profile), print the summary table
all: install
	$(PY) scripts/run_levels.py $(LEVELS)

## level1 .. level5: install and run one level end to end (quick profile)
level%: install
	$(PY) scripts/run_levels.py $*

# Debian packages some tests use: promtool (prometheus), amtool (prometheus-alertmanager) and
# docker-compose for the ops checks of levels 3 and 4; podman, runc and debootstrap for the
# container tests. Installed only when missing and
# apt-get is usable (root); elsewhere those tests skip and say which binary is absent.
APT_TEST      := prometheus:promtool prometheus-alertmanager:amtool docker-compose:docker-compose
# podman-compose runs the level 3 and 4 stacks; netavark and aardvark-dns give their networks the
# service-name DNS (containers.conf picks netavark), which sets up NAT with iptables.
APT_CONTAINER := podman:podman runc:runc debootstrap:debootstrap podman-compose:podman-compose \
                 netavark:/usr/lib/podman/netavark aardvark-dns:/usr/lib/podman/aardvark-dns iptables:iptables

define apt_ensure
	@missing=""; for pair in $(1); do pkg=$${pair%%:*}; bin=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; } || \
	      echo "warning: could not install$$missing; the tests that need them will skip"; \
	  else echo "note: missing$$missing (not root or no apt-get); the tests that need them will skip"; fi; \
	fi
endef

## system-deps: Debian packages the ops tests use (promtool, docker-compose), installed when missing
system-deps:
	$(call apt_ensure,$(APT_TEST))

## container-deps: podman, runc and debootstrap for the container tests, installed when missing
container-deps:
	$(call apt_ensure,$(APT_CONTAINER))

## checkov-venv: checkov in its own venv (.venv-checkov): its pins (networkx<2.7, packaging 23,
##   tabulate<0.10) conflict with all.lock; the infra tests call .venv-checkov/bin/checkov
CHECKOV_VENV  := .venv-checkov
CHECKOV_LOCK  := requirements/checkov.lock
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cat $(CHECKOV_LOCK) 2>/dev/null | sha256sum | cut -c1-16)

checkov-venv: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): $(CHECKOV_LOCK)
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r $(CHECKOV_LOCK)
	@rm -f $(CHECKOV_VENV)/.installed-*
	@touch $@

## test: install and run every test, the slow quality gates on real quick runs and the API fuzzing
##   test included (what CI runs; container images are built by `make test-container`)
test: install system-deps checkov-venv
	$(PYTEST) $(XDIST) -m "not container"

## test-fast: the suite without the `slow` quality gates (a few minutes; for the edit-test loop)
test-fast: install system-deps checkov-venv
	$(PYTEST) $(XDIST) -m "not slow and not container"

## test-full: every test, container images included (podman, root)
test-full: install system-deps container-deps checkov-venv
	$(PYTEST) $(XDIST)

## test-level1 .. test-level5: the shared tests and one level's tests
test-level%: install system-deps checkov-venv
	@d=$$(ls -d level$*_*/ 2>/dev/null | head -1); \
	if [ -d "$${d}tests" ]; then \
	  $(PYTEST) $(XDIST) -m "not container" shared/tests $${d}tests; \
	else \
	  echo "level $* is not built yet (README only): running the shared tests"; \
	  $(PYTEST) $(XDIST) shared/tests; \
	fi

## serve-level3: train level 3 if needed, then start its API (8080), champion (3000) and challenger (3001)
serve-level3: install
	@ls level3_recsys/artifacts/*/metrics.json >/dev/null 2>&1 || $(PY) scripts/run_levels.py 3
	$(PY) -m level3_recsys serve all --profile quick

## test-container: build and run the level 3 and level 4 images with podman, and both compose stacks
##   with podman-compose (needs root for apt and podman); CONTAINER_MARKS="container and not slow"
##   builds only the level 3 API image and level 4's Debian-package service images (what CI runs)
CONTAINER_MARKS ?= container
test-container: install system-deps container-deps
	$(PYTEST) -m "$(CONTAINER_MARKS)" level3_recsys/tests/test_ops_container.py level4_fraud/tests/test_ops.py

## load-test-level3: Locust against the level 3 API and a plain-FastAPI ceiling -> benchmarks/results.md
load-test-level3: install
	$(PY) benchmarks/run.py 3_load

## load-test-level4: fraud scoring at 500 tx/s (uvicorn, Redis Stream consumers, Ray Serve replicas) -> results.md
load-test-level4: install
	$(PY) benchmarks/run.py 4_load

## bench: run the benchmarks and write benchmarks/results.md
bench: install
	$(PY) benchmarks/run.py

## bench-level4: level 4's benchmark alone (simulator at 10 M, Feast, fast path, full profile) -> results.md
bench-level4: install
	$(PY) benchmarks/run.py level4

## lint: ruff check, ruff format --check, mypy on shared/ and every level
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## format: apply ruff fixes and formatting
format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## clean: remove generated data, artifacts and caches (keeps .venv; `make distclean` removes it)
clean:
	rm -rf level*_*/data level*_*/artifacts benchmarks/work .cache .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

## distclean: clean and remove the virtual environment
distclean: clean
	rm -rf $(VENV) .venv-anchor $(CHECKOV_VENV)

## help: list the targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## //' | awk -F': ' '{ printf "  %-28s %s\n", $$1, substr($$0, length($$1) + 3) }'

.PHONY: install checkov-venv system-deps container-deps lock all serve-level3 test-container load-test-level3 load-test-level4 test test-fast test-full bench bench-level4 lint format clean distclean help
