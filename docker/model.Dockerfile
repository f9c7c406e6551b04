# syntax=docker/dockerfile:1
# The level-3 model service: the registry's champion behind BentoML (`bentoml serve`).
# Build from the repository root:  docker/build_image.sh model
# BASE_IMAGE needs python3 with venv and libgomp1 (LightGBM, implicit); docker/build_base.sh
# makes one without a registry. A folder of local wheels mounted at /wheels (the CPU torch
# wheel) is used when present; otherwise pip takes torch from the index.
ARG BASE_IMAGE=python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_7:FROM names the BASE_IMAGE build argument, whose default above is a versioned tag (checkov cannot resolve it)

FROM ${BASE_IMAGE} AS build
ARG PIP_CERT=""
ARG TORCH=torch==2.13.0
ENV PIP_CERT=${PIP_CERT} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/wheels \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
# torch first (the lock leaves it out, as the Makefile does), then the pinned rest;
# separate layers so a change of the lock does not download torch again.
# hadolint ignore=DL3059
RUN /opt/venv/bin/pip install "${TORCH}"
COPY requirements/all.lock /tmp/all.lock
COPY docker/requirements/model.in /tmp/model.in
RUN /opt/venv/bin/pip install -c /tmp/all.lock -r /tmp/model.in
COPY shared /app/shared
COPY level3_recsys /app/level3_recsys
RUN /opt/venv/bin/python -m compileall -q /app

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /home/bentoml && chown 10001 /home/bentoml
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    BENTOML_HOME=/home/bentoml \
    BENTOML_DO_NOT_TRACK=true \
    L3__MODEL_SERVICE__MODEL_URI=models:/level3_recsys@champion
WORKDIR /app
USER 10001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=2)"]
# L3__MODEL_SERVICE__TRACKING_URI must name the MLflow registry (a mounted SQLite file or a server).
CMD ["bentoml", "serve", "level3_recsys.serving.model_service:RecommenderService", \
     "--host", "0.0.0.0", "--port", "3000"]
