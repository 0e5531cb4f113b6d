# Both entry points bootstrap their own virtualenv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEMO   := results/demo

.PHONY: venv demo test test-fast bench lint gc clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,docker]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

# The field failure and its fix, side by side: stock relay, then the reserve-slot-first patch.
demo: venv
	@rm -rf $(DEMO)
	@echo "== pin-race on the stock relay (expected to fail)"
	@$(BIN)/rig run scenarios/pin-race.yaml --out $(DEMO)/stock; test $$? -le 1
	@echo "== pin-race with scenarios/patches/relay-reserve-slot-first.patch"
	@$(BIN)/rig run scenarios/pin-race.yaml --out $(DEMO)/fixed \
		--patch scenarios/patches/relay-reserve-slot-first.patch; test $$? -le 1
	@echo "== side by side"
	@$(BIN)/rig report $(DEMO)/stock $(DEMO)/fixed --out $(DEMO)/report.html

test: venv
	$(BIN)/pytest

test-fast: venv
	$(BIN)/pytest -m "not slow and not e2e"

bench: venv
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run_all.py

lint: venv
	$(BIN)/ruff check rig tests bench containers
	$(BIN)/mypy rig

gc: venv
	$(BIN)/rig gc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
