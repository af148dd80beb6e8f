# LeakLab: `make demo` (the main job) and `make test`. Both create .venv on first use and
# install leaklab (editable, with its course and test extras) under lib/constraints.txt.
# A second run reuses the venv; it reinstalls only when pyproject.toml or the pins change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.leaklab-installed
A      ?=
# The shared data folder beside the checkout (the AT&T faces of a4), when present; an
# instructor's own LEAKLAB_DATA_DIR wins when it is set.
SHARED_DATA := $(abspath ../shared/data)
DATA_ENV := $(if $(LEAKLAB_DATA_DIR),,$(if $(wildcard $(SHARED_DATA)),LEAKLAB_DATA_DIR=$(SHARED_DATA)))
TEST_ENV := LEAKLAB_PROFILE=ci LEAKLAB_PROGRESS=0 HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(DATA_ENV)

# Student code is graded inside bubblewrap (Debian/Ubuntu package `bubblewrap`). `make test`
# installs it with apt-get when it is missing and we are root (as in CI); `make demo` without
# it grades unsandboxed and says so loudly.
BWRAP := $(shell command -v bwrap)

.PHONY: demo test release bench mutation venv clean sandbox-tool

demo: $(STAMP)
	$(DATA_ENV) $(BIN)/python -W ignore -m autograder demo $(if $(A),-a $(A)) $(if $(BWRAP),,--unsafe-no-sandbox)

test: $(STAMP) sandbox-tool
	$(TEST_ENV) $(BIN)/python -m pytest tests -ra

sandbox-tool:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null); } || \
	  { echo "bubblewrap (bwrap) is missing: install it (sudo apt-get install bubblewrap) to grade sandboxed"; exit 1; }

release: $(STAMP)
	$(BIN)/python -W ignore -m autograder release $(if $(DRAFT),--draft)

bench: $(STAMP)
	$(TEST_ENV) $(BIN)/python tests/benchmarks/bench_notebooks.py $(if $(A),$(A))

# Mutation score of the graded unit tests (tests/benchmarks/mutation.py; installs mutmut, lib[bench]).
mutation: $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -q -c lib/constraints.txt -e "lib[bench]"
	$(TEST_ENV) $(BIN)/python tests/benchmarks/mutation.py $(A)

venv: $(STAMP)

$(STAMP): lib/pyproject.toml lib/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 10), "LeakLab needs Python 3.10+ (3.11 recommended)"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -c lib/constraints.txt -e "lib[course,test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) lib/*.egg-info .pytest_cache
