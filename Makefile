# Two commands do all set-up (both idempotent: they create/reuse .venv and
# reinstall only when a requirements file changed):
#   make run    -> the app on the bundled model + bundled demo data (offline)
#   make test   -> the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The app's one-time set-up (model conversion, demo asset, compiled kernels), done here and
# not on the user's first click; re-run when the environment or the demo asset changes.
PREPARED := $(VENV)/.prepared
PORT ?= 8501

.PHONY: run test lint bench clean-venv prepare

$(STAMP): requirements.txt requirements-bundled.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-bundled.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(PREPARED): $(STAMP) scripts/setup_app.py $(wildcard assets/demo/default.tar.xz)
	$(PY) scripts/setup_app.py
	touch $(PREPARED)

prepare: $(PREPARED)

run: $(PREPARED)
	@if [ -f app.py ]; then \
		$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false; \
	else \
		$(PY) -m mads_core fingerprint --data demo; \
	fi

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/fingerprint.py

clean-venv:
	rm -rf $(VENV)
