# syntax=docker/dockerfile:1
# samq GPU worker: one Celery process per GPU (threads pool: 4 jobs in flight, one device thread running the models).
#
#   docker build -f deploy/worker.Dockerfile -t samq-worker .                       (weights mounted at /models)
#   make models && docker build -f deploy/worker.Dockerfile --target worker-baked \
#       --build-context models=./models -t samq-worker:baked .                      (weights inside the image)
#
# torch 2.14.1 / torchvision 0.29.1 are the versions samq is developed and tested with; their cu130 build matches
# the CUDA 13.0 base. A CPU-only image (laptops, CI smoke runs with SAMQ_MODELS=tiny-random):
#   --build-arg CUDA_IMAGE=ubuntu:24.04 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

# ---- build: compilers and headers for any wheel that must be built, a venv with the whole GPU stack
FROM ${CUDA_IMAGE} AS build
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
ARG SAM2_VERSION=1.1.0
# 0 (default): plain-Python sam2, which works without its CUDA extension (the extension only speeds up small-hole
# filling in masks). 1 builds it; that needs nvcc, i.e. CUDA_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04.
ARG SAM2_BUILD_CUDA=0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# setuptools and wheel: sam2 is built from source without build isolation (below), and Python 3.12's venv has
# neither. Then torch, pinned for every later pip call, so nothing below can swap it for another build.
RUN pip install "setuptools>=70" "wheel>=0.43" \
 && pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > /opt/constraints.txt
ENV PIP_CONSTRAINT=/opt/constraints.txt

# Base + worker dependencies from pyproject.toml (own layer: rebuilt only when pyproject.toml changes).
COPY pyproject.toml deploy/requirements.py /src/
RUN python /src/requirements.py /src/pyproject.toml worker > /src/requirements.txt \
 && pip install -r /src/requirements.txt

# sam2 is built against the torch above, hence --no-build-isolation; a failed extension build is tolerated.
RUN SAM2_BUILD_CUDA="$SAM2_BUILD_CUDA" SAM2_BUILD_ALLOW_ERRORS=1 \
    pip install --no-build-isolation "sam2==${SAM2_VERSION}"

COPY shared/ /src/shared/
COPY gateway/ /src/gateway/
COPY worker/ /src/worker/
RUN pip install --no-deps /src

# ---- runtime: the CUDA runtime, Python, the venv; no compilers
FROM ${CUDA_IMAGE} AS worker
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/home/samq/.cache/huggingface \
    SAMQ_MODEL_DIR=/models
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 samq \
 && useradd --system --uid 10001 --gid samq --create-home --home-dir /home/samq --shell /usr/sbin/nologin samq \
 && mkdir -p /models \
 && chown samq:samq /models
COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/samq

# Alive only if the worker heartbeats and takes work (worker/health.py; catches celery#10205). No torch import.
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
  CMD ["python", "-m", "worker.health", "live"]

# Same flags as `samq run` (gateway/supervisor.py worker_command); queues in priority order (shared/names.py).
# SIGTERM is Celery's warm shutdown: the jobs in hand finish before the process exits. The pool has
# SAMQ_WORKER_SLOTS threads (auto: 8 on CUDA, 4 on CPU; set by the app): one job's models run while the others fetch and render.
CMD ["celery", "-A", "worker.celery_app:app", "worker", "--pool", "threads", \
     "--prefetch-multiplier", "1", "--queues", "samq.infer.high,samq.infer.normal,samq.infer.low", \
     "--hostname", "samq-worker@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]

# ---- optional: the weights baked in. `make models` fills ./models on the host (SAMQ_MODELS picks the preset),
# and `--build-context models=./models` hands that folder to this stage; `samq models check` fails the build if
# the preset's files are not all there.
FROM scratch AS models

FROM worker AS worker-baked
ARG SAMQ_MODELS=large
ENV SAMQ_MODELS=${SAMQ_MODELS}
COPY --from=models --chown=10001:10001 / /models/
RUN samq models check

# ---- the default target (a build without --target): the worker image without weights, as above.
FROM worker AS worker-mounted
