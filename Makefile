# Taskdesk: `make run` starts it with demo data, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SIM_RATE ?= 2

.PHONY: run test test-fast lint format migrate seed clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The real xpander and Agentex clients, for the tests only (~550 MB). xpander_sdk does not import
# without agno, which must come in a second pip call (one combined call fails to resolve here).
$(VENV)/.clients: requirements-clients.txt $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-clients.txt
	$(BIN)/pip install -q --disable-pip-version-check agno==2.5.14
	touch $@

migrate: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

# daphne and the agent simulator side by side; the simulator drives the server through its agent
# APIs (xpander, Agentex, JSON-RPC, native REST), so changes reach open browsers even with the
# embedded in-memory channel layer. Ctrl-C (or either process ending) stops both; the simulator
# revokes the API tokens it created.
run: seed
	@echo ""
	@echo "  Taskdesk:  http://$(HOST):$(PORT)/   (admin: http://$(HOST):$(PORT)/admin/)"
	@echo "  Logins (password 'taskdesk'): alice (operator, acme), bob (viewer, acme),"
	@echo "                                charlie (operator, globex), admin (superuser)"
	@echo "  The agent simulator runs beside the server at $(SIM_RATE) changes/s. Ctrl-C stops both."
	@echo ""
	@trap 'trap - INT TERM EXIT; kill $$server $$simulator 2>/dev/null; wait' INT TERM EXIT; \
	$(BIN)/daphne -v 0 -b $(HOST) -p $(PORT) dashboard.asgi:application & server=$$!; \
	$(BIN)/python manage.py simulate_agents --url http://$(HOST):$(PORT) --rate $(SIM_RATE) & simulator=$$!; \
	wait $$server

# Two pytest runs: Playwright's sync API keeps an event loop in the main thread, which clashes
# with the pytest-asyncio tests when both share one process.
test: $(VENV)/.installed $(VENV)/.clients
	$(BIN)/python -m pytest --ignore=tests/browser
	$(BIN)/python -m pytest tests/browser

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) taskdesk.sqlite3 staticfiles .pytest_cache
