# Rampart: `make run` starts the console (SQLite, embedded broker); `make test` runs the tests.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: the demo agent's firewall tools (`make run`, root only), and those plus the
# browser and the host firewalls the tests compare against (`make test`).
RUNPKGS := iptables ipset nftables iproute2
SYSPKGS := $(RUNPKGS) iputils-ping chromium ufw shorewall firewalld docker-compose prometheus
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run run-sysdeps test test-sqlite test-postgres test-faults test-onboarding lint bench sysdeps clean agent-wheel

# One stamp per dependency set: `make run` installs the runtime dependencies only, `make test`
# the test extras too (a `make run` first does not count as a test install).
$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (Python 3.11)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(BIN)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Shell: install those of the Debian packages $(1) that are missing (as root, with apt-get);
# otherwise say which are missing and $(2).
debs = missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "not root or no apt-get: skipping Debian packages ("$$missing"); $(2)"; fi

# Debian packages the firewall and browser tests need.
sysdeps:
	@$(call debs,$(SYSPKGS),tests needing them will skip)

# The demo agent's firewall tools; the demo agent runs only as root (and not with
# RAMPART_DEMO_AGENT=0), so nothing is installed otherwise.
run-sysdeps:
	@if [ "$$(id -u)" != 0 ]; then echo "not root: no demo agent (it needs root and $(RUNPKGS))"; \
	elif [ "$${RAMPART_DEMO_AGENT:-1}" != 0 ]; then $(call debs,$(RUNPKGS),no demo agent); fi

run: run-sysdeps $(BIN)/.installed-run
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py rampart_run

# Style, format, complexity, one-way dependencies (.importlinter) and types (compiler, agent,
# bundle contract).
lint: $(BIN)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: sysdeps $(BIN)/.installed-test lint test-sqlite test-postgres

# The whole suite on SQLite (the embedded default).
test-sqlite: $(BIN)/.installed-test
	env -u DATABASE_URL $(BIN)/pytest -q

# The database-facing tests again on PostgreSQL, when one answers on 127.0.0.1:5432. The
# compiler's, the agent's and the agent wheel's tests import no Django (import-linter's
# contracts) and never touch a database: they run once, in test-sqlite (~80 s saved).
test-postgres: $(BIN)/.installed-test
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  DATABASE_URL=$(PG_URL) $(BIN)/pytest -q -m "not netns and not e2e and not slow" tests \
	    --ignore=tests/compiler --ignore=tests/rampart_agent --ignore=tests/packaging; \
	else echo "PostgreSQL not reachable at $(PG_URL): PostgreSQL pass skipped"; fi

# Fault injection (docs/operations-faults.md), not part of `make test`: a real worker on Redis
# (127.0.0.1:6379/13, and a private redis-server it restarts) killed with -9, the broker
# restarted without persistence, hung agents; and, as root, the kill -9 campaign against the
# agent mid-apply and mid-set-update (legacy, iptables-nft, native nftables). About 3 minutes.
test-faults: $(BIN)/.installed-test
	env -u DATABASE_URL $(BIN)/pytest -q -m "faults or netns" tests/faults \
	  tests/rampart_agent/test_agent_kill_netns.py \
	  tests/rampart_agent/test_nft_native_netns.py::test_kill_minus_9_during_native_apply_never_leaves_a_mix

# The differential onboarding suite (docs/onboarding.md), not part of `make test`: ufw,
# firewalld (both backends), shorewall, a Docker host and hand-written dumps built in rpt_
# namespaces, onboarded, applied by the real agent on a fresh host and probed side by side;
# the agreement table lands in var/onboarding-differential.txt. Root; 2-3 minutes.
test-onboarding: sysdeps $(BIN)/.installed-test
	rm -f var/onboarding-differential.txt; \
	  env -u DATABASE_URL $(BIN)/pytest -q -m differential tests/rules/onboarding/test_differential_netns.py; \
	  rc=$$?; cat var/onboarding-differential.txt 2>/dev/null; exit $$rc

bench: $(BIN)/.installed-test
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# The agent alone as a wheel (rampart_agent + rampart_contract, needs only cryptography), in
# $(AGENT_DIST); built from a staging copy so the tree gets no build/ or egg-info.
AGENT_DIST ?= dist
agent-wheel:
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (Python 3.11)"; exit 1; }
	@stage=$$(mktemp -d) && trap 'rm -rf "$$stage"' EXIT && \
	cp packaging/agent/pyproject.toml packaging/agent/README.md packaging/agent/*.service "$$stage"/ && \
	cp -r rampart_agent rampart_contract "$$stage"/ && \
	find "$$stage" -name __pycache__ -prune -exec rm -rf {} + && \
	$(PY) -m pip wheel -q --no-deps --no-cache-dir -w "$(AGENT_DIST)" "$$stage" && \
	ls "$(AGENT_DIST)"/rampart_agent-*.whl

clean:
	rm -rf var/broker var/staticfiles .pytest_cache
