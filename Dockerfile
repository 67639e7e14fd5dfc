# One image: it serves the champion by default and runs the pipeline, the gate or a batch on demand.
#   docker build -t mmops .
#   docker run --rm -v mmops-state:/app/state mmops make run           # the pipeline: registers a challenger
#   docker run --rm -v mmops-state:/app/state mmops mmops promote      # the gate
#   docker run -d -p 5000:5000 -v mmops-state:/app/state mmops         # serve models:/mmops-classifier@champion
# MLflow's store lives in the volume. The PyPI torch wheel carries its own CUDA runtime: on a CUDA
# host add `--gpus all`. BASE picks another base image with Python 3.11 and the same Debian release
# (e.g. a CUDA runtime image with Python added): --build-arg BASE=...
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# git (DVC, lineage tags), make (the install recipe), nodejs + npm (fetch the sample once)
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.5-0+deb12u3 make=4.3-4.1 \
       nodejs=18.20.4+dfsg-1~deb12u2 npm=9.2.0~ds1-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# What `make` installs on a developer's machine, by the same recipe and constraints, without the
# dev extras (tests, linters: EXTRAS=); tests/unit/test_dockerfile.py holds it to that. Code
# changes do not invalidate this layer.
COPY Makefile pyproject.toml constraints.txt README.md ./
COPY src/mmops/__init__.py src/mmops/__init__.py
RUN make install EXTRAS=
COPY . .
# The sample is fetched (npm) and checked against data.dvc at build time, never at run time.
RUN make data EXTRAS=

FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.5-0+deb12u3 make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 mmops
WORKDIR /app
COPY --from=build --chown=1000:1000 /app /app
USER 1000:1000
ENV PATH=/app/.venv/bin:$PATH \
    MLFLOW_TRACKING_URI=sqlite:////app/state/mlflow.db \
    PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 GX_ANALYTICS_ENABLED=false \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
    UVICORN_HTTP=mmops.serving.limits:BodyLimitedHTTP MMOPS_SERVE_MAX_BODY_BYTES=67108864
# ^ the scoring server's uvicorn (it reads UVICORN_*) refuses a body over 64 MiB with 413 before
# parsing it (src/mmops/serving/limits.py); `-e MMOPS_SERVE_MAX_BODY_BYTES=...` at run time changes it
# MLflow's artifacts go to the volume too (./mlruns is MLflow's default artifact root)
RUN mkdir -p state/mlruns && ln -s state/mlruns mlruns

EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/ping', timeout=4)"]
CMD ["mlflow", "models", "serve", "-m", "models:/mmops-classifier@champion", "--env-manager", "local", \
     "-h", "0.0.0.0", "-p", "5000"]
