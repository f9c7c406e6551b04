# syntax=docker/dockerfile:1
# The Ray Serve variant of the level 4 scoring service: the scoring image plus Ray Serve, at the
# Ray version the RayService names (rayVersion in rayservice.yaml; the lock's ray==2.60.0).
# Build from the repository root after docker/build_image.sh fraud localhost/level4-fraud:0.1.0:
#   podman build --format docker --build-arg FRAUD_IMAGE=localhost/level4-fraud:0.1.0 \
#     -f infra/k8s/ray/ray.Dockerfile -t localhost/level4-fraud-ray:dev .
ARG FRAUD_IMAGE=localhost/level4-fraud:0.1.0
#checkov:skip=CKV_DOCKER_7:the base is the project's own scoring image, a build argument that defaults to a release tag
FROM ${FRAUD_IMAGE}
ARG PIP_CERT=""
ENV PIP_CERT=${PIP_CERT} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The venv belongs to root: install as root, run as the image's non-root user again.
USER 0
RUN /opt/venv/bin/pip install "ray[serve]==2.60.0"
USER 10001
# Ray's head and workers are started by KubeRay (ray start ...), which probes the raylet and the
# Serve proxy itself; a container HEALTHCHECK would not be used by Kubernetes.
#checkov:skip=CKV_DOCKER_2:KubeRay's liveness and readiness probes check the Ray pods; Kubernetes ignores HEALTHCHECK
