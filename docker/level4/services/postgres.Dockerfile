# syntax=docker/dockerfile:1
# PostgreSQL for the level-4 stack (the audit log). SERVICES_FROM=debian (default): Debian
# bookworm's PostgreSQL 15 on the project's local base image, started by postgres-entrypoint.sh
# with the official image's variables (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA);
# SERVICES_FROM=official: the official image, where a registry is reachable.
ARG BASE_IMAGE=localhost/ml-levels-base:bookworm
ARG OFFICIAL_IMAGE=docker.io/library/postgres:16-bookworm
ARG SERVICES_FROM=debian
#checkov:skip=CKV_DOCKER_7:FROM names build arguments whose defaults above are versioned tags or the local base (checkov cannot resolve them)
#checkov:skip=CKV_DOCKER_2:docker/level4/compose.yaml defines this service's healthcheck (the official images ship none either)

FROM ${BASE_IMAGE} AS debian
# No "main" cluster at install time: the entrypoint initialises PGDATA on first start.
# Versions come from the base's Debian release (bookworm), not pinned one by one.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/15/bin:$PATH
# The package's system user (its uid is assigned at install, so by name).
# hadolint ignore=DL3066
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]

FROM ${OFFICIAL_IMAGE} AS official

# The stage the build argument names is the image.
FROM ${SERVICES_FROM}
