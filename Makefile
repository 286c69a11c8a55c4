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

# Peer libraries for bench/select.py (apricot-select, submodlib-py) live in a venv of their own,
# never in the project's: BENCH_VENV (relative to the repository). Every other bench script runs
# in the project venv. `make bench` runs every script in bench/ with its defaults, in name order
# (a failing one stops it), keeps each one's output in bench/out/logs/<script>.log, and ends with
# every script's last line and wall time. BENCH_SCRIPTS picks a subset:
#   make bench BENCH_SCRIPTS="bench/maps.py bench/select.py"
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_PEERS := bench/select.py

$(BENCH_STAMP): bench/requirements.txt
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

BENCH_SCRIPTS ?= $(sort $(wildcard bench/*.py))
BENCH_LOGS := bench/out/logs

bench: $(PREPARED) $(BENCH_STAMP)
	@mkdir -p $(BENCH_LOGS); rm -f $(BENCH_LOGS)/summary.txt
	@for script in $(BENCH_SCRIPTS); do \
		case " $(BENCH_PEERS) " in *" $$script "*) py=$(BENCH_PY);; *) py=$(PY);; esac; \
		name=$$(basename $$script .py); log=$(BENCH_LOGS)/$$name.log; start=$$(date +%s); \
		echo "== $$py $$script (load average $$(cut -d' ' -f1 /proc/loadavg 2>/dev/null))"; \
		{ $$py $$script 2>&1; echo $$? > $$log.rc; } | tee $$log; \
		rc=$$(cat $$log.rc); rm -f $$log.rc; \
		echo "$$script ($$(( $$(date +%s) - start )) s): $$(tail -n 1 $$log)" >> $(BENCH_LOGS)/summary.txt; \
		if [ "$$rc" != 0 ]; then echo "== $$script failed (exit $$rc); log: $$log"; exit $$rc; fi; \
	done
	@echo "== every benchmark's last line (logs in $(BENCH_LOGS)/)"; cat $(BENCH_LOGS)/summary.txt

clean-venv:
	rm -rf $(VENV) $(BENCH_VENV)
