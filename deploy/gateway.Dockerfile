# syntax=docker/dockerfile:1
# samq gateway: the Flask API behind gunicorn, plus the `samq` admin CLI (keys, credits).
# Thin on purpose: only the base dependencies of pyproject.toml; no GPU stack, no model code installed.
#
#   docker build -f deploy/gateway.Dockerfile -t samq-gateway .      (context: the repository root)
#   docker compose exec gateway samq keys create --credits 100 --name NAME
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    SAMQ_HOST=0.0.0.0

RUN groupadd --system --gid 10001 samq \
 && useradd --system --uid 10001 --gid samq --create-home --home-dir /home/samq --shell /usr/sbin/nologin samq

# Dependencies first (their own layer, rebuilt only when pyproject.toml changes).
# tqdm: shared/models.py imports it (the `samq` CLI loads it) but pyproject.toml does not declare it for the
# gateway yet; harmless once it does.
COPY pyproject.toml /tmp/src/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt tqdm

# The package itself (worker/ is listed by setuptools and copied as plain source; its extras are not installed).
COPY shared/ /tmp/src/shared/
COPY gateway/ /tmp/src/gateway/
COPY worker/ /tmp/src/worker/
RUN cd /tmp/src && pip install --no-cache-dir . && cd / && rm -rf /tmp/src /tmp/requirements.txt

USER samq
WORKDIR /home/samq
EXPOSE 8000

# Same flags as `samq run` (gateway/supervisor.py gateway_command); --timeout = SAMQ_SYNC_TIMEOUT_S (60) + 30.
# Extra gunicorn flags can be given at run time with GUNICORN_CMD_ARGS.
CMD ["gunicorn", "gateway.wsgi:app", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "16", \
     "--worker-class", "gthread", "--timeout", "90", "--access-logfile", "-", "--worker-tmp-dir", "/dev/shm"]
