# syntax=docker/dockerfile:1
# The level-4 fraud scoring service (`python -m level4_fraud serve`, uvicorn engine),
# multi-stage and non-root.
# Build from the repository root:  docker/build_image.sh fraud
#   (= podman build --format docker --build-arg BASE_IMAGE=... -f docker/level4/fraud.Dockerfile .)
# BASE_IMAGE needs python3 with venv and libgomp1 (LightGBM); docker/build_base.sh makes one
# without a registry. A folder of local wheels mounted at /wheels (the CPU torch wheel) is used
# when present; otherwise pip takes torch from the index.
ARG BASE_IMAGE=python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_7:FROM names the BASE_IMAGE build argument, whose default above is a versioned tag (checkov cannot resolve it)

FROM ${BASE_IMAGE} AS build
# PIP_CERT: a CA bundle mounted at build time where TLS to the index is intercepted.
ARG PIP_CERT=""
ARG TORCH=torch==2.13.0
ENV PIP_CERT=${PIP_CERT} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/wheels \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
# torch first (the lock leaves it out, as the Makefile does), then the pinned rest; separate
# layers so a change of the lock does not download torch again.
# hadolint ignore=DL3059
RUN /opt/venv/bin/pip install "${TORCH}"
COPY requirements/all.lock /tmp/all.lock
COPY docker/requirements/level4.in /tmp/level4.in
RUN /opt/venv/bin/pip install -c /tmp/all.lock -r /tmp/level4.in
# Only the two packages the service imports; tests, data and artifacts stay out (the ignore file).
COPY shared /app/shared
COPY level4_fraud /app/level4_fraud
RUN /opt/venv/bin/python -m compileall -q /app

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# HOME=/tmp: libraries that cache under ~ write to the tmpfs (the root file system may be
# read-only). L4__ARTIFACTS_DIR is where the run folders and the MLflow registry are mounted:
# the service scores with the newest run there (its audit log and hash key go to RUN/serving/
# unless L4__SERVING__AUDIT_URL / _AUDIT_HASH_KEY say otherwise).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    L4__ARTIFACTS_DIR=/srv/artifacts \
    L4__SERVING__HOST=0.0.0.0 \
    L4__SERVING__PORT=8400
WORKDIR /app
USER 10001
EXPOSE 8400
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8400/healthz', timeout=2)"]
# One uvicorn process per container (scale with replicas: the card ledger and the metrics are
# per process). The API key comes from L4__SERVING__API_KEY (never on the command line).
CMD ["python3", "-m", "level4_fraud", "serve", "--port", "8400", "--engine", "uvicorn"]
