# syntax=docker/dockerfile:1
#
# Two images from one file (docker-compose.yml builds both):
#
#   docker build --target api    -t synthjobs-api .     # FastAPI + migrations; no torch, starts in ~1 s
#   docker build --target worker -t synthjobs-worker .  # Celery worker with the training stack (.[worker])
#
# GPUs: on Linux x86_64, the torch wheel pip resolves from PyPI is the CUDA build. It brings the CUDA
# runtime, cuDNN and NCCL as nvidia-* wheels, so the worker image needs no CUDA base image: the host needs
# only the NVIDIA driver and the NVIDIA Container Toolkit (`docker run --gpus all`, or the compose
# file's device reservation). Elsewhere (e.g. aarch64, or an index serving CPU wheels) pip may resolve a
# CPU-only torch; the worker then runs on CPU with SYNTHJOBS_DEVICE=auto and refuses SYNTHJOBS_DEVICE=cuda.
#
# Layers are ordered for the build cache: pyproject.toml first, then the dependencies it lists (the slow,
# rarely-changing layer: torch alone is gigabytes), then the five packages, then the project itself. (The
# api image installs in one layer: its dependencies are an extra, which pip reads from pyproject.toml.)

ARG PYTHON_IMAGE=python:3.11-slim

# ---- base: runtime settings and the unprivileged user shared by every stage ---------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    SYNTHJOBS_HOME=/home/synthjobs/.synthjobs
RUN groupadd --system --gid 10001 synthjobs \
 && useradd --system --uid 10001 --gid synthjobs --create-home --home-dir /home/synthjobs \
        --shell /usr/sbin/nologin synthjobs

# ---- build-base: a virtualenv and the project metadata --------------------------------------------------
FROM base AS build-base
RUN python -m venv /opt/venv
WORKDIR /src
# README.md is optional (the glob copies it when present); setuptools only warns when it is missing.
COPY pyproject.toml README.md* ./

# ---- build-api: the client and the server extra (not the worker extra: no torch, numpy or scikit-learn) --
# One layer: the server extra is read by pip from pyproject.toml, so a code change reinstalls it.
FROM build-base AS build-api
COPY synthjobs ./synthjobs
COPY synthjobs_client ./synthjobs_client
COPY api ./api
COPY worker ./worker
COPY training ./training
RUN pip install ".[api]"

# ---- build-worker: the API's dependencies plus the training stack -------------------------------------
# (the worker extra names synthjobs[server] itself; that line is left to the final `pip install`)
FROM build-base AS build-worker
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; e = p['optional-dependencies']; \
print('\n'.join(d for d in p['dependencies'] + e['server'] + e['worker'] if not d.startswith('synthjobs')))" \
    > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY synthjobs ./synthjobs
COPY synthjobs_client ./synthjobs_client
COPY api ./api
COPY worker ./worker
COPY training ./training
RUN pip install ".[worker]"

# ---- worker: `synthjobs worker` runs a Celery worker (solo pool) on the `gpu` queue ---------------------
FROM base AS worker
COPY --from=build-worker /opt/venv /opt/venv
USER synthjobs
WORKDIR /home/synthjobs
CMD ["synthjobs", "worker"]

# ---- api (the default target): `synthjobs api` migrates the database, then serves on port 8000 ---------
FROM base AS api
COPY --from=build-api /opt/venv /opt/venv
USER synthjobs
WORKDIR /home/synthjobs
EXPOSE 8000
# /healthz answers 503 (so urlopen raises and this exits 1) when SQL, the broker or storage is down.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=8)"]
CMD ["synthjobs", "api", "--host", "0.0.0.0", "--port", "8000"]
