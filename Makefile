# Both entry points bootstrap their own virtualenv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEMO   := results/demo

.PHONY: venv demo demo-bisect gate images test test-fast bench lint gc clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,docker,cluster]'
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

# A generated 16-commit history of the model SUT whose commit 11 removes the fix, bisected
# with the real scenario (each run fails only sometimes, so the search is statistical).
demo-bisect: venv
	@rm -rf results/demo-bisect
	@$(BIN)/rig demo-history results/demo-bisect/repo --commits 16 --culprit 11
	@$(BIN)/rig bisect results/demo-bisect/repo/scenarios/pin-race.yaml \
		--repo results/demo-bisect/repo --good HEAD~15 --bad HEAD --out results/demo-bisect/out \
		--set duration=10 --set settle=1 --set checks.pins_flat_after_warmup.warmup=4

# The CI gate on the shipped scenarios. The shipped relay carries the pin race on purpose,
# so this fails until a fix is applied: `make gate GATE_ARGS="--patch scenarios/patches/..."`.
gate: venv
	$(BIN)/rig gate scenarios/pin-race.yaml --junit results/gate/junit.xml \
		--markdown results/gate/summary.md $(GATE_ARGS)

# Every service image, on a base made with debootstrap when there is no registry.
images: venv
	containers/base/make-base.sh
	$(BIN)/rig images

# On every core (pytest-xdist); tests that measure timing or want the machine to themselves
# share one xdist_group, so they run one after the other on a single worker.
TEST_WORKERS ?= auto
test: venv
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: venv
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow and not e2e"

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
