# Rampart: `make run` starts the console (SQLite, embedded broker); `make test` runs the tests.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SYSPKGS := iptables ipset nftables iproute2 iputils-ping chromium ufw shorewall firewalld docker-compose
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test test-sqlite test-postgres lint bench sysdeps clean

$(BIN)/.installed: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Debian packages the firewall and browser tests need (installed only as root, only if missing).
sysdeps:
	@missing=$$(for p in $(SYSPKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not root: skipping Debian packages ($$missing); tests needing them will skip"; fi; \
	fi

run: $(BIN)/.installed
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py rampart_run

# Style, format, complexity, one-way dependencies (.importlinter) and types (compiler, agent,
# bundle contract).
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: sysdeps $(BIN)/.installed lint test-sqlite test-postgres

# The whole suite on SQLite (the embedded default).
test-sqlite: $(BIN)/.installed
	env -u DATABASE_URL $(BIN)/pytest -q

# The database-facing tests again on PostgreSQL, when one answers on 127.0.0.1:5432.
test-postgres: $(BIN)/.installed
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  DATABASE_URL=$(PG_URL) $(BIN)/pytest -q -m "not netns and not e2e and not slow" tests; \
	else echo "PostgreSQL not reachable at $(PG_URL): PostgreSQL pass skipped"; fi

bench: $(BIN)/.installed
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf var/broker var/staticfiles .pytest_cache
