# Thermowatch: the two commands a newcomer needs are `make demo` and `make test`.
# Both run `make setup` first, which is idempotent and quick when everything is present.
VENV := .venv
PY := $(VENV)/bin/python
export THERMOWATCH_MICROPYTHON ?= $(CURDIR)/.cache/micropython/micropython
export THERMOWATCH_MPY_CROSS ?= $(CURDIR)/.cache/micropython/mpy-cross

.PHONY: setup test lint typecheck firmware-typecheck demo bench clean

setup:
	@bash scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

# Board firmware against the MicroPython ESP32 stubs (fetched once into .cache, not the venv:
# they replace the standard library's stubs).
MPY_STUBS := .cache/mpy-stubs
firmware-typecheck: setup
	@test -f $(MPY_STUBS)/stdlib/VERSIONS || $(PY) -m pip install -q --target $(MPY_STUBS) "micropython-esp32-stubs~=1.25.0"
	$(VENV)/bin/mypy --config-file firmware/mypy.ini

test: setup lint typecheck firmware-typecheck
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/thermowatch demo

bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/edge.py
	$(PY) bench/firmware.py
	$(PY) bench/alerts.py
	$(PY) bench/query.py
	$(PY) bench/hostile.py
	$(PY) bench/login.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist
