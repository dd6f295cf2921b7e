# syntax=docker/dockerfile:1
# samq GPU worker: one Celery process (solo pool, one job at a time) per GPU, running SAM 2 and Grounding DINO.
#
#   docker build -f deploy/worker.Dockerfile -t samq-worker .        (context: the repository root)
#
# Model weights are NOT baked into the image: the folder is mounted at /models (SAMQ_MODEL_DIR=/models) and
# read offline (HF_HUB_OFFLINE=1). Fetch them once with `samq models download`, which honours SAMQ_MODELS and
# SAMQ_MODEL_DIR, e.g. on the host from the repository:   SAMQ_MODEL_DIR=./models samq models download
# or with this image:   docker compose run --rm --no-deps worker samq models download
#   (the host folder ./models must then be writable by uid 10001).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${BASE_IMAGE}

# torch 2.14.1 / torchvision 0.29.1 are the versions samq is developed and tested with. The Linux wheels on
# PyPI bundle their CUDA libraries; TORCH_INDEX_URL may point at https://download.pytorch.org/whl/cuXYZ instead.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG SAM2_VERSION=1.1.0
# SAM2_BUILD_CUDA=0 (default): plain-Python sam2, which works without its CUDA extension (the extension only
# speeds up small-hole filling in masks). SAM2_BUILD_CUDA=1 tries to build it; that needs nvcc, i.e. a -devel
# base, e.g. --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04 --build-arg SAM2_BUILD_CUDA=1.
# A failed extension build does not fail the image (SAM2_BUILD_ALLOW_ERRORS=1).
ARG SAM2_BUILD_CUDA=0
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && if [ "$SAM2_BUILD_CUDA" = "1" ]; then apt-get install -y --no-install-recommends build-essential python3.11-dev; fi \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv \
 && pip install --no-cache-dir --upgrade pip setuptools wheel \
 && groupadd --system --gid 10001 samq \
 && useradd --system --uid 10001 --gid samq --create-home --home-dir /home/samq --shell /usr/sbin/nologin samq \
 && mkdir -p /models \
 && chown samq:samq /models

# torch first, then pinned for every later pip call (PIP_CONSTRAINT), so nothing below can swap it.
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > /opt/constraints.txt
ENV PIP_CONSTRAINT=/opt/constraints.txt

# Base + worker dependencies from pyproject.toml (own layer: rebuilt only when pyproject.toml changes).
COPY pyproject.toml /tmp/src/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['worker']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt

# sam2 needs torch at build time, hence --no-build-isolation (torch is already in the venv).
RUN SAM2_BUILD_CUDA="$SAM2_BUILD_CUDA" SAM2_BUILD_ALLOW_ERRORS=1 TORCH_CUDA_ARCH_LIST="$TORCH_CUDA_ARCH_LIST" \
    pip install --no-cache-dir --no-build-isolation "sam2==${SAM2_VERSION}"

COPY shared/ /tmp/src/shared/
COPY gateway/ /tmp/src/gateway/
COPY worker/ /tmp/src/worker/
RUN cd /tmp/src && pip install --no-cache-dir ".[worker]" && cd / && rm -rf /tmp/src /tmp/requirements.txt

ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/home/samq/.cache/huggingface \
    SAMQ_MODEL_DIR=/models

USER samq
WORKDIR /home/samq

# Same flags as `samq run` (gateway/supervisor.py worker_command); queues in priority order (shared/names.py).
CMD ["celery", "-A", "worker.celery_app:app", "worker", "--pool", "solo", "--concurrency", "1", \
     "--prefetch-multiplier", "1", "--queues", "samq.infer.high,samq.infer.normal,samq.infer.low", \
     "--hostname", "samq-worker@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
