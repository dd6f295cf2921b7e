# syntax=docker/dockerfile:1
# samq gateway: the Flask API behind gunicorn, plus the `samq` admin CLI (keys, credits). The same image runs the
# webhook sender (`celery -A worker.webhook_app:app worker --pool threads ...`, see docker-compose.yml), which
# imports no torch either.
# Thin on purpose: only the base dependencies of pyproject.toml (deploy/requirements.py, no extras); no GPU stack.
#
#   docker build -f deploy/gateway.Dockerfile -t samq-gateway .      (context: the repository root)
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: a virtual environment with samq and its base dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# Dependencies first, in their own layer (rebuilt only when pyproject.toml changes).
COPY pyproject.toml deploy/requirements.py /src/
RUN python /src/requirements.py /src/pyproject.toml > /src/requirements.txt \
 && pip install -r /src/requirements.txt

COPY shared/ /src/shared/
COPY gateway/ /src/gateway/
COPY worker/ /src/worker/
RUN pip install --no-deps /src

# ---- runtime: the venv, a non-root user, nothing else
FROM ${PYTHON_IMAGE} AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SAMQ_HOST=0.0.0.0 \
    GUNICORN_CMD_ARGS="--workers 2 --threads 64"
RUN groupadd --system --gid 10001 samq \
 && useradd --system --uid 10001 --gid samq --create-home --home-dir /home/samq --shell /usr/sbin/nologin samq
COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/samq
EXPOSE 8000

# /healthz: the process answers (Kubernetes uses /readyz for traffic; see deploy/k8s).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]

# Same flags as `samq run` (gateway/supervisor.py gateway_command); --timeout = SAMQ_SYNC_TIMEOUT_S (60) + 30.
# Processes and threads come from GUNICORN_CMD_ARGS (above), so a deployment can change them without
# repeating this line: gunicorn lets its command line win over that variable.
CMD ["gunicorn", "gateway.wsgi:app", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--timeout", "90", \
     "--config", "python:gateway.gunicorn_conf", "--worker-tmp-dir", "/dev/shm"]
