# The two ways in: `make run` (the whole pipeline on the sample) and `make test`.
# Both first set up everything: a venv in .venv with every dependency pinned
# (constraints.txt), and the sample dataset in data/ as data.dvc records it (and the Twitter
# shift set in shift/twitter/ as shift/twitter.dvc does).

PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
# The dev extras (pytest, linters, a test PostgreSQL) on a developer's machine; the Docker
# image installs with EXTRAS= (empty): what it serves and runs needs none of them.
EXTRAS ?= [dev]

# The venv's bin/ first: dvc.yaml calls `mmops`, MLflow serving starts `uvicorn` by name.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Offline by design: no usage statistics, no model hub.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: run test install data clean-artifacts

run: data
	dvc repro
	mmops summary

test: data
	pytest -m "slow or not slow"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "pip==26.3"
	$(VENV)/bin/pip install --quiet --quiet -c constraints.txt -e '.$(EXTRAS)'
	$(VENV)/bin/pip check
	touch $@

# The sample (data/, data.dvc) and the Twitter shift set (shift/twitter/, shift/twitter.dvc):
# both in the DVC cache, so `dvc status` is clean after `make run`.
data: install
	mmops sample
	mmops sample --vendor twitter

clean-artifacts:
	rm -rf artifacts dvc_plots
