# syntax=docker/dockerfile:1
# One image for every eventpipe role; the command picks it:
#   docker run IMAGE collector | processor | migrate   (default: collector)
# Kubernetes manifests: deploy/k8s/ (guide: docs/deploy.md).
#
# Build:  docker build -t eventpipe:0.1.0 .
#         docker build --build-arg WITH_CHDB=true ...   keeps the embedded chDB engine (+~530 MB);
#         the default image talks to a ClickHouse server (EVENTPIPE_CLICKHOUSE_URL) only.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

ARG RUST_IMAGE=rust:1-slim-bookworm
FROM ${RUST_IMAGE} AS rust

FROM ${PYTHON_IMAGE} AS build
# cargo builds the processor's native engine (eventpipe._explode, processors/native) during pip install;
# only this stage has it, the runtime stage gets the built extension inside the virtualenv
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
# rustc's linker. Not pinned (DL3008): Debian's archive keeps only the current point release of a
# package, so a pinned version stops resolving; the base image's tag fixes the release (bookworm).
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CARGO_HOME=/usr/local/cargo \
    RUSTUP_HOME=/usr/local/rustup \
    PATH=/usr/local/cargo/bin:$PATH
RUN python -m venv /opt/eventpipe
WORKDIR /src
COPY pyproject.toml README.md ./
COPY eventpipe ./eventpipe
COPY ingest ./ingest
COPY processors ./processors
COPY schemas ./schemas
ARG WITH_CHDB=false
# A non-editable install: the runtime stage copies only the virtualenv.
# chDB is imported lazily by clickhouse-connect (interface="chdb" only), so the
# server-mode image drops it.
RUN /opt/eventpipe/bin/pip install . \
 && if [ "${WITH_CHDB}" != "true" ]; then /opt/eventpipe/bin/pip uninstall --yes chdb; fi \
 && find /opt/eventpipe -name '__pycache__' -type d -prune -exec rm -rf {} + \
 && /opt/eventpipe/bin/python -m compileall -q /opt/eventpipe/lib
COPY deploy/docker/healthcheck.py /opt/eventpipe/bin/eventpipe-healthcheck

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="eventpipe" \
      org.opencontainers.image.description="Segment-compatible collector, faust processor and ClickHouse migrations in one image" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric non-root user, so Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 eventpipe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/eventpipe \
            --shell /usr/sbin/nologin eventpipe \
 && mkdir -p /var/lib/eventpipe \
 && chown 10001:10001 /var/lib/eventpipe
COPY --from=build /opt/eventpipe /opt/eventpipe
ENV PATH=/opt/eventpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EVENTPIPE_DATA_DIR=/var/lib/eventpipe \
    EVENTPIPE_CACHE_DIR=/tmp/eventpipe-cache \
    EVENTPIPE_COLLECTOR_HOST=0.0.0.0 \
    EVENTPIPE_PROCESSOR_WEB_HOST=0.0.0.0
WORKDIR /var/lib/eventpipe
USER 10001:10001
# 8080: collector HTTP (/v1/*, /healthz, /readyz, /metrics); 6066: processor web (/metrics)
EXPOSE 8080 6066
# Healthy when this container's role answers on its port (collector /healthz or processor /metrics).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/eventpipe/bin/eventpipe-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["eventpipe"]
CMD ["collector"]
