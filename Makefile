# Two commands do all set-up (both idempotent: they create/reuse .venv and
# reinstall only when a requirements file changed):
#   make run    -> the app on the bundled model + bundled demo data (offline)
#   make test   -> the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: run test lint bench clean-venv

$(STAMP): requirements.txt requirements-bundled.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-bundled.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
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
