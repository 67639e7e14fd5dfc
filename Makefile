# The two ways in: `make run` (the whole pipeline on the sample) and `make test`.
# Both first set up everything: a venv in .venv with every dependency pinned
# (constraints.txt), and the sample dataset in data/ as data.dvc records it (and the Twitter
# shift set in shift/twitter/ as shift/twitter.dvc does, and the three-modality sample in
# datasets/tuxpaint/). `make run DATASET=tuxpaint` runs the pipeline on the latter.

PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
# The dev extras (pytest, linters, a test PostgreSQL) and the Whisper speech encoder (the
# three-modality sample's audio) on a developer's machine; the Docker image installs with
# EXTRAS= (empty): what it serves and runs (the emoji model) needs none of them.
EXTRAS ?= [dev,whisper]

# The venv's bin/ first: dvc.yaml calls `mmops`, MLflow serving starts `uvicorn` by name.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Offline by design: no usage statistics, no model hub.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: run test install data plots-page clean-artifacts

# What `make run` runs on: emoji (data/ and params.yaml, through `dvc repro`), or tuxpaint: the
# three-modality sample (datasets/tuxpaint and datasets/tuxpaint.yaml) through the Prefect
# training flow, the same stages (dvc.yaml describes the one pipeline params.yaml configures).
DATASET ?= emoji

run: data plots-page
ifeq ($(DATASET),tuxpaint)
	python flows/training.py --params datasets/tuxpaint.yaml --artifacts artifacts/tuxpaint
	mmops summary --artifacts artifacts/tuxpaint
else ifeq ($(DATASET),emoji)
	dvc repro
	mmops summary
else
	$(error DATASET must be emoji or tuxpaint, not '$(DATASET)')
endif

test: data
	pytest -m "slow or not slow"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "pip==26.3"
	$(VENV)/bin/pip install --quiet --quiet -c constraints.txt -e '.$(EXTRAS)'
	$(VENV)/bin/pip check
	touch $@

# The sample (data/, data.dvc), the Twitter shift set (shift/twitter/, shift/twitter.dvc),
# OpenMoji's drawings of the same emoji to train on (styles/openmoji/, styles/openmoji.dvc) and the
# three-modality sample (datasets/tuxpaint/, datasets/tuxpaint.dvc; a 161 MB Debian package,
# kept in .cache/apt): all in the DVC cache, so `dvc status` is clean after `make run`.
data: install
	mmops sample
	mmops sample --vendor twitter
	mmops sample --vendor openmoji
	@if command -v apt-get >/dev/null; then mmops sample --dataset tuxpaint; \
	else echo "no apt-get: datasets/tuxpaint not built (README: the three-modality sample, --deb)"; fi

# `dvc plots show` offline: vega, vega-lite and vega-embed (hash-pinned npm tarballs, kept in
# .cache/npm) inlined into one page template, named in .dvc/config.local
# (git-ignored; DVC reads the path relative to .dvc/). Not in .dvc/config: DVC refuses a configured
# template that does not exist, so a fresh clone would fail until its first `make run`.
PLOTS_TEMPLATE := artifacts/plots/template.html

# Rebuilt each time (from the cached, re-verified tarballs: instant), so a change of pins lands;
# without the npm registry and no cache it warns and the run goes on (DVC's own page then).
plots-page: install
	mmops plots-page --out $(PLOTS_TEMPLATE) && dvc config --local plots.html_template ../$(PLOTS_TEMPLATE) \
	  || echo "warning: no offline plots page (see above); dvc plots show will load vega from its CDN"

# The template goes with the artifacts, so DVC is no longer pointed at it.
clean-artifacts:
	rm -rf artifacts dvc_plots
	dvc config --local --unset plots.html_template 2>/dev/null || true
