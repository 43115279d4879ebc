# Taskdesk: `make run` starts it with demo data, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SIM_RATE ?= 2
# --no-compile: bytecode is written on first import, for the modules used only (a third of the
# install's time on a busy 2-core machine went into compiling every file of every package).
PIP := $(BIN)/pip install -q --disable-pip-version-check --no-compile

.PHONY: run test lint format migrate seed bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# What running Taskdesk needs, and no more (make run).
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(PIP) -r requirements.txt
	touch $@

# Test, lint and benchmark tools on top of the runtime.
$(VENV)/.installed: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PIP) -r requirements-dev.txt
	touch $@

# The real xpander and Agentex clients, for the tests only (~550 MB). xpander_sdk does not import
# without agno, which must come in a second pip call (one combined call fails to resolve here).
$(VENV)/.clients: requirements-clients.txt $(VENV)/.installed
	$(PIP) -r requirements-clients.txt
	$(PIP) agno==2.5.14
	touch $@

migrate: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput

# One process migrates and seeds (each Django start costs seconds of CPU on a small machine).
seed: $(VENV)/.runtime
	$(BIN)/python manage.py seed_demo --migrate

# A server listening on every interface (HOST=0.0.0.0) is reached on this machine through 127.0.0.1:
# the address printed and the simulator's (0.0.0.0 is no host name Django allows).
URL := http://$(if $(filter 0.0.0.0 :: [::],$(HOST)),127.0.0.1,$(HOST)):$(PORT)

# daphne and the agent simulator side by side (the simulator once daphne answers, so the two do not
# start Django at the same time); the simulator drives the server through its agent
# APIs (xpander, Agentex, JSON-RPC, native REST), so changes reach open browsers even with the
# embedded in-memory channel layer. Ctrl-C (or either process ending) stops both; the simulator
# revokes the API tokens it created. The recipe exits 0 and make prints no error; make itself then
# ends by the signal it got, as after any interrupted target (the shell's $? is 130, nothing shown;
# tests/test_makefile.py). While it stops, the recipe's shell ignores TERM: on a TERM, make sends its
# child one more, which would otherwise end the shell mid-clean-up ("make: *** Terminated").
# HOST=0.0.0.0 PORT=9000 make run listens elsewhere.
run: seed
	@echo ""
	@echo "  Taskdesk listens on $(URL)/   (admin: $(URL)/admin/)"
	@$(if $(filter 0.0.0.0 :: [::],$(HOST)),echo "  On every interface: other machines open it by a name in ALLOWED_HOSTS (ALLOWED_HOSTS=desk.lan,127.0.0.1).")
	@echo "  Logins (password 'taskdesk'): alice (operator, acme), bob (viewer, acme),"
	@echo "                                charlie (operator, globex), admin (superuser)"
	@echo "  The agent simulator runs beside the server at $(SIM_RATE) changes/s. Ctrl-C stops both."
	@echo ""
	@trap 'trap "" TERM; trap - INT EXIT; kill $$server $$simulator 2>/dev/null; wait 2>/dev/null; echo ""; echo "  Taskdesk stopped."; exit 0' INT TERM EXIT; \
	$(BIN)/daphne -v 0 -b $(HOST) -p $(PORT) dashboard.asgi:application & server=$$!; \
	$(BIN)/python dashboard/wait_for_server.py $(URL)/login/ $$server; \
	$(BIN)/python manage.py simulate_agents --url $(URL) --rate $(SIM_RATE) & simulator=$$!; \
	wait $$server

# PostgreSQL and Redis at their default local addresses are used when they answer
# (tests/local_services.py says which in the first lines). Two pytest runs: Playwright's sync API
# keeps an event loop in the main thread, which clashes with the pytest-asyncio tests.
test: $(VENV)/.installed $(VENV)/.clients
	@eval "$$($(BIN)/python tests/local_services.py)" && \
	$(BIN)/python -m pytest --ignore=tests/browser && \
	$(BIN)/python -m pytest tests/browser

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark, one table (bench/run_all.py); bench-quick is the same at small sizes (< 3 min).
bench: $(VENV)/.installed
	@eval "$$($(BIN)/python tests/local_services.py)" && $(BIN)/python bench/run_all.py

bench-quick: $(VENV)/.installed
	@eval "$$($(BIN)/python tests/local_services.py)" && $(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) taskdesk.sqlite3 staticfiles .pytest_cache
