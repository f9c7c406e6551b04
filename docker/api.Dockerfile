# syntax=docker/dockerfile:1
# The level-3 recommendation API (FastAPI + uvicorn), multi-stage and non-root.
# Build from the repository root:  docker/build_image.sh api
#   (= podman build --format docker --build-arg BASE_IMAGE=... -f docker/api.Dockerfile .)
# BASE_IMAGE needs python3 with venv (Debian bookworm: python3-venv); docker/build_base.sh
# makes one without a registry.
ARG BASE_IMAGE=python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_7:FROM names the BASE_IMAGE build argument, whose default above is a versioned tag (checkov cannot resolve it)

FROM ${BASE_IMAGE} AS build
# PIP_CERT: a CA bundle mounted at build time where TLS to the index is intercepted.
ARG PIP_CERT=""
ENV PIP_CERT=${PIP_CERT} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
COPY requirements/all.lock /tmp/all.lock
COPY docker/requirements/api.in /tmp/api.in
RUN /opt/venv/bin/pip install -c /tmp/all.lock -r /tmp/api.in
# Only the two packages the API imports; tests, data and artifacts stay out (see the ignore file).
COPY shared /app/shared
COPY level3_recsys /app/level3_recsys
RUN /opt/venv/bin/python -m compileall -q /app

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    L3__SERVING__MODEL_SERVICE_URL=http://model:3000
WORKDIR /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Settings come from L3__SERVING__* variables (level3_recsys/serving/settings.py); one worker
# per container: scale with replicas, so the breaker and metrics stay per process.
CMD ["uvicorn", "--factory", "level3_recsys.serving.api:create_app", \
     "--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--timeout-graceful-shutdown", "10"]
